"""Credential resolution against moto: sources and their order, partitions, assumed roles,
caching, failures and their classification, and secrets kept out of every output.

moto facts these tests lean on: STS answers in the partition of the endpoint's region
(``arn:aws-us-gov:...`` from ``sts.us-gov-west-1.amazonaws.com``); unknown keys act as
``arn:<partition>:sts::123456789012:user/moto`` unless IAM authentication is switched on;
AssumeRole needs no existing role and the new credentials belong to the account in the role
ARN.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from moto.core.authorization import enable_iam_authentication
from pydantic import SecretStr

from providers.aws.config import AwsProviderConfig
from providers.aws.credentials import CredentialResolver, sanitize_session_name
from providers.aws.errors import (
    AwsError,
    CredentialError,
    MissingCredentialsError,
    PartitionMismatchError,
)
from providers.aws.settings import LegacyCredentials
from providers.base import CredentialSource
from providers.partitions import Environment
from tests.providers.aws.credential_fixtures import AwsWire, ManualClock, iam_user_keys

GOV_ACCOUNT = "210987654321"
COM_ACCOUNT = "111122223333"


def legacy(**values: str) -> LegacyCredentials:
    """Legacy variables as given, ignoring the process environment's ``.env``."""
    return LegacyCredentials(_env_file=None, **values)


def both_environments() -> LegacyCredentials:
    return legacy(
        aws_access_key_id_com="AKIACOMLEGACY",
        aws_secret_access_key_com="com-legacy-secret",
        aws_access_key_id_gov="AKIAGOVLEGACY",
        aws_secret_access_key_gov="gov-legacy-secret",
    )


def block(**values: object) -> AwsProviderConfig:
    return AwsProviderConfig(**values)


# -- sources ----------------------------------------------------------------------------------


def test_com_and_gov_legacy_variables_each_verified_in_their_own_partition(
    moto_aws: None, aws_wire: AwsWire
) -> None:
    resolver = CredentialResolver(block(), legacy=both_environments())

    com = resolver.report(Environment.COM)
    gov = resolver.report(Environment.GOV)

    assert (com.source, com.partition) == (CredentialSource.ENV, "aws")
    assert com.arn.startswith("arn:aws:sts::")
    # moto derives the partition from the endpoint asked, so this ARN proves the GovCloud keys
    # went to GovCloud's regional STS and nowhere else.
    assert (gov.source, gov.partition) == (CredentialSource.ENV, "aws-us-gov")
    assert gov.arn.startswith("arn:aws-us-gov:sts::")
    urls = [(r.params["Action"], r.url) for r in aws_wire.calls("GetCallerIdentity")]
    assert urls == [
        ("GetCallerIdentity", "https://sts.us-east-1.amazonaws.com/"),
        ("GetCallerIdentity", "https://sts.us-gov-west-1.amazonaws.com/"),
    ]


def test_sts_is_asked_in_the_first_default_region_of_the_partition(
    moto_aws: None, aws_wire: AwsWire
) -> None:
    config = block(default_regions=("eu-west-1", "us-gov-east-1"))
    resolver = CredentialResolver(config, legacy=both_environments())

    assert resolver.report("gov").region == "us-gov-east-1"
    assert resolver.report("com").region == "eu-west-1"
    assert [r.url for r in aws_wire.calls()] == [
        "https://sts.us-gov-east-1.amazonaws.com/",
        "https://sts.eu-west-1.amazonaws.com/",
    ]


def test_block_keys_win_over_legacy_variables_for_the_block_environment_only(
    moto_aws: None,
) -> None:
    block_key, block_secret = iam_user_keys("block-user")
    legacy_key, legacy_secret = iam_user_keys("legacy-user")
    config = block(
        environment="com",
        access_key_id=SecretStr(block_key),
        secret_access_key=SecretStr(block_secret),
    )
    variables = legacy(
        aws_access_key_id_com=legacy_key,
        aws_secret_access_key_com=legacy_secret,
        aws_access_key_id_gov="AKIAGOVLEGACY",
        aws_secret_access_key_gov="gov-legacy-secret",
    )
    resolver = CredentialResolver(config, legacy=variables)

    com = resolver.resolve("com")
    gov = resolver.resolve("gov")

    assert com.source is CredentialSource.BLOCK
    assert com.arn == "arn:aws:iam::123456789012:user/block-user"
    assert gov.source is CredentialSource.ENV
    assert gov.access_key_id.get_secret_value() == "AKIAGOVLEGACY"


