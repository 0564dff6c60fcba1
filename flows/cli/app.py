"""The ``cloudops`` command: its sub-commands, gathered from their modules."""

from __future__ import annotations

import typer

from flows.cli import automations, changes, doctor, history, resume

app = typer.Typer(
    name="cloudops",
    help="The operator's command line of the CloudOps flows: stored changes, a change's history "
    "and report, resuming a paused run, and a check of this machine's set-up.\n\n"
    "Exit codes: 0 ok, 1 failures found (or the command could not do its job), 2 bad usage.",
    no_args_is_help=True,
    # A traceback's local variables may hold a secret; an expected failure shows none anyway.
    pretty_exceptions_show_locals=False,
    add_completion=False,
    # Docstrings wrap at 100 columns; markdown mode joins their lines into paragraphs.
    rich_markup_mode="markdown",
)
app.add_typer(changes.app, name="changes")
app.add_typer(automations.app, name="automations")
app.command("history")(history.history)
app.command("report")(history.report)
app.command("resume")(resume.resume)
app.command("doctor")(doctor.doctor)


def main() -> None:
    """Entry point of the ``cloudops`` console script."""
    app()
