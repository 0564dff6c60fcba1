"""Builders of the post flow tests: emulated RHEL 8.10 servers (fake hosts in SSM emulator
sandboxes) whose running kernel, uptime and agents a test changes, and the real AWS provider
acting in the emulated account, registered under a short name for one test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from blocks import registry
from providers.aws.config import AwsProviderConfig
from providers.aws.provider import AwsProvider
from providers.aws.settings import LegacyCredentials
from providers.base import Platform, Target
from providers.partitions import Environment
from tests.flows.linux_patching.fake_post_hosts import (
    fake_rpm,
    fake_systemctl,
    install_fake_host,
    rhel_host,
    tree_digest,
)
from tests.flows.scripts.fake_linux_hosts import RHEL_KERNEL_LISTING, RHEL_OS_RELEASE
from tests.providers.aws.ssm_fixtures import FAST_POLL
from tests.ssm_emulator import EmulatedInstance, SsmWorld

ACCOUNT = "111111111111"
REGION = "us-east-1"
KERNEL_BEFORE = "4.18.0-553.5.1.el8_10.x86_64"
TEN_DAYS = 864_000
PROVIDER = "emulated-aws"


@pytest.fixture
def emulated_provider(ssm_world: SsmWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The real AWS provider acting in the emulated account, as the short name flows are given;
    registered for this test only."""
    keys = ssm_world.credentials(ACCOUNT)
    monkeypatch.setattr(registry, "_registrations", dict(registry.registered_providers()))

    def build() -> AwsProvider:
        config = AwsProviderConfig(
            environment=Environment.COM,
            access_key_id=SecretStr(keys.access_key_id),
            secret_access_key=SecretStr(keys.secret_access_key),
            poll=FAST_POLL,
        )
        return AwsProvider(config, legacy=LegacyCredentials(_env_file=None))

    registry.register_provider(PROVIDER, build)
    yield PROVIDER


def _yum(history_body: str) -> str:
    """yum as QC (metadata refresh, kernel listing) and post_qc.sh (history) ask it."""
    return f"""case "$*" in
    *makecache*) echo "Metadata cache created." ;;
    *list*available*kernel*)
        cat <<'FAKE_OUTPUT'
{RHEL_KERNEL_LISTING}
FAKE_OUTPUT
        ;;
    *history*)
{history_body}
        ;;
    *) exit 1 ;;
esac
"""


@dataclass
class RhelServer:
    """An emulated RHEL 8.10 instance whose running kernel and uptime a test can change."""

    instance: EmulatedInstance

    @property
    def instance_id(self) -> str:
        return self.instance.instance_id

    def target(self) -> Target:
        return Target(
            instance_id=self.instance_id,
            account_id=self.instance.account_id,
            region=self.instance.region,
            platform=Platform(self.instance.platform),
            name=self.instance.name,
        )

    def boot(self, kernel: str, uptime_seconds: int) -> None:
        """What the server runs now: the kernel ``uname -r`` prints, and its uptime."""
        self.instance.write_file("/fake/uname-r", kernel + "\n")
        self.instance.write_file("/proc/uptime", f"{uptime_seconds}.42 {uptime_seconds * 2}.00\n")

    def agents(self, falcon: str = "active", bigfix: str = "active") -> None:
        """CrowdStrike and BigFix from now on: ``active``, ``inactive`` (installed, stopped) or
        ``absent`` (not installed: no package, no unit)."""
        units = {"crond": "active"}
        packages = []
        for unit, package, state in (
            ("falcon-sensor", "falcon-sensor", falcon),
            ("besclient", "BESAgent", bigfix),
        ):
            if state != "absent":
                units[unit] = state
                packages.append(package)
        self._command("systemctl", fake_systemctl(units))
        self._command("rpm", fake_rpm(packages))

    def crowdstrike_in_rfm(self) -> None:
        """falconctl reports reduced functionality mode: prep QC fails on CrowdStrike."""
        self._command(
            "falconctl",
            'case "$*" in *--rfm-state*) echo "rfm-state=true, rfm-reason=Unsupported, '
            'code=0x0." ;; *--version*) echo "version = 7.10.16303.0" ;; *) exit 1 ;; esac\n',
        )

    def _command(self, name: str, body: str) -> None:
        path = self.instance.bin / name
        path.unlink(missing_ok=True)
        self.instance.fake_command(name, body)

    def digest(self) -> dict[str, str]:
        """Every file of the server, but the SSM agent's own work directory."""
        return {
            path: state
            for path, state in tree_digest(self.instance.sandbox).items()
            if "/var/lib/amazon" not in path
        }


def rhel_server(world: SsmWorld, name: str) -> RhelServer:
    """A RHEL 8.10 server on the old kernel, CrowdStrike and BigFix running, 10 days up."""
    instance = world.add_instance(account_id=ACCOUNT, region=REGION, name=name)
    host = rhel_host(patchme_kernel=None)
    history = host.commands["yum"]
    host.commands.update(
        {
            "uname": (
                'case "${1:-}" in -r) cat "$CLOUDOPS_ROOT/fake/uname-r" ;; '
                f"-n) echo {name} ;; *) echo Linux ;; esac\n"
            ),
            "hostname": f"echo {name}\n",
            "yum": _yum(history),
            "falconctl": (
                'case "$*" in *--rfm-state*) echo "rfm-state=false, rfm-reason=None, code=0x0." ;;'
                ' *--version*) echo "version = 7.10.16303.0" ;; *) exit 1 ;; esac\n'
            ),
            "systemctl": fake_systemctl(
                {"falcon-sensor": "active", "besclient": "active", "crond": "active"}
            ),
            # The machine's own dpkg-query is on the emulator's PATH: this server has none.
            "dpkg-query": "exit 127\n",
        }
    )
    host.files["/etc/os-release"] = RHEL_OS_RELEASE
    install_fake_host(host, instance.root, instance.bin)
    # The SSM agent's own directory, there on any managed server before a command arrives.
    (instance.root / "var/lib/amazon/ssm").mkdir(parents=True)
    server = RhelServer(instance)
    server.boot(KERNEL_BEFORE, TEN_DAYS)
    return server
