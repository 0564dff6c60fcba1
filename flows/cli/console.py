"""How every ``cloudops`` command talks to the terminal and ends.

Exit codes: 0 when all went well, 1 when failures were found or the command could not do its
job (a store that cannot be reached, an unknown change or run, a rejected change file), 2 for a
command line that is wrong (Typer's own usage errors, and values a command refuses).

Text that comes from servers or from the store (host names, reasons, outputs) reaches the
terminal only through :func:`safe`: terminal escape sequences and control characters removed,
and never read as Rich markup, so a hostile line of output cannot recolour, hide or rewrite what
an operator reads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import httpx
import typer
from prefect.settings import PREFECT_API_URL
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flows.changes import ChangeFileError
from flows.common.text import clean_output, one_line
from flows.store import StoreError

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2

P = ParamSpec("P")
R = TypeVar("R")


class CliError(Exception):
    """An expected failure: the message says what and what to do; no traceback is shown."""

    exit_code = EXIT_FAILURES


class UsageError(CliError):
    """The command line asks for something the command refuses."""

    exit_code = EXIT_USAGE


def stdout() -> Console:
    """The console for what a command produces (tables, a report)."""
    return Console(highlight=False, soft_wrap=False)


def stderr() -> Console:
    """The console for progress and errors, so that stdout can be piped. Messages are not
    wrapped by Rich: a path or a command in them stays whole for copying."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def safe(value: object) -> Text:
    """``value`` as one line of plain text: no escape sequences, no control characters, no
    markup."""
    return Text(one_line("" if value is None else str(value)))


def safe_block(value: object) -> Text:
    """``value`` as plain text on several lines, cleaned like :func:`safe`."""
    return Text(clean_output("" if value is None else str(value)))


def table(title: str, *columns: str) -> Table:
    """A Rich table with ``columns``, its title plain text."""
    grid = Table(title=Text(title), title_justify="left", show_lines=False)
    for column in columns:
        grid.add_column(Text(column), overflow="fold")
    return grid


def add_row(grid: Table, *cells: object) -> None:
    """A row of cells, each made :func:`safe`."""
    grid.add_row(*(safe(cell) for cell in cells))


def fail(message: str, code: int = EXIT_FAILURES) -> NoReturn:
    """Print ``message`` as an error and end with ``code``."""
    stderr().print(Text("error: ", style="bold red") + safe_block(message))
    raise typer.Exit(code)


def prefect_api_url() -> str:
    """The Prefect API the command talks to, or a ``CliError`` saying how to name one.

    Without ``PREFECT_API_URL`` Prefect would start a temporary server of its own, where no
    run of this deployment exists: refusing is clearer than finding nothing.
    """
    url = PREFECT_API_URL.value()
    if not url:
        raise CliError(
            "PREFECT_API_URL is not set: point it at the Prefect server the flows run on, "
            "e.g. export PREFECT_API_URL=http://prefect-server:4200/api"
        )
    return str(url)


def handles_expected_failures(command: Callable[P, R]) -> Callable[P, R]:
    """End ``command`` with a one-line error and the right exit code on every failure an
    operator can meet (bad input, an unreachable store or API), instead of a traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except CliError as exc:
            fail(str(exc), exc.exit_code)
        except ChangeFileError as exc:
            fail(str(exc), EXIT_FAILURES)
        except StoreError as exc:
            fail(f"record store: {exc}", EXIT_FAILURES)
        except httpx.HTTPError as exc:
            fail(_api_problem(exc), EXIT_FAILURES)

    return run


def _api_problem(exc: httpx.HTTPError) -> str:
    url = PREFECT_API_URL.value() or "(PREFECT_API_URL not set)"
    response: Any = getattr(exc, "response", None)
    if response is not None:
        return (
            f"the Prefect API at {url} answered {response.status_code} to "
            f"{exc.request.method} {exc.request.url.path}: {_detail(response)}"
        )
    return (
        f"cannot reach the Prefect API at {url} ({type(exc).__name__}: {exc}); check "
        "PREFECT_API_URL and that the server is running"
    )


def _detail(response: Any) -> str:
    try:
        return str(response.json().get("detail", response.text))[:300]
    except ValueError:
        return str(response.text)[:300]
