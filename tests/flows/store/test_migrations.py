"""The schema is versioned: migrations build exactly the tables the code uses, and an
upgrade from the first revision keeps the records already there."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from flows.store import Store
from flows.store.database import (
    StoreError,
    alembic_config,
    create_store_engine,
    current_revision,
    head_revision,
    migration_lock,
    parse_database_url,
    upgrade,
)
from flows.store.tables import metadata
from providers.base import ResultStatus
from tests.flows.store.conftest import make_result

FIRST_REVISION = "0001"


def test_there_are_at_least_two_revisions():
    assert head_revision() != FIRST_REVISION


def test_migrations_build_exactly_the_tables_of_the_code(database_url: str):
    engine = create_store_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_an_upgrade_from_the_first_revision_keeps_the_records(database_url: str):
    engine = create_store_engine(database_url)
    with migration_lock(engine) as connection:
        command.upgrade(alembic_config(connection), FIRST_REVISION)
    assert current_revision(engine) == FIRST_REVISION
    now = datetime(2025, 11, 1, 8, 30, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO change VALUES ('CHG-OLD', :now, :now)"), {"now": now})
        connection.execute(
            text(
                "INSERT INTO change_instance (change_number, position, instance_id, account_id,"
                " region, platform, name) VALUES ('CHG-OLD', 0, 'i-0123456789abcdef0',"
                " '012345678901', 'us-east-1', 'linux', 'web01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO workflow_run (flow_run_id, workflow, step, provider, change_number,"
                " status, success_count, failure_count, started_at, ended_at) VALUES"
                " ('flow-old', 'linux-qc-patching-prep', 'qc', 'aws', 'CHG-OLD', 'success',"
                " 1, 0, :now, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO execution (run_id, instance_id, account_id, region, command_id,"
                " status, exit_code, stdout, stderr, stdout_truncated, stderr_truncated, parsed,"
                " started_at, ended_at) SELECT id, 'i-0123456789abcdef0', '012345678901',"
                " 'us-east-1', 'cmd-old', 'success', 0, 'kernel 5.14', '', false, false,"
                ' \'{"kernel": "5.14"}\', :now, :now FROM workflow_run'
            ),
            {"now": now},
        )
    engine.dispose()

    with Store(database_url) as store:  # upgrades to the newest revision on first use
        spec = store.load_change("CHG-OLD")
        assert spec is not None and spec.targets[0].name == "web01"
        (run,) = store.runs_for_change("CHG-OLD")
        assert (run.status, run.started_at) == ("success", now)
        prep = store.latest_executions("CHG-OLD", "linux-qc-patching-prep", "qc")
        assert prep["i-0123456789abcdef0"].parsed == {"kernel": "5.14"}
        assert prep["i-0123456789abcdef0"].status is ResultStatus.SUCCESS
        assert current_revision(store.engine) == head_revision()
        # and what revision 2 added works
        assert store.find_command("flow-old/qc", "chunk") is None


def test_downgrade_and_upgrade_again_keep_the_first_revisions_records(database_url: str):
    with Store(database_url) as store:
        run_id = store.start_run("flow-1", "run-script", "inline", "local", None)
        store.record_results(run_id, [make_result("localhost")])
        engine = store.engine
        with migration_lock(engine) as connection:
            command.downgrade(alembic_config(connection), FIRST_REVISION)
        assert current_revision(engine) == FIRST_REVISION
        upgrade(engine)
        assert [e.instance_id for e in store.executions(run_id)] == ["localhost"]


def test_a_database_newer_than_the_code_is_refused(database_url: str):
    with Store(database_url) as store, store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match=r"revision '9999'.*upgrade cloudops-flows"):
        Store(database_url).load_change("CHG1")


def test_the_upgrade_command_migrates_and_never_prints_the_password(database_url: str):
    environment = {**os.environ, "DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "-m", "flows.store", "upgrade"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"schema revision {head_revision()}" in done.stdout
    password = parse_database_url(database_url).password
    if password:
        assert f":{password}@" not in done.stdout + done.stderr
        assert ":***@" in done.stdout
    engine = create_store_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_the_sql_of_the_migrations_can_be_written_out(database_url: str, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    config = alembic_config()
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    sql = config.output_buffer.getvalue()
    assert "CREATE TABLE workflow_run" in sql
    assert "CREATE TABLE sent_command" in sql
