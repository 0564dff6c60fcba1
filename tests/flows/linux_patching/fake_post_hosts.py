"""Fake Linux hosts after patching, as ``post_qc.sh`` sees them: the files and commands of a
RHEL 8 and an Ubuntu 22.04 server, and a digest that proves a script changed nothing.

A ``FakeHost`` is data; ``install_fake_host`` writes it into a root directory (the script's
``$CLOUDOPS_ROOT``) and a directory of fake commands on the script's PATH. The script tests use
it with a minimal PATH of their own; the flow tests install it in SSM emulator instances.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

BASH = shutil.which("bash")

RHEL_KERNEL = "4.18.0-553.45.1.el8_10.x86_64"
UBUNTU_KERNEL = "5.15.0-105-generic"


def today_date() -> str:
    return datetime.now().strftime("%Y-%m-%d")


@dataclass
class FakeHost:
    """The files and commands of one fake server."""

    files: dict[str, str] = field(default_factory=dict)  # absolute path -> content
    dirs: list[str] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)  # name -> bash body


def printing(text: str) -> str:
    """A fake command body that prints ``text`` whatever its arguments."""
    return f"cat <<'FAKE_OUTPUT'\n{text}\nFAKE_OUTPUT\n"


def fake_systemctl(units: dict[str, str], failed: str = "") -> str:
    """A fake systemctl; ``units`` maps a known unit to ``active`` or ``inactive``. A unit is
    named with or without its ``.service`` suffix, as ``systemctl`` accepts both."""
    cases = "\n".join(
        f"    {unit} | {unit}.service) load=loaded; active={state} ;;"
        for unit, state in units.items()
    )
    return f"""unit="${{*: -1}}"
load=not-found
active=inactive
case "$unit" in
{cases}
esac
case "$1" in
    show) echo "LoadState=$load" ;;
    is-active) echo "$active"; [ "$active" = active ] ;;
    list-units)
        cat <<'FAILED'
{failed}
FAILED
        ;;
    *) exit 1 ;;
esac
"""


def fake_rpm(installed: list[str]) -> str:
    names = "|".join(installed) or "no-package-installed"
    return f'case "${{*: -1}}" in {names}) exit 0 ;; *) exit 1 ;; esac\n'


def fake_dpkg_query(installed: list[str]) -> str:
    names = "|".join(installed) or "no-package-installed"
    return (
        f'case "${{*: -1}}" in {names}) echo "install ok installed" ;;\n'
        '*) echo "dpkg-query: no packages found matching ${*: -1}" >&2; exit 1 ;; esac\n'
    )


def fake_df(root_pct: int, boot_pct: int | None) -> str:
    """A fake ``df -P``; without ``boot_pct`` /boot lives on the / filesystem."""
    root = f"/dev/mapper/rootvg-root 20961280 {root_pct * 200000} 9000000 {root_pct}% /"
    boot = (
        f"/dev/nvme0n1p1 1038336 {boot_pct * 10000} 500000 {boot_pct}% /boot" if boot_pct else root
    )
    return f"""echo "Filesystem 1024-blocks Used Available Capacity Mounted on"
case "${{*: -1}}" in
    */boot) echo "{boot}" ;;
    *) echo "{root}" ;;
esac
"""


FREE = """               total        used        free      shared  buff/cache   available
Mem:            7682        1020        5600          17        1061        6395
Swap:           2047           0        2047"""


def rhel_host(
    *,
    enlinuxpc: str | None = "inactive",
    falcon: str = "active",
    patchme_kernel: str | None = RHEL_KERNEL.removesuffix(".x86_64"),
) -> FakeHost:
    """A RHEL 8 server after patching: LVM with one missing PV and one inactive LV."""
    today = today_date()
    history = f"""Updating Subscription Management repositories.
