"""The QC engine (linux/qc.sh) and the Linux Patcher runner, run for real on fake servers."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.linux_patching.qc_report import FACTS_BEGIN
from flows.parsers import parse_qc_report
from tests.flows.scripts.fake_linux_hosts import (
    GB_KB,
    LinuxSandbox,
    apt_get,
    fake_crowdstrike,
    fake_df,
    rpm_package_manager,
)

CHANGE = "CHG0012345"

RHEL_REPORT = """===== QC report for rhel8-app01 =====
(Current date): Tue May 14 10:00:00 UTC 2024
(Server running since): 2024-04-02 06:12:44
(Current running kernel version): 4.18.0-553.5.1.el8_10.x86_64
(Is Crowdstrike running): Yes
(Current Crowdstrike Version): 7.10.16303.0
(Available Kernel Updates):
kernel.x86_64  4.18.0-553.8.1.el8_10  rhel-8-for-x86_64-baseos-rpms
kernel.x86_64  4.18.0-553.45.1.el8_10  rhel-8-for-x86_64-baseos-rpms
kernel.x86_64  4.18.0-553.16.1.el8_10  rhel-8-for-x86_64-baseos-eus-rpms-extended
(Test Repositories Result): PASSED
(Disk Space Check Result): PASSED
"""


def run_qc(host: LinuxSandbox, **params: str):
    return host.run("linux/qc.sh", {"CHANGE_NUMBER": CHANGE, **params})


def saved_report(host: LinuxSandbox, workdir: str = "/root") -> str:
    return host.server_path(f"{workdir}/{CHANGE}/qc_report.txt").read_text()


def test_rhel_report_is_written_in_the_operators_format_and_parsed(
    rhel_host: LinuxSandbox,
) -> None:
    result = run_qc(rhel_host)

    assert result.returncode == 0, result.stderr
    # Exactly the format operators read; only versions newer than the running kernel are
    # listed (not 4.18.0-513 nor the running 553.5.1), and the wrapped yum line is joined.
    assert saved_report(rhel_host) == RHEL_REPORT
    assert result.stdout.startswith(RHEL_REPORT + FACTS_BEGIN + "\n")

    report = parse_qc_report(result.stdout)
    assert report.passed, report.failure_reasons
    assert report.hostname == "rhel8-app01"
    assert report.distro == "RHEL8.10"
    assert report.available_kernels == [
        "4.18.0-553.8.1.el8_10",
        "4.18.0-553.16.1.el8_10",
        "4.18.0-553.45.1.el8_10",
    ]
    assert report.facts["PKG_MANAGER"] == "dnf"
    assert report.facts["OS_PRETTY_NAME"] == "Red Hat Enterprise Linux 8.10 (Ootpa)"
    assert report.facts["REPORT_FILE"] == f"/root/{CHANGE}/qc_report.txt"
    # dnf is preferred over yum where both exist; nothing is installed or rebooted.
    assert rhel_host.calls("dnf") == [
        "dnf -q -y makecache",
        "dnf -q list available kernel --showduplicates",
    ]
    assert rhel_host.calls("yum") == []
    assert rhel_host.calls("reboot") == []


def test_amazon_linux_2_uses_yum_and_reports_al2(al2_host: LinuxSandbox) -> None:
    result = run_qc(al2_host, WORKDIR="/var/tmp/cloudops")

    assert result.returncode == 0, result.stderr
    report = parse_qc_report(result.stdout)
    assert report.passed, report.failure_reasons
    assert report.distro == "AL2"
    assert report.kernel == "4.14.343-261.564.amzn2.x86_64"
    assert report.available_kernels == ["4.14.345-262.561.amzn2", "4.14.348-265.562.amzn2"]
    assert al2_host.calls("yum")[0] == "yum -q -y makecache"
    assert "(Test Repositories Result): PASSED" in saved_report(al2_host, "/var/tmp/cloudops")


def test_ubuntu_report_lists_newer_kernels_of_the_running_flavour(
    ubuntu_host: LinuxSandbox,
) -> None:
    result = run_qc(ubuntu_host)

    assert result.returncode == 0, result.stderr
    text = saved_report(ubuntu_host)
    assert (
        "(Available Kernel Updates):\n"
        "linux-image-5.15.0-102-generic\n"
        "linux-image-5.15.0-105-generic\n"
        "(Test Repositories Result): PASSED\n"
    ) in text
    # falconctl is found where the sensor installs it, off PATH
    assert "(Is Crowdstrike running): Yes\n" in text

    report = parse_qc_report(result.stdout)
    assert report.passed, report.failure_reasons
    assert report.distro == "Ubuntu22.04"
    assert report.kernel == "5.15.0-101-generic"
    assert report.available_kernels == ["5.15.0-102-generic", "5.15.0-105-generic"]
    assert report.facts["PKG_MANAGER"] == "apt"
    assert ubuntu_host.calls("apt-get") == ["apt-get -q update"]


@pytest.mark.parametrize(
    ("free_kb", "minimum", "result"),
    [
        (1 * GB_KB, None, "FAILED"),  # default 3 GB
        (3 * GB_KB - 1, "3", "FAILED"),
        (3 * GB_KB, "3", "PASSED"),
        (1 * GB_KB, "1", "PASSED"),
        (7 * GB_KB, "10", "FAILED"),
    ],
)
def test_disk_check_compares_free_space_in_var_with_the_minimum(
    rhel_host: LinuxSandbox, free_kb: int, minimum: str | None, result: str
) -> None:
    fake_df(rhel_host, free_kb)
    params = {"MIN_VAR_FREE_GB": minimum} if minimum else {}

    run = run_qc(rhel_host, **params)

    assert run.returncode == 0, run.stderr
    assert f"(Disk Space Check Result): {result}\n" in saved_report(rhel_host)
    report = parse_qc_report(run.stdout)
    assert report.disk_passed is (result == "PASSED")
    assert report.passed is (result == "PASSED")
    if result == "FAILED":
        assert any(
            f"less than {minimum or 3} GB is free in /var" in r for r in report.failure_reasons
        )
    assert rhel_host.calls("df") == [f"df -Pk {rhel_host.root}/var"]


def test_disk_failure_reason_says_how_much_is_free(rhel_host: LinuxSandbox) -> None:
    fake_df(rhel_host, 1258291)  # 1.2 GB

    report = parse_qc_report(run_qc(rhel_host).stdout)

    assert report.failure_reasons == [
        "disk space check FAILED: less than 3 GB is free in /var (1.2 GB free); "
        "free space in /var and run QC again"
    ]


def test_unreadable_df_fails_the_disk_check(rhel_host: LinuxSandbox) -> None:
    rhel_host.printing("df", "df: /var: No such file or directory", exit_code=1)

    report = parse_qc_report(run_qc(rhel_host).stdout)

    assert report.disk_passed is False


def test_repository_failure_is_reported_with_the_package_managers_message(
    rhel_host: LinuxSandbox,
) -> None:
    rpm_package_manager(
        rhel_host,
        "dnf",
        "",
        makecache_exit=1,
        message="Error: Failed to download metadata for repo 'rhel-8-for-x86_64-appstream-rpms'",
    )

    result = run_qc(rhel_host)

    assert result.returncode == 0
    text = saved_report(rhel_host)
    assert "(Test Repositories Result): FAILED\n" in text
    assert "(Available Kernel Updates):\nNO KERNEL UPDATES AVAILABLE\n" in text
    report = parse_qc_report(result.stdout)
    assert not report.passed
    assert report.failure_reasons == [
        "repository test FAILED: dnf makecache did not succeed (Error: Failed to download "
        "metadata for repo 'rhel-8-for-x86_64-appstream-rpms'); fix the repositories or their "
        "network access and run QC again"
    ]
    # the package manager's full output stays on the server for the operator
    log = rhel_host.server_path(f"/root/{CHANGE}/qc_repo_check.log").read_text()
    assert "Failed to download metadata" in log


def test_repository_credentials_in_the_failure_message_stay_on_the_server(
    rhel_host: LinuxSandbox,
) -> None:
    rpm_package_manager(
        rhel_host,
        "dnf",
        "",
        makecache_exit=1,
        message="Curl error (22): for https://svc-patch:S3cretPass@repo.corp/rhel8/repomd.xml"
        "?token=T0ken123 [The requested URL returned error: 401]",
    )

    result = run_qc(rhel_host)

    assert "S3cretPass" not in result.stdout and "T0ken123" not in result.stdout
    report = parse_qc_report(result.stdout)
    assert "https://repo.corp/rhel8/repomd.xml [The requested URL returned error: 401]" in (
        report.failure_reasons[0]
    )


def test_apt_repository_that_could_not_be_fetched_fails_although_apt_exits_0(
    ubuntu_host: LinuxSandbox,
) -> None:
    apt_get(
        ubuntu_host,
        "Hit:1 http://us-east-1.ec2.archive.ubuntu.com/ubuntu jammy InRelease\n"
        "Err:2 http://mirror.internal/ubuntu jammy-updates InRelease\n"
        "W: Failed to fetch http://mirror.internal/ubuntu/dists/jammy-updates/InRelease  "
        "Could not connect to mirror.internal:80\n"
        "W: Some index files failed to download. They have been ignored, or old ones used.",
        update_exit=0,
    )

    report = parse_qc_report(run_qc(ubuntu_host).stdout)

    assert report.repos_passed is False
    assert "apt-get update did not succeed" in report.failure_reasons[0]
    assert "Some index files failed to download" in report.failure_reasons[0]


def test_server_without_a_package_manager_fails_the_repository_test(
    rhel_host: LinuxSandbox,
) -> None:
    rhel_host.remove("dnf")
    rhel_host.remove("yum")

    report = parse_qc_report(run_qc(rhel_host).stdout)

    assert report.repos_passed is False
    assert "no dnf, yum or apt-get found on PATH" in report.failure_reasons[0]
    assert report.kernel_update_lines == ["NO KERNEL UPDATES AVAILABLE"]


@pytest.mark.parametrize(
    ("setup", "running", "version"),
    [
        (lambda host: fake_crowdstrike(host, rfm_state="true"), "No", "7.10.16303.0"),
        (lambda host: fake_crowdstrike(host, sensor="inactive"), "No", "7.10.16303.0"),
        (lambda host: fake_crowdstrike(host, sensor="failed"), "No", "7.10.16303.0"),
        (lambda host: host.remove("falconctl"), "No", "Not installed"),
        # a host without systemd answers is-active with an error: only falconctl counts then
        (lambda host: host.remove("systemctl"), "Yes", "7.10.16303.0"),
    ],
)
def test_crowdstrike_runs_only_when_rfm_state_is_false_and_the_sensor_is_not_stopped(
    rhel_host: LinuxSandbox,
    setup: Callable[[LinuxSandbox], None],
    running: str,
    version: str,
) -> None:
    setup(rhel_host)

    result = run_qc(rhel_host)

    text = saved_report(rhel_host)
    assert f"(Is Crowdstrike running): {running}\n" in text
    assert f"(Current Crowdstrike Version): {version}\n" in text
    report = parse_qc_report(result.stdout)
    assert report.crowdstrike_running is (running == "Yes")
    assert report.passed is (running == "Yes")
    assert parse_qc_report(result.stdout, require_crowdstrike=False).passed


INJECTIONS = [
    "CHG1; touch {pwned}",
    "CHG1$(touch {pwned})",
    "CHG1`touch {pwned}`",
    "CHG1' ; touch {pwned} ; '",
    "../../tmp",
    "CHG 1",
    "",
    "C" * 51,
    "CHG1\ntouch {pwned}",
]


@pytest.mark.parametrize("change", INJECTIONS)
def test_change_number_that_is_not_a_ticket_number_is_refused(
    rhel_host: LinuxSandbox, tmp_path: Path, change: str
) -> None:
    pwned = tmp_path / "pwned"
    before = rhel_host.files()

    result = rhel_host.run("linux/qc.sh", {"CHANGE_NUMBER": change.format(pwned=pwned)})

    assert result.returncode == 2
    assert "CHANGE_NUMBER must be 1 to 50 letters" in result.stderr
    assert result.stdout == ""
    assert not pwned.exists()
    assert rhel_host.calls() == []  # nothing ran
    assert rhel_host.files() == before  # nothing written


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"WORKDIR": "root"}, "WORKDIR must be an absolute path"),
        ({"WORKDIR": "/root/../../etc"}, "WORKDIR must be an absolute path"),
        ({"WORKDIR": "/root;touch /tmp/x"}, "WORKDIR must be an absolute path"),
        ({"WORKDIR": "/root/$(id)"}, "WORKDIR must be an absolute path"),
        ({"MIN_VAR_FREE_GB": "3; reboot"}, "MIN_VAR_FREE_GB must be a whole number"),
        ({"MIN_VAR_FREE_GB": "2.5"}, "MIN_VAR_FREE_GB must be a whole number"),
        ({"REPO_TIMEOUT_SECONDS": "0"}, "REPO_TIMEOUT_SECONDS must be a whole number"),
    ],
)
def test_other_bad_parameters_are_refused_before_anything_runs(
    rhel_host: LinuxSandbox, params: dict[str, str], message: str
) -> None:
    before = rhel_host.files()

    result = run_qc(rhel_host, **params)

    assert result.returncode == 2
    assert message in result.stderr
    assert rhel_host.calls() == []
    assert rhel_host.files() == before


def test_report_is_still_printed_when_it_cannot_be_saved(rhel_host: LinuxSandbox) -> None:
    rhel_host.write("/root", "a file where the work directory should be")

    result = run_qc(rhel_host)

    assert result.returncode == 1
    assert "not saved on the server" in result.stderr
    assert parse_qc_report(result.stdout).passed


# --- The external Linux Patcher ------------------------------------------------------------

PATCHER = """#!/bin/bash
# Stand-in for the team's Linux Patcher: QC with -q, anything else would patch.
printf '%s\\n' "linux_patcher $*" >>"$FAKE_CALLS"
if [ "${1:-}" != "-q" ] && [ "${1:-}" != "--qc-only" ]; then
    echo "PATCHING NOW"
    exit 9
