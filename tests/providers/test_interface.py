"""What every provider shares (``providers.base``): batch status, result statuses, errors,
and the provider-side checks flows rely on instead of asking which provider they have."""

from __future__ import annotations

import pytest

from providers import base
from providers.aws import errors as aws_errors
from providers.aws.config import AwsProviderConfig
from providers.aws.provider import AwsProvider
from providers.aws.settings import LegacyCredentials
from providers.base import (
    BatchResult,
    BatchStatus,
    ResultStatus,
    ScriptResult,
    Target,
)
from providers.local import LocalProvider


@pytest.mark.parametrize(
    ("succeeded", "failed", "status"),
    [
        (3, 0, BatchStatus.SUCCESS),
        (2, 1, BatchStatus.PARTIAL),
        (0, 3, BatchStatus.FAILED),
        (0, 0, BatchStatus.FAILED),  # nothing ran: nothing was shown to work
    ],
)
def test_batch_status_of_the_counts(succeeded: int, failed: int, status: BatchStatus) -> None:
    assert BatchStatus.of(succeeded, failed) is status


def test_batch_status_refuses_negative_counts() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        BatchStatus.of(-1, 2)


def test_a_batch_counts_every_status_but_success_as_a_failure() -> None:
    def result(instance_id: str, status: ResultStatus) -> ScriptResult:
        return ScriptResult(instance_id=instance_id, status=status)

    batch = BatchResult.from_results(
        [result("i-2", ResultStatus.SUCCESS), result("i-1", ResultStatus.SKIPPED)]
    )

    assert (batch.status, batch.success_count, batch.failure_count) == (BatchStatus.PARTIAL, 1, 1)
    assert [r.instance_id for r in batch.results] == ["i-1", "i-2"]
    assert BatchResult.from_results([]).status is BatchStatus.FAILED


def test_reached_means_the_script_ran_to_an_exit_code() -> None:
    reached = {s for s in ResultStatus if s.reached}
    assert reached == {ResultStatus.SUCCESS, ResultStatus.FAILED}


def test_aws_errors_are_the_generic_ones_flows_catch() -> None:
    missing = aws_errors.MissingCredentialsError("no keys for gov")
    refused = aws_errors.CredentialError("throttled by STS", transient=True, code="Throttling")

    assert isinstance(missing, base.MissingCredentialsError)
    assert isinstance(missing, base.CredentialError) and isinstance(missing, aws_errors.AwsError)
    assert isinstance(refused, base.CredentialError)
    assert not isinstance(refused, base.MissingCredentialsError)
    # Resolving credentials sends nothing, so a step that failed on them may be repeated.
    assert base.is_transient(refused) and base.is_safe_to_resend(refused)
    assert (refused.code, str(refused)) == ("Throttling", "throttled by STS")


def aws() -> AwsProvider:
    config = AwsProviderConfig(max_concurrent_groups=3)
    return AwsProvider(config, legacy=LegacyCredentials(_env_file=None))


def test_aws_refuses_what_is_no_ec2_instance_before_any_call() -> None:
    provider = aws()
    good = Target(instance_id="i-0123456789abcdef0", account_id="012345678901", region="us-east-1")

    assert provider.target_problem(good) is None
    assert "not an EC2 instance id" in (
        provider.target_problem(good.model_copy(update={"instance_id": "localhost"})) or ""
    )
    assert "leading zeros" in (
        provider.target_problem(good.model_copy(update={"account_id": "12345678901"})) or ""
    )
    assert provider.max_concurrent_groups == 3


def test_local_refuses_every_machine_but_this_one() -> None:
    provider = LocalProvider()

    assert provider.target_problem(LocalProvider.TARGET) is None
    assert provider.target_problem(Target(instance_id="localhost")) is None
    problem = provider.target_problem(
        Target(instance_id="i-0123456789abcdef0", account_id="012345678901", region="us-east-1")
    )
    assert problem is not None and "run it with the aws provider" in problem
    assert provider.max_concurrent_groups == base.DEFAULT_MAX_CONCURRENT_GROUPS
