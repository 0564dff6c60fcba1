"""validate-credentials end to end: legacy variables per partition, block secrets first,
refusals without retries, throttling retried, and no secret anywhere a person could see."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from pydantic import SecretStr

from blocks import AwsProviderBlock
from flows.credentials.flow import CredentialsRefusedError, validate_credentials
from providers.aws.config import AwsProviderConfig
from providers.aws.provider import AwsProvider
from tests.prefect_artifacts import read_artifacts
from tests.providers.aws.credential_fixtures import AwsWire, iam_user_keys

pytestmark = pytest.mark.usefixtures("prefect_server", "moto_aws", "data_dir")

SECRET = "s3cr3t/Visible+If+Leaked0123456789abcdefgh"
TOKEN = "T0k3n-Visible-If-Leaked-" + "x" * 40


def _legacy(monkeypatch: pytest.MonkeyPatch, env: str, key: str, secret: str, token: str = ""):
    monkeypatch.setenv(f"AWS_ACCESS_KEY_ID_{env.upper()}", key)
    monkeypatch.setenv(f"AWS_SECRET_ACCESS_KEY_{env.upper()}", secret)
    if token:
        monkeypatch.setenv(f"AWS_SESSION_TOKEN_{env.upper()}", token)


def test_com_and_gov_from_legacy_variables_each_in_its_partition(
    monkeypatch: pytest.MonkeyPatch, aws_wire: AwsWire
) -> None:
    _legacy(monkeypatch, "com", "AKIACOMEXAMPLE000001", SECRET, TOKEN)
    _legacy(monkeypatch, "gov", "AKIAGOVEXAMPLE000001", SECRET, TOKEN)

    result = validate_credentials(environments=["com", "gov"], provider="aws")

    by_env = {c.environment.value: c for c in result.checks}
    assert by_env["com"].status == "valid" and by_env["gov"].status == "valid"
    assert by_env["com"].identity.arn.startswith("arn:aws:")
    assert by_env["gov"].identity.arn.startswith("arn:aws-us-gov:")
    assert {c.identity.source.value for c in result.checks} == {"env"}
    hosts = {call.url.split("/")[2] for call in aws_wire.calls("GetCallerIdentity")}
    assert hosts == {"sts.us-east-1.amazonaws.com", "sts.us-gov-west-1.amazonaws.com"}


def test_an_environment_without_credentials_is_reported_not_crashed_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _legacy(monkeypatch, "com", "AKIACOMEXAMPLE000001", SECRET)

    result = validate_credentials(environments=["com", "gov"], provider="aws")

    by_env = {c.environment.value: c for c in result.checks}
    assert by_env["com"].status == "valid"
    assert by_env["gov"].status == "not_configured"
    assert "AWS_ACCESS_KEY_ID_GOV" in by_env["gov"].problem


def test_block_secrets_win_over_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    key_id, secret = iam_user_keys("from-block")
    _legacy(monkeypatch, "com", "AKIAFROMVARIABLES001", SECRET)
    block = AwsProviderBlock(
        environment="com", access_key_id=SecretStr(key_id), secret_access_key=SecretStr(secret)
    )
    block.save("prod-com", overwrite=True)
    try:
        result = validate_credentials(environments=["com"], provider="aws-provider/prod-com")
    finally:
        AwsProviderBlock.delete("prod-com")

    [check] = result.checks
    assert check.identity.source.value == "block"
    assert check.identity.arn.endswith(":user/from-block")


def test_refused_keys_fail_the_run_at_once_without_retries(
    monkeypatch: pytest.MonkeyPatch, aws_wire: AwsWire
) -> None:
    _legacy(monkeypatch, "com", "AKIACOMEXAMPLE000001", SECRET)
    aws_wire.fail("GetCallerIdentity", "InvalidClientTokenId", times=50, status=403)

    with pytest.raises(CredentialsRefusedError, match="com"):
        validate_credentials(environments=["com"], provider="aws")

    assert len(aws_wire.calls("GetCallerIdentity")) == 1


def test_throttled_sts_is_retried_and_succeeds(
    monkeypatch: pytest.MonkeyPatch, aws_wire: AwsWire
) -> None:
    _legacy(monkeypatch, "com", "AKIACOMEXAMPLE000001", SECRET)
    aws_wire.fail("GetCallerIdentity", "Throttling", times=2)

    result = validate_credentials(environments=["com"], provider="aws")

    assert result.checks[0].status == "valid"
    assert len(aws_wire.calls("GetCallerIdentity")) == 3


def test_secrets_appear_nowhere_a_person_can_see(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _legacy(monkeypatch, "com", "AKIACOMEXAMPLE000001", SECRET, TOKEN)
    _legacy(monkeypatch, "gov", "AKIAGOVEXAMPLE000001", "wrong-" + SECRET, TOKEN)
    state = validate_credentials(environments=["com", "gov"], provider="aws", return_state=True)

    seen = [caplog.text, repr(state)]
    if state.is_completed():
        seen.append(state.result().model_dump_json())
    else:
        with pytest.raises(Exception) as raised:
            state.result()
        seen.append(str(raised.value))
    with get_client(sync_client=True) as client:
        flow_run_id = state.state_details.flow_run_id
        seen += [a.model_dump_json() for a in read_artifacts(flow_run_id=flow_run_id)]
        seen += [
            log.message
            for log in client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
        ]
        [run] = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        seen.append(run.model_dump_json())
    text = "\n".join(seen)
    assert SECRET not in text
    assert TOKEN not in text


def test_provider_object_from_legacy_variables_refuses_gov_region_with_com_keys(
    monkeypatch: pytest.MonkeyPatch, aws_wire: AwsWire
) -> None:
    _legacy(monkeypatch, "com", "AKIACOMEXAMPLE000001", SECRET)
    provider = AwsProvider(AwsProviderConfig())

    from providers.aws.errors import PartitionMismatchError

    with pytest.raises(PartitionMismatchError):
        provider.resolver.credentials_for("us-gov-west-1", "123456789012")
    assert aws_wire.calls() == []
