"""Changes in the store: saved, re-saved with a new instance list, loaded back."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from flows.changes import ChangeFileError, load_change_input
from flows.store import Store
from flows.store.tables import metadata
from tests.flows.store.conftest import make_change


def test_a_saved_change_loads_back_in_file_order(store: Store):
    spec = make_change(count=4)
    store.save_change(spec)
    assert store.load_change(spec.change_number) == spec


def test_an_unknown_change_is_none(store: Store):
    assert store.load_change("CHG-NOPE") is None


def test_saving_again_replaces_the_instances_and_keeps_the_runs(store: Store):
    store.save_change(make_change(count=3))
    run_id = store.start_run("flow-1", "linux-qc-patching-prep", "qc", "aws", "CHG0012345")
    store.finish_run(run_id, "success", 3, 0)

    smaller = make_change(count=2)
    store.save_change(smaller)

    assert store.load_change("CHG0012345") == smaller
    assert [run.id for run in store.runs_for_change("CHG0012345")] == [run_id]


def test_a_bad_file_stores_nothing(store: Store):
    bad = (
        "change_number,instance_id,account_id,region\n"
        "CHG0012345,i-0123456789abcdef0,012345678901,us-east-1\n"
        "CHG0012345,i-bad,012345678901,us-east-1\n"
    )
    with pytest.raises(ChangeFileError):
        store.save_change(load_change_input(bad))
    with store.engine.connect() as connection:
        for table in metadata.sorted_tables:
            assert connection.scalar(select(func.count()).select_from(table)) == 0, table.name
