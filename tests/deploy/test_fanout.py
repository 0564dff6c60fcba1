"""Fanning a change out per account as child flow runs that several workers share.

The pure parts (split, child parameters, outcomes, merge) are checked on their own; the real
thing runs on the Prefect server of ``prefect_stack`` with three process workers, each allowed
one flow run at a time: the parent takes one, so its two children must go to the other two.

Two accounts on the local provider: the local provider has one server (``localhost``, account
``local``) and refuses every other target with an ``error`` result, without trying it; the
SSM emulator answers inside one test process, so worker processes cannot reach it. The
change's second account is therefore an EC2 instance the local provider refuses: its child
run really runs on the second worker and reports that refusal, and the parent merges both.
"""

from __future__ import annotations

import json
import time
from uuid import UUID, uuid4

import pytest
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.states import Completed, Failed, Scheduled

from blocks import LocalProviderBlock
from flows import run_script
from flows.common.fanout import (
    FAN_OUT_CHILD_TAG,
    AccountPart,
    FanOutError,
    child_parameters,
    merge_batches,
    outcome_of,
    split_by_account,
)
from flows.script_run.report import RunScriptResult
from providers.base import BatchResult, Interpreter, ResultStatus, ScriptResult, Target
from tests.deploy.conftest import PrefectStack

LOCALHOST = Target(instance_id="localhost", account_id="local", region="local")
OTHER_ACCOUNT = Target(
    instance_id="i-0123456789abcdef0", account_id="111111111111", region="us-east-1"
)
RUN_SECONDS = 300
LOG_SECONDS = 30


def target(n: int, account: str) -> Target:
    return Target(instance_id=f"i-{n:017x}", account_id=account, region="us-east-1")


def child_run(name: str, state) -> FlowRun:
    return FlowRun(id=uuid4(), name=name, flow_id=uuid4(), state=state)


def script_result(t: Target, status: ResultStatus) -> ScriptResult:
    return ScriptResult(
        instance_id=t.instance_id, account_id=t.account_id, region=t.region, status=status
    )


# --- the pure parts ------------------------------------------------------------------------


def test_targets_are_split_per_account_in_account_order_keeping_their_own_order() -> None:
    a1, b1, a2, none = (
        target(1, "222222222222"),
        target(2, "111111111111"),
        target(3, "222222222222"),
        target(4, ""),
    )
    parts = split_by_account([a1, b1, a2, none])
    assert [(p.account_id, p.targets) for p in parts] == [
        ("", [none]),
        ("111111111111", [b1]),
        ("222222222222", [a1, a2]),
    ]
    assert parts[0].label == "no-account"


def test_a_child_gets_the_parents_parameters_with_its_own_targets_and_no_further_fan_out() -> None:
    part = AccountPart(account_id="111111111111", targets=[target(1, "111111111111")])
    parent = {
        "script_name": "linux/host_facts.sh",
        "interpreter": Interpreter.BASH,
        "targets": [target(9, "999999999999")],
        "fan_out_per_account": True,
        "parameters": {"GREETING": "hi"},
    }
    child = child_parameters(parent, part, "targets")
    assert child == {
        "script_name": "linux/host_facts.sh",
        "interpreter": "bash",
        "targets": [
            {
                "instance_id": "i-00000000000000001",
                "account_id": "111111111111",
                "region": "us-east-1",
                "platform": "linux",
                "name": None,
            }
        ],
        "fan_out_per_account": False,
        "parameters": {"GREETING": "hi"},
    }
    json.dumps(child)  # what the API receives
    assert parent["fan_out_per_account"] is True  # the parent's own parameters are untouched


@pytest.mark.usefixtures("prefect_server")
def test_a_provider_block_reaches_children_as_its_slug_and_an_unsaved_one_is_refused() -> None:
    part = AccountPart(account_id="local", targets=[LOCALHOST])
    saved = LocalProviderBlock()
    saved.save("fan-out-parts", overwrite=True)
    child = child_parameters({"provider": saved}, part, "instances")
    assert child["provider"] == "local-provider/fan-out-parts"
    assert child["instances"] == [LOCALHOST.model_dump(mode="json")]

    with pytest.raises(FanOutError, match=r"unsaved Local Provider block.*save it"):
        child_parameters({"provider": LocalProviderBlock()}, part, "instances")


def test_outcomes_say_why_a_child_gave_no_result_and_merge_keeps_every_target() -> None:
    ok_part = AccountPart(account_id="111111111111", targets=[target(1, "111111111111")])
    failed_part = AccountPart(account_id="222222222222", targets=[target(2, "222222222222")])
    late_part = AccountPart(account_id="333333333333", targets=[target(3, "333333333333")])
    unread_part = AccountPart(account_id="444444444444", targets=[target(4, "444444444444")])
    batch = BatchResult.from_results([script_result(ok_part.targets[0], ResultStatus.SUCCESS)])
    done = RunScriptResult(
        change_number="CHG1", provider="aws", script="inline", batch=batch, report_path="r.md"
    )

    ok = outcome_of(ok_part, child_run("p-111", Completed(data=done)), RunScriptResult, 60)
    failed = outcome_of(failed_part, child_run("p-222", Failed()), RunScriptResult, 60)
    late = outcome_of(late_part, child_run("p-333", Scheduled()), RunScriptResult, 60)
    # Completed, but its result was not persisted where this process can read it.
    unread = outcome_of(unread_part, child_run("p-444", Completed()), RunScriptResult, 60)

    assert ok.result == done and ok.problem is None
    assert failed.result is None and "p-222" in failed.problem and "Failed" in failed.problem
    assert "still Scheduled after 60 s" in late.problem and "worker" in late.problem
    assert "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK" in unread.problem

    merged = merge_batches([ok, failed, late, unread], lambda r: r.batch)
    assert [(r.instance_id, r.status) for r in merged.results] == [
        ("i-00000000000000001", ResultStatus.SUCCESS),
        ("i-00000000000000002", ResultStatus.ERROR),
        ("i-00000000000000003", ResultStatus.ERROR),
        ("i-00000000000000004", ResultStatus.ERROR),
    ]
    assert merged.results[1].error == failed.problem
    assert (merged.success_count, merged.failure_count) == (1, 3)


