"""``load_provider``: every form a flow's ``provider`` parameter can take."""

from __future__ import annotations

import asyncio

import pytest

import blocks.registry as registry
from blocks import (
    AwsProviderBlock,
    LocalProviderBlock,
    ProviderNotFoundError,
    load_provider,
    register_provider,
    saved_block_slugs,
)
from providers.aws.config import AwsProviderConfig
from providers.aws.provider import AwsProvider
from providers.local import LocalProvider
from providers.partitions import Environment
from tests.blocks.conftest import SaveBlock


class _EchoProvider(LocalProvider):
    """A provider registered by a test, as a third party would register one."""

    name = "echo"


def _no_aws_blocks_saved() -> None:
    leftovers = saved_block_slugs(AwsProviderBlock)
    assert leftovers == [], f"another test left aws-provider blocks saved: {leftovers}"


# -- forms that need no Prefect server -------------------------------------------------------


def test_a_provider_is_returned_as_it_is() -> None:
    provider = LocalProvider()
    assert load_provider(provider) is provider


def test_a_block_instance_builds_its_provider() -> None:
    provider = load_provider(AwsProviderBlock(environment="gov"))
    assert isinstance(provider, AwsProvider)
    assert provider.config.environment is Environment.GOV
    assert isinstance(load_provider(LocalProviderBlock()), LocalProvider)


def test_short_name_local() -> None:
    assert isinstance(load_provider("local"), LocalProvider)
    assert isinstance(load_provider("  local "), LocalProvider)


def test_default_provider_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFAULT_PROVIDER", "local")
    assert isinstance(load_provider(None), LocalProvider)
    assert isinstance(load_provider(""), LocalProvider)


def test_new_providers_register_without_touching_flows(isolated_registry: None) -> None:
    register_provider("echo", _EchoProvider)
    assert type(load_provider("echo")) is _EchoProvider
    assert registry.registered_providers()["echo"].factory is _EchoProvider


def test_a_provider_name_with_a_slash_is_refused(isolated_registry: None) -> None:
    with pytest.raises(ValueError, match="contain no '/'"):
        register_provider("a/b", _EchoProvider)


# -- forms that read saved blocks from the Prefect server ------------------------------------


def test_block_slug(save_block: SaveBlock) -> None:
    save_block(AwsProviderBlock(environment="gov", role_name="OpsAutomation"), "slug-gov")
    save_block(LocalProviderBlock(), "slug-worker")

    aws = load_provider("aws-provider/slug-gov")
    assert isinstance(aws, AwsProvider)
    assert aws.config.environment is Environment.GOV
    assert aws.config.role_name == "OpsAutomation"
    assert isinstance(load_provider("local-provider/slug-worker"), LocalProvider)


def test_bare_block_name(save_block: SaveBlock) -> None:
    save_block(AwsProviderBlock(environment="gov"), "bare-gov")
    provider = load_provider("bare-gov")
    assert isinstance(provider, AwsProvider)
    assert provider.config.environment is Environment.GOV


def test_a_bare_name_saved_under_two_types_is_ambiguous(save_block: SaveBlock) -> None:
    save_block(AwsProviderBlock(), "twin")
    save_block(LocalProviderBlock(), "twin")
    with pytest.raises(ProviderNotFoundError, match="ambiguous") as caught:
        load_provider("twin")
    assert "aws-provider/twin" in str(caught.value)
    assert "local-provider/twin" in str(caught.value)


def test_aws_without_a_saved_block_uses_the_environment(
    prefect_api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_aws_blocks_saved()
    monkeypatch.delenv("DEFAULT_PROVIDER", raising=False)
    for spec in ("aws", None):
        provider = load_provider(spec)
        assert isinstance(provider, AwsProvider)
        assert provider.config == AwsProviderConfig()


def test_aws_with_one_saved_block_uses_it(save_block: SaveBlock) -> None:
    _no_aws_blocks_saved()
    save_block(AwsProviderBlock(environment="gov", role_name="OnlyOne"), "the-only-one")
    provider = load_provider("aws")
    assert isinstance(provider, AwsProvider)
    assert provider.config.role_name == "OnlyOne"


def test_aws_with_several_saved_blocks_asks_which(save_block: SaveBlock) -> None:
    _no_aws_blocks_saved()
    save_block(AwsProviderBlock(environment="com"), "several-com")
    save_block(AwsProviderBlock(environment="gov"), "several-gov")
    with pytest.raises(ProviderNotFoundError, match="ambiguous") as caught:
        load_provider("aws")
    message = str(caught.value)
    assert "aws-provider/several-com" in message and "aws-provider/several-gov" in message
    assert "DEFAULT_PROVIDER" in message


def test_unknown_name_lists_what_exists(save_block: SaveBlock) -> None:
    save_block(LocalProviderBlock(), "listed-worker")
    with pytest.raises(ProviderNotFoundError) as caught:
        load_provider("prod-govv")
    message = str(caught.value)
    assert "'prod-govv'" in message
    assert "aws, local" in message
    assert "local-provider/listed-worker" in message
    assert isinstance(caught.value, ValueError)


def test_unknown_block_type_or_missing_block(prefect_api_url: str) -> None:
    with pytest.raises(ProviderNotFoundError, match=r"'s3-bucket' .* is not a provider block"):
        load_provider("s3-bucket/prod")
    with pytest.raises(ProviderNotFoundError, match="no aws-provider block named 'absent'"):
        load_provider("aws-provider/absent")


def test_resolves_synchronously_even_under_a_running_event_loop(save_block: SaveBlock) -> None:
    save_block(LocalProviderBlock(), "loop-worker")

    async def from_async_code() -> object:
        return load_provider("local-provider/loop-worker")

    assert isinstance(asyncio.run(from_async_code()), LocalProvider)


class _NeverSavedBlock(LocalProviderBlock):
    """A provider block type that no server has seen yet."""

    _block_type_name = "Never Registered Provider"
    _block_type_slug = "never-registered-provider"


def test_a_block_type_unknown_to_the_server_means_nothing_saved(
    prefect_api_url: str, isolated_registry: None
) -> None:
    register_provider("fresh", _EchoProvider, _NeverSavedBlock, prefer_saved_block=True)
    assert saved_block_slugs(_NeverSavedBlock) == []
    assert type(load_provider("fresh")) is _EchoProvider
    with pytest.raises(ProviderNotFoundError, match="no never-registered-provider block"):
        load_provider("never-registered-provider/x")