def test_legacy_variables_are_read_from_a_dotenv_file(moto_aws: None, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "AWS_ACCESS_KEY_ID_GOV=AKIAFROMDOTENV\nAWS_SECRET_ACCESS_KEY_GOV=dotenv-secret\n"
    )
    resolver = CredentialResolver(block())  # reads the process environment and ./.env

    gov = resolver.resolve("gov")

    assert gov.source is CredentialSource.ENV
    assert gov.access_key_id.get_secret_value() == "AKIAFROMDOTENV"
    assert gov.partition == "aws-us-gov"


def test_half_a_key_pair_on_the_block_is_refused_with_the_missing_field(moto_aws: None) -> None:
    resolver = CredentialResolver(
        block(access_key_id=SecretStr("AKIAONLYHALF")), legacy=both_environments()
    )

    with pytest.raises(CredentialError, match="secret_access_key is empty") as raised:
        resolver.resolve("com")
    assert raised.value.transient is False


def test_named_profile_of_the_right_partition_is_used(moto_aws: None, no_ambient_aws: Path) -> None:
    write_profile(no_ambient_aws, "gov-ops", region="us-gov-west-1")
    resolver = CredentialResolver(block(profile_name="gov-ops"), legacy=legacy())

    gov = resolver.resolve("gov")

    assert gov.source is CredentialSource.PROFILE
    assert gov.partition == "aws-us-gov"
    assert gov.access_key_id.get_secret_value() == "AKIAPROFILEKEY"


def test_profile_of_the_other_partition_is_not_configured_and_never_sent_there(
    moto_aws: None, no_ambient_aws: Path, aws_wire: AwsWire
) -> None:
    write_profile(no_ambient_aws, "com-ops", region="us-east-1")
    resolver = CredentialResolver(block(profile_name="com-ops"), legacy=legacy())

    with pytest.raises(MissingCredentialsError) as raised:
        resolver.resolve("gov")

    message = str(raised.value)
    assert "the AWS profile 'com-ops'" in message
    assert "belong to partition aws (their region is us-east-1)" in message
    assert "none for gov (partition aws-us-gov)" in message
    assert raised.value.transient is False
    assert aws_wire.calls() == []  # decided from the profile's region, not by asking GovCloud
    assert resolver.resolve("com").source is CredentialSource.PROFILE
    assert {call.url for call in aws_wire.calls()} == {"https://sts.us-east-1.amazonaws.com/"}


