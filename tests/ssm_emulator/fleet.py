"""The emulated fleet: real moto EC2 instances, each with an SSM agent state and a sandbox."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from moto.ec2.models import ec2_backends

from tests.ssm_emulator.agent import Sandbox

# Public AMI ids moto knows in every region; the emulator never looks at the image itself.
_LINUX_AMI = "ami-12c6146b"
_WINDOWS_AMI = "ami-3bb0a5ee"

# Where a Linux host keeps the id of its current boot; a reboot writes a new one.
BOOT_ID_PATH = "proc/sys/kernel/random/boot_id"

_PLATFORM_NAMES = {
    "linux": ("Linux", "Amazon Linux", "2023"),
    "windows": ("Windows", "Microsoft Windows Server 2022 Datacenter", "10.0.20348"),
}


@dataclass(frozen=True)
class OfflinePlan:
    """How an instance's agent goes away, and what SSM then says about its invocations."""

    mid_run: bool
    after_seconds: float
    status: str
    status_details: str


@dataclass
class EmulatedInstance:
    """One EC2 instance as SSM sees it. Mutable state is changed only under the world's lock."""

    instance_id: str
    account_id: str
    region: str
    platform: str
    name: str | None
    tags: dict[str, str]
    private_ip: str
    computer_name: str
    sandbox_dir: Sandbox
    managed: bool = True
    ping_status: str = "Online"
    never_finish: bool = False
    offline_plan: OfflinePlan | None = None
    # What a reboot does to the host: ``boot_hook(instance, fell_back)`` switches its running
    # kernel (a fake host's own rule: the default boot entry, or the old kernel when the boot
    # fell back); the emulator itself writes a new boot id and resets the uptime.
    boot_hook: Callable[[EmulatedInstance, bool], None] | None = None
    boot_falls_back: bool = False
    returns_after_reboot: bool = True
    boots: int = 0
    last_ping: datetime = field(default_factory=lambda: datetime.now(UTC))
    registered: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def sandbox(self) -> Path:
        """The instance's own directory; scripts see it as ``$CLOUDOPS_ROOT``."""
        return self.sandbox_dir.root

    @property
    def root(self) -> Path:
        """Same directory as ``sandbox``: what ``/`` is for a script that honours
        ``$CLOUDOPS_ROOT``. Put ``etc/os-release`` and friends under it."""
        return self.sandbox_dir.root

    @property
    def bin(self) -> Path:
        """First on the script's ``PATH``: drop fake commands (``uname``, ``yum``...) here."""
        return self.sandbox_dir.bin

    @property
    def home(self) -> Path:
        """The script's ``HOME``."""
        return self.sandbox_dir.home

    @property
    def online(self) -> bool:
        return self.managed and self.ping_status == "Online"

    def write_file(self, path: str, text: str, mode: int | None = None) -> Path:
        """Write ``text`` at the absolute ``path`` inside the sandbox, e.g. ``/etc/os-release``,
        or as ``bin/uname`` with ``mode=0o755`` for a fake command."""
        target = self.sandbox_dir.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        if mode is not None:
            target.chmod(mode)
        return target

    @property
    def boot_id(self) -> str:
        """The id of the current boot, as ``/proc/sys/kernel/random/boot_id`` says."""
        return (self.sandbox_dir.root / BOOT_ID_PATH).read_text().strip()

    def boot(self) -> None:
        """Start again: a new boot id, the uptime from zero, and the host's own boot rule."""
        self.boots += 1
        self.write_file(f"/{BOOT_ID_PATH}", f"{uuid.uuid4()}\n")
        self.write_file("/proc/uptime", "0.50 0.40\n")
        if self.boot_hook is not None:
            self.boot_hook(self, self.boot_falls_back)

    def fake_command(self, name: str, script: str) -> Path:
        """A fake command ``name`` on the script's PATH, a bash script body."""
        return self.write_file(f"bin/{name}", "#!/usr/bin/env bash\n" + script, 0o755)

    def information(self) -> dict[str, object]:
        """This instance as ``DescribeInstanceInformation`` lists it."""
        platform_type, platform_name, platform_version = _PLATFORM_NAMES[self.platform]
        return {
            "InstanceId": self.instance_id,
            "PingStatus": self.ping_status,
            "LastPingDateTime": self.last_ping.timestamp(),
            "AgentVersion": "3.3.1142.0",
            "IsLatestVersion": False,
            "PlatformType": platform_type,
            "PlatformName": platform_name,
            "PlatformVersion": platform_version,
            "ResourceType": "EC2Instance",
            "IPAddress": self.private_ip,
            "ComputerName": self.computer_name,
            "AssociationStatus": "Success",
            "RegistrationDate": self.registered.timestamp(),
            "SourceId": self.instance_id,
            "SourceType": "AWS::EC2::Instance",
        }


def launch_instance(
    *,
    account_id: str,
    region: str,
    platform: str,
    name: str | None,
    tags: dict[str, str] | None,
    sandboxes: Path,
) -> EmulatedInstance:
    """Start a moto EC2 instance in ``account_id``/``region`` (so ``DescribeInstances`` there
    finds it with its tags) and give it a sandbox under ``sandboxes``."""
    if platform not in _PLATFORM_NAMES:
        raise ValueError(f"platform must be one of {sorted(_PLATFORM_NAMES)}, got {platform!r}")
    all_tags = dict(tags or {})
    if name is not None:
        all_tags["Name"] = name
    backend = ec2_backends[account_id][region]
    reservation = backend.run_instances(
        _WINDOWS_AMI if platform == "windows" else _LINUX_AMI,
        1,
        None,
        [],
        instance_type="t3.micro",
        is_instance_type_default=False,
        region_name=region,
        tags={"instance": all_tags} if all_tags else {},
    )
    ec2 = reservation.instances[0]
    # moto takes the platform from the AMI; set it so DescribeInstances reports it either way.
    ec2.platform = "windows" if platform == "windows" else None
    sandbox = Sandbox(sandboxes / account_id / region / ec2.id)
    sandbox.create()
    boot_id = sandbox.root / BOOT_ID_PATH
    boot_id.parent.mkdir(parents=True, exist_ok=True)
    boot_id.write_text(f"{uuid.uuid4()}\n")
    return EmulatedInstance(
        instance_id=ec2.id,
        account_id=account_id,
        region=region,
        platform=platform,
        name=all_tags.get("Name"),
        tags=all_tags,
        private_ip=ec2.private_ip,
        computer_name=ec2.private_dns_name,
        sandbox_dir=sandbox,
    )
