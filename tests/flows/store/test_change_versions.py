"""Versions of a change (revision 0005): a save that alters the instance list keeps the list it
replaced, the runs stay, and the changes list says where each change stands."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from flows.store import Store
from flows.store.database import alembic_config, create_store_engine, migration_lock
from tests.flows.store.conftest import make_change, make_result


def test_each_altered_save_is_a_new_version_and_the_old_lists_are_kept(store: Store):
    first = store.save_change(make_change(count=3))
    again = store.save_change(make_change(count=3))
    smaller = store.save_change(make_change(count=2))

    assert (first.version, again.version, smaller.version) == (1, 1, 2)
    versions = store.change_versions("CHG0012345")
    assert [len(v.targets) for v in versions] == [3, 2]
    assert versions[0].targets == make_change(count=3).targets
    # the current list is still the latest one
    assert store.load_change("CHG0012345") == make_change(count=2)


def test_the_same_instances_in_another_order_are_no_new_version(store: Store):
    spec = make_change(count=3)
    store.save_change(spec)
    reordered = spec.model_copy(update={"targets": list(reversed(spec.targets))})
    assert store.save_change(reordered).version == 1
    assert store.load_change("CHG0012345") == reordered


def test_the_changes_list_counts_instances_versions_and_runs(store: Store):
    store.save_change(make_change("CHG-A", count=3))
    store.save_change(make_change("CHG-B", count=1))
    store.save_change(make_change("CHG-B", count=2))
    for step in ("initial_qc", "stage_kernels"):  # two steps of one flow run
        store.start_run("flow-1", "linux-qc-patching-prep", step, "aws", "CHG-B")

    by_number = {c.change_number: c for c in store.list_changes()}

    assert [c.change_number for c in store.list_changes()] == ["CHG-B", "CHG-A"]
    assert (by_number["CHG-A"].instance_count, by_number["CHG-A"].version) == (3, 1)
    assert (by_number["CHG-A"].run_count, by_number["CHG-A"].last_run_at) == (0, None)
    assert (by_number["CHG-B"].instance_count, by_number["CHG-B"].version) == (2, 2)
    assert by_number["CHG-B"].run_count == 1
    assert by_number["CHG-B"].last_run_at is not None
    assert by_number["CHG-B"].last_run_at.tzinfo is not None


def test_executions_of_a_change_come_with_their_runs(store: Store):
    store.save_change(make_change(count=2))
    prep = store.start_run("flow-1", "linux-qc-patching-prep", "initial_qc", "aws", "CHG0012345")
    store.record_results(
        prep, [make_result("i-0123456789abcde00"), make_result("i-0123456789abcde01")]
    )
    post = store.start_run("flow-2", "linux-qc-patching-post", "post_qc", "aws", "CHG0012345")
    store.record_results(post, [make_result("i-0123456789abcde01")])
    other = store.start_run("flow-3", "run-script", "inline", "aws", "CHG-OTHER")
    store.record_results(other, [make_result("i-0123456789abcde01")])

    every = store.executions_for_change("CHG0012345")
    one = store.executions_for_change("CHG0012345", instance_id="i-0123456789abcde01")

    assert [(e.run.workflow, e.execution.instance_id) for e in every] == [
        ("linux-qc-patching-prep", "i-0123456789abcde00"),
        ("linux-qc-patching-prep", "i-0123456789abcde01"),
        ("linux-qc-patching-post", "i-0123456789abcde01"),
    ]
    assert [e.run.step for e in one] == ["initial_qc", "post_qc"]


def test_changes_stored_before_versions_become_version_one(database_url: str):
    engine = create_store_engine(database_url)
    with migration_lock(engine) as connection:
        command.upgrade(alembic_config(connection), "0003")
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO change VALUES ('CHG-OLD', :now, :now)"),
            {"now": "2025-11-01 08:30:00"},
        )
        connection.execute(
            text(
                "INSERT INTO change_instance (change_number, position, instance_id, account_id,"
                " region, platform, name) VALUES ('CHG-OLD', 0, 'i-0123456789abcdef0',"
                " '012345678901', 'us-east-1', 'linux', 'web01')"
            )
        )
    engine.dispose()

    with Store(database_url) as store:  # upgraded on first use
        (version,) = store.change_versions("CHG-OLD")
        assert version.version == 1
        assert [(t.instance_id, t.name) for t in version.targets] == [
            ("i-0123456789abcdef0", "web01")
        ]
        assert store.save_change(make_change("CHG-OLD", count=1)).version == 2
