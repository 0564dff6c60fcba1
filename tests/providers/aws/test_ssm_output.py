"""Where a long output comes from when SSM's listing cut it, and what happens when it cannot
be read: S3 with and without ``s3:ListBucket``, S3 refused altogether, and a poll that fails
for good half-way through a command. Whatever happens to one invocation is that instance's
result alone: its neighbours in the chunk keep theirs."""

from __future__ import annotations

import boto3
import pytest

from providers.aws.provider import AwsProvider
from providers.base import (
    CollectInterrupted,
    CommandProgress,
    ResultStatus,
    ScriptRequest,
    ScriptResult,
)
from tests.providers.aws.ssm_fixtures import HOME_ACCOUNT, Fleet, targets_of
from tests.providers.aws.test_ssm_engine import SIZED_OUTPUT, run_steps

BUCKET = "ops-run-output"


def bucket_provider(fleet: Fleet) -> AwsProvider:
    """A provider whose commands write their output to ``BUCKET`` (created here)."""
    boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id=fleet.com_keys.access_key_id,
        aws_secret_access_key=fleet.com_keys.secret_access_key,
    ).create_bucket(Bucket=BUCKET)
    return fleet.provider(output_s3_bucket=BUCKET, output_s3_prefix="runs")


def sized(fleet: Fleet, *sizes: tuple[int, int]) -> list[str]:
    """One instance per ``(stdout, stderr)`` size; their ids, in order."""
    instances = fleet.add(len(sizes), HOME_ACCOUNT, "us-east-1")
    for instance, (out, err) in zip(instances, sizes, strict=True):
        instance.write_file("/etc/sizes", f"{out} {err}\n")
    return [i.instance_id for i in instances]


def run_all(fleet: Fleet, provider: AwsProvider) -> dict[str, ScriptResult]:
    targets = targets_of([fleet.world.instance(i) for i in _ids(fleet)])
    results, _ = run_steps(provider, targets, ScriptRequest(script=SIZED_OUTPUT))
    return {r.instance_id: r for r in results}


def _ids(fleet: Fleet) -> list[str]:
    return [i.instance_id for i in fleet.world.instances_in(HOME_ACCOUNT, "us-east-1")]


def whole(result: ScriptResult, stdout: int, stderr: int) -> None:
    """``result`` succeeded with all of its output, uncut and with no note."""
    assert result.status is ResultStatus.SUCCESS, result.error
    assert (len(result.stdout), len(result.stderr)) == (stdout, stderr)
    assert not result.stdout_truncated and not result.stderr_truncated
    assert result.error is None


def test_without_list_bucket_an_absent_stderr_object_is_empty_output(fleet: Fleet):
    provider = bucket_provider(fleet)
    # A least-privilege caller: S3 answers 403, not 404, for the stderr object the agent
    # never wrote (the script wrote nothing on stderr).
    fleet.world.deny_list_bucket(BUCKET)
    quiet, loud, short = sized(fleet, (26_000, 0), (30_000, 9_000), (10, 0))

    results = run_all(fleet, provider)

    whole(results[quiet], 26_000, 0)
    whole(results[loud], 30_000, 9_000)
    whole(results[short], 10, 0)
    refused = [r for r in fleet.world.requests if r.answered_by == "denied:AccessDenied"]
    assert len(refused) == 1  # the quiet one's stderr, asked once
    # Its stderr was confirmed empty by GetCommandInvocation, the only one needed.
    assert fleet.calls("GetCommandInvocation") == 1


def test_output_s3_will_not_give_comes_from_get_command_invocation_not_the_listing(
    fleet: Fleet,
):
    provider = bucket_provider(fleet)
    fleet.world.deny_get_object(BUCKET)
    long_out, long_err = sized(fleet, (30_000, 0), (100, 9_000))

    results = run_all(fleet, provider)

    # 24,000 and 8,000 characters: GetCommandInvocation's caps, never the listing's 2,500.
    assert results[long_out].stdout == "o" * 24_000 and results[long_out].stdout_truncated
    assert results[long_err].stderr == "e" * 8_000 and results[long_err].stderr_truncated
    assert results[long_err].stdout == "o" * 100 and not results[long_err].stdout_truncated
    assert all(r.status is ResultStatus.SUCCESS for r in results.values())
    assert fleet.calls("GetCommandInvocation") == 2


