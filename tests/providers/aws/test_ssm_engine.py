"""The SSM steps one at a time (prepare, send, poll/collect, expire) on the SSM agent
emulator: output limits and where full output comes from, call budgets, eventual consistency,
expired tokens, deadlines, and every way an invocation can end."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from providers.aws import provider as aws_provider
from providers.aws.errors import AwsError
from providers.aws.provider import AwsProvider
from providers.base import (
    Chunk,
    CommandProgress,
    Platform,
    ResultStatus,
    ScriptRequest,
    ScriptResult,
    Target,
)
from tests.providers.aws.ssm_fixtures import (
    GOV_ACCOUNT,
    HOME_ACCOUNT,
    ROLE_ACCOUNT,
    Fleet,
    targets_of,
)

# Prints as much as the sandbox asks for: "<n> <m>" in etc/sizes gives n characters of stdout
# and m of stderr; otherwise one short line.
SIZED_OUTPUT = r"""
if [ -f "$CLOUDOPS_ROOT/etc/sizes" ]; then
  read -r out err < "$CLOUDOPS_ROOT/etc/sizes"
  head -c "$out" /dev/zero | tr '\0' 'o'
  head -c "$err" /dev/zero | tr '\0' 'e' >&2
else
  echo "short $(cat "$CLOUDOPS_ROOT/etc/instance-id")"
fi
"""


def run_steps(
    provider: AwsProvider, targets: list[Target], request: ScriptRequest
) -> tuple[list[ScriptResult], list[CommandProgress]]:
    """prepare, send every chunk, collect each command; every poll's progress is kept."""
    plan = provider.prepare(targets, request)
    results = list(plan.results)
    seen: list[CommandProgress] = []
    for chunk in plan.chunks:
        ref = provider.send(chunk, request)
        results.extend(provider.collect(ref, on_progress=seen.append))
    return results, seen


def test_long_output_without_a_bucket_is_fetched_once_and_flagged_truncated(fleet: Fleet):
    instances = fleet.add(6, HOME_ACCOUNT, "us-east-1")
    long_out, long_both, just_over, just_under = instances[:4]
    long_out.write_file("/etc/sizes", "30000 0\n")
    long_both.write_file("/etc/sizes", "100 9000\n")  # short stdout, stderr past its cap
    just_over.write_file("/etc/sizes", "2600 0\n")
    just_under.write_file("/etc/sizes", "2400 0\n")
    # Each invocation stays InProgress a while, so a fetch before it is final would show.
    fleet.world.command_delay(pending=0.05, in_progress_min=0.3)
    provider = fleet.provider()

    results, polls = run_steps(provider, targets_of(instances), ScriptRequest(script=SIZED_OUTPUT))

    by_id = {r.instance_id: r for r in results}
    assert all(r.status is ResultStatus.SUCCESS for r in results)
    assert by_id[long_out.instance_id].stdout == "o" * 24_000
    assert by_id[long_out.instance_id].stdout_truncated
    assert not by_id[long_out.instance_id].stderr_truncated
    assert by_id[long_both.instance_id].stdout == "o" * 100
    assert by_id[long_both.instance_id].stderr == "e" * 8_000
    assert by_id[long_both.instance_id].stderr_truncated
    assert not by_id[long_both.instance_id].stdout_truncated
    assert by_id[just_over.instance_id].stdout == "o" * 2_600
    assert not by_id[just_over.instance_id].stdout_truncated
    assert by_id[just_under.instance_id].stdout == "o" * 2_400
    for short in instances[4:]:
        assert by_id[short.instance_id].stdout == f"short {short.instance_id}\n"
    # GetCommandInvocation once for each of the three outputs ListCommandInvocations cut, and
    # only once final: the full text could not have come from an unfinished invocation.
    assert fleet.calls("GetCommandInvocation") == 3
    assert fleet.calls("ListCommandInvocations") == len(polls) > 1
    assert len(polls[0].pending) == 6


