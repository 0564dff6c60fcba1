"""Workflow runs and their executions, as the flows record and read them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows.store import Store
from flows.store.database import StoreError
from providers.base import ResultStatus
from tests.flows.store.conftest import make_result

WORKFLOW = "linux-qc-patching-prep"


def test_a_run_is_recorded_from_start_to_finish(store: Store):
    before = datetime.now(UTC)
    run_id = store.start_run("6b3f0c1e-flow", WORKFLOW, "qc", "aws-provider/prod-gov", "CHG1")
    (running,) = store.runs_for_change("CHG1")
    assert (running.id, running.status, running.ended_at) == (run_id, "running", None)
    assert running.started_at >= before

    store.finish_run(run_id, "partial", success_count=2, failure_count=1)

    finished = store.get_run(run_id)
    assert finished.status == "partial"
    assert (finished.success_count, finished.failure_count) == (2, 1)
    assert finished.ended_at is not None and finished.ended_at >= finished.started_at
    assert finished.provider == "aws-provider/prod-gov"
    assert finished.started_at.tzinfo is not None


def test_a_retried_flow_run_gets_its_run_back(store: Store):
    first = store.start_run("flow-1", WORKFLOW, "qc", "aws", "CHG1")
    store.finish_run(first, "failed", 0, 3)
    again = store.start_run("flow-1", WORKFLOW, "qc", "aws", "CHG1")
    other_step = store.start_run("flow-1", WORKFLOW, "staging", "aws", "CHG1")
    assert again == first != other_step
    assert store.get_run(first).status == "running"


def test_runs_outside_prefect_stay_apart(store: Store):
    first = store.start_run(None, "run-script", "inline", "local", None)
    second = store.start_run("", "run-script", "inline", "local", None)
    assert first != second


def test_executions_keep_everything_the_provider_reported(store: Store):
    run_id = store.start_run("flow-1", WORKFLOW, "qc", "aws", "CHG1")
    ok = make_result("i-0123456789abcdef0", stdout="(Current running kernel version): 5.14\n")
    failed = make_result("i-0123456789abcdef1", ResultStatus.FAILED, stdout="naïve \x00 ✓")
    failed = failed.model_copy(update={"stdout_truncated": True, "error": "exit 1"})
    parsed = {"i-0123456789abcdef0": {"kernel": "5.14", "checks": {"disk": True}, "n": [1, 2]}}
    when = datetime(2025, 11, 26, 6, 0, tzinfo=UTC)
    parsed["i-0123456789abcdef0"]["checked_at"] = when
    parsed["i-0123456789abcdef0"]["status"] = ResultStatus.SUCCESS

    store.record_results(run_id, [ok, failed], parsed=parsed)

    records = {e.instance_id: e for e in store.executions(run_id)}
    assert records["i-0123456789abcdef0"].parsed == {
        "kernel": "5.14",
        "checks": {"disk": True},
        "n": [1, 2],
        "checked_at": "2025-11-26T06:00:00Z",
        "status": "success",
    }
    assert records["i-0123456789abcdef0"].to_result() == ok
    assert records["i-0123456789abcdef1"].parsed is None
    assert records["i-0123456789abcdef1"].status is ResultStatus.FAILED
    # PostgreSQL text cannot hold NUL; it is replaced, the rest kept as is.
    assert records["i-0123456789abcdef1"].to_result() == failed.model_copy(
        update={"stdout": "naïve \ufffd ✓"}
    )


def test_recording_an_instance_again_in_a_run_replaces_it(store: Store):
    run_id = store.start_run("flow-1", WORKFLOW, "qc", "aws", "CHG1")
    store.record_results(run_id, [make_result("i-0123456789abcdef0", ResultStatus.TIMED_OUT)])
    store.record_results(run_id, [make_result("i-0123456789abcdef0")])
    (only,) = store.executions(run_id)
    assert only.status is ResultStatus.SUCCESS


def test_latest_executions_take_each_instance_from_its_newest_run(store: Store):
    a, b = "i-0123456789abcdef0", "i-0123456789abcdef1"
    first = store.start_run("flow-1", WORKFLOW, "qc", "aws", "CHG1")
    store.record_results(first, [make_result(a, stdout="old a"), make_result(b, stdout="old b")])
    second = store.start_run("flow-2", WORKFLOW, "qc", "aws", "CHG1")
    store.record_results(second, [make_result(a, stdout="new a")])
    elsewhere = [
        store.start_run("flow-3", WORKFLOW, "staging", "aws", "CHG1"),
        store.start_run("flow-4", WORKFLOW, "qc", "aws", "CHG2"),
        store.start_run("flow-5", "linux-qc-patching-post", "qc", "aws", "CHG1"),
    ]
    for run_id in elsewhere:
        store.record_results(run_id, [make_result(a, stdout="elsewhere")])

    latest = store.latest_executions("CHG1", WORKFLOW, "qc")

    assert {i: e.stdout for i, e in latest.items()} == {a: "new a", b: "old b"}
    assert (latest[a].run_id, latest[b].run_id) == (second, first)


def test_latest_executions_of_runs_without_a_change(store: Store):
    run_id = store.start_run(None, "run-script", "inline", "local", None)
    store.record_results(run_id, [make_result("localhost", stdout="recorded\n")])
    store.start_run(None, "run-script", "inline", "local", "CHG1")
    assert store.latest_executions(None, "run-script", "inline")["localhost"].stdout == "recorded\n"


def test_bad_calls_are_refused_with_the_reason(store: Store):
    run_id = store.start_run("flow-1", WORKFLOW, "qc", "aws", "CHG1")
    result = make_result("i-0123456789abcdef0")
    with pytest.raises(ValueError, match="more than once: i-0123456789abcdef0"):
        store.record_results(run_id, [result, result])
    with pytest.raises(ValueError, match="without a result: i-0123456789abcdef9"):
        store.record_results(run_id, [result], parsed={"i-0123456789abcdef9": {}})
    with pytest.raises(StoreError, match="no workflow run 999999"):
        store.record_results(999_999, [result])
    with pytest.raises(StoreError, match="no workflow run 999999"):
        store.finish_run(999_999, "success", 1, 0)
    with pytest.raises(ValueError, match="status"):
        store.finish_run(run_id, "Done!", 1, 0)
    with pytest.raises(ValueError, match="not a valid change number"):
        store.start_run("flow-1", WORKFLOW, "qc", "aws", "CHG 1")
    assert store.executions(run_id) == []