def test_an_empty_stdout_with_a_long_stderr_comes_whole_from_s3(fleet: Fleet):
    provider = bucket_provider(fleet)
    [only_errors] = sized(fleet, (0, 9_000))

    results = run_all(fleet, provider)

    # The listing starts with SSM's stderr marker, so stdout was empty: no stdout object is
    # missing, and the stderr object holds all 9,000 characters.
    whole(results[only_errors], 0, 9_000)
    assert fleet.calls("GetCommandInvocation") == 0


def test_a_poll_that_fails_for_good_keeps_the_results_already_final(fleet: Fleet):
    fast, slow = fleet.add(2, HOME_ACCOUNT, "us-east-1")
    slow.write_file("/etc/slow", "")
    script = '[ -f "$CLOUDOPS_ROOT/etc/slow" ] && sleep 2; echo done'
    provider = fleet.provider()
    request = ScriptRequest(script=script)
    [chunk] = provider.prepare(targets_of([fast, slow]), request).chunks
    ref = provider.send(chunk, request)
    armed: list[bool] = []

    def refuse_polls_once_one_is_final(progress: CommandProgress) -> None:
        # The caller's permission to read the command is taken away mid-run.
        if progress.results and not armed:
            armed.append(True)
            fleet.world.fail_next("ListCommandInvocations", code="AccessDeniedException")

    with pytest.raises(CollectInterrupted) as stopped:
        provider.collect(ref, on_progress=refuse_polls_once_one_is_final)

    assert "AccessDeniedException" in str(stopped.value) and not stopped.value.transient
    [kept] = stopped.value.results
    assert (kept.instance_id, kept.status, kept.stdout) == (
        fast.instance_id,
        ResultStatus.SUCCESS,
        "done\n",
    )


def test_the_engine_keeps_the_results_of_a_command_that_became_unreadable(fleet: Fleet):
    fast, slow = fleet.add(2, HOME_ACCOUNT, "us-east-1")
    slow.write_file("/etc/slow", "")
    script = '[ -f "$CLOUDOPS_ROOT/etc/slow" ] && sleep 2; echo done'
    # Every poll from the fourth on is refused: the fast one is final by then, the slow
    # one is not (its script sleeps for 2 s, a poll comes every 0.05 to 0.2 s).
    fleet.world.fail_next("ListCommandInvocations", code="AccessDeniedException", after=3, times=50)

    batch = fleet.provider().execute_script_batch(targets_of([fast, slow]), script)

    by_id = {r.instance_id: r for r in batch.results}
    assert by_id[fast.instance_id].status is ResultStatus.SUCCESS
    lost = by_id[slow.instance_id]
    assert lost.status is ResultStatus.ERROR and lost.command_id
    assert "results could not be read" in (lost.error or "")
    assert "AccessDeniedException" in (lost.error or "")


def test_one_unreadable_output_is_that_instances_note_alone(fleet: Fleet):
    provider = bucket_provider(fleet)
    fleet.world.deny_get_object(BUCKET)
    long_ones = sized(fleet, (5_000, 0), (30_000, 0))
    [short] = sized(fleet, (10, 0))
    # S3 refuses every read, and GetCommandInvocation refuses the first instance asked.
    fleet.world.fail_next("GetCommandInvocation", code="AccessDeniedException")

    results = run_all(fleet, provider)

    assert {r.status for r in results.values()} == {ResultStatus.SUCCESS}
    [noted] = [r for r in results.values() if r.error]
    [other] = [results[i] for i in long_ones if i != noted.instance_id]
    # The last resort for that one instance: the listing's first 2,500 characters, said so.
    assert "AccessDeniedException" in (noted.error or "") and noted.stdout_truncated
    assert len(noted.stdout) == 2_500
    assert len(other.stdout) == min(24_000, 5_000 if other.instance_id == long_ones[0] else 30_000)
    assert results[short].stdout == "o" * 10
