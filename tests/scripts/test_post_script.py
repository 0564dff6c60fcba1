"""post_qc.sh run for real on fake hosts built in a sandbox, and its output parsed.

Each fake host is a sandbox directory (``$CLOUDOPS_ROOT``) plus a ``bin`` that is the whole of
PATH: a few real base tools (awk, sed, grep, ...) and fake ``uname``, ``systemctl``, ``rpm``,
``yum``, ``pvs``, ... that print what a real host of that kind prints. A command that is not
faked does not exist for the script, as on a minimal server.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from flows.parsers import AgentState, KernelTargetSource, parse_post_report
from flows.parsers.post import SUMMARY_BEGIN, SUMMARY_END
from flows.remote_scripts import load_script, render_script

BASE_TOOLS = ("awk", "sed", "grep", "tr", "head", "date", "cat", "timeout")
BASH = shutil.which("bash")

RHEL_KERNEL = "4.18.0-553.45.1.el8_10.x86_64"
UBUNTU_KERNEL = "5.15.0-105-generic"


def _today() -> str:
    return datetime.now().strftime("%Y-%m-%d")


@dataclass
class FakeHost:
    """The files and commands of one fake server."""

    files: dict[str, str] = field(default_factory=dict)  # absolute path -> content
    dirs: list[str] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)  # name -> bash body


def _printing(text: str) -> str:
    """A fake command body that prints ``text`` whatever its arguments."""
    return f"cat <<'FAKE_OUTPUT'\n{text}\nFAKE_OUTPUT\n"


def _systemctl(units: dict[str, str], failed: str = "") -> str:
    """A fake systemctl; ``units`` maps a known unit to ``active`` or ``inactive``."""
    cases = "\n".join(
        f"    {unit}.service) load=loaded; active={state} ;;" for unit, state in units.items()
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


def _rpm(installed: list[str]) -> str:
    names = "|".join(installed) or "no-package-installed"
    return f'case "${{*: -1}}" in {names}) exit 0 ;; *) exit 1 ;; esac\n'


def _dpkg_query(installed: list[str]) -> str:
    names = "|".join(installed) or "no-package-installed"
    return (
        f'case "${{*: -1}}" in {names}) echo "install ok installed" ;;\n'
        '*) echo "dpkg-query: no packages found matching ${*: -1}" >&2; exit 1 ;; esac\n'
    )


def _df(root_pct: int, boot_pct: int | None) -> str:
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
    today = _today()
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
            "systemctl": _systemctl(
                units,
                failed="kdump.service loaded failed failed Crash recovery kernel arming",
            ),
            "rpm": _rpm(["falcon-sensor", "BESAgent"]),
            "yum": _printing(history),
            "pvs": _printing(
                "  /dev/nvme0n1p2|rootvg|a--|b1Xc9k-0000-aaaa\n"
                "  [unknown]|datavg|a-m|Zq8L2p-1111-bbbb\n"
                "  /dev/nvme1n1|datavg|a--|Pp7Hh3-2222-cccc"
            ),
            "lvs": _printing(
                "  root|rootvg|-wi-ao----\n  swap|rootvg|-wi-ao----\n  data|datavg|-wi-------"
            ),
            "df": _df(41, 23),
            "free": _printing(FREE),
            "journalctl": _printing(
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
    today = _today()
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
            "systemctl": _systemctl({"falcon-sensor": "active", "sftd": "active"}),
            "dpkg-query": _dpkg_query(["falcon-sensor", "scaleft-server-tools"]),
            "df": _df(63, None),
            "free": _printing(FREE),
            "journalctl": "exit 1\n",
            "dmesg": "exit 0\n",
        },
    )


def build_sandbox(tmp_path: Path, host: FakeHost) -> tuple[Path, Path]:
    """The host's root directory and its bin (the whole PATH)."""
    root = tmp_path / "host"
    bin_dir = tmp_path / "bin"
    root.mkdir()
    bin_dir.mkdir()
    for directory in host.dirs:
        (root / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for path, content in host.files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    for tool in BASE_TOOLS:
        real = shutil.which(tool)
        assert real, f"the test machine has no {tool}"
        (bin_dir / tool).symlink_to(real)
    for name, body in host.commands.items():
        fake = bin_dir / name
        fake.write_text(f"#!{BASH}\n{body}")
        fake.chmod(0o555)
    return root, bin_dir


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


def run_post_qc(tmp_path: Path, root: Path, bin_dir: Path, **params: str) -> str:
    script = tmp_path / "post_qc_rendered.sh"
    script.write_text(render_script(load_script("linux/post_qc.sh"), params))
    env = {"PATH": str(bin_dir), "CLOUDOPS_ROOT": str(root), "HOME": str(root / "root")}
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    completed = subprocess.run(
        [BASH, str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    return completed.stdout


def test_rhel_host_passes_and_reports_every_check(tmp_path: Path) -> None:
    root, bin_dir = build_sandbox(tmp_path, rhel_host())
    before = tree_digest(root, bin_dir)

    output = run_post_qc(tmp_path, root, bin_dir, CHANGE_NUMBER="CHG0012345", WORKDIR="/root")

    assert tree_digest(root, bin_dir) == before
    assert "===== Post-patch QC for ip-10-0-1-15.ec2.internal =====" in output
    report = parse_post_report(output)
    assert report.passed, report.failure_reasons
    assert report.hostname == "ip-10-0-1-15.ec2.internal"
    assert report.last_boot == datetime(2025, 3, 8, 2, 14, 51)
    assert report.uptime_seconds == 7260
    assert report.kernel_running == RHEL_KERNEL
    assert report.kernel_target == "4.18.0-553.45.1.el8_10"
    assert report.kernel_target_source is KernelTargetSource.PATCHME
    assert report.kernel_match is True
    assert report.agents == {
        "falcon-sensor": AgentState.RUNNING,
        "besclient": AgentState.RUNNING,
        "enlinuxpc": AgentState.STOPPED,
        "sftd": AgentState.NOT_INSTALLED,
    }
    assert "EnCase (enlinuxpc) is installed but not running" in report.notes
    assert report.package_activity_today.manager == "yum"
    assert report.package_activity_today.transactions == 2
    assert report.package_activity_today.transaction_ids == ["42", "41"]
    assert (report.disk.root_used_pct, report.disk.boot_used_pct) == (41, 23)
    assert report.disk.boot_mount == "/boot"
    assert report.lvm.checked
    assert report.lvm.missing_pvs == ["uuid:Zq8L2p-1111-bbbb"]
    assert report.lvm.inactive_lvs == ["datavg/data"]
    assert (report.lvm.physical_volumes, report.lvm.logical_volumes) == (3, 3)
    assert report.health.memory_total_mb == 7682
    assert report.health.memory_available_mb == 6395
    assert report.health.failed_units == 1
    assert report.health.failed_unit_names == ["kdump.service"]
    assert report.health.critical_kernel_messages == 1


def test_rhel_host_with_crowdstrike_stopped_fails(tmp_path: Path) -> None:
    root, bin_dir = build_sandbox(tmp_path, rhel_host(falcon="inactive", enlinuxpc=None))

    report = parse_post_report(run_post_qc(tmp_path, root, bin_dir, CHANGE_NUMBER="CHG0012345"))

    assert report.agents["falcon-sensor"] is AgentState.STOPPED
    assert report.agents["enlinuxpc"] is AgentState.NOT_INSTALLED
    assert not report.passed
    assert report.failure_reasons == [
        "CrowdStrike (falcon-sensor) is installed but not running: start it "
        "(systemctl start falcon-sensor) and check why it stopped"
    ]


def test_apt_host_passes_with_the_target_from_the_prep_record(tmp_path: Path) -> None:
    root, bin_dir = build_sandbox(tmp_path, ubuntu_host())
    before = tree_digest(root, bin_dir)

    output = run_post_qc(
        tmp_path,
        root,
        bin_dir,
        CHANGE_NUMBER="CHG0012345",
        WORKDIR="/root",
        TARGET_KERNEL=f"linux-image-{UBUNTU_KERNEL}",
        TARGET_KERNEL_SOURCE="prep",
    )

    assert tree_digest(root, bin_dir) == before
    report = parse_post_report(output)
    assert report.passed, report.failure_reasons
    assert report.hostname == "web-01"
    assert report.last_boot == datetime(2025, 3, 8, 3, 7)
    assert report.kernel_target == f"linux-image-{UBUNTU_KERNEL}"
    assert report.kernel_target_source is KernelTargetSource.PREP
    assert report.kernel_match is True
    assert report.package_activity_today.manager == "apt"
    assert report.package_activity_today.transactions == 2
    assert report.agents == {
        "falcon-sensor": AgentState.RUNNING,
        "besclient": AgentState.NOT_INSTALLED,
        "enlinuxpc": AgentState.NOT_INSTALLED,
        "sftd": AgentState.RUNNING,
    }
    assert report.disk.root_used_pct == 63
    assert report.disk.boot_mount == "/"
    assert not report.lvm.checked
    assert "LVM state unknown: pvs/lvs not available or failed" in report.notes
    assert report.health.failed_units == 0
    assert report.health.critical_kernel_messages == 0


def test_apt_host_on_the_old_kernel_fails_with_a_mismatch(tmp_path: Path) -> None:
    root, bin_dir = build_sandbox(tmp_path, ubuntu_host())

    output = run_post_qc(
        tmp_path, root, bin_dir, CHANGE_NUMBER="CHG0012345", TARGET_KERNEL="5.15.0-107-generic"
    )

    report = parse_post_report(output)
    assert report.kernel_target_source is KernelTargetSource.PARAMETER
    assert report.kernel_match is False
    assert report.failure_reasons == [
        f"Kernel mismatch: running {UBUNTU_KERNEL}, expected 5.15.0-107-generic"
    ]


def test_patchme_wins_over_the_target_passed_to_the_script(tmp_path: Path) -> None:
    root, bin_dir = build_sandbox(tmp_path, rhel_host(patchme_kernel="4.18.0-553.50.1.el8_10"))

    output = run_post_qc(
        tmp_path, root, bin_dir, CHANGE_NUMBER="CHG0012345", TARGET_KERNEL=RHEL_KERNEL
    )

    report = parse_post_report(output)
    assert report.kernel_target_source is KernelTargetSource.PATCHME
    assert report.failure_reasons == [
        f"Kernel mismatch: running {RHEL_KERNEL}, expected 4.18.0-553.50.1.el8_10"
    ]


def test_a_host_without_any_of_the_tools_reports_unknown_and_does_not_crash(
    tmp_path: Path,
) -> None:
    root, bin_dir = build_sandbox(tmp_path, FakeHost())
    before = tree_digest(root, bin_dir)

    output = run_post_qc(tmp_path, root, bin_dir, CHANGE_NUMBER="CHG0012345")

    assert tree_digest(root, bin_dir) == before
    report = parse_post_report(output, target_kernel=RHEL_KERNEL)
    assert report.summary_found
    assert report.kernel_running is None
    assert report.kernel_match is None
    assert set(report.agents.values()) == {AgentState.UNKNOWN}
    assert report.disk.root_used_pct is None
    assert not report.lvm.checked
    assert report.health.failed_units is None
    assert report.health.memory_total_mb is None
    assert report.package_activity_today.transactions is None
    assert not report.passed
    assert report.failure_reasons == [
        "Running kernel unknown: the host gave no `uname -r`; check the instance by hand"
    ]


def test_hostile_values_are_neither_run_nor_let_into_the_summary(tmp_path: Path) -> None:
    host = rhel_host(patchme_kernel=f"$(touch {tmp_path}/owned)")
    host.commands["hostname"] = "echo 'evil host;$(id)`id`'\n"
    root, bin_dir = build_sandbox(tmp_path, host)
    before = tree_digest(root, bin_dir)

    output = run_post_qc(
        tmp_path,
        root,
        bin_dir,
        CHANGE_NUMBER="CHG0012345",
        TARGET_KERNEL=f"x'; touch {tmp_path}/owned; '",
    )

    assert tree_digest(root, bin_dir) == before
    report = parse_post_report(output)
    assert report.kernel_target is None
    assert report.hostname == "evil_host___id__id_"
    assert "has no usable newkernel= line" in output
    assert "TARGET_KERNEL is not a plain kernel name and was ignored" in output
    assert not (tmp_path / "owned").exists()


def test_the_summary_block_is_shell_safe(tmp_path: Path) -> None:
    host = rhel_host(patchme_kernel="4.18.0-553.45.1.el8_10")
    host.commands["hostname"] = "echo '~root:~x host$(touch owned)'\n"
    root, bin_dir = build_sandbox(tmp_path, host)
    output = run_post_qc(tmp_path, root, bin_dir, CHANGE_NUMBER="CHG0012345")
    block = output.split(SUMMARY_BEGIN + "\n", 1)[1].split(SUMMARY_END, 1)[0]
    block_file = tmp_path / "block.env"
    block_file.write_text(block)

    sourced = subprocess.run(
        [BASH, "-c", f'set -eu; . {shlex.quote(str(block_file))}; printf "%s" "$HOSTNAME"'],
        cwd=tmp_path,
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    assert sourced.stdout == "_root:_x_host__touch_owned_"
    assert not (tmp_path / "owned").exists()


def test_dnf_host_counts_only_todays_transactions(tmp_path: Path) -> None:
    today = _today()
    host = rhel_host()
    del host.commands["yum"]
    host.commands["dnf"] = _printing(
        f"""ID     | Command line                  | Date and time    | Action(s)      | Altered
--------------------------------------------------------------------------------------------
     9 | upgrade -y kernel             | {today} 02:31 | Install        |    4
     8 | install -y falcon-sensor      | 2025-01-12 10:02 | Install        |    1
     7 | -y update                     | 2024-12-01 09:00 | I, U           |  311 EE"""
    )
    # Older systemd marks failed units with a bullet even when asked for plain output.
    host.commands["systemctl"] = _systemctl(
        {"falcon-sensor": "active", "besclient": "active"},
        failed="\u25cf kdump.service loaded failed failed Crash recovery kernel arming\n"
        "\u25cf rngd.service   loaded failed failed Hardware RNG Entropy Gatherer Daemon",
    )
    root, bin_dir = build_sandbox(tmp_path, host)

    report = parse_post_report(run_post_qc(tmp_path, root, bin_dir, CHANGE_NUMBER="CHG0012345"))

    assert report.package_activity_today.manager == "dnf"
    assert report.package_activity_today.transactions == 1
    assert report.package_activity_today.transaction_ids == ["9"]
    assert report.health.failed_unit_names == ["kdump.service", "rngd.service"]
    assert report.passed


def test_an_unreadable_history_is_unknown_not_zero(tmp_path: Path) -> None:
    host = rhel_host()
    host.commands["yum"] = "echo 'Another app is currently holding the yum lock' >&2; exit 1\n"
    root, bin_dir = build_sandbox(tmp_path, host)

    output = run_post_qc(tmp_path, root, bin_dir, CHANGE_NUMBER="CHG0012345")

    assert "(Note): yum history could not be read" in output
    report = parse_post_report(output)
    assert report.package_activity_today.manager == "yum"
    assert report.package_activity_today.transactions is None
    assert report.passed


@pytest.mark.parametrize("status", ["inactive", "failed", "activating"])
def test_an_installed_agent_whose_unit_is_not_active_is_stopped(
    tmp_path: Path, status: str
) -> None:
    root, bin_dir = build_sandbox(tmp_path, rhel_host(enlinuxpc=status))

    report = parse_post_report(run_post_qc(tmp_path, root, bin_dir, CHANGE_NUMBER="CHG0012345"))

    assert report.agents["enlinuxpc"] is AgentState.STOPPED
    assert report.passed
