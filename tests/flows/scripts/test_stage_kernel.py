"""Kernel staging (linux/stage_kernel.sh), the patchme.sh it writes, and the collection of the
prep files for the final report (linux/collect_prep_reports.sh), run for real on fake servers."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from flows.common.remote_scripts import load_script
from flows.linux_patching.kernels import read_staged_kernel
from flows.parsers import parse_collected_prep_files, parse_qc_report
from tests.flows.scripts.fake_linux_hosts import LinuxSandbox

CHANGE = "CHG0012345"
RHEL_TARGET = "4.18.0-553.45.1.el8_10"
UBUNTU_TARGET = "5.15.0-105-generic"
INSTALLERS = ("dnf", "yum", "rpm", "apt-get", "dpkg", "grubby", "reboot", "shutdown")


def stage(host: LinuxSandbox, kernel: str, **params: str) -> subprocess.CompletedProcess[str]:
    """stage_kernel.sh as the prep flow sends it: the patchme.sh body is window_install.sh."""
    body = load_script("linux/window_install.sh")
    return host.run(
        "linux/stage_kernel.sh",
        {"CHANGE_NUMBER": CHANGE, "NEW_KERNEL": kernel, "PATCHME_BODY": body} | params,
    )


def patchme_path(host: LinuxSandbox, workdir: str = "/root") -> Path:
    return host.server_path(f"{workdir}/{CHANGE}/patchme.sh")


def test_staging_writes_patchme_with_the_target_and_installs_nothing(
    rhel_host: LinuxSandbox,
) -> None:
    result = stage(rhel_host, RHEL_TARGET)

    assert result.returncode == 0, result.stderr
    patchme = patchme_path(rhel_host).read_text()
    assert f'newkernel="{RHEL_TARGET}"' in patchme.splitlines()
    assert read_staged_kernel(patchme) == RHEL_TARGET
    assert patchme_path(rhel_host).stat().st_mode & 0o777 == 0o700
    syntax = subprocess.run(["bash", "-n", str(patchme_path(rhel_host))], capture_output=True)
    assert syntax.returncode == 0, syntax.stderr
    # a confirmation, then the file itself
    assert result.stdout.startswith(
        f"Staged kernel {RHEL_TARGET} for change {CHANGE} in /root/{CHANGE}/patchme.sh. "
        "Nothing was installed and nothing rebooted.\n"
        "----- BEGIN patchme.sh -----\n"
    )
    assert patchme in result.stdout
    # staging never touched a package manager, the boot loader or the power
    assert [c for c in rhel_host.calls() if c.split()[0] in INSTALLERS] == []


def test_restaging_replaces_the_target_and_says_so(rhel_host: LinuxSandbox) -> None:
    stage(rhel_host, "4.18.0-553.16.1.el8_10")

    result = stage(rhel_host, RHEL_TARGET, WORKDIR="/root")

    assert result.returncode == 0, result.stderr
    assert "replaces the earlier target 4.18.0-553.16.1.el8_10" in result.stdout
    assert read_staged_kernel(patchme_path(rhel_host).read_text()) == RHEL_TARGET
    assert not list(patchme_path(rhel_host).parent.glob("*.part*"))


def test_staging_in_another_workdir(ubuntu_host: LinuxSandbox) -> None:
    result = stage(ubuntu_host, UBUNTU_TARGET, WORKDIR="/var/tmp/patching")

    assert result.returncode == 0, result.stderr
    assert read_staged_kernel(patchme_path(ubuntu_host, "/var/tmp/patching").read_text()) == (
        UBUNTU_TARGET
    )


KERNEL_INJECTIONS = [
    "4.18.0-553.45.1.el8_10; reboot",
    '4.18.0-553.45.1.el8_10"; touch {pwned}; echo "',
    "4.18.0-553.45.1.el8_10$(touch {pwned})",
    "4.18.0-553.45.1.el8_10`touch {pwned}`",
    "4.18.0-553.45.1.el8_10\ntouch {pwned}",
    "4.18.0 553",
    "4.18.0-553/../../x",
    "latest",
    "",
    "4.1" + "8" * 200,
]


@pytest.mark.parametrize("kernel", KERNEL_INJECTIONS)
def test_a_kernel_that_is_not_a_version_is_refused_and_nothing_written(
    rhel_host: LinuxSandbox, tmp_path: Path, kernel: str
) -> None:
    pwned = tmp_path / "pwned"
    before = rhel_host.files()

    result = stage(rhel_host, kernel.format(pwned=pwned))

    assert result.returncode == 2
    assert "NEW_KERNEL must be a kernel version" in result.stderr
    assert not pwned.exists()
    assert rhel_host.files() == before
    assert rhel_host.calls() == []


@pytest.mark.parametrize(
    "change", ["CHG1;reboot", "CHG1$(reboot)", "../../etc", "CHG 1", "", "C" * 51]
)
def test_a_change_number_that_is_not_a_ticket_is_refused(
    rhel_host: LinuxSandbox, change: str
) -> None:
    before = rhel_host.files()

    result = rhel_host.run(
        "linux/stage_kernel.sh", {"CHANGE_NUMBER": change, "NEW_KERNEL": RHEL_TARGET}
    )

    assert result.returncode == 2
    assert "CHANGE_NUMBER must be 1 to 50 letters" in result.stderr
    assert rhel_host.files() == before


def test_staging_that_cannot_write_fails_without_a_partial_file(rhel_host: LinuxSandbox) -> None:
    rhel_host.write(f"/root/{CHANGE}", "a file where the change folder should be")

    result = stage(rhel_host, RHEL_TARGET)

    assert result.returncode == 1
    assert "could not create the change folder" in result.stderr
    assert not any(rhel_host.server_path("/root").glob("*.part*"))


# --- What the staged patchme.sh does when the patch job runs it ----------------------------


def reboot_into(host: LinuxSandbox, kernel: str) -> None:
    """What the reboot the SSM agent does leaves: a new boot id and ``kernel`` running."""
    host.write("/proc/sys/kernel/random/boot_id", "after-reboot\n")
    host.fake("uname", f'[ "${{1:-}}" = -r ] && echo {kernel} || echo Linux')


def test_patchme_installs_makes_it_default_and_asks_the_agent_to_reboot_once(
    rhel_host: LinuxSandbox,
) -> None:
    stage(rhel_host, RHEL_TARGET)
    rhel_host.write(f"/boot/vmlinuz-{RHEL_TARGET}.x86_64", "")
    rhel_host.write("/proc/sys/kernel/random/boot_id", "before-reboot\n")

    first = rhel_host.run_file(patchme_path(rhel_host))

    # Exit 194: the SSM agent reboots and runs it again; it never reboots by itself.
    assert first.returncode == 194, first.stderr
    assert "STATE=rebooting" in first.stdout
    calls = [c for c in rhel_host.calls() if c.split()[0] in INSTALLERS]
    assert calls == [
        f"dnf -y install kernel-{RHEL_TARGET}",
        f"rpm -q kernel-{RHEL_TARGET}",
        f"grubby --set-default /boot/vmlinuz-{RHEL_TARGET}.x86_64",
    ]
    state = rhel_host.server_path(f"/root/{CHANGE}/window")
    assert (state / "reboots").read_text() == "1\n"
    assert (state / "boot_id_before").read_text() == "before-reboot\n"

    reboot_into(rhel_host, f"{RHEL_TARGET}.x86_64")
    second = rhel_host.run_file(patchme_path(rhel_host))

    assert second.returncode == 0, second.stderr
    assert "STATE=booted_target" in second.stdout
    assert "KERNEL_BEFORE=4.18.0-553.5.1.el8_10.x86_64" in second.stdout
    assert "BOOT_ID_BEFORE=before-reboot" in second.stdout
    assert len([c for c in rhel_host.calls() if c.split()[0] in INSTALLERS]) == 3  # no more


def test_patchme_never_asks_for_a_second_reboot(rhel_host: LinuxSandbox) -> None:
    stage(rhel_host, RHEL_TARGET)
    rhel_host.write(f"/boot/vmlinuz-{RHEL_TARGET}.x86_64", "")
    assert rhel_host.run_file(patchme_path(rhel_host)).returncode == 194

    reboot_into(rhel_host, "4.18.0-553.5.1.el8_10.x86_64")  # the boot fell back
    fell_back = rhel_host.run_file(patchme_path(rhel_host))
    again = rhel_host.run_file(patchme_path(rhel_host))

    for run in (fell_back, again):
        assert run.returncode == 1
        assert "STATE=booted_other" in run.stdout
        assert "will not reboot it again" in run.stderr


def test_patchme_does_not_reboot_when_the_install_fails(rhel_host: LinuxSandbox) -> None:
    stage(rhel_host, RHEL_TARGET)
    rhel_host.fake("dnf", "echo 'Error: Unable to find a match: kernel-x'; exit 1")

    result = rhel_host.run_file(patchme_path(rhel_host))

    assert result.returncode == 1
    assert "STATE=install_failed" in result.stdout
    assert "Unable to find a match" in result.stderr and "not rebooting" in result.stderr
    assert rhel_host.calls("reboot") == []
    assert not rhel_host.server_path(f"/root/{CHANGE}/window/reboots").exists()


def test_patchme_does_not_reboot_when_the_kernel_is_not_installed_after_all(
    rhel_host: LinuxSandbox,
) -> None:
    stage(rhel_host, RHEL_TARGET)
    rhel_host.fake("rpm", "exit 1")

    result = rhel_host.run_file(patchme_path(rhel_host))

    assert result.returncode == 1
    assert rhel_host.calls("reboot") == []


def test_patchme_on_ubuntu_installs_the_linux_image_package(ubuntu_host: LinuxSandbox) -> None:
    stage(ubuntu_host, UBUNTU_TARGET)

    result = ubuntu_host.run_file(patchme_path(ubuntu_host))

    assert result.returncode == 194, result.stderr
    calls = [c for c in ubuntu_host.calls() if c.split()[0] in INSTALLERS]
    assert calls == [
        f"apt-get install -y linux-image-{UBUNTU_TARGET}",
        f"dpkg -s linux-image-{UBUNTU_TARGET}",
    ]
    # No grubby on Ubuntu: the newest installed kernel boots first.
    assert "DEFAULT_ENTRY=distribution" in result.stdout


# --- Collecting the prep files for the final report ----------------------------------------


def collect(host: LinuxSandbox, **params: str) -> subprocess.CompletedProcess[str]:
    return host.run("linux/collect_prep_reports.sh", {"CHANGE_NUMBER": CHANGE} | params)


STAGED_BODY_LINE = (
    "# The rest is linux/window_install.sh of CloudOps flows (its own comments say how it works)."
)


def test_collect_prints_the_qc_report_and_patchme_between_markers(
    rhel_host: LinuxSandbox,
) -> None:
    assert rhel_host.run("linux/qc.sh", {"CHANGE_NUMBER": CHANGE}).returncode == 0
    assert stage(rhel_host, RHEL_TARGET).returncode == 0

    result = collect(rhel_host)

    assert result.returncode == 0, result.stderr
    assert "----- BEGIN CLOUDOPS FILE qc_report.txt -----\n" in result.stdout
    assert "----- END CLOUDOPS FILE patchme.sh -----\n" in result.stdout
    files = parse_collected_prep_files(result.stdout)
    qc_file = rhel_host.server_path(f"/root/{CHANGE}/qc_report.txt").read_text()
    assert files.qc_report == qc_file
    # patchme.sh up to the window_install.sh body it carries, then that body by size and
    # digest: the same body on every server would fill the report and SSM's 24,000 characters.
    staged = patchme_path(rhel_host).read_text()
    head, body = staged.split(STAGED_BODY_LINE + "\n")
    digest = hashlib.sha256(body.encode()).hexdigest()
    shown = f"# (body not shown: {len(body.encode())} bytes, sha256 {digest})\n"
    assert files.patchme == f"{head}{STAGED_BODY_LINE}\n{shown}"
    assert files.patchme is not None and read_staged_kernel(files.patchme) == RHEL_TARGET
    assert files.missing == [] and files.truncated == []
    assert parse_qc_report(files.qc_report).passed


def test_collect_names_missing_files(rhel_host: LinuxSandbox) -> None:
    rhel_host.write(f"/root/{CHANGE}/qc_report.txt", "===== QC report for x =====")

    result = collect(rhel_host)

    assert result.returncode == 0
    assert "----- CLOUDOPS FILE patchme.sh MISSING -----" in result.stdout
    files = parse_collected_prep_files(result.stdout)
    assert files.missing == ["patchme.sh"]
    assert files.patchme is None
    # a file without a final newline still ends before the END marker
    assert files.qc_report == "===== QC report for x =====\n"


def test_collect_cuts_long_files_and_says_so(rhel_host: LinuxSandbox) -> None:
    rhel_host.write(f"/root/{CHANGE}/qc_report.txt", "x" * 50 + "\n")
    stage(rhel_host, RHEL_TARGET)

    result = collect(rhel_host, MAX_FILE_BYTES="20")

    files = parse_collected_prep_files(result.stdout)
    assert files.qc_report == "x" * 20 + "\n"
    assert files.truncated == ["patchme.sh", "qc_report.txt"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"CHANGE_NUMBER": "CHG1;cat /etc/shadow"}, "CHANGE_NUMBER must be"),
        ({"WORKDIR": "/root/../etc"}, "WORKDIR must be an absolute path"),
        ({"MAX_FILE_BYTES": "all"}, "MAX_FILE_BYTES must be a whole number"),
    ],
)
def test_collect_refuses_bad_parameters(
    rhel_host: LinuxSandbox, params: dict[str, str], message: str
) -> None:
    result = collect(rhel_host, **params)

    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""
