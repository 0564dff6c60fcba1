"""The patch window's scripts run for real on fake servers: linux/window_install.sh (the SSM
agent's reboot protocol, one reboot per change) and linux/window_preflight.sh (read only)."""

from __future__ import annotations

import subprocess

from flows.linux_patching.window.install import install_script, parse_install
from flows.linux_patching.window.preflight import parse_preflight, preflight_script
from tests.flows.scripts.fake_linux_hosts import LinuxSandbox

CHANGE = "CHG0013301"
TARGET = "4.18.0-553.45.1.el8_10"


def patchme(host: LinuxSandbox, newkernel_line: str) -> None:
    host.write(
        f"/root/{CHANGE}/patchme.sh",
        f"#!/bin/bash\n{newkernel_line}\nyum install -y kernel-$newkernel && reboot\n",
    )


def install(host: LinuxSandbox, staged: list[str]) -> subprocess.CompletedProcess[str]:
    return host.run(
        "linux/window_install.sh", {}, script_text=install_script(CHANGE, "/root", staged)
    )


def installs(host: LinuxSandbox) -> list[str]:
    return [c for c in host.calls() if c.split()[0] in ("dnf", "yum", "grubby", "reboot")]


def test_a_linux_patcher_patchme_is_read_for_its_target_and_never_run(
    rhel_host: LinuxSandbox,
) -> None:
    # The Linux Patcher names the package with its architecture; its own reboot is not used.
    patchme(rhel_host, f'newkernel="kernel-{TARGET}.x86_64"')
    rhel_host.write(f"/boot/vmlinuz-{TARGET}.x86_64", "")

    result = install(rhel_host, [TARGET])

    assert result.returncode == 194, result.stderr
    facts = parse_install(result.stdout)
    assert facts is not None and facts.state.value == "rebooting" and facts.target == TARGET
    assert installs(rhel_host) == [
        f"dnf -y install kernel-{TARGET}",
        f"grubby --set-default /boot/vmlinuz-{TARGET}.x86_64",
    ]


def test_a_patchme_changed_since_the_preflight_is_refused_and_nothing_installed(
    rhel_host: LinuxSandbox,
) -> None:
    patchme(rhel_host, 'newkernel="4.18.0-553.99.1.el8_10"')

    result = install(rhel_host, [TARGET, "5.15.0-105-generic"])

    assert result.returncode == 2
    assert "changed since the preflight; nothing installed" in result.stderr
    assert installs(rhel_host) == []


def test_a_reboot_that_never_happened_is_not_asked_for_again(rhel_host: LinuxSandbox) -> None:
    patchme(rhel_host, f'newkernel="{TARGET}"')
    rhel_host.write(f"/boot/vmlinuz-{TARGET}.x86_64", "")
    rhel_host.write("/proc/sys/kernel/random/boot_id", "same-boot\n")
    assert install(rhel_host, [TARGET]).returncode == 194

    again = install(rhel_host, [TARGET])  # the same boot: the agent did not reboot

    assert again.returncode == 1
    facts = parse_install(again.stdout)
    assert facts is not None and facts.state.value == "reboot_pending"
    assert len(installs(rhel_host)) == 2  # the first install and its grubby, nothing more


def test_the_preflight_reads_facts_and_changes_nothing(rhel_host: LinuxSandbox) -> None:
    patchme(rhel_host, f'newkernel="{TARGET}"')
    rhel_host.fake("dnf", f'echo "kernel.x86_64  {TARGET}  baseos"')
    rhel_host.fake("rpm", "exit 1")
    rhel_host.printing(
        "df",
        "Filesystem 1024-blocks Used Available Capacity Mounted on\n"
        "/dev/nvme0n1p1 1038336 900000 61440 94% /boot",
    )
    rhel_host.write("/var/run/yum.pid", "999999999\n")  # a process that is long gone
    rhel_host.write("/boot/vmlinuz-4.18.0-553.5.1.el8_10.x86_64", "small\n")
    before = rhel_host.files()

    result = rhel_host.run(
        "linux/window_preflight.sh", {}, script_text=preflight_script(CHANGE, "/root")
    )

    assert result.returncode == 0, result.stderr
    facts = parse_preflight(result.stdout)
    assert facts is not None
    assert (facts.patchme, facts.patchme_kernel) == ("present", TARGET)
    assert (facts.target_offered, facts.target_installed) == ("yes", "no")
    assert (facts.boot_free_kb, facts.boot_needed_kb) == (61440, 102400)
    assert facts.pkg_lock == "free"  # a stale pid file is no lock
    assert facts.falcon_kernel_check == "absent"
    assert rhel_host.files() - {"calls.log"} == before  # the fakes' own log of their calls
