"""Sent commands: remembered per (run key, chunk key) so a resumed run re-attaches."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from threading import Barrier

from flows.store import Store
from providers.base import Chunk, CommandRef, Target


def make_ref(command_id: str, chunk_key: str = "a1b2c3d4e5f6a7b8c9d0") -> CommandRef:
    sent = datetime(2025, 11, 26, 6, 0, 0, 123456, tzinfo=UTC)
    return CommandRef(
        command_id=command_id,
        chunk_key=chunk_key,
        account_id="012345678901",
        region="us-gov-west-1",
        instance_ids=["i-0123456789abcdef0", "i-0123456789abcdef1"],
        sent_at=sent,
        deadline=sent + timedelta(minutes=16),
        output_s3_bucket="ops-output",
        output_s3_prefix="cloudops/CHG1/",
    )


def test_a_recorded_command_is_found_again(store: Store):
    ref = make_ref("cmd-1")
    store.record_command("flow-1/qc", ref)
    assert store.find_command("flow-1/qc", ref.chunk_key) == ref
    assert store.find_command("flow-1/qc", "another-chunk") is None
    assert store.find_command("flow-2/qc", ref.chunk_key) is None


def test_the_first_command_of_a_chunk_wins(store: Store):
    store.record_command("flow-1/qc", make_ref("cmd-first"))
    store.record_command("flow-1/qc", make_ref("cmd-second"))
    found = store.find_command("flow-1/qc", make_ref("x").chunk_key)
    assert found is not None and found.command_id == "cmd-first"


def test_racing_writers_of_one_chunk_agree_on_one_command(database_url: str):
    writers = 6
    barrier = Barrier(writers)

    def record(n: int) -> str:
        with Store(database_url) as own:
            own.find_command("warm-up", "x")  # open and migrate before the race
            barrier.wait()
            own.record_command("flow-1/qc", make_ref(f"cmd-{n}"))
            found = own.find_command("flow-1/qc", make_ref("x").chunk_key)
            assert found is not None
            return found.command_id

    with ThreadPoolExecutor(writers) as pool:
        seen = set(pool.map(record, range(writers)))
    assert len(seen) == 1


def _chunk(key: str = "a1b2c3d4e5f6a7b8c9d0") -> Chunk:
    return Chunk(
        key=key,
        account_id="012345678901",
        region="us-gov-west-1",
        targets=[
            Target(instance_id=i, account_id="012345678901", region="us-gov-west-1")
            for i in ("i-0123456789abcdef0", "i-0123456789abcdef1")
        ],
    )


def test_an_intent_to_send_is_found_again_and_the_first_one_keeps_its_time(store: Store):
    assert store.find_send_intent("flow-1/qc", _chunk().key) is None

    first = store.record_send_intent("flow-1/qc", _chunk())
    again = store.record_send_intent("flow-1/qc", _chunk())

    assert again == first == store.find_send_intent("flow-1/qc", _chunk().key)
    assert first.instance_ids == ["i-0123456789abcdef0", "i-0123456789abcdef1"]
    assert first.recorded_at.tzinfo is not None
    assert store.find_send_intent("flow-2/qc", _chunk().key) is None
    assert store.find_send_intent("flow-1/qc", "another-chunk") is None
    # An intent is not a sent command: nothing to re-attach to without looking it up.
    assert store.find_command("flow-1/qc", _chunk().key) is None
