"""The AWS provider block: its form in the Prefect UI, its secrets, its mapping to the config."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from blocks import AwsProviderBlock, LocalProviderBlock
from providers.aws.config import AwsProviderConfig
from providers.local import LocalProvider
from providers.partitions import Environment

SECRETS = {
    "access_key_id": "AKIAEXAMPLEKEY123456",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "session_token": "FwoGZXIvYXdzEXAMPLESESSIONTOKEN",
    "external_id": "ext-id-4f9c2",
}
SECRET_FIELDS = set(SECRETS)


@pytest.mark.parametrize("block_class", [AwsProviderBlock, LocalProviderBlock])
def test_every_field_has_a_title_and_a_description(block_class: type) -> None:
    for name, field in block_class.model_fields.items():
        assert field.title, f"{block_class.__name__}.{name} has no title"
        assert field.description, f"{block_class.__name__}.{name} has no description"


def test_block_types_have_their_slugs_and_docs() -> None:
    assert AwsProviderBlock.get_block_type_slug() == "aws-provider"
    assert LocalProviderBlock.get_block_type_slug() == "local-provider"
    for block_class in (AwsProviderBlock, LocalProviderBlock):
        assert ".save(" in (block_class.__doc__ or "")
        assert block_class.get_description()


def test_secrets_are_secret_fields() -> None:
    for name in SECRET_FIELDS:
        assert AwsProviderBlock.model_fields[name].annotation == SecretStr | None
    schema = AwsProviderBlock._to_block_schema()
    assert set(schema.fields["secret_fields"]) == SECRET_FIELDS


def test_secrets_never_show_in_repr_or_json() -> None:
    block = AwsProviderBlock(environment="gov", **SECRETS)
    shown = [repr(block), str(block), block.model_dump_json(), str(block.model_dump())]
    for text in shown:
        for value in SECRETS.values():
            assert value not in text
    assert block.secret_access_key is not None
    assert block.secret_access_key.get_secret_value() == SECRETS["secret_access_key"]


def test_to_config_maps_every_setting() -> None:
    block = AwsProviderBlock(
        environment="gov",
        **SECRETS,
        profile_name="ops",
        role_name="OpsAutomation",
        session_duration_seconds=7200,
        default_regions=["us-gov-west-1", "us-gov-east-1"],
        output_s3_bucket="ssm-output",
        output_s3_prefix="qc",
        poll_initial_seconds=1.5,
        poll_max_seconds=10,
        endpoint_url="http://localhost:5000",
        max_concurrent_groups=4,
    )
    config = block.to_config()
    assert isinstance(config, AwsProviderConfig)
    assert config.environment is Environment.GOV
    for name, value in SECRETS.items():
        secret = getattr(config, name)
        assert isinstance(secret, SecretStr) and secret.get_secret_value() == value
    assert (config.profile_name, config.role_name) == ("ops", "OpsAutomation")
    assert config.session_duration_seconds == 7200
    assert config.default_regions == ("us-gov-west-1", "us-gov-east-1")
    assert (config.output_s3_bucket, config.output_s3_prefix) == ("ssm-output", "qc")
    assert (config.poll.initial_seconds, config.poll.max_seconds) == (1.5, 10)
    assert config.endpoint_url == "http://localhost:5000"
    assert config.max_concurrent_groups == 4


def test_an_empty_block_means_no_stored_credentials() -> None:
    config = AwsProviderBlock().to_config()
    assert config.environment is Environment.COM
    assert config.access_key_id is None and config.secret_access_key is None
    assert config.profile_name is None and config.output_s3_bucket is None
    assert config.role_name == "OrganizationAccountAccessRole"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"default_regions": ["us-east-9"]}, "unknown region(s) us-east-9"),
        ({"default_regions": ["us-gov-west-1"]}, "not in the com environment"),
        ({"access_key_id": "AKIAEXAMPLEKEY123456"}, "or neither"),
        ({"poll_initial_seconds": 20, "poll_max_seconds": 5}, "shorter than the first"),
        ({"session_duration_seconds": 60}, "greater than or equal to 900"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AwsProviderBlock(**fields)


def test_aws_block_builds_the_aws_provider() -> None:
    from providers.aws.provider import AwsProvider

    provider = AwsProviderBlock(environment="gov", role_name="OpsAutomation").build_provider()
    assert isinstance(provider, AwsProvider)
    assert provider.name == "aws"


def test_local_block_builds_the_local_provider() -> None:
    assert isinstance(LocalProviderBlock().build_provider(), LocalProvider)
