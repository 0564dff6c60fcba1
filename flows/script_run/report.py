"""What ``run-script`` returns and the summary a person reads."""

from __future__ import annotations

from pydantic import BaseModel, Field

from flows.common.reporting import markdown_table, output_section, result_rows, status_counts
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
    names: dict[str, str] = Field(
        default_factory=dict, description="instance id -> hostname, from the change file"
    )


# The output artifact holds whole outputs up to this many characters; the report file holds
# them all (each capped by SSM at 24,000 + 8,000 characters).
OUTPUT_ARTIFACT_BUDGET = 1_000_000


def output_markdown(result: RunScriptResult, budget: int | None = None) -> str:
    """Every instance's output, one collapsible section each; past ``budget`` characters the
    rest is named, and left to the report file."""
    lines = [f"# Output of {result.script} on each instance", ""]
    used = 0
    for position, r in enumerate(result.batch.results):
        section = output_section(r, result.names.get(r.instance_id))
        if budget is not None and used + len(section) > budget:
            rest = len(result.batch.results) - position
            lines.append(
                f"_The output of {rest} more instance(s) is in the report file "
                f"{result.report_path or '(see the run log)'}._"
            )
            break
        lines.append(section)
        used += len(section)
    return "\n".join(lines)


def outcome(result: RunScriptResult) -> str:
    """One line for the run's final state."""
    batch = result.batch
    return (
        f"{result.script}: {batch.success_count} of {len(batch.results)} succeeded "
        f"({status_counts(batch)})"
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
        lines += ["## Needs attention", "", markdown_table(result_rows(problems, result.names))]
    lines += ["## Every instance", "", markdown_table(result_rows(batch.results, result.names))]
    return "\n".join(lines)
