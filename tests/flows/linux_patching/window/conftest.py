"""Fixtures of the patch window tests: the real AWS provider acting in an emulated world of two
commercial accounts (one reached through the cross-account role) and a GovCloud account,
registered under a short name for one test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blocks import registry
from tests.providers.aws.ssm_fixtures import Fleet, fleet  # noqa: F401 (fixture)
from tests.ssm_emulator import SsmWorld

PROVIDER = "emulated-aws-window"


@pytest.fixture
def window_provider(
    fleet: Fleet, ssm_world: SsmWorld, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> Iterator[str]:
    """The provider's short name; its agents pick commands up at once and reboot in 0.3 s."""
    monkeypatch.setattr(registry, "_registrations", dict(registry.registered_providers()))
    registry.register_provider(PROVIDER, fleet.provider)
    ssm_world.command_delay(pending=0.05)
    ssm_world.reboot_time(0.3)
    yield PROVIDER
