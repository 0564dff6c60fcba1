"""The tables and the summary a person reads after ``sft-fixer``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flows.common.reporting import markdown_table
from flows.common.text import code_span, markdown_text
from flows.sft.result import SftFixerResult, SftInstanceOutcome, SftVerdict


def outcome_rows(outcomes: Sequence[SftInstanceOutcome]) -> list[dict[str, Any]]:
    """One row per instance for the table artifact and the report."""
    return [
        {
            "instance": o.instance_id,
            "name": o.hostname,
            "verdict": o.verdict.value,
            "reason": o.reason,
            "account": o.account_id,
            "region": o.region,
            "platform": o.platform.value,
            "before": o.before.summary if o.before else "",
            "action": o.action_taken.value if o.action_taken else "",
            "after": o.after.summary if o.after else "",
        }
        for o in outcomes
    ]


def summary_markdown(result: SftFixerResult, run_name: str) -> str:
    counts = (
        ", ".join(f"{result.count(v)} {v.value}" for v in SftVerdict if result.count(v))
        or "no instances"
    )
    lines = [
        f"# sft-fixer: {result.action.value} "
        f"({markdown_text(result.change_number or 'no change')})",
        "",
        f"- flow run: {code_span(run_name)}",
        f"- provider: {code_span(result.provider)}",
        f"- verdicts: **{counts}**",
        "",
    ]
    problems = [o for o in result.outcomes if not o.verdict.is_good]
    if problems:
        lines += ["## Needs attention", "", markdown_table(outcome_rows(problems))]
    lines += ["## Every instance", "", markdown_table(outcome_rows(result.outcomes))]
    return "\n".join(lines)