def test_long_output_with_a_bucket_comes_whole_from_s3(fleet: Fleet):
    instances = fleet.add(3, HOME_ACCOUNT, "us-east-1")
    instances[0].write_file("/etc/sizes", "30000 9000\n")
    instances[1].write_file("/etc/sizes", "26000 0\n")
    s3 = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id=fleet.com_keys.access_key_id,
        aws_secret_access_key=fleet.com_keys.secret_access_key,
    )
    s3.create_bucket(Bucket="ops-run-output")
    provider = fleet.provider(output_s3_bucket="ops-run-output", output_s3_prefix="/runs/qc/")

    results, _ = run_steps(provider, targets_of(instances), ScriptRequest(script=SIZED_OUTPUT))

    by_id = {r.instance_id: r for r in results}
    long_result, no_stderr = by_id[instances[0].instance_id], by_id[instances[1].instance_id]
    assert long_result.stdout == "o" * 30_000 and not long_result.stdout_truncated
    assert long_result.stderr == "e" * 9_000 and not long_result.stderr_truncated
    # The agent uploads no stderr object for a script that wrote none.
    assert no_stderr.stdout == "o" * 26_000 and no_stderr.stderr == ""
    assert no_stderr.status is ResultStatus.SUCCESS
    command = fleet.world.commands[0]
    assert (command.output_s3_bucket, command.output_s3_prefix) == ("ops-run-output", "runs/qc")
    assert fleet.calls("GetCommandInvocation") == 0
    assert fleet.calls("GetObject", service="s3") == 4  # stdout and stderr of the long two


def test_invocations_not_listed_yet_are_pending_not_lost(fleet: Fleet):
    instances = fleet.add(3, HOME_ACCOUNT, "us-east-1")
    fleet.world.invocation_lag(0.4)
    provider = fleet.provider()

    results, polls = run_steps(provider, targets_of(instances), ScriptRequest(script=SIZED_OUTPUT))

    assert polls[0].results == [] and len(polls[0].pending) == 3
    assert [r.status for r in results] == [ResultStatus.SUCCESS] * 3
    assert fleet.calls("GetCommandInvocation") == 0


def test_an_expired_token_is_resolved_again_and_the_call_retried_once(fleet: Fleet):
    instances = fleet.add(2, ROLE_ACCOUNT, "us-east-1")
    provider = fleet.provider()
    request = ScriptRequest(script=SIZED_OUTPUT)
    plan = provider.prepare(targets_of(instances), request)
    ref = provider.send(plan.chunks[0], request)
    assume_before = fleet.calls("AssumeRole", service="sts")
    fleet.world.fail_next("ListCommandInvocations", code="ExpiredTokenException")

    results = provider.collect(ref)

    assert [r.status for r in results] == [ResultStatus.SUCCESS] * 2
    assert fleet.calls("AssumeRole", service="sts") == assume_before + 1
    assert fleet.world.faults.pending_injections() == 0


def test_past_the_deadline_the_command_is_cancelled_and_timed_out(fleet: Fleet):
    stuck, fine = fleet.add(2, HOME_ACCOUNT, "us-east-1")
    fleet.world.never_finish(stuck.instance_id)
    provider = fleet.provider()
    request = ScriptRequest(script=SIZED_OUTPUT)
    plan = provider.prepare(targets_of([stuck, fine]), request)
    ref = provider.send(plan.chunks[0], request)
    finished: dict[str, ScriptResult] = {}
    for _ in range(100):
        progress = provider.poll(ref, finished.keys())
        finished.update((r.instance_id, r) for r in progress.results)
        if progress.pending == [stuck.instance_id]:
            break
        time.sleep(0.05)

    expired = provider.expire(ref, [stuck.instance_id])

    assert [r.status for r in expired] == [ResultStatus.TIMED_OUT]
    assert "no final status by the run's deadline" in expired[0].error
    assert "cancelled" in expired[0].error and expired[0].command_id == ref.command_id
    invocation = fleet.world.command(ref.command_id).invocations[stuck.instance_id]
    assert invocation.outcome is not None and invocation.outcome.status == "Cancelled"
    assert finished[fine.instance_id].status is ResultStatus.SUCCESS


