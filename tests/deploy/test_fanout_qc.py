"""The two QC flows fanned out per account over several workers.

The same stack and the same two "accounts" as ``test_fanout``: ``localhost`` (account
``local``) really runs the QC scripts on its worker; the other account's instance is refused
by the local provider with an ``error`` result, in its own child run on another worker.
Three workers take one flow run each: the parent holds one, its two children take the others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.states import Completed, Failed

from flows.common.fanout import FAN_OUT_CHILD_TAG, AccountPart, merge_parts, outcome_of
from flows.linux_patching.post.result import PostResult
from providers.base import ResultStatus, ScriptResult, Target
from tests.deploy.conftest import PrefectStack
from tests.deploy.test_fanout import LOCALHOST, OTHER_ACCOUNT, RUN_SECONDS, child_run, worker_of

REFUSED = "local provider runs scripts only on 'localhost'"


def test_merge_parts_keeps_each_childs_items_and_names_the_child_that_gave_none() -> None:
    ok_part = AccountPart(account_id="local", targets=[LOCALHOST])
    lost_part = AccountPart(account_id=OTHER_ACCOUNT.account_id, targets=[OTHER_ACCOUNT])
    done = PostResult(
        change_number="CHG0001",
        provider="local",
        flow_run="p-local",
        workdir="/root",
        target_kernel=None,
        instances=[],
    )
    ok = outcome_of(ok_part, child_run("p-local", Completed(data=done)), PostResult, 60)
    lost = outcome_of(lost_part, child_run("p-111", Failed()), PostResult, 60)

    def unrun(target: Target, error: ScriptResult) -> str:
        assert error.status is ResultStatus.ERROR
        return f"{target.instance_id}: {error.error}"

    merged = merge_parts([ok, lost], lambda r: [f"from {r.flow_run}"], unrun)
    assert merged[0] == "from p-local"
    assert merged[1].startswith(f"{OTHER_ACCOUNT.instance_id}: child flow run p-111")
    assert "Failed" in merged[1]


def children_and_artifacts(
    stack: PrefectStack, parent_id: UUID
) -> tuple[list[FlowRun], dict[str, Any]]:
    with stack.client() as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])
            )
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[parent_id]))
        )
    return children, {a.key: a.data for a in artifacts if a.key}


def table(data: Any) -> dict[str, dict[str, Any]]:
    """An artifact table's rows by account (none when the table was empty: then the artifact
    is the sentence that says why, not JSON)."""
    if isinstance(data, str) and data.startswith("_"):
        return {}
    rows = json.loads(data) if isinstance(data, str) else data
    return {r["account"]: r for r in rows}


def assert_one_child_per_account_on_its_own_worker(
    stack: PrefectStack, parent_id: UUID, children: list[FlowRun]
) -> dict[str, FlowRun]:
    by_account = {c.parameters["instances"][0]["account_id"]: c for c in children}
    assert sorted(by_account) == [OTHER_ACCOUNT.account_id, "local"]
    for account, child in by_account.items():
        assert child.state is not None and child.state.is_completed(), stack.log_tail()
        assert [t["account_id"] for t in child.parameters["instances"]] == [account]
        assert child.parameters["fan_out_per_account"] is False
        assert FAN_OUT_CHILD_TAG in child.tags
    child_workers = {worker_of(stack, c.id) for c in children}
    assert len(child_workers) == 2
    assert worker_of(stack, parent_id) not in child_workers
    return by_account


def test_two_workers_each_check_one_account_after_patching(
    prefect_stack: PrefectStack, start_worker, tmp_path: Path
) -> None:
    for name in ("post-a", "post-b", "post-c"):
        start_worker(name, 1)
    change = "CHG0078POST"
    parent_id = prefect_stack.trigger(
        "linux-qc-patching-post/on-demand",
        change_number=change,
        provider="local",
        instances=[LOCALHOST.model_dump(mode="json"), OTHER_ACCOUNT.model_dump(mode="json")],
        workdir=str(tmp_path),
        timeout_seconds=120,
        fan_out_per_account=True,
    )
    parent = prefect_stack.wait_for_flow_run(parent_id, RUN_SECONDS)
    assert parent.state is not None and parent.state.is_completed(), prefect_stack.log_tail()

    children, artifacts = children_and_artifacts(prefect_stack, parent_id)
    assert_one_child_per_account_on_its_own_worker(prefect_stack, parent_id, children)

    # The parent's tables hold both parts: localhost was checked (a verdict from its own
    # report), the other account's instance was refused by the local provider in its child.
    key = f"linux-qc-post-{change.lower()}"
    passed, failed = table(artifacts[f"{key}-passed"]), table(artifacts[f"{key}-failed"])
    assert "local" in passed or failed["local"]["verdict"] == "failed", failed.get("local")
    other = failed[OTHER_ACCOUNT.account_id]
    assert (other["verdict"], other["status"]) == ("check_error", "error")
    assert REFUSED in other["reasons"]
    assert all(c.name in str(artifacts[f"{key}-summary"]) for c in children)

    # Operators hear of the failure once, from the parent, with the merged counts.
    (event,) = prefect_stack.events("cloudops.post.failed", f"cloudops.change.{change}")
    assert f"prefect.flow-run.{parent_id}" in {r.id for r in event.related}
    assert sum(event.payload["counts"].values()) == 2


def test_two_workers_each_qc_one_account_and_the_parent_groups_the_whole_change(
    prefect_stack: PrefectStack, start_worker, tmp_path: Path
) -> None:
    for name in ("prep-a", "prep-b", "prep-c"):
        start_worker(name, 1)
    change = "CHG0079PREP"
    parent_id = prefect_stack.trigger(
        "linux-qc-patching-prep/on-demand",
        change_number=change,
        provider="local",
        instances=[LOCALHOST.model_dump(mode="json"), OTHER_ACCOUNT.model_dump(mode="json")],
        workdir=str(tmp_path),
        choose_in_ui=False,
        fan_out_per_account=True,
    )
    parent = prefect_stack.wait_for_flow_run(parent_id, RUN_SECONDS)
    assert parent.state is not None and parent.state.is_completed(), prefect_stack.log_tail()

    children, artifacts = children_and_artifacts(prefect_stack, parent_id)
    by_account = assert_one_child_per_account_on_its_own_worker(prefect_stack, parent_id, children)
    # The children ran the per-instance QC only; the parent did the steps spanning accounts.
    for child in by_account.values():
        assert child.parameters["steps"] == ["initial_qc"]
        assert child.parameters["choose_in_ui"] is False

    # localhost's QC ran in its child (no CrowdStrike on a test machine: it fails, with a
    # report); the parent's table has it, with the kernel its child's QC read.
    qc = table(artifacts[f"linux-qc-prep-{change.lower()}-qc"])
    assert qc["local"]["verdict"] == "failed"
    assert qc["local"]["kernel"]
    assert qc[OTHER_ACCOUNT.account_id]["verdict"] == "unreachable"
    assert REFUSED in qc[OTHER_ACCOUNT.account_id]["reasons"]

    # The QC report localhost's child wrote in the change folder is read back by the parent.
    assert (tmp_path / change / "qc_report.txt").is_file()

    (event,) = prefect_stack.events("cloudops.qc.failed", f"cloudops.change.{change}")
    assert f"prefect.flow-run.{parent_id}" in {r.id for r in event.related}


@pytest.mark.parametrize("flow_name", ["linux_qc_patching_post", "linux_qc_patching_prep"])
def test_the_qc_flows_persist_their_results_for_a_fanned_out_parent(flow_name: str) -> None:
    import flows

    flow = getattr(flows, flow_name)
    assert flow.persist_result is True
    assert "fan_out_per_account" in flow.parameters.properties
