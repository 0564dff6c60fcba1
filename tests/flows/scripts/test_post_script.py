"""post_qc.sh run for real on fake hosts built in a sandbox, and its output parsed.

Each fake host (``tests/fake_post_hosts.py``) is a sandbox directory (``$CLOUDOPS_ROOT``) plus
a ``bin`` that is the whole of PATH: a few real base tools (awk, sed, grep, ...) and fake
``uname``, ``systemctl``, ``rpm``, ``yum``, ``pvs``, ... that print what a real host of that
kind prints. A command that is not faked does not exist for the script, as on a minimal server.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from flows.common.remote_scripts import load_script, render_script
from flows.linux_patching.post_check import SUMMARY_BEGIN, SUMMARY_END
from flows.parsers import AgentState, KernelTargetSource, parse_post_report
from tests.flows.linux_patching.fake_post_hosts import (
    BASH,
    RHEL_KERNEL,
    UBUNTU_KERNEL,
    FakeHost,
    fake_systemctl,
    install_fake_host,
    printing,
    rhel_host,
    today_date,
    tree_digest,
    ubuntu_host,
)

BASE_TOOLS = ("awk", "sed", "grep", "tr", "head", "date", "cat", "timeout")


def build_sandbox(tmp_path: Path, host: FakeHost) -> tuple[Path, Path]:
    """The host's root directory and its bin (the whole PATH)."""
    root = tmp_path / "host"
    bin_dir = tmp_path / "bin"
    root.mkdir()
    bin_dir.mkdir()
    for tool in BASE_TOOLS:
        real = shutil.which(tool)
        assert real, f"the test machine has no {tool}"
        (bin_dir / tool).symlink_to(real)
    install_fake_host(host, root, bin_dir)
    return root, bin_dir


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
    today = today_date()
    host = rhel_host()
    del host.commands["yum"]
    host.commands["dnf"] = printing(
        f"""ID     | Command line                  | Date and time    | Action(s)      | Altered
--------------------------------------------------------------------------------------------
     9 | upgrade -y kernel             | {today} 02:31 | Install        |    4
     8 | install -y falcon-sensor      | 2025-01-12 10:02 | Install        |    1
     7 | -y update                     | 2024-12-01 09:00 | I, U           |  311 EE"""
    )
    # Older systemd marks failed units with a bullet even when asked for plain output.
    host.commands["systemctl"] = fake_systemctl(
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