def test_agents_that_go_away_after_the_precheck(fleet: Fleet):
    late, gone, fine = fleet.add(3, HOME_ACCOUNT, "us-east-1")
    provider = fleet.provider()
    request = ScriptRequest(script=SIZED_OUTPUT, delivery_timeout_seconds=30)
    plan = provider.prepare(targets_of([late, gone, fine]), request)
    fleet.world.command_delay(pending=0.05, delivery_timeout=0.3)
    fleet.world.set_offline(late.instance_id)
    fleet.world.set_offline(gone.instance_id, outcome="Undeliverable")

    results = provider.collect(provider.send(plan.chunks[0], request))

    by_id = {r.instance_id: r for r in results}
    assert by_id[late.instance_id].status is ResultStatus.UNDELIVERABLE
    assert "could not deliver within 30 s" in by_id[late.instance_id].error
    assert by_id[gone.instance_id].status is ResultStatus.UNDELIVERABLE
    assert gone.instance_id in by_id[gone.instance_id].error
    assert by_id[fine.instance_id].status is ResultStatus.SUCCESS


def test_ssm_refusing_the_platform_gives_skipped(fleet: Fleet):
    windows = fleet.world.add_instance(HOME_ACCOUNT, "us-east-1", platform="windows")
    provider = fleet.provider()
    request = ScriptRequest(script="echo hi")
    # Sent as the target list claimed (Linux), past a pre-check that would have caught it.
    target = targets_of([windows], platform=Platform.LINUX)[0]
    chunk = Chunk(key="k", account_id=HOME_ACCOUNT, region="us-east-1", targets=[target])

    [result] = provider.collect(provider.send(chunk, request))

    assert result.status is ResultStatus.SKIPPED
    assert "platform" in result.error


def test_send_passes_the_request_through(fleet: Fleet):
    instances = fleet.add(2, HOME_ACCOUNT, "us-east-1")
    provider = fleet.provider()
    request = ScriptRequest(
        script="echo one\necho two",
        timeout_seconds=45,
        delivery_timeout_seconds=120,
        comment="CHG0042 run 7",
        max_concurrency="50%",
        max_errors="1",
    )
    results, _ = run_steps(provider, targets_of(instances), request)

    command = fleet.world.commands[0]
    assert command.document.name == "AWS-RunShellScript"
    assert command.execution_timeout == 45 and command.delivery_timeout == 120
    # The request's comment, then the marker that finds the command of this chunk again.
    assert re.fullmatch(r"CHG0042 run 7 #[0-9a-f]{20}", command.comment)
    assert (command.max_concurrency, command.max_errors) == ("50%", "1")
    assert [r.stdout for r in results] == ["one\ntwo\n"] * 2


def test_python_runs_through_the_shell_document(fleet: Fleet):
    [instance] = fleet.add(1, HOME_ACCOUNT, "us-east-1")
    provider = fleet.provider()
    script = "import os, sys\nprint(os.environ['AWS_SSM_INSTANCE_ID'])\nsys.exit(5)"

    result = provider.execute_script(targets_of([instance])[0], script, "python")

    assert result.status is ResultStatus.FAILED and result.exit_code == 5
    assert result.stdout == f"{instance.instance_id}\n"


def test_partition_mismatch_refuses_the_group_before_any_call(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
):
    # Commercial keys on the block, and nothing at all for GovCloud (no default chain either).
    # (emptied rather than removed: mock_aws puts back what it found when it stops)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "")
    gov = fleet.add(2, GOV_ACCOUNT, "us-gov-west-1")
    com = fleet.add(2, HOME_ACCOUNT, "us-east-1")
    provider = fleet.provider(gov=False)

    batch = provider.execute_script_batch(targets_of(gov + com), SIZED_OUTPUT)

    by_id = {r.instance_id: r for r in batch.results}
    for instance in gov:
        assert by_id[instance.instance_id].status is ResultStatus.ERROR
        assert "us-gov-west-1" in by_id[instance.instance_id].error
        assert "nothing was sent" in by_id[instance.instance_id].error
    for instance in com:
        assert by_id[instance.instance_id].status is ResultStatus.SUCCESS
    assert not [r for r in fleet.world.requests if r.region.startswith("us-gov-")]


def test_a_role_that_cannot_be_assumed_fails_only_that_account(fleet: Fleet):
    stranger = fleet.add(2, "444444444444", "us-east-1")
    home = fleet.add(2, HOME_ACCOUNT, "us-east-1")
    provider = fleet.provider()

    batch = provider.execute_script_batch(targets_of(stranger + home), SIZED_OUTPUT)

    by_id = {r.instance_id: r for r in batch.results}
    for instance in stranger:
        result = by_id[instance.instance_id]
        assert result.status is ResultStatus.ERROR
        assert "444444444444" in result.error and "OrganizationAccountAccessRole" in result.error
        assert fleet.com_keys.secret_access_key not in result.error
    assert all(by_id[i.instance_id].status is ResultStatus.SUCCESS for i in home)
    # Nothing ran in that account with the base credentials instead.
    assert not [r for r in fleet.world.requests if r.service == "ssm" and r.account != HOME_ACCOUNT]


