"""Flows writing at the same time: no lost rows, no errors, also on a brand-new database."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from threading import Event

from sqlalchemy import text

from flows.store import Store
from flows.store.database import head_revision
from tests.flows.store.concurrent_writer import write_runs
from tests.flows.store.conftest import make_result

RUNS = 15
INSTANCES = 4


def _count_rows(url: str) -> tuple[int, int, int]:
    with Store(url) as store, store.engine.connect() as connection:
        return (
            connection.scalar(text("SELECT count(*) FROM workflow_run")),
            connection.scalar(text("SELECT count(*) FROM execution")),
            connection.scalar(text("SELECT count(*) FROM workflow_run WHERE status = 'success'")),
        )


def test_threads_sharing_one_store_lose_no_rows(database_url: str):
    writers = 6
    go = Event()
    with Store(database_url) as shared, ThreadPoolExecutor(writers) as pool:
        futures = [pool.submit(_write_with, shared, w, go) for w in range(writers)]
        go.set()
        assert sum(f.result() for f in futures) == writers * RUNS
    assert _count_rows(database_url) == (writers * RUNS, writers * RUNS * INSTANCES, writers * RUNS)


def _write_with(store: Store, writer: int, go: Event) -> int:
    go.wait()
    for n in range(RUNS):
        run_id = store.start_run(f"t{writer}-{n}", "linux-qc-patching-prep", "qc", "aws", "CHG1")
        store.record_results(
            run_id,
            [make_result(f"i-{writer:04x}{n:04x}{i:09x}") for i in range(INSTANCES)],
        )
        store.finish_run(run_id, "success", INSTANCES, 0)
    return RUNS


def test_processes_opening_a_new_database_together_lose_no_rows(database_url: str):
    """Four processes migrate the same empty database at once, then write."""
    writers = 4
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        go = manager.Event()
        with ProcessPoolExecutor(writers, mp_context=context) as pool:
            futures = [
                pool.submit(write_runs, database_url, w, RUNS, INSTANCES, go)
                for w in range(writers)
            ]
            go.set()
            assert sum(f.result(timeout=180) for f in futures) == writers * RUNS
    assert _count_rows(database_url) == (writers * RUNS, writers * RUNS * INSTANCES, writers * RUNS)
    with Store(database_url) as store, store.engine.connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    assert versions == [(head_revision(),)]
