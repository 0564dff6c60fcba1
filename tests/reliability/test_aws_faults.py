"""AWS misbehaving under a run of 200 instances over two accounts and two regions: throttling,
an expired token, eventual consistency, agents lost mid-run, a command that never ends.

Each test runs the real ``run-script`` flow (or, for the deadline, the engine every flow uses)
on the SSM emulator and checks what an operator relies on: every instance ends with exactly
one result, received exactly one ``SendCommand`` and ran the script at most once, and the
faults are reported for what they are. Each prints its figures.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from prefect import flow

from flows import run_script
from flows.common.engine import run_on_targets
from flows.script_run.report import RunScriptResult
from flows.store import Store
from providers.aws.config import AwsProviderConfig
from providers.aws.provider import AwsProvider
from providers.base import (
    BatchResult,
    PollSchedule,
    ResultStatus,
    ScriptRequest,
    ScriptResult,
    Target,
)
from tests.reliability.figures import Figures
from tests.reliability.fleet import PRINT_OWN_ID, build_fleet, chunks_for, times_run
from tests.ssm_emulator import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

FLEET = 200
# A seed whose first two draws throttle: the run's very first calls (STS GetCallerIdentity,
# then AssumeRole or DescribeInstanceInformation) are refused, whatever the thread timing.
THROTTLE_SEED = 4


def _run(
    world: SsmWorld, provider: str, targets: list[Target], script: str = PRINT_OWN_ID
) -> tuple[RunScriptResult, float, object]:
    started = time.monotonic()
    state = run_script(
        script=script, targets=targets, provider=provider, timeout_seconds=60, return_state=True
    )
    result = state.result()
    return result, time.monotonic() - started, state.state_details.flow_run_id


def _accepted(world: SsmWorld, operation: str) -> int:
    return sum(
        1 for r in world.requests if r.operation == operation and r.answered_by == "emulator"
    )


def _assert_each_instance_once(world: SsmWorld, targets: list[Target], batch: BatchResult) -> None:
    """One result, one SendCommand and at most one script run per instance; none lost."""
    wanted = sorted(t.instance_id for t in targets)
    assert sorted(r.instance_id for r in batch.results) == wanted
    assert world.send_commands_per_instance == Counter(dict.fromkeys(wanted, 1))
    assert _accepted(world, "SendCommand") == chunks_for(targets)
    assert {times_run(world.instance(i)) for i in wanted} <= {0, 1}


def _assert_own_output(results: list[ScriptResult]) -> None:
    for result in results:
        assert result.status is ResultStatus.SUCCESS, result
        assert result.stdout.splitlines()[0] == result.instance_id


def test_30_percent_throttling_of_every_ssm_and_sts_call(ssm_world: SsmWorld, fast_aws: str):
    targets = build_fleet(ssm_world, FLEET)
    ssm_world.command_delay(pending=0.05)
    ssm_world.throttle(share=0.3, services=("ssm", "sts"), seed=THROTTLE_SEED)

    result, wall, flow_run_id = _run(ssm_world, fast_aws, targets)

    _assert_each_instance_once(ssm_world, targets, result.batch)
    _assert_own_output(result.batch.results)
    assert {times_run(ssm_world.instance(t.instance_id)) for t in targets} == {1}
    throttled = ssm_world.throttled
    assert throttled[("sts", "GetCallerIdentity")] >= 1
    assert sum(n for (service, _), n in throttled.items() if service == "ssm") >= 1
    everything = sum(n for (s, _), n in ssm_world.calls.items() if s in ("ssm", "sts"))
    share = sum(throttled.values()) / everything
    Figures.of(
        "30% of SSM and STS calls throttled",
        ssm_world,
        FLEET,
        wall,
        [flow_run_id],
        throttled_share=f"{share:.0%} of {everything} SSM/STS attempts",
    ).show()


def test_an_expired_token_mid_poll_is_resolved_again_and_the_run_goes_on(
    ssm_world: SsmWorld, fast_aws: str
):
    targets = build_fleet(ssm_world, FLEET)
    ssm_world.command_delay(pending=0.3)
    ssm_world.fail_next("ListCommandInvocations", code="ExpiredTokenException", times=1, after=2)

    result, wall, flow_run_id = _run(ssm_world, fast_aws, targets)

    _assert_each_instance_once(ssm_world, targets, result.batch)
    _assert_own_output(result.batch.results)
    assert ssm_world.faults.pending_injections() == 0
    calls = ssm_world.calls
    # Resolved once at the start and once after the expiry: base identity and member role.
    assert calls[("sts", "GetCallerIdentity")] == 2
    assert calls[("sts", "AssumeRole")] == 2
    figures = Figures.of("ExpiredTokenException mid-poll", ssm_world, FLEET, wall, [flow_run_id])
    # The provider re-resolved and retried the poll itself: no Prefect task had to.
    assert figures.task_retries == 0
    figures.show()


def test_commands_not_visible_just_after_send_are_waited_for(ssm_world: SsmWorld, fast_aws: str):
    targets = build_fleet(ssm_world, FLEET)
    ssm_world.command_delay(pending=0.05)
    # Reads don't know a new command for 0.5 s; then the first full-output fetches still say
    # InvocationDoesNotExist, as a lagging replica of SSM does.
    ssm_world.invocation_lag(0.5)
    ssm_world.fail_next("GetCommandInvocation", code="InvocationDoesNotExist", times=25)
    long_output = PRINT_OWN_ID + "head -c 3000 /dev/zero | tr '\\0' x\n"

    result, wall, flow_run_id = _run(ssm_world, fast_aws, targets, long_output)

    _assert_each_instance_once(ssm_world, targets, result.batch)
    _assert_own_output(result.batch.results)
    for r in result.batch.results:
        assert r.stdout.endswith("x" * 3000) and not r.stdout_truncated
    # Every instance's full output was fetched exactly once, after the refusals.
    assert _accepted(ssm_world, "GetCommandInvocation") == FLEET
    assert ssm_world.faults.pending_injections() == 0
    Figures.of(
        "commands invisible for 0.5 s, 25 InvocationDoesNotExist",
        ssm_world,
        FLEET,
        wall,
        [flow_run_id],
    ).show()


def test_agents_lost_mid_run_are_reported_undeliverable(ssm_world: SsmWorld, fast_aws: str):
    targets = build_fleet(ssm_world, FLEET)
    ssm_world.command_delay(pending=0.05)
    timed_out, gone = targets[7].instance_id, targets[150].instance_id
    ssm_world.set_offline(timed_out, mid_run=True, after=0.2)
    ssm_world.set_offline(gone, mid_run=True, after=0.2, outcome="Undeliverable")

    result, wall, flow_run_id = _run(ssm_world, fast_aws, targets)

    _assert_each_instance_once(ssm_world, targets, result.batch)
    by_id = {r.instance_id: r for r in result.batch.results}
    lost = [by_id.pop(timed_out), by_id.pop(gone)]
    _assert_own_output(list(by_id.values()))
    assert [r.status for r in lost] == [ResultStatus.UNDELIVERABLE] * 2
    assert "could not deliver" in (lost[0].error or "") and timed_out in (lost[0].error or "")
    assert "could not deliver" in (lost[1].error or "") and gone in (lost[1].error or "")
    assert result.batch.success_count == FLEET - 2
    Figures.of(
        "2 agents lost mid-run (DeliveryTimedOut, Undeliverable)",
        ssm_world,
        FLEET,
        wall,
        [flow_run_id],
        lost=", ".join(f"{r.instance_id}: {r.status.value}" for r in lost),
    ).show()


# The run's deadline is the script's limit + SSM's delivery limit + a grace. The block does not
# expose the grace (60 s by default), so this test builds the provider from its plain
# configuration to bring the deadline down to the smallest SSM allows: 1 + 30 + 0 s.
DEADLINE_REQUEST = ScriptRequest(
    script=PRINT_OWN_ID, timeout_seconds=1, delivery_timeout_seconds=30, comment="deadline"
)


@flow(name="reliability-deadline")
def run_until_deadline(targets: list[Target]) -> BatchResult:
    """The engine of every workflow on ``targets`` with the shortest deadline SSM allows."""
    provider = AwsProvider(
        AwsProviderConfig(
            poll=PollSchedule(initial_seconds=0.1, max_seconds=0.5, grace_seconds=0),
        )
    )
    return run_on_targets(provider, targets, DEADLINE_REQUEST, store=Store.default())


def test_a_command_that_never_finishes_ends_at_the_deadline(ssm_world: SsmWorld):
    targets = build_fleet(ssm_world, FLEET)
    ssm_world.command_delay(pending=0.05)
    stuck = targets[42].instance_id
    ssm_world.never_finish(stuck)
    deadline = DEADLINE_REQUEST.timeout_seconds + DEADLINE_REQUEST.delivery_timeout_seconds

    started = time.monotonic()
    state = run_until_deadline(targets, return_state=True)
    batch = state.result()
    wall = time.monotonic() - started

    _assert_each_instance_once(ssm_world, targets, batch)
    by_id = {r.instance_id: r for r in batch.results}
    late = by_id.pop(stuck)
    _assert_own_output(list(by_id.values()))
    assert late.status is ResultStatus.TIMED_OUT
    assert late.error == (
        f"no final status by the run's deadline ({deadline}s); the command was cancelled"
    )
    assert _accepted(ssm_world, "CancelCommand") == 1
    invocation = ssm_world.command(late.command_id or "").invocations[stuck]
    assert invocation.outcome is not None and invocation.outcome.status == "Cancelled"
    # It ended at its deadline, not later: no hang.
    assert deadline <= wall < deadline + 20
    Figures.of(
        "1 command never finishes (deadline 31 s)",
        ssm_world,
        FLEET,
        wall,
        [state.state_details.flow_run_id],
        stuck=f"{stuck}: {late.status.value} after {wall:.1f} s",
    ).show()