fi
B=$'\\e[1m'; G=$'\\e[1;32m'; N=$'\\e[0m'
echo "Linux Patcher v3.2 - QC mode"
echo "${B}===== QC report for $(hostname) =====${N}"
echo "${B}(Current date):${N} $(date)"
echo "${B}(Server running since):${N} $(uptime -s)"
echo "${B}(Current running kernel version):${N} $(uname -r)"
echo "${B}(Is Crowdstrike running):${N} ${G}Yes${N}"
echo "${B}(Current Crowdstrike Version):${N} 7.10.16303.0"
echo "${B}(Available Kernel Updates):${N}"
echo "kernel.x86_64    4.18.0-553.45.1.el8_10    rhel-8-for-x86_64-baseos-rpms"
echo "${B}(Test Repositories Result):${N} ${G}PASSED${N}"
echo "${B}(Disk Space Check Result):${N} ${G}PASSED${N}"
"""


def serve(host: LinuxSandbox, content: str) -> Path:
    """Fake curl, wget and aws s3 cp that 'download' ``content`` from any location."""
    served = host.base / "served-patcher"
    served.write_text(content)
    host.fake(
        "curl",
        f"""out=""
while [ $# -gt 0 ]; do
    case "$1" in
        -o) out="$2"; shift 2 ;;
        --proto|--proto-redir|--retry|--max-time) shift 2 ;;
        *) shift ;;
    esac
