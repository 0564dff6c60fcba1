"""Fixtures for the SSM engine, provider and discovery tests: a multi-account world on the SSM
agent emulator, and AWS providers configured to act in it.

Made visible to this folder's tests by ``conftest.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from moto.iam.models import iam_backends
from pydantic import SecretStr

from providers.aws.config import AwsProviderConfig
from providers.aws.provider import AwsProvider
from providers.aws.settings import LegacyCredentials
from providers.base import CommandRef, PollSchedule, ScriptResult, Target
from providers.partitions import Environment
from tests.ssm_emulator import Credentials, EmulatedInstance, SsmWorld

HOME_ACCOUNT = "111111111111"  # the block's keys act here
ROLE_ACCOUNT = "222222222222"  # reached by assuming OrganizationAccountAccessRole
GOV_ACCOUNT = "333333333333"  # the legacy *_GOV keys act here
FAST_POLL = PollSchedule(initial_seconds=0.05, max_seconds=0.2, jitter=0.2, grace_seconds=5)


@dataclass
class Fleet:
    """The emulated world, the keys that act in it, and a way to build providers."""

    world: SsmWorld
    com_keys: Credentials
    gov_keys: Credentials

    def provider(self, *, gov: bool = True, **config: object) -> AwsProvider:
        """An AWS provider with block keys for ``com`` and (unless ``gov`` is False) legacy
        ``*_GOV`` keys; ``config`` overrides fields of ``AwsProviderConfig``."""
        settings: dict[str, object] = {
            "environment": Environment.COM,
            "access_key_id": SecretStr(self.com_keys.access_key_id),
            "secret_access_key": SecretStr(self.com_keys.secret_access_key),
            "poll": FAST_POLL,
            "max_concurrent_groups": 4,
        }
        settings.update(config)
        legacy = LegacyCredentials(_env_file=None)
        if gov:
            legacy = LegacyCredentials(
                _env_file=None,
                aws_access_key_id_gov=SecretStr(self.gov_keys.access_key_id),
                aws_secret_access_key_gov=SecretStr(self.gov_keys.secret_access_key),
            )
        return AwsProvider(AwsProviderConfig(**settings), legacy=legacy)

    def add(
        self, count: int, account_id: str, region: str, **kwargs: object
    ) -> list[EmulatedInstance]:
        """``count`` instances, each with its own id written in ``/etc/instance-id``."""
        made = self.world.add_instances(count, account_id=account_id, region=region, **kwargs)
        for instance in made:
            instance.write_file("/etc/instance-id", instance.instance_id + "\n")
        return made

    def calls(self, operation: str, service: str = "ssm") -> int:
        return self.world.calls[(service, operation)]


def targets_of(instances: list[EmulatedInstance], **override: object) -> list[Target]:
    """Targets for emulated instances (platform as the instance's, unless overridden)."""
    return [
        Target(
            instance_id=i.instance_id,
            account_id=i.account_id,
            region=i.region,
            platform=override.get("platform", i.platform),
            name=i.name,
        )
        for i in instances
    ]


@pytest.fixture
def fleet(ssm_world: SsmWorld) -> Fleet:
    """A world with a home account, a second account reachable by role, and GovCloud keys."""
    ssm_world.add_role(ROLE_ACCOUNT)
    return Fleet(
        world=ssm_world,
        com_keys=ssm_world.credentials(HOME_ACCOUNT),
        gov_keys=_govcloud_keys(GOV_ACCOUNT),
    )


def _govcloud_keys(account_id: str) -> Credentials:
    # An IAM user made in a GovCloud region, so STS names it arn:aws-us-gov:... as AWS does
    # (``SsmWorld.credentials`` creates its users in us-east-1, whose ARNs say arn:aws).
    iam = iam_backends[account_id]["aws-us-gov"]
    iam.create_user(region_name="us-gov-west-1", user_name="cloudops-gov")
    key = iam.create_access_key("cloudops-gov")
    return Credentials(key.access_key_id, key.secret_access_key)


@dataclass(frozen=True)
class Collected:
    """One ``collect`` of a command by the AWS provider, as the engine asked for it."""

    command_id: str
    chunk_key: str
    poll_ceiling: float | None
    jitter_state: object  # the state its jitter is drawn from (None: a fresh random draw)


def record_collects(monkeypatch: pytest.MonkeyPatch) -> list[Collected]:
    """Every ``AwsProvider.collect`` from now on, in order; each still polls as it would."""
    collects: list[Collected] = []
    collect = AwsProvider.collect

    def recording(self: AwsProvider, ref: CommandRef, **kwargs: Any) -> list[ScriptResult]:
        rng = kwargs.get("rng")
        collects.append(
            Collected(
                command_id=ref.command_id,
                chunk_key=ref.chunk_key,
                poll_ceiling=kwargs.get("poll_ceiling"),
                jitter_state=rng.__self__.getstate() if rng is not None else None,
            )
        )
        return collect(self, ref, **kwargs)

    monkeypatch.setattr(AwsProvider, "collect", recording)
    return collects
