"""The ``cloudops`` command under Typer's test runner, against a store on SQLite and on a real
PostgreSQL (the ``database_url`` fixture of the store tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from flows.cli.app import app
from flows.store import Store
from tests.flows.store.conftest import database_url  # noqa: F401 (fixture)

Cloudops = Callable[..., Result]


@pytest.fixture
def cloudops(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cloudops:
    """``cloudops <args>`` in this process, wide enough that tables do not fold; the result
    has ``exit_code``, ``stdout`` and ``stderr``."""
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("CLOUDOPS_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


@pytest.fixture
def store(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:  # noqa: F811
    """The store the command line reads (``DATABASE_URL``), for a test to fill."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    with Store(database_url) as opened:
        yield opened
