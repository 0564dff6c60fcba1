"""``cloudops history`` and ``cloudops report``: a change's runs and verdicts from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from flows.cli.change_history import ChangeHistory, change_number_argument, load_history
from flows.cli.console import (
    CliError,
    add_row,
    handles_expected_failures,
    safe,
    stderr,
    stdout,
    table,
)
from flows.cli.report_formats import (
    RENDERERS,
    ReportFormat,
    decision_rows,
    instance_row,
    run_rows,
    summary_lines,
    when,
)
from flows.store import Store
from flows.store.database import describe_url

ChangeArgument = Annotated[str, typer.Argument(help="The change number, e.g. CHG0012345.")]


def read_history(change: str, instance: str | None = None) -> ChangeHistory:
    """The change's history, read with a spinner on stderr while the store answers."""
    number = change_number_argument(change)
    store = Store.default()
    with stderr().status(Text(f"Reading the records of {number} from {describe_url(store.url)}")):
        return load_history(store, number, instance)


@handles_expected_failures
def history(
    change: ChangeArgument,
    instance: Annotated[
        str | None,
        typer.Option("--instance", "-i", help="One server's history (an instance id, i-...)."),
    ] = None,
) -> None:
    """Every run of a change (workflow, step, when, who approved, counts) and the latest
    verdict per instance in prep, the patch window and post."""
    found = read_history(change, instance)
    console = stdout()
    for line in summary_lines(found):
        console.print(safe(line))
    if instance is not None:
        _print_instance(found, instance)
        return
    _print_rows(
        f"Latest verdict per instance ({len(found.instances)})",
        [instance_row(s) for s in found.instances],
    )
    _print_rows(f"Runs ({len(found.runs)})", run_rows(found))
    if found.decisions:
        _print_rows(f"Decisions ({len(found.decisions)})", decision_rows(found))


def _print_rows(title: str, rows: list[dict[str, str]]) -> None:
    if not rows:
        stdout().print(safe(f"{title}: none"))
        return
    grid = table(title, *rows[0].keys())
    for row in rows:
        add_row(grid, *row.values())
    stdout().print(grid)


def _print_instance(found: ChangeHistory, instance: str) -> None:
    console = stdout()
    for standing in found.instances:
        row = instance_row(standing)
        console.print(
            safe(
                f"{standing.instance_id} ({row['name'] or 'no name'}, {row['account']} "
                f"{row['region']}): prep QC {row['prep QC'] or '-'}, staged "
                f"{row['staged kernel'] or '-'}, window {row['window'] or '-'}, post "
                f"{row['post'] or '-'}"
            )
        )
    grid = table(
        f"Executions on {instance} ({len(found.executions)})",
        "when",
        "workflow",
        "step",
        "status",
        "verdict",
        "flow run",
    )
    for line in found.executions:
        add_row(
            grid,
            when(line.execution.started_at or line.run.started_at),
            line.run.workflow,
            line.run.step,
            line.execution.status.value,
            line.verdict.describe() + (f" ({line.verdict.note})" if line.verdict.note else ""),
            line.run.flow_run_id,
        )
    console.print(grid)


@handles_expected_failures
def report(
    change: ChangeArgument,
    format: Annotated[
        ReportFormat, typer.Option("--format", "-f", help="md, csv (one row per instance) or html.")
    ] = ReportFormat.MD,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the report to this file (default: stdout)."),
    ] = None,
) -> None:
    """The change's report built from the record store: every instance's verdicts, the runs
    and the decisions."""
    found = read_history(change)
    text = RENDERERS[format](found)
    if output is None:
        # Raw text, not through Rich: a report is data, piped or redirected.
        typer.echo(text, nl=False)
        return
    path = output.expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    stderr().print(safe(f"wrote the {format.value} report of {found.change_number} to {path}"))
