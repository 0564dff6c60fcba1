"""run-script through the AWS provider on the SSM emulator: the Prefect task layout, and
retries that never send a command twice."""

from __future__ import annotations

from itertools import pairwise

import boto3
import pytest
from moto.sts.models import sts_backends
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from blocks import AwsProviderBlock, load_provider
from flows import run_script
from flows.common.engine import run_on_targets
from flows.common.runs import WorkflowRun
from flows.store import Store
from providers.base import ResultStatus, ScriptRequest, Target
from tests.providers.aws.ssm_fixtures import record_collects
from tests.ssm_emulator.world import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

OTHER_ACCOUNT = "222222222222"
PRINT_OWN_ID = 'cat "$CLOUDOPS_ROOT/etc/instance-id"'


@pytest.fixture
def fast_aws(ssm_world: SsmWorld):
    """An aws-provider block that polls quickly, saved for the flow to load by slug."""
    block = AwsProviderBlock(poll_initial_seconds=0.1, poll_max_seconds=0.3)
    block.save("emulated", overwrite=True)
    yield "aws-provider/emulated"
    AwsProviderBlock.delete("emulated")


def _fleet(world: SsmWorld) -> list[Target]:
    world.add_role(OTHER_ACCOUNT)
    world.command_delay(pending=0.05)
    targets = []
    for account, region, count in (
        ("123456789012", "us-east-1", 55),
        (OTHER_ACCOUNT, "us-west-2", 5),
    ):
        for _ in range(count):
            inst = world.add_instance(account_id=account, region=region)
            inst.write_file("/etc/instance-id", inst.instance_id)
            targets.append(Target(instance_id=inst.instance_id, account_id=account, region=region))
    return targets


def _task_runs_by_name(flow_run_id) -> dict[str, int]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    counts: dict[str, int] = {}
    for run in runs:
        prefix = run.name.split("-")[0]
        counts[prefix] = counts.get(prefix, 0) + 1
    return counts


def test_task_runs_grow_with_chunks_and_each_instance_prints_its_own_id(
    ssm_world: SsmWorld, fast_aws: str
) -> None:
    targets = _fleet(ssm_world)

    state = run_script(script=PRINT_OWN_ID, targets=targets, provider=fast_aws, return_state=True)
    result = state.result()

    assert result.batch.success_count == 60
    assert all(r.stdout.strip() == r.instance_id for r in result.batch.results)
    # 55 instances in one group -> 2 chunks; 5 in the other -> 1 chunk.
    assert ssm_world.calls[("ssm", "SendCommand")] == 3
    assert set(ssm_world.send_commands_per_instance.values()) == {1}
    assert _task_runs_by_name(state.state_details.flow_run_id) == {
        "prepare": 2,
        "send": 3,
        "collect": 3,
    }
    # The run is named after what it does; the role session in the other account names it,
    # for its CloudTrail.
    with get_client(sync_client=True) as client:
        run_name = client.read_flow_run(state.state_details.flow_run_id).name
    assert run_name == "run-script inline adhoc"
    sessions = {r.session_name for r in sts_backends[OTHER_ACCOUNT]["aws"].assumed_roles}
    assert sessions == {"cloudops-run-script-inline-adhoc"}


def test_a_failed_poll_task_is_retried_without_sending_again(
    ssm_world: SsmWorld, fast_aws: str
) -> None:
    targets = _fleet(ssm_world)[:3]
    # Twice in a row: the provider refreshes credentials once by itself, the second expiry
    # fails the collect task, which Prefect retries.
    ssm_world.fail_next("ListCommandInvocations", code="ExpiredTokenException", times=2)

    state = run_script(script=PRINT_OWN_ID, targets=targets, provider=fast_aws, return_state=True)
    result = state.result()

    assert [r.status for r in result.batch.results] == [ResultStatus.SUCCESS] * 3
    assert ssm_world.calls[("ssm", "SendCommand")] == 1
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    [collect] = [r for r in runs if r.name.startswith("collect")]
    assert collect.run_count == 2


