"""Test-wide isolation: no real AWS, no real Prefect profile, a throw-away data directory.

Environment variables are set before Prefect is imported so that its settings (home,
API URL) come from here and never from the machine's profile.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_SCRATCH = Path(tempfile.mkdtemp(prefix="cloudops-tests-"))
_AWS_FILES = _SCRATCH / "aws"
_AWS_FILES.mkdir()
(_AWS_FILES / "config").write_text("")
(_AWS_FILES / "credentials").write_text("")

for name in list(os.environ):
    if name.startswith(("AWS_", "PREFECT_")) or name in {"DATABASE_URL", "DEFAULT_PROVIDER"}:
        del os.environ[name]
os.environ.update(
    {
        "PREFECT_HOME": str(_SCRATCH / "prefect"),
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The temporary SQLite server logs "database is locked" tracebacks from its background
        # services (Prefect issue 18934); they are harmless and only bury the test output.
        "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
        "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
        "AWS_CONFIG_FILE": str(_AWS_FILES / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(_AWS_FILES / "credentials"),
        # The default credential chain must not wait on an instance metadata service.
        "AWS_EC2_METADATA_DISABLED": "true",
        "CLOUDOPS_DATA_DIR": str(_SCRATCH / "data"),
    }
)

import pytest  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

# The tests of one deployed Prefect stack (tests/deploy/conftest.py: a server, its database and
# `prefect deploy --all`, a minute to start) run on one worker under pytest-xdist.
ONE_WORKER_TESTS = "tests/deploy/"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A real temporary Prefect server (SQLite) for tests that run flows or save blocks."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data directory (store and reports) for one test."""
    path = tmp_path / "data"
    monkeypatch.setenv("CLOUDOPS_DATA_DIR", str(path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("CLOUDOPS_REPORTS_DIR", raising=False)
    return path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """How ``make test`` (``pytest -n N``: pytest-xdist, ``--dist load``) hands tests out: every
    test is a unit of work for whichever worker is free, except the tests under
    ``ONE_WORKER_TESTS``, which are one unit, so one worker starts their stack once instead of
    every worker starting its own. (``--dist loadgroup`` with ``xdist_group`` marks would say the
    same, but pytest-xdist 3.8 no longer groups on pytest 9.2: pytest-xdist issue 1386.)
    The biggest unit goes out first, so the stack's long lane starts at once."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class OneStackScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return ONE_WORKER_TESTS if nodeid.startswith(ONE_WORKER_TESTS) else nodeid

    return OneStackScheduling(config, log)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say in one line which tests were skipped for want of PostgreSQL, and how to run them:
    a quiet skip would look like a green run of everything."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "CLOUDOPS_TEST_POSTGRES_URL" in str(getattr(report, "longrepr", ""))
    ]
    if not skipped:
        return
    places = sorted({report.nodeid.split("::")[0].rsplit("/", 1)[0] for report in skipped})
    terminalreporter.write_line(
        f"{len(skipped)} tests need PostgreSQL and were skipped ({', '.join(places)}): run "
        "`. .ci/postgres.sh` (as root, Debian; it sets CLOUDOPS_TEST_POSTGRES_URL), then "
        "`make test` again",
        yellow=True,
        bold=True,
    )
