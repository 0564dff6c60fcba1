"""Fixtures of fake Linux servers (see ``fake_linux_hosts``) for the remote script tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.flows.scripts.fake_linux_hosts import (
    LinuxSandbox,
    build_al2_host,
    build_rhel_host,
    build_ubuntu_host,
)


@pytest.fixture
def rhel_host(tmp_path: Path) -> LinuxSandbox:
    """A RHEL 8.10 server with dnf, CrowdStrike healthy, 7 GB free in /var."""
    return build_rhel_host(tmp_path / "rhel")


@pytest.fixture
def al2_host(tmp_path: Path) -> LinuxSandbox:
    """An Amazon Linux 2 server with yum only."""
    return build_al2_host(tmp_path / "al2")


@pytest.fixture
def ubuntu_host(tmp_path: Path) -> LinuxSandbox:
    """An Ubuntu 22.04 server with apt; falconctl only under /opt/CrowdStrike."""
    return build_ubuntu_host(tmp_path / "ubuntu")
