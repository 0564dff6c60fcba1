"""``cloudops changes``: the stored changes, one change, what its latest version changed, and
importing a change file with the same checks as the flows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from flows.changes import ChangeFileError, ChangeFileProblem, parse_change_csv
from flows.cli.change_diff import ChangeDiff, diff_versions
from flows.cli.change_history import change_number_argument
from flows.cli.console import (
    CliError,
    UsageError,
    add_row,
    handles_expected_failures,
    safe,
    stderr,
    stdout,
    table,
)
from flows.cli.report_formats import when
from flows.store import Store
from flows.store.database import describe_url
from providers.base import Target

app = typer.Typer(
    help="Stored changes: list them, show one, see what its latest version changed, import one.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

ChangeArgument = Annotated[str, typer.Argument(help="The change number, e.g. CHG0012345.")]


@app.command("list")
@handles_expected_failures
def list_changes() -> None:
    """Every stored change, most recently saved first."""
    store = Store.default()
    changes = store.list_changes()
    if not changes:
        stderr().print(safe(f"no change is stored in {describe_url(store.url)}"))
        return
    grid = table(
        f"Changes in {describe_url(store.url)}",
        "change",
        "instances",
        "version",
        "runs",
        "last run",
        "saved",
    )
    for change in changes:
        add_row(
            grid,
            change.change_number,
            change.instance_count,
            change.version or "",
            change.run_count,
            when(change.last_run_at),
            when(change.updated_at),
        )
    stdout().print(grid)


@app.command("show")
@handles_expected_failures
def show(change: ChangeArgument) -> None:
    """The instances of one change, as its latest version lists them."""
    number = change_number_argument(change)
    store = Store.default()
    spec = store.load_change(number)
    if spec is None:
        raise _not_stored(number, store)
    versions = store.change_versions(number)
    runs = store.runs_for_change(number)
    latest = versions[-1] if versions else None
    heading = f"{number}: {len(spec.targets)} instance(s)"
    if latest:
        heading += f", version {latest.version} saved {when(latest.saved_at)}"
    heading += f", {len({r.flow_run_id for r in runs})} flow run(s)"
    stdout().print(_targets_table(heading, spec.targets))


@app.command("diff")
@handles_expected_failures
def diff(
    change: ChangeArgument,
    version: Annotated[
        int | None,
        typer.Option(min=1, help="Compare this version with the one before it (default: latest)."),
    ] = None,
) -> None:
    """What the latest saved version added, removed or moved between accounts and regions."""
    number = change_number_argument(change)
    store = Store.default()
    versions = store.change_versions(number)
    if not versions:
        raise _not_stored(number, store)
    by_number = {v.version: v for v in versions}
    new = versions[-1] if version is None else by_number.get(version)
    if new is None:
        raise UsageError(
            f"change {number} has no version {version}; its versions: "
            + ", ".join(str(v) for v in by_number)
        )
    _print_diff(diff_versions(by_number.get(new.version - 1), new))


@app.command("import")
@handles_expected_failures
def import_change(
    file: Annotated[Path, typer.Argument(help="The change file (CSV), as the flows take it.")],
) -> None:
    """Store a change from its CSV file; every problem of the file is listed and nothing is
    stored while any row is bad."""
    path = file.expanduser()
    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise ChangeFileError(
            [ChangeFileProblem(None, None, f"no change file at {str(path)!r}{where}")]
        )
    spec = parse_change_csv(path.read_bytes())
    store = Store.default()
    before = store.change_versions(spec.change_number)
    saved = store.save_change(spec)
    console = stdout()
    for warning in spec.warnings:
        console.print(Text("warning: ", style="yellow") + safe(warning))
    if before and saved.version == before[-1].version:
        console.print(
            safe(
                f"{spec.change_number}: {len(spec.targets)} instance(s), unchanged "
                f"(version {saved.version}) in {describe_url(store.url)}"
            )
        )
        return
    summary = (
        f"{spec.change_number}: saved version {saved.version}, {len(spec.targets)} instance(s)"
    )
    if before:
        changed = diff_versions(before[-1], saved)
        summary += (
            f" ({len(changed.added)} added, {len(changed.removed)} removed, "
            f"{len(changed.moved)} moved, {len(changed.altered)} altered)"
        )
    console.print(safe(f"{summary} in {describe_url(store.url)}"))


def _not_stored(number: str, store: Store) -> CliError:
    return CliError(
        f"no change {number} is stored in {describe_url(store.url)}; `cloudops changes list` "
        "shows the stored ones, `cloudops changes import FILE.csv` stores one"
    )


def _targets_table(title: str, targets: list[Target]) -> object:
    grid = table(title, "instance", "name", "account", "region", "platform")
    for t in targets:
        add_row(grid, t.instance_id, t.name or "", t.account_id, t.region, t.platform.value)
    return grid


def _print_diff(diff: ChangeDiff) -> None:
    console = stdout()
    new = diff.new
    if diff.old is None:
        console.print(
            safe(
                f"{diff.change_number}: version {new.version} (saved {when(new.saved_at)}) is the "
                f"first saved version, with {len(new.targets)} instance(s): nothing to compare"
            )
        )
        return
    console.print(
        safe(
            f"{diff.change_number}: version {new.version} (saved {when(new.saved_at)}) against "
            f"version {diff.old.version} (saved {when(diff.old.saved_at)})"
        )
    )
    if diff.unchanged:
        console.print(safe("no instance was added, removed or moved"))
        return
    if diff.added:
        console.print(_targets_table(f"Added ({len(diff.added)})", diff.added))
    if diff.removed:
        console.print(_targets_table(f"Removed ({len(diff.removed)})", diff.removed))
    if diff.moved:
        grid = table(f"Moved ({len(diff.moved)})", "instance", "name", "from", "to")
        for m in diff.moved:
            add_row(
                grid,
                m.after.instance_id,
                m.after.name or "",
                f"{m.before.account_id} {m.before.region}",
                f"{m.after.account_id} {m.after.region}",
            )
        console.print(grid)
    if diff.altered:
        grid = table(f"Altered ({len(diff.altered)})", "instance", "what", "before", "after")
        for a in diff.altered:
            for field in a.fields:
                add_row(
                    grid,
                    a.after.instance_id,
                    field,
                    str(getattr(a.before, field) or ""),
                    str(getattr(a.after, field) or ""),
                )
        console.print(grid)
