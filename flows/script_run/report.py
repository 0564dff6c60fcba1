"""What ``run-script`` returns and the summary a person reads."""

from __future__ import annotations

from pydantic import BaseModel, Field

from flows.common.reporting import markdown_table, result_rows, status_counts
from flows.common.text import code_span, markdown_text
from providers.base import BatchResult


class RunScriptResult(BaseModel):
    """What ``run-script`` returns."""

    change_number: str | None
    provider: str
    script: str = Field(description="the bundled script's name, or 'inline'")
    batch: BatchResult
    report_path: str
    child_flow_runs: list[str] = Field(
        default_factory=list, description="the per-account child runs, when fanned out"
    )


def summary_markdown(result: RunScriptResult, run_name: str) -> str:
    """The run's summary: overall outcome, what needs attention, every instance."""
    batch = result.batch
    lines = [
        f"# run-script: {markdown_text(result.script)} "
        f"({markdown_text(result.change_number or 'no change')})",
        "",
        f"- flow run: {code_span(run_name)}",
        f"- provider: {code_span(result.provider)}",
        f"- overall: **{batch.status.value}**: {batch.success_count} succeeded, "
        f"{batch.failure_count} did not ({status_counts(batch)})",
    ]
    if result.child_flow_runs:
        lines.append(
            f"- fanned out per account to: {markdown_text(', '.join(result.child_flow_runs))}"
        )
    lines.append("")
    problems = [r for r in batch.results if not r.status.is_success]
    if problems:
        lines += ["## Needs attention", "", markdown_table(result_rows(problems))]
    lines += ["## Every instance", "", markdown_table(result_rows(batch.results))]
    return "\n".join(lines)