done
cp {served} "$out\"""",
    )
    host.fake("aws", f'[ "$1 $2" = "s3 cp" ] || exit 1\ncp {served} "${{@: -1}}"')
    return served


def run_patcher(host: LinuxSandbox, **params: str):
    return host.run(
        "linux/linux_patcher_qc.sh",
        {"CHANGE_NUMBER": CHANGE, "PATCHER_URL": "https://repo.example.com/linux_patcher.sh"}
        | params,
    )


def test_patcher_is_downloaded_run_in_qc_mode_and_its_report_saved(
    rhel_host: LinuxSandbox,
) -> None:
    serve(rhel_host, PATCHER)

    result = run_patcher(rhel_host)

    assert result.returncode == 0, result.stderr
    assert rhel_host.calls("linux_patcher") == ["linux_patcher -q"]
    curl = rhel_host.calls("curl")
    assert len(curl) == 1 and curl[0].endswith("https://repo.example.com/linux_patcher.sh")
    assert rhel_host.server_path(f"/root/{CHANGE}/linux_patcher.sh").exists()
    saved = saved_report(rhel_host)
    assert "\x1b[1m===== QC report for rhel8-app01 =====\x1b[0m" in saved

    report = parse_qc_report(result.stdout)
    assert report.passed, report.failure_reasons
    assert report.distro == "RHEL8.10"  # from /etc/os-release, in the facts block
    assert report.facts["QC_ENGINE"] == "linux-patcher"
    assert report.facts["PATCHER_EXIT_CODE"] == "0"
    assert report.available_kernels == ["4.18.0-553.45.1.el8_10"]
    assert parse_qc_report(saved).passed  # the saved file reads the same