@pytest.mark.parametrize("region", ["cn-north-1", "us-isob-east-1"])
def test_a_default_chain_of_a_partition_not_served_is_no_credentials_anywhere(
    moto_aws: None, aws_wire: AwsWire, monkeypatch: pytest.MonkeyPatch, region: str
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIACHINAKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "china-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    resolver = CredentialResolver(block(), legacy=legacy())

    for environment in ("com", "gov"):
        with pytest.raises(MissingCredentialsError, match="were not sent"):
            resolver.resolve(environment)
    assert aws_wire.calls() == []


def test_missing_profile_is_named(moto_aws: None) -> None:
    resolver = CredentialResolver(block(profile_name="nope"), legacy=legacy())

    with pytest.raises(CredentialError, match="profile 'nope'"):
        resolver.resolve("com")


def test_default_chain_is_the_last_source(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASTANDARDVARS")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "standard-secret")
    resolver = CredentialResolver(block(), legacy=legacy())

    com = resolver.resolve("com")

    assert com.source is CredentialSource.DEFAULT_CHAIN
    assert com.access_key_id.get_secret_value() == "AKIASTANDARDVARS"


def test_no_source_says_what_was_tried_and_how_to_set_one(
    moto_aws: None, aws_wire: AwsWire
) -> None:
    resolver = CredentialResolver(block(), legacy=legacy())

    with pytest.raises(MissingCredentialsError) as raised:
        resolver.resolve("gov")

    message = str(raised.value)
    for hint in (
        "No AWS credentials for gov",
        "access_key_id",
        "AWS_ACCESS_KEY_ID_GOV",
        "AWS_SECRET_ACCESS_KEY_GOV",
        ".env",
        "profile_name",
        "aws-us-gov",
    ):
        assert hint in message
    assert raised.value.transient is False
    assert aws_wire.calls() == []


# -- partitions -------------------------------------------------------------------------------


@pytest.mark.parametrize("account_id", [None, GOV_ACCOUNT])
@pytest.mark.parametrize("where", ["block", "variables"])
def test_gov_region_with_commercial_only_credentials_is_refused_before_any_call(
    moto_aws: None, aws_wire: AwsWire, where: str, account_id: str | None
) -> None:
    if where == "block":
        config = block(
            environment="com",
            access_key_id=SecretStr("AKIACOMBLOCK"),
            secret_access_key=SecretStr("com-block-secret"),
        )
        resolver = CredentialResolver(config, legacy=legacy())
    else:
        resolver = CredentialResolver(
            block(),
            legacy=legacy(aws_access_key_id_com="AKIACOM", aws_secret_access_key_com="s"),
        )

    with pytest.raises(PartitionMismatchError) as raised:
        resolver.credentials_for("us-gov-west-1", account_id)
    with pytest.raises(PartitionMismatchError):
        resolver.credentials_for("us-gov-east-1", account_id)

    assert "us-gov-west-1" in str(raised.value)
    assert "AWS_ACCESS_KEY_ID_GOV" in str(raised.value)
    assert raised.value.transient is False
    assert aws_wire.calls() == []


def test_a_region_that_is_not_a_region_is_refused_before_any_call(
    moto_aws: None, aws_wire: AwsWire
) -> None:
    resolver = CredentialResolver(block(), legacy=both_environments())

    with pytest.raises(AwsError, match="'useast1' is not an AWS region"):
        resolver.credentials_for("useast1")
    assert aws_wire.calls() == []


# -- assumed roles ----------------------------------------------------------------------------


def test_assume_role_in_gov_builds_the_gov_role_arn_and_passes_the_block_settings(
    moto_aws: None, aws_wire: AwsWire
) -> None:
    config = block(
        role_name="PatchingQC",
        external_id=SecretStr("ext-4242"),
        session_duration_seconds=900,
        session_name="linux-qc-patching-prep/CHG0042 run: brave-otter",
    )
    resolver = CredentialResolver(config, legacy=both_environments())

    assumed = resolver.credentials_for("us-gov-east-1", GOV_ACCOUNT)

    (sent,) = aws_wire.calls("AssumeRole")
    assert sent.params["RoleArn"] == f"arn:aws-us-gov:iam::{GOV_ACCOUNT}:role/PatchingQC"
    assert sent.params["ExternalId"] == "ext-4242"
    assert sent.params["DurationSeconds"] == "900"
    assert sent.params["RoleSessionName"] == "linux-qc-patching-prep-CHG0042-run--brave-otter"
    assert sent.url == "https://sts.us-gov-west-1.amazonaws.com/"
    assert assumed.account_id == GOV_ACCOUNT
    assert assumed.role_arn == sent.params["RoleArn"]
    assert assumed.arn.startswith(f"arn:aws-us-gov:sts::{GOV_ACCOUNT}:assumed-role/PatchingQC/")
    assert assumed.expiry is not None
    session = resolver.credentials_for("us-gov-east-1", GOV_ACCOUNT).boto3_session("us-gov-east-1")
    identity = session.client("sts").get_caller_identity()
    assert identity["Account"] == GOV_ACCOUNT


def test_caller_account_gets_the_base_credentials_without_assuming(
    moto_aws: None, aws_wire: AwsWire
) -> None:
    resolver = CredentialResolver(block(), legacy=both_environments())
    base = resolver.resolve("com")

    assert resolver.credentials_for("us-west-2", base.account_id) == base
    assert resolver.credentials_for("us-west-2") == base
    assert aws_wire.calls("AssumeRole") == []


def test_assumed_credentials_are_reused_until_near_expiry_then_refreshed(
    moto_aws: None, aws_wire: AwsWire
) -> None:
    clock = ManualClock()
    config = block(session_duration_seconds=900)
    resolver = CredentialResolver(config, legacy=both_environments(), clock=clock)

    first = resolver.credentials_for("us-east-1", COM_ACCOUNT)
    assert len(aws_wire.calls("AssumeRole")) == 1

    clock.advance(timedelta(minutes=9))  # 6 minutes left: more than the 5-minute margin
    assert resolver.credentials_for("eu-west-1", COM_ACCOUNT) is first
    assert len(aws_wire.calls("AssumeRole")) == 1

    clock.advance(timedelta(minutes=1, seconds=5))  # inside the margin
    second = resolver.credentials_for("us-east-1", COM_ACCOUNT)
    assert len(aws_wire.calls("AssumeRole")) == 2
    assert second.access_key_id != first.access_key_id

    clock.advance(timedelta(days=3))  # base keys without expiry stay cached for good
    resolver.credentials_for("us-east-1")
    assert len(aws_wire.calls("GetCallerIdentity")) == 1


def test_invalidate_drops_base_and_assumed_credentials_of_that_environment(
    moto_aws: None, aws_wire: AwsWire
) -> None:
    resolver = CredentialResolver(block(), legacy=both_environments())
    resolver.credentials_for("us-east-1", COM_ACCOUNT)
    resolver.credentials_for("us-gov-west-1", GOV_ACCOUNT)

    resolver.invalidate("gov")
    resolver.credentials_for("us-east-1", COM_ACCOUNT)
    resolver.credentials_for("us-gov-west-1", GOV_ACCOUNT)

    assumed_in = [r.url for r in aws_wire.calls("AssumeRole")]
    assert assumed_in.count("https://sts.us-gov-west-1.amazonaws.com/") == 2
    assert assumed_in.count("https://sts.us-east-1.amazonaws.com/") == 1
    assert len(aws_wire.calls("GetCallerIdentity")) == 3


def test_refused_assume_role_names_account_and_role_and_never_falls_back(
    moto_aws: None, aws_wire: AwsWire
) -> None:
    key, secret = iam_user_keys("no-assume-rights")
    resolver = CredentialResolver(
        block(), legacy=legacy(aws_access_key_id_com=key, aws_secret_access_key_com=secret)
    )
    role_arn = f"arn:aws:iam::{COM_ACCOUNT}:role/OrganizationAccountAccessRole"

    with enable_iam_authentication():
        with pytest.raises(CredentialError) as raised:
            resolver.credentials_for("us-east-1", COM_ACCOUNT)
        # Asked again, it still refuses: never the base credentials instead.
        with pytest.raises(CredentialError):
            resolver.credentials_for("us-east-1", COM_ACCOUNT)

    message = str(raised.value)
    assert COM_ACCOUNT in message and role_arn in message and "(com)" in message
    assert "AccessDenied" in message
    assert "never used in its place" in message
    assert raised.value.code == "AccessDenied"
    assert raised.value.transient is False
    # Both attempts went to AssumeRole again: no refusal was cached as a success.
    assert len(aws_wire.calls("AssumeRole")) == 2


def test_assume_role_with_expired_base_credentials_drops_them_and_is_transient(
    moto_aws: None, aws_wire: AwsWire
) -> None:
    resolver = CredentialResolver(block(), legacy=both_environments())
    aws_wire.fail("AssumeRole", "ExpiredToken")

    with pytest.raises(CredentialError) as raised:
        resolver.credentials_for("us-gov-west-1", GOV_ACCOUNT)
    assert raised.value.transient is True

    resolver.credentials_for("us-gov-west-1", GOV_ACCOUNT)
    assert len(aws_wire.calls("GetCallerIdentity")) == 2


def test_concurrent_callers_share_one_resolution(moto_aws: None, aws_wire: AwsWire) -> None:
    resolver = CredentialResolver(block(), legacy=both_environments())
    start = threading.Barrier(8)
    results = []

    def call() -> None:
        start.wait()
        results.append(resolver.credentials_for("us-gov-west-1", GOV_ACCOUNT))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 8 and all(r is results[0] for r in results)
    assert len(aws_wire.calls("GetCallerIdentity")) == 1
    assert len(aws_wire.calls("AssumeRole")) == 1


# -- failures ---------------------------------------------------------------------------------


def test_invalid_keys_fail_at_once_and_are_not_transient(moto_aws: None, aws_wire: AwsWire) -> None:
    resolver = CredentialResolver(
        block(), legacy=legacy(aws_access_key_id_com="AKIAUNKNOWN", aws_secret_access_key_com="x")
    )

    with enable_iam_authentication(), pytest.raises(CredentialError) as raised:
        resolver.resolve("com")

    message = str(raised.value)
    assert "The com credentials from the variables AWS_ACCESS_KEY_ID_COM" in message
    assert "InvalidClientTokenId" in message
    assert raised.value.code == "InvalidClientTokenId"
    assert raised.value.transient is False
    assert len(aws_wire.calls("GetCallerIdentity")) == 1


def test_throttled_sts_is_retried_by_botocore_and_succeeds(
    moto_aws: None, aws_wire: AwsWire
) -> None:
    resolver = CredentialResolver(block(), legacy=both_environments())
    aws_wire.fail("GetCallerIdentity", "Throttling", times=2)

    gov = resolver.resolve("gov")

    assert gov.partition == "aws-us-gov"
    assert len(aws_wire.calls("GetCallerIdentity")) == 3


def test_throttling_beyond_the_retries_is_a_transient_error(
    moto_aws: None, aws_wire: AwsWire
) -> None:
    resolver = CredentialResolver(block(max_attempts=1), legacy=both_environments())
    aws_wire.fail("GetCallerIdentity", "Throttling", times=2)

    with pytest.raises(CredentialError) as raised:
        resolver.resolve("com")

    assert raised.value.transient is True
    assert raised.value.code == "Throttling"
    assert "com" in str(raised.value) and "AWS_ACCESS_KEY_ID_COM" in str(raised.value)


def test_unreachable_sts_is_a_transient_error_naming_the_endpoint(moto_aws: None) -> None:
    # Port 9 (discard) has no listener: the connection is refused at once.
    config = block(endpoint_url="http://127.0.0.1:9", max_attempts=1)
    resolver = CredentialResolver(config, legacy=both_environments())

    with pytest.raises(CredentialError) as raised:
        resolver.resolve("gov")

    assert raised.value.transient is True
    assert "http://127.0.0.1:9" in str(raised.value)


# -- secrets ----------------------------------------------------------------------------------

COM_SECRET = "com-secret-Zq8uLk2rVb"
COM_TOKEN = "com-token-Hy3nPo9wQe"
GOV_SECRET = "gov-secret-Xc7vBn1mAs"
GOV_TOKEN = "gov-token-Rt5yUi8oPl"


def test_secrets_never_appear_in_results_errors_or_logs(
    moto_aws: None, aws_wire: AwsWire, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="providers")
    variables = legacy(
        aws_access_key_id_com="AKIACOMSECRETTEST",
        aws_secret_access_key_com=COM_SECRET,
        aws_session_token_com=COM_TOKEN,
        aws_access_key_id_gov="AKIAGOVSECRETTEST",
        aws_secret_access_key_gov=GOV_SECRET,
        aws_session_token_gov=GOV_TOKEN,
    )
    resolver = CredentialResolver(block(), legacy=variables)
    outputs: list[object] = []

    base = resolver.resolve("com")
    assumed = resolver.credentials_for("us-gov-west-1", GOV_ACCOUNT)
    outputs += [base, assumed, resolver.report("com"), resolver.report("gov")]
    assumed_secrets = [
        assumed.secret_access_key.get_secret_value(),
        assumed.session_token.get_secret_value() if assumed.session_token else "",
    ]

    aws_wire.fail("AssumeRole", "AccessDenied")
    with pytest.raises(CredentialError) as refused:
        resolver.credentials_for("us-east-1", COM_ACCOUNT)
    outputs += [refused.value, refused.value.__cause__]
    resolver.invalidate()
    with enable_iam_authentication(), pytest.raises(CredentialError) as invalid:
        resolver.resolve("gov")
    outputs += [invalid.value, invalid.value.__cause__]

    texts = [caplog.text] + [repr(o) for o in outputs] + [str(o) for o in outputs]
    for secret in (COM_SECRET, COM_TOKEN, GOV_SECRET, GOV_TOKEN, *assumed_secrets):
        assert secret
        for text in texts:
            assert secret not in text
    assert "arn:aws-us-gov:sts::" in caplog.text  # the logs do say who we act as


# -- session names ----------------------------------------------------------------------------


@given(st.text(max_size=200))
def test_any_session_name_becomes_one_sts_accepts(name: str) -> None:
    cleaned = sanitize_session_name(name)

    assert re.fullmatch(r"[A-Za-z0-9_+=,.@-]{2,64}", cleaned)


def test_session_name_keeps_what_sts_allows() -> None:
    assert sanitize_session_name("run=42,ops@corp.example_x+y") == "run=42,ops@corp.example_x+y"
    assert sanitize_session_name("x" * 80) == "x" * 64


# -- helpers ----------------------------------------------------------------------------------


def write_profile(home: Path, name: str, *, region: str) -> None:
    """A profile with static keys in the (empty) AWS files the fixture points boto3 at."""
    (home / "aws-config").write_text(f"[profile {name}]\nregion = {region}\n")
    (home / "aws-credentials").write_text(
        f"[{name}]\naws_access_key_id = AKIAPROFILEKEY\naws_secret_access_key = profile-secret\n"
    )