def test_throttling_past_botocores_retries_is_transient_and_sends_nothing(fleet: Fleet):
    instances = fleet.add(2, HOME_ACCOUNT, "us-east-1")
    provider = fleet.provider(max_attempts=2)
    request = ScriptRequest(script=SIZED_OUTPUT)
    plan = provider.prepare(targets_of(instances), request)
    fleet.world.fail_next("SendCommand", code="ThrottlingException", times=5)

    with pytest.raises(AwsError) as raised:
        provider.send(plan.chunks[0], request)

    assert raised.value.transient and raised.value.code == "ThrottlingException"
    # AWS refused it, so it created nothing: sending it again cannot run the script twice.
    assert raised.value.safe_to_repeat
    assert "account 111111111111 region us-east-1" in str(raised.value)
    assert not fleet.world.send_commands_per_instance


def test_a_send_throttled_past_botocores_retries_is_sent_again_once(fleet: Fleet):
    instances = fleet.add(3, HOME_ACCOUNT, "us-east-1")
    # max_attempts=2: three HTTP attempts per send, so the first send fails as a whole.
    provider = fleet.provider(max_attempts=2)
    fleet.world.fail_next("SendCommand", code="ThrottlingException", times=4)

    batch = provider.execute_script_batch(targets_of(instances), SIZED_OUTPUT)

    assert [r.status for r in batch.results] == [ResultStatus.SUCCESS] * 3
    assert fleet.calls("SendCommand") == 5
    assert set(fleet.world.send_commands_per_instance.values()) == {1}


def test_a_send_whose_answer_was_lost_is_found_and_runs_once(fleet: Fleet):
    instances = fleet.add(2, HOME_ACCOUNT, "us-east-1")
    # SSM accepts the command; the connection closes before its answer arrives.
    fleet.world.lose_answers("SendCommand")

    batch = fleet.provider().execute_script_batch(targets_of(instances), SIZED_OUTPUT)

    assert [r.status for r in batch.results] == [ResultStatus.SUCCESS] * 2
    # botocore did not repeat it on its own, and the engine did not send it again: it found
    # the command in SSM's history by the chunk marker at the end of its comment.
    assert fleet.calls("SendCommand") == 1
    assert set(fleet.world.send_commands_per_instance.values()) == {1}
    assert fleet.calls("ListCommands") == 1
    [command] = fleet.world.commands
    assert {r.command_id for r in batch.results} == {command.command_id}


def test_find_sent_picks_the_chunks_own_command_by_the_marker_in_its_comment(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(aws_provider, "SEND_LOOKUP_SETTLE", timedelta(0))
    instances = fleet.add(2, HOME_ACCOUNT, "us-east-1")
    provider = fleet.provider()
    since = datetime.now(UTC)
    # Two runs' commands to the same instances, and a chunk of a third that was never sent.
    mine, theirs, unsent = (
        ScriptRequest(script=SIZED_OUTPUT, comment=f"CHG0042 run-script {name}")
        for name in ("mine", "theirs", "unsent")
    )
    [chunk] = provider.prepare(targets_of(instances), mine).chunks
    [their_chunk] = provider.prepare(targets_of(instances), theirs).chunks
    [unsent_chunk] = provider.prepare(targets_of(instances), unsent).chunks
    sent = provider.send(chunk, mine)
    provider.send(their_chunk, theirs)

    found = provider.find_sent(chunk, mine, since)

    assert found is not None and found.command_id == sent.command_id
    assert found.instance_ids == sent.instance_ids and found.deadline > found.sent_at
    assert provider.find_sent(unsent_chunk, unsent, since) is None
    assert fleet.calls("ListCommands") == 2
    # The lookup asks SSM where the chunk was sent.
    assert {r.region for r in fleet.world.requests if r.operation == "ListCommands"} == {
        "us-east-1"
    }