def test_a_retried_flow_run_re_attaches_to_the_command_it_sent(
    ssm_world: SsmWorld, fast_aws: str
) -> None:

    targets = _fleet(ssm_world)[:4]
    attempts: list[int] = []

    @flow(retries=1, retry_delay_seconds=0)
    def crashes_after_sending():
        provider = load_provider(fast_aws)
        batch = run_on_targets(
            provider, targets, ScriptRequest(script=PRINT_OWN_ID), store=Store.default()
        )
        attempts.append(batch.success_count)
        if len(attempts) == 1:
            raise RuntimeError("the worker died after the commands went out")
        return batch

    batch = crashes_after_sending()

    assert attempts == [4, 4]
    assert batch.success_count == 4
    assert ssm_world.calls[("ssm", "SendCommand")] == 1
    assert set(ssm_world.send_commands_per_instance.values()) == {1}


class _StoreThatCannotRecordCommands(Store):
    def record_command(self, run_key, ref):  # type: ignore[no-untyped-def]
        raise OSError("disk full")


def test_a_command_sent_but_not_recorded_is_still_collected_not_reported_unsent(
    ssm_world: SsmWorld, fast_aws: str
) -> None:
    targets = _fleet(ssm_world)[:3]

    @flow
    def store_fails_after_send():
        return run_on_targets(
            load_provider(fast_aws),
            targets,
            ScriptRequest(script=PRINT_OWN_ID),
            store=_StoreThatCannotRecordCommands(),
        )

    batch = store_fails_after_send()

    assert batch.success_count == 3
    assert all(r.stdout.strip() == r.instance_id for r in batch.results)
    assert ssm_world.calls[("ssm", "SendCommand")] == 1


def test_the_block_bounds_how_many_task_runs_work_at_once(ssm_world: SsmWorld) -> None:
    AwsProviderBlock(poll_initial_seconds=0.1, poll_max_seconds=0.3, max_concurrent_groups=1).save(
        "one-at-a-time", overwrite=True
    )
    targets = _fleet(ssm_world)

    try:
        state = run_script(
            script=PRINT_OWN_ID,
            targets=targets,
            provider="aws-provider/one-at-a-time",
            return_state=True,
        )
    finally:
        AwsProviderBlock.delete("one-at-a-time")

    assert state.result().batch.success_count == 60
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    spans = sorted((r.start_time, r.end_time) for r in runs)
    assert len(spans) == 8
    # With one worker, each task run ends before the next one starts.
    assert all(end <= next_start for (_, end), (next_start, _) in pairwise(spans))


@pytest.mark.parametrize("list_bucket", [True, False], ids=["with-list-bucket", "no-list-bucket"])
def test_with_an_output_bucket_a_long_output_and_no_stderr_is_read_whole(
    ssm_world: SsmWorld, list_bucket: bool
) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="run-output")
    if not list_bucket:
        # Least privilege: S3 answers 403 for the stderr object the agent never wrote.
        ssm_world.deny_list_bucket("run-output")
    AwsProviderBlock(
        poll_initial_seconds=0.1, poll_max_seconds=0.3, output_s3_bucket="run-output"
    ).save("with-bucket", overwrite=True)
    targets = _fleet(ssm_world)[:3]
    long_one = ssm_world.instance(targets[0].instance_id)
    long_one.write_file("/etc/instance-id", "x" * 3_000)

    try:
        result = run_script(
            script=PRINT_OWN_ID, targets=targets, provider="aws-provider/with-bucket"
        )
    finally:
        AwsProviderBlock.delete("with-bucket")

    by_id = {r.instance_id: r for r in result.batch.results}
    assert {r.status for r in by_id.values()} == {ResultStatus.SUCCESS}
    whole = by_id[long_one.instance_id]
    assert (whole.stdout, whole.stderr, whole.error) == ("x" * 3_000, "", None)
    assert not whole.stdout_truncated
    for target in targets[1:]:
        assert by_id[target.instance_id].stdout == target.instance_id


