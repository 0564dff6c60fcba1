"""Pytest fixtures of the SSM emulator. Use with ``from tests.ssm_emulator.plugin import *``
in a ``conftest.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from tests.ssm_emulator.world import SsmWorld

__all__ = ["ssm_world"]


@pytest.fixture
def ssm_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SsmWorld]:
    """A moto AWS with the SSM agent emulator in front of it, for one test.

    moto's fake credentials (account ``123456789012``) are in the environment; no AWS config
    or profile of the machine is read. Instance sandboxes live under ``tmp_path/instances``.
    """
    nowhere = tmp_path / "no-aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(nowhere))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "MOTO_ACCOUNT_ID", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        world = SsmWorld(tmp_path / "instances")
        world.install()
        try:
            yield world
        finally:
            world.close()
