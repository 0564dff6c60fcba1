"""Failure events: the name, resource and payload operators build automations on, the refusal of
anything that is not a change number or a count, and the events the flows really emit.

Events are caught by Prefect's own asserting events client (the ``asserting_events_worker``
fixture), which records what would have been sent to the server; the end-to-end test reads the
QC failure event back from a real server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow
from prefect.events import Event
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker
from prefect.runtime import flow_run

from flows import linux_qc_patching_prep, run_script
from flows.common.events import FailureKind, emit_failure_event
from providers.base import Target

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

LOCALHOST = Target(instance_id="localhost", account_id="local", region="local")


def sent(worker: EventsWorker, prefix: str = "cloudops.") -> list[Event]:
    """Every ``prefix`` event sent so far in this test."""
    worker.wait_until_empty()
    client = AssertingEventsClient.last
    assert client is not None
    return [e for e in client.events if e.event.startswith(prefix)]


def test_a_failure_event_names_the_change_carries_counts_and_relates_the_flow_run(
    asserting_events_worker: EventsWorker,
) -> None:
    @flow(name="emits-a-qc-failure")
    def emitting() -> str:
        emit_failure_event(FailureKind.QC, "CHG0012345", {"passed": 3, "failed": 2})
        return str(flow_run.id)

    run_id = emitting()

    (event,) = sent(asserting_events_worker)
    assert event.event == "cloudops.qc.failed"
    assert event.resource.id == "cloudops.change.CHG0012345"
    assert event.resource.name == "CHG0012345"
    assert event.payload == {
        "kind": "qc",
        "change_number": "CHG0012345",
        "counts": {"passed": 3, "failed": 2},
    }
    # Prefect relates it to the run, so an automation can also match on flow or deployment.
    assert f"prefect.flow-run.{run_id}" in {r.id for r in event.related}


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("qc", "cloudops.qc.failed"),
        ("post", "cloudops.post.failed"),
        ("sft", "cloudops.sft.failed"),
        ("run-script", "cloudops.run-script.failed"),
        ("window", "cloudops.window.failed"),
        ("window-halted", "cloudops.window.halted"),
    ],
)
def test_each_kind_has_its_own_event_name(
    asserting_events_worker: EventsWorker, kind: str, name: str
) -> None:
    emit_failure_event(kind, " CHG1 ", {"failed": 1})
    (event,) = sent(asserting_events_worker)
    assert event.event == name
    assert event.resource.id == "cloudops.change.CHG1"


def test_a_run_without_a_change_is_an_adhoc_change(asserting_events_worker: EventsWorker) -> None:
    emit_failure_event(FailureKind.RUN_SCRIPT, None, {"failed": 1})
    (event,) = sent(asserting_events_worker)
    assert event.resource.id == "cloudops.change.adhoc"
    assert event.payload["change_number"] is None


@pytest.mark.parametrize(
    ("kind", "change", "counts", "problem"),
    [
        ("qc", "CHG 1; curl evil", {"failed": 1}, "not a valid change number"),
        ("qc", "CHG1", {"failed": -1}, "greater than or equal to 0"),
        ("qc", "CHG1", {"failed": "AKIAIOSFODNN7EXAMPLE"}, "valid integer"),
        ("patching", "CHG1", {"failed": 1}, "patching"),
    ],
)
def test_anything_but_a_change_number_and_counts_is_refused_and_nothing_is_sent(
    asserting_events_worker: EventsWorker,
    kind: str,
    change: str,
    counts: dict[str, object],
    problem: str,
) -> None:
    with pytest.raises(ValueError, match=problem):
        emit_failure_event(kind, change, counts)  # type: ignore[arg-type]
    # A good event after it arrives alone: the refused one was never sent.
    emit_failure_event(FailureKind.QC, "CHG2", {"failed": 1})
    assert [e.resource.id for e in sent(asserting_events_worker)] == ["cloudops.change.CHG2"]


def test_run_script_emits_on_failure_only(asserting_events_worker: EventsWorker) -> None:
    run_script(script="echo fine", targets=[LOCALHOST], provider="local", change_number="CHG7")
    assert sent(asserting_events_worker) == []

    run_script(
        script="echo secret-output; exit 3",
        targets=[LOCALHOST],
        provider="local",
        change_number="CHG7",
    )
    (event,) = sent(asserting_events_worker)
    assert event.event == "cloudops.run-script.failed"
    assert event.payload["counts"] == {"instances": 1, "succeeded": 0, "failed": 1}
    assert "secret-output" not in event.model_dump_json()


def test_a_qc_failure_emits_an_event(asserting_events_worker: EventsWorker, tmp_path: Path) -> None:
    # This machine has no CrowdStrike, so the built-in QC fails it.
    result = linux_qc_patching_prep(
        change_number="CHG0099QC",
        instances=[LOCALHOST],
        provider="local",
        workdir=str(tmp_path / "root"),
        steps=("initial_qc",),
    )
    assert result.verdict_counts().get("failed") == 1

    (event,) = sent(asserting_events_worker, "cloudops.qc.")
    assert event.event == "cloudops.qc.failed"
    assert event.resource.id == "cloudops.change.CHG0099QC"
    assert event.payload["counts"].get("failed") == 1
