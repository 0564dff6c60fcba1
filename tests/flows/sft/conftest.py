"""Fixtures of the sft-fixer flow tests: a saved AWS provider block acting in the emulated
world, the enrollment token as a designated Prefect Secret block, and no token or token
setting of the machine in the environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.blocks.system import Secret
from pydantic import SecretStr

from blocks import AwsProviderBlock
from tests.flows.sft.hosts import ACCOUNT, TOKEN, TOKEN_BLOCK
from tests.ssm_emulator import SsmWorld

# The Secret blocks these tests name, designated for the token as an operator would.
DESIGNATED = ("sft-fixer-test-token", "sft-token-nobody-saved", "sft-fixer-broken-token")


@pytest.fixture(autouse=True)
def no_token_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFT_ENROLLMENT_TOKEN", raising=False)
    monkeypatch.delenv("CLOUDOPS_SFT_TOKEN_PARAMETER", raising=False)
    monkeypatch.delenv("CLOUDOPS_SFT_TOKEN_SECRET_ID", raising=False)
    monkeypatch.setenv("CLOUDOPS_SFT_TOKEN_BLOCKS", ",".join(DESIGNATED))


@pytest.fixture
def provider_slug(ssm_world: SsmWorld) -> Iterator[str]:
    """A saved AWS provider block whose keys act in ``ACCOUNT`` of the emulated world."""
    keys = ssm_world.credentials(ACCOUNT)
    AwsProviderBlock(
        environment="com",
        access_key_id=SecretStr(keys.access_key_id),
        secret_access_key=SecretStr(keys.secret_access_key),
        poll_initial_seconds=0.05,
        poll_max_seconds=0.2,
    ).save("sft-fixer-tests", overwrite=True)
    yield "aws-provider/sft-fixer-tests"
    AwsProviderBlock.delete("sft-fixer-tests")


@pytest.fixture
def token_block() -> Iterator[str]:
    """The enrollment token saved as a Prefect Secret block."""
    Secret(value=TOKEN).save(TOKEN_BLOCK, overwrite=True)
    yield TOKEN_BLOCK
    Secret.delete(TOKEN_BLOCK)