def test_a_send_whose_answer_was_lost_is_found_not_sent_twice(
    ssm_world: SsmWorld, fast_aws: str
) -> None:
    targets = _fleet(ssm_world)[:3]
    # SSM accepts the command and the connection closes before its answer comes back.
    ssm_world.lose_answers("SendCommand")

    state = run_script(script=PRINT_OWN_ID, targets=targets, provider=fast_aws, return_state=True)
    result = state.result()

    assert [r.status for r in result.batch.results] == [ResultStatus.SUCCESS] * 3
    assert ssm_world.calls[("ssm", "SendCommand")] == 1
    assert set(ssm_world.send_commands_per_instance.values()) == {1}
    [command] = ssm_world.commands
    assert {r.command_id for r in result.batch.results} == {command.command_id}
    with Store.default() as store:
        found = store.find_command(str(state.state_details.flow_run_id), command.comment[-20:])
    assert found is not None and found.command_id == command.command_id


def test_a_command_that_became_unreadable_keeps_the_results_already_final(
    ssm_world: SsmWorld, fast_aws: str
) -> None:
    fast, slow = _fleet(ssm_world)[:2]
    ssm_world.instance(slow.instance_id).write_file("/etc/slow", "")
    script = '[ -f "$CLOUDOPS_ROOT/etc/slow" ] && sleep 3; cat "$CLOUDOPS_ROOT/etc/instance-id"'
    # The caller loses its right to read the command once the fast one is final: every poll
    # from the fourth on (0.1 to 0.3 s apart) is refused, the slow one sleeps for 3 s.
    ssm_world.fail_next("ListCommandInvocations", code="AccessDeniedException", after=3, times=99)

    result = run_script(script=script, targets=[fast, slow], provider=fast_aws)

    by_id = {r.instance_id: r for r in result.batch.results}
    assert by_id[fast.instance_id].status is ResultStatus.SUCCESS
    assert by_id[fast.instance_id].stdout == fast.instance_id
    lost = by_id[slow.instance_id]
    assert lost.status is ResultStatus.ERROR and "AccessDeniedException" in (lost.error or "")


def test_the_commands_of_a_step_poll_on_one_schedule_within_the_request_s_ceiling(
    ssm_world: SsmWorld, fast_aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A step ends with its slowest command: each command drawing its own jitter would leave one
    # of many looking just too early and waiting a whole interval more (a wave of reboots waits
    # for it). Each collect task polls from the step's one seed, on the request's ceiling.
    polled = record_collects(monkeypatch)
    targets = _fleet(ssm_world)
    request = ScriptRequest(script=PRINT_OWN_ID, poll_ceiling_seconds=0.2)

    @flow
    def two_steps() -> list[int]:
        provider = load_provider(fast_aws)
        return [
            run_on_targets(
                provider,
                targets,
                # A request of its own per step (the flows comment each with its step): the
                # same request twice in one run is re-attached to, not sent again.
                request.model_copy(update={"comment": step}),
                store=Store.default(),
                step=step,
            ).success_count
            for step in ("first", "second")
        ]

    assert two_steps() == [60, 60]

    first, second = polled[:3], polled[3:]
    assert len(polled) == 6 and len({c.command_id for c in polled}) == 6
    assert {c.poll_ceiling for c in polled} == {0.2}
    assert len({repr(c.jitter_state) for c in first}) == 1
    assert len({repr(c.jitter_state) for c in second}) == 1
    assert first[0].jitter_state != second[0].jitter_state  # each step draws its own


def test_a_retried_run_re_attaches_to_its_step_s_commands_within_the_request_s_ceiling(
    ssm_world: SsmWorld, fast_aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The window's waves: a retried run follows the installs it sent before (their servers may
    # be rebooting) as closely as the first attempt did.
    collects = record_collects(monkeypatch)
    targets = _fleet(ssm_world)
    attempts: list[int] = []

    @flow(retries=1, retry_delay_seconds=0)
    def crashes_after_the_step() -> int:
        run = WorkflowRun.begin("test", load_provider(fast_aws), Store.default(), "CHG0000001")
        request = run.request("wave-1", PRINT_OWN_ID, 60, poll_ceiling_seconds=0.25)
        batch = run.run_script_once("wave-1", targets, request, run_key=f"{run.flow_run_id}/wave-1")
        attempts.append(batch.success_count)
        if len(attempts) == 1:
            raise RuntimeError("the worker died after the wave")
        return batch.success_count

    assert crashes_after_the_step() == 60
    assert attempts == [60, 60] and ssm_world.calls[("ssm", "SendCommand")] == 3
    # three commands collected, then re-attached to
    assert [c.poll_ceiling for c in collects] == [0.25] * 6
