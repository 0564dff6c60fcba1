"""A database for each store test: a SQLite file, and a fresh database on a real PostgreSQL
server (``CLOUDOPS_TEST_POSTGRES_URL``, started by ``.ci/postgres.sh``).

Without that variable the PostgreSQL variant is skipped on a workstation but fails under CI
(``CI`` set), so CI cannot silently stop testing PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from flows.changes import ChangeSpec
from flows.store import Store
from flows.store.database import parse_database_url
from providers.base import Platform, ResultStatus, ScriptResult, Target
from tests.postgres import drop_database

POSTGRES_URL_VARIABLE = "CLOUDOPS_TEST_POSTGRES_URL"


@contextmanager
def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url``, dropped afterwards."""
    server = parse_database_url(server_url)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"cloudops_test_{uuid.uuid4().hex[:16]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        drop_database(admin, name)
        admin.dispose()


def postgres_server_url() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if url:
        return url
    message = f"{POSTGRES_URL_VARIABLE} is not set; run `. .ci/postgres.sh` first"
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL store tests cannot run under CI: {message}")
    pytest.skip(message)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database (not yet migrated)."""
    if request.param == "sqlite":
        # The store creates only the data directory; a DATABASE_URL directory must exist.
        (tmp_path / "store").mkdir(mode=0o700)
        yield f"sqlite:///{tmp_path / 'store' / 'cloudops.db'}"
    else:
        with fresh_postgres_database(postgres_server_url()) as url:
            yield url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store(database_url) as opened:
        yield opened


def make_change(number: str = "CHG0012345", count: int = 3) -> ChangeSpec:
    return ChangeSpec(
        change_number=number,
        targets=[
            Target(
                instance_id=f"i-0123456789abcde{n:02x}",
                account_id="012345678901",
                region="us-gov-west-1" if n % 2 else "us-east-1",
                platform=Platform.WINDOWS if n == 2 else Platform.LINUX,
                name=f"web{n:02d}" if n else None,
            )
            for n in range(count)
        ],
    )


def make_result(
    instance_id: str, status: ResultStatus = ResultStatus.SUCCESS, stdout: str = "ok\n"
) -> ScriptResult:
    started = datetime(2025, 11, 26, 6, 0, tzinfo=UTC)
    return ScriptResult(
        instance_id=instance_id,
        account_id="012345678901",
        region="us-east-1",
        status=status,
        exit_code=0 if status is ResultStatus.SUCCESS else 1,
        stdout=stdout,
        stderr="" if status is ResultStatus.SUCCESS else "boom\n",
        command_id="0b1c2d3e-aaaa-bbbb-cccc-123456789012",
        started_at=started,
        ended_at=started + timedelta(seconds=42),
    )