# --- the flow, without and with a deployment -------------------------------------------------


@pytest.mark.usefixtures("prefect_server", "data_dir")
def test_fan_out_outside_a_deployment_is_refused_with_what_to_do() -> None:
    with pytest.raises(FanOutError, match="prefect deployment run"):
        run_script(
            script="echo never",
            targets=[LOCALHOST, OTHER_ACCOUNT],
            provider="local",
            fan_out_per_account=True,
        )


@pytest.mark.usefixtures("prefect_server", "data_dir")
def test_fan_out_of_a_single_account_runs_in_place() -> None:
    result = run_script(
        script="echo here", targets=[LOCALHOST], provider="local", fan_out_per_account=True
    )
    assert result.child_flow_runs == []
    assert [(r.instance_id, r.stdout.strip()) for r in result.batch.results] == [
        ("localhost", "here")
    ]


def test_two_workers_each_run_one_account_of_a_change(
    prefect_stack: PrefectStack, start_worker
) -> None:
    for name in ("fan-a", "fan-b", "fan-c"):
        start_worker(name, 1)

    parent_id = prefect_stack.trigger(
        "run-script/on-demand",
        script="echo part of $CHANGE_NOTE",
        parameters={"CHANGE_NOTE": "CHG0077FAN"},
        change_number="CHG0077FAN",
        provider="local",
        targets=[LOCALHOST.model_dump(mode="json"), OTHER_ACCOUNT.model_dump(mode="json")],
        fan_out_per_account=True,
    )
    parent = prefect_stack.wait_for_flow_run(parent_id, RUN_SECONDS)
    assert parent.state is not None and parent.state.is_completed(), prefect_stack.log_tail()

    with prefect_stack.client() as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])
            )
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[parent_id]))
        )

    # One child per account, each with its own account's targets and no further fan-out.
    by_account = {c.parameters["targets"][0]["account_id"]: c for c in children}
    assert sorted(by_account) == ["111111111111", "local"]
    for account, child in by_account.items():
        assert child.state is not None and child.state.is_completed()
        assert [t["account_id"] for t in child.parameters["targets"]] == [account]
        assert child.parameters["fan_out_per_account"] is False
        assert FAN_OUT_CHILD_TAG in child.tags

    # Each child ran on its own worker, and neither on the parent's.
    parent_worker = worker_of(prefect_stack, parent_id)
    child_workers = {worker_of(prefect_stack, c.id) for c in children}
    assert len(child_workers) == 2
    assert parent_worker not in child_workers

    # The parent merged both parts: the local one ran, the other account was refused.
    (table,) = [a for a in artifacts if a.key == "run-script-results"]
    rows = {
        r["account"]: r
        for r in (json.loads(table.data) if isinstance(table.data, str) else table.data)
    }
    assert rows["local"]["status"] == "success"
    assert rows["local"]["output"] == "part of CHG0077FAN"
    assert rows["111111111111"]["status"] == "error"
    assert "local provider runs scripts only on 'localhost'" in rows["111111111111"]["problem"]
    (summary,) = [a for a in artifacts if a.key == "run-script-summary"]
    assert all(c.name in str(summary.data) for c in children)

    # Operators hear of the failure once, from the parent, with the merged counts.
    (event,) = prefect_stack.events("cloudops.run-script.failed", "cloudops.change.CHG0077FAN")
    assert event.payload["counts"] == {"instances": 2, "succeeded": 1, "failed": 1}
    assert f"prefect.flow-run.{parent_id}" in {r.id for r in event.related}


def worker_of(stack: PrefectStack, flow_run_id: UUID) -> str:
    """The worker that took a flow run, from the workers' own output: several workers may try
    to submit one run, and all but one are told to abort, so the one that submitted it and
    was not aborted took it."""
    deadline = time.monotonic() + LOG_SECONDS
    while True:
        took = []
        for log in sorted(stack.logs.glob("worker-*.log")):
            text = log.read_text(errors="replace")
            if f"submitting flow run '{flow_run_id}'" in text and (
                f"Aborted submission of flow run '{flow_run_id}'" not in text
            ):
                took.append(log.stem.removeprefix("worker-"))
        if len(took) == 1:
            return took[0]
        if time.monotonic() > deadline:
            pytest.fail(f"workers {took or 'none'} logged taking flow run {flow_run_id}")
        time.sleep(1)