ID     | Command line              | Date and time    | Action(s)      | Altered
-------------------------------------------------------------------------------
    42 | update -y kernel-4.18.0-5 | {today} 02:10 | Upgrade        |    5
    41 | install -y jq             | {today} 01:55 | Install        |    1
    40 | update -y                 | 2024-01-10 03:00 | Upgrade        |  120 EE
    39 | install -y falcon-sensor  | 2023-11-02 14:21 | Install        |    1"""
    units = {"falcon-sensor": falcon, "besclient": "active", "crond": "active"}
    if enlinuxpc is not None:
        units["enlinuxpc"] = enlinuxpc
    host = FakeHost(
        files={
            "/proc/uptime": "7260.51 14000.02\n",
            "/etc/hostname": "ip-10-0-1-15.ec2.internal\n",
        },
        dirs=["/boot", "/var/log"],
        commands={
            "uname": f'case "${{1:-}}" in -r) echo {RHEL_KERNEL} ;; *) echo Linux ;; esac\n',
            "hostname": "echo ip-10-0-1-15.ec2.internal\n",
            "uptime": (
                'if [ "${1:-}" = -s ]; then echo "2025-03-08 02:14:51"; '
                'else echo " 04:15:51 up  2:01,  1 user,  load average: 0.00, 0.01, 0.05"; fi\n'
            ),
            "systemctl": fake_systemctl(
                units,
                failed="kdump.service loaded failed failed Crash recovery kernel arming",
            ),
            "rpm": fake_rpm(["falcon-sensor", "BESAgent"]),
            "yum": printing(history),
            "pvs": printing(
                "  /dev/nvme0n1p2|rootvg|a--|b1Xc9k-0000-aaaa\n"
                "  [unknown]|datavg|a-m|Zq8L2p-1111-bbbb\n"
                "  /dev/nvme1n1|datavg|a--|Pp7Hh3-2222-cccc"
            ),
            "lvs": printing(
                "  root|rootvg|-wi-ao----\n  swap|rootvg|-wi-ao----\n  data|datavg|-wi-------"
            ),
            "df": fake_df(41, 23),
            "free": printing(FREE),
            "journalctl": printing(
                "Mar 08 02:14:52 ip-10-0-1-15 kernel: mce: [Hardware Error]: Machine check events"
            ),
        },
    )
    if patchme_kernel is not None:
        host.files["/root/CHG0012345/patchme.sh"] = (
            "#!/bin/bash\n# staged by linux-qc-patching-prep\n"
            f'newkernel="{patchme_kernel}"\nyum install -y "kernel-$newkernel" && reboot\n'
        )
    return host


def ubuntu_host() -> FakeHost:
    """An Ubuntu 22.04 server after patching: no LVM, BigFix and EnCase not installed."""
    today = today_date()
    apt_history = f"""
Start-Date: 2024-02-01  06:25:12
Commandline: apt-get -y upgrade
Upgrade: openssl:amd64 (3.0.2-0ubuntu1.12, 3.0.2-0ubuntu1.14)
End-Date: 2024-02-01  06:25:40

Start-Date: {today}  03:01:12
Commandline: apt-get install -y linux-image-{UBUNTU_KERNEL}
Install: linux-image-{UBUNTU_KERNEL}:amd64 (5.15.0-105.115, automatic)
End-Date: {today}  03:02:40

Start-Date: {today}  03:05:00
Commandline: apt-get -y autoremove
Remove: linux-image-5.15.0-101-generic:amd64 (5.15.0-101.111)
End-Date: {today}  03:05:30
"""
    return FakeHost(
        files={
            "/var/log/apt/history.log": apt_history,
            "/proc/uptime": "300.00 500.00\n",
        },
        dirs=["/boot"],
        commands={
            "uname": f'case "${{1:-}}" in -r) echo {UBUNTU_KERNEL} ;; *) echo Linux ;; esac\n',
            "hostname": "echo web-01\n",
            "uptime": 'echo " 03:12:00 up 5 min,  0 users,  load average: 0.10, 0.05, 0.01"\n',
            "who": 'echo "         system boot  2025-03-08 03:07"\n',
            "systemctl": fake_systemctl({"falcon-sensor": "active", "sftd": "active"}),
            "dpkg-query": fake_dpkg_query(["falcon-sensor", "scaleft-server-tools"]),
            "df": fake_df(63, None),
            "free": printing(FREE),
            "journalctl": "exit 1\n",
            "dmesg": "exit 0\n",
        },
    )


def install_fake_host(host: FakeHost, root: Path, bin_dir: Path) -> None:
    """Write the host's directories and files under ``root`` and its commands in ``bin_dir``."""
    for directory in host.dirs:
        (root / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for path, content in host.files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, body in host.commands.items():
        fake = bin_dir / name
        fake.write_text(f"#!{BASH}\n{body}")
        fake.chmod(0o555)


def tree_digest(*directories: Path) -> dict[str, str]:
    """Every path under the directories with its kind, mode and content hash."""
    digest: dict[str, str] = {}
    for directory in directories:
        for path in sorted([directory, *directory.rglob("*")]):
            stat = path.lstat()
            if path.is_symlink():
                kind = "link:" + os.readlink(path)
            elif path.is_dir():
                kind = "dir"
            else:
                kind = hashlib.sha256(path.read_bytes()).hexdigest()
            digest[str(path)] = f"{kind} {oct(stat.st_mode)} {stat.st_mtime_ns}"
    return digest