def test_patcher_from_s3_with_its_own_qc_switch(rhel_host: LinuxSandbox) -> None:
    serve(rhel_host, PATCHER)

    result = run_patcher(
        rhel_host,
        PATCHER_URL="s3://ops-tools-bucket/patcher/linux_patcher.sh",
        PATCHER_ARGS="--qc-only --report-dir=/root",
    )

    assert result.returncode == 0, result.stderr
    assert rhel_host.calls("aws")[0].startswith(
        "aws s3 cp --only-show-errors s3://ops-tools-bucket/patcher/linux_patcher.sh "
    )
    assert rhel_host.calls("linux_patcher") == ["linux_patcher --qc-only --report-dir=/root"]
    assert parse_qc_report(result.stdout).passed


def test_empty_patcher_args_still_run_qc_mode(rhel_host: LinuxSandbox) -> None:
    serve(rhel_host, PATCHER)

    result = run_patcher(rhel_host, PATCHER_ARGS="")

    assert rhel_host.calls("linux_patcher") == ["linux_patcher -q"]
    assert "PATCHING NOW" not in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("<html><body>403 Forbidden</body></html>\n", "is not a shell script"),
        ("", "is empty"),
        ("#!/bin/bash\nif then fi (\n", "has bash syntax errors"),
        ("#!/usr/bin/python3\nprint('hi')\n", "is not a shell script"),
    ],
)
def test_a_download_that_is_not_a_sound_shell_script_is_never_run(
    rhel_host: LinuxSandbox, content: str, message: str
) -> None:
    serve(rhel_host, content)

    result = run_patcher(rhel_host)

    assert result.returncode == 3
    assert message in result.stderr
    assert rhel_host.calls("linux_patcher") == []
    change_dir = rhel_host.server_path(f"/root/{CHANGE}")
    assert not (change_dir / "linux_patcher.sh").exists()
    assert not any(change_dir.glob("*.part"))


