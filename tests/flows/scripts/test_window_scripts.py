"""The patch window's scripts run for real on fake servers: linux/window_install.sh (the SSM
agent's reboot protocol, one reboot per change) and linux/window_preflight.sh (read only)."""

from __future__ import annotations

import stat
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


# --- The change folder (issue 14, item 10: root must not write through another user's link) --


def test_a_link_planted_as_the_window_folder_is_refused_and_nothing_installed(
    rhel_host: LinuxSandbox,
) -> None:
    patchme(rhel_host, f'newkernel="{TARGET}"')
    rhel_host.server_path(f"/root/{CHANGE}").chmod(0o700)
    elsewhere = rhel_host.server_path("/etc/cron.d")
    elsewhere.mkdir(parents=True)
    rhel_host.server_path(f"/root/{CHANGE}/window").symlink_to(elsewhere)

    result = install(rhel_host, [TARGET])

    assert result.returncode == 2
    assert f"the folder /root/{CHANGE}/window is a symbolic link" in result.stderr
    assert parse_install(result.stdout).state == "refused"
    assert installs(rhel_host) == [] and list(elsewhere.iterdir()) == []


def test_a_change_folder_every_user_may_write_is_refused_and_nothing_installed(
    rhel_host: LinuxSandbox,
) -> None:
    patchme(rhel_host, f'newkernel="{TARGET}"')
    rhel_host.server_path(f"/root/{CHANGE}").chmod(0o777)

    result = install(rhel_host, [TARGET])

    assert result.returncode == 2
    assert f"the change folder /root/{CHANGE} is writable by every user" in result.stderr
    assert installs(rhel_host) == []


def test_the_window_folder_is_made_private(rhel_host: LinuxSandbox) -> None:
    patchme(rhel_host, f'newkernel="{TARGET}"')
    rhel_host.server_path(f"/root/{CHANGE}").chmod(0o700)

    result = install(rhel_host, [TARGET])

    assert result.returncode != 2, result.stderr  # past the folder checks, to the install
    window = rhel_host.server_path(f"/root/{CHANGE}/window")
    assert stat.S_IMODE(window.stat().st_mode) == 0o700


def test_the_preflight_names_a_linked_patchme_and_reads_nothing_through_it(
    rhel_host: LinuxSandbox,
) -> None:
    planted = rhel_host.write("/home/someone/patchme.sh", f'newkernel="{TARGET}"\n')
    rhel_host.server_path(f"/root/{CHANGE}").mkdir(parents=True, mode=0o700)
    rhel_host.server_path(f"/root/{CHANGE}/patchme.sh").symlink_to(planted)

    result = rhel_host.run(
        "linux/window_preflight.sh", {}, script_text=preflight_script(CHANGE, "/root")
    )

    facts = parse_preflight(result.stdout)
    assert facts is not None
    assert (facts.patchme, facts.patchme_kernel) == ("a symbolic link", None)