def test_patcher_checksum_is_enforced_when_given(rhel_host: LinuxSandbox) -> None:
    serve(rhel_host, PATCHER)
    good = hashlib.sha256(PATCHER.encode()).hexdigest()

    wrong = run_patcher(rhel_host, PATCHER_SHA256="0" * 64)
    assert wrong.returncode == 3
    assert "not the expected" in wrong.stderr
    assert rhel_host.calls("linux_patcher") == []

    right = run_patcher(rhel_host, PATCHER_SHA256=good.upper())
    assert right.returncode == 0, right.stderr
    assert rhel_host.calls("linux_patcher") == ["linux_patcher -q"]


def test_failed_download_does_not_show_a_presigned_urls_signature(
    rhel_host: LinuxSandbox,
) -> None:
    rhel_host.fake("curl", "exit 22")

    result = run_patcher(
        rhel_host,
        PATCHER_URL="https://tools.s3.amazonaws.com/linux_patcher.sh?X-Amz-Signature=deadbeef",
    )

    assert result.returncode == 3
    assert "https://tools.s3.amazonaws.com/linux_patcher.sh" in result.stderr
    assert "deadbeef" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"PATCHER_URL": "http://repo.example.com/p.sh"}, "PATCHER_URL must be an https://"),
        ({"PATCHER_URL": "https://x.example.com/$(reboot)"}, "PATCHER_URL must be an https://"),
        ({"PATCHER_URL": "https://x.example.com/a b"}, "PATCHER_URL must be an https://"),
        ({"PATCHER_URL": "file:///etc/shadow"}, "PATCHER_URL must be an https://"),
        ({"PATCHER_ARGS": "-q; reboot"}, "PATCHER_ARGS may hold only"),
        ({"PATCHER_ARGS": "$(reboot)"}, "PATCHER_ARGS may hold only"),
        ({"PATCHER_ARGS": "-q `reboot`"}, "PATCHER_ARGS may hold only"),
        ({"PATCHER_SHA256": "abc"}, "PATCHER_SHA256 must be 64"),
        ({"CHANGE_NUMBER": "CHG1;reboot"}, "CHANGE_NUMBER must be"),
    ],
)
def test_patcher_parameters_are_validated_before_anything_runs(
    rhel_host: LinuxSandbox, params: dict[str, str], message: str
) -> None:
    serve(rhel_host, PATCHER)
    before = rhel_host.files()

    result = run_patcher(rhel_host, **params)

    assert result.returncode == 2
    assert message in result.stderr
    assert rhel_host.calls() == []
    assert rhel_host.files() == before
