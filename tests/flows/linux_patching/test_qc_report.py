"""The QC report parser on reports from our engine and from the external Linux Patcher."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.common.text import clean_output
from flows.linux_patching.kernels import read_staged_kernel
from flows.parsers import parse_collected_prep_files, parse_qc_report

SAMPLES = Path(__file__).parent / "samples" / "qc"


def sample(name: str) -> str:
    # Bytes, so CRLF line ends and escape codes reach the parser as a server sent them.
    return (SAMPLES / name).read_bytes().decode("utf-8")


def test_samples_carry_the_colour_codes_real_reports_have() -> None:
    assert "\x1b[" in sample("rhel810_patcher.txt")
    assert "\r\n" in sample("rhel94_engine.txt")


def test_rhel_8_10_patcher_report_passes_with_kernels_sorted_as_versions() -> None:
    report = parse_qc_report(sample("rhel810_patcher.txt"))

    assert report.passed
    assert report.failure_reasons == []
    assert report.hostname == "rhel8-app01.corp.example.com"
    assert report.date == "Tue May 14 10:00:00 UTC 2024"
    assert report.uptime == "2024-04-02 06:12:44"
    assert report.kernel == "4.18.0-553.5.1.el8_10.x86_64"
    assert report.distro == "RHEL8.10"  # no facts block: from the .el8_10 suffix
    assert report.crowdstrike_running is True
    assert report.crowdstrike_version == "7.10.16303.0"
    assert report.repos_passed is True
    assert report.disk_passed is True
    # 8.1 < 16.1 < 45.1 as versions, although "45" < "8" as strings; the wrapped yum line
    # (package name alone, version on the next line) is read too.
    assert report.available_kernels == [
        "4.18.0-553.8.1.el8_10",
        "4.18.0-553.16.1.el8_10",
        "4.18.0-553.45.1.el8_10",
    ]
    assert not any("\x1b" in line for line in report.kernel_update_lines)


def test_rhel_9_engine_report_takes_distro_from_facts_and_dedupes_kernel_core() -> None:
    report = parse_qc_report(sample("rhel94_engine.txt"))

    assert report.passed
    assert report.distro == "RHEL9.4"
    assert report.facts["PKG_MANAGER"] == "dnf"
    assert report.kernel == "5.14.0-427.13.1.el9_4.x86_64"
    assert report.available_kernels == ["5.14.0-427.22.1.el9_4", "5.14.0-427.100.1.el9_4"]


def test_amazon_linux_2_report_lists_a_disk_failure() -> None:
    report = parse_qc_report(sample("al2_patcher_disk_failed.txt"))

    assert not report.passed
    assert report.distro == "AL2"
    assert report.disk_passed is False
    assert report.repos_passed is True
    assert len(report.failure_reasons) == 1
    assert "disk space check FAILED" in report.failure_reasons[0]
    assert "/var" in report.failure_reasons[0]
    assert report.available_kernels == ["4.14.345-262.561.amzn2", "4.14.348-265.562.amzn2"]


def test_amazon_linux_2023_report_fails_when_crowdstrike_is_not_running() -> None:
    report = parse_qc_report(sample("al2023_engine_crowdstrike_rfm.txt"))

    assert report.distro == "AL2023"
    assert report.crowdstrike_running is False
    assert not report.passed
    assert len(report.failure_reasons) == 1
    assert "CrowdStrike is not running" in report.failure_reasons[0]
    assert report.available_kernels == ["6.1.84-99.169.amzn2023", "6.1.90-99.173.amzn2023"]


def test_crowdstrike_requirement_can_be_switched_off() -> None:
    report = parse_qc_report(sample("al2023_engine_crowdstrike_rfm.txt"), require_crowdstrike=False)

    assert report.passed
    assert report.failure_reasons == []
    assert report.crowdstrike_running is False  # still reported, only not required


def test_ubuntu_report_reads_apt_lines_and_release_from_the_suite() -> None:
    report = parse_qc_report(sample("ubuntu2204_patcher.txt"))

    assert report.passed
    assert report.distro == "Ubuntu22.04"  # from the jammy suite of the apt lines
    assert report.kernel == "5.15.0-101-generic"
    # versioned package, flavour meta package (5.15.0.106.106 -> 5.15.0-106-generic), bare name
    assert report.available_kernels == [
        "5.15.0-102-generic",
        "5.15.0-105-generic",
        "5.15.0-106-generic",
    ]


def test_every_failed_check_is_listed_with_what_to_do() -> None:
    report = parse_qc_report(sample("rhel810_engine_repos_disk_failed.txt"))

    assert not report.passed
    assert report.available_kernels == []
    assert report.kernel_update_lines == ["NO KERNEL UPDATES AVAILABLE"]
    reasons = report.failure_reasons
    assert len(reasons) == 3
    repos, disk, crowdstrike = reasons
    assert "repository test FAILED" in repos
    assert "dnf makecache" in repos
    assert "Failed to download metadata for repo 'rhel-8-for-x86_64-baseos-rpms'" in repos
    assert "less than 3 GB is free in /var (1.2 GB free)" in disk
    assert "CrowdStrike is not running" in crowdstrike
    # facts say RHEL 8.10 even though the running kernel is an 8.9 build
    assert report.distro == "RHEL8.10"


def test_report_cut_short_fails_naming_the_missing_lines() -> None:
    report = parse_qc_report(sample("rhel810_cut_short.txt"))

    assert not report.passed
    assert report.repos_passed is None
    assert report.disk_passed is None
    missing = [r for r in report.failure_reasons if "has no" in r]
    assert len(missing) == 2
    assert "(Test Repositories Result)" in missing[0]
    assert "(Disk Space Check Result)" in missing[1]


def test_output_without_a_report_fails_with_a_reason() -> None:
    report = parse_qc_report("bash: line 1: /root/CHG1/qc.sh: Permission denied\n")

    assert not report.passed
    assert "header" in report.failure_reasons[0]
    assert len(report.failure_reasons) == 1 + 8  # the header and each of the eight facts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PASSED", True),
        ("FAILED", False),
        ("\x1b[1;32mPASSED\x1b[0m", True),
        ("passed (7.0 GB free)", True),
        ("NOT PASSED", None),
        ("maybe", None),
    ],
)
def test_check_results_are_read_whatever_their_colour(value: str, expected: bool | None) -> None:
    text = sample("rhel810_patcher.txt").replace(
        "(Disk Space Check Result):\x1b[0m \x1b[1;32mPASSED\x1b[0m",
        f"(Disk Space Check Result): {value}",
    )
    report = parse_qc_report(text)

    assert report.disk_passed is expected
    assert report.passed is (expected is True)
    if expected is None:
        assert any("neither PASSED nor FAILED" in r for r in report.failure_reasons)


def test_only_the_first_report_is_read_when_output_holds_two() -> None:
    first = sample("rhel810_patcher.txt")
    second = sample("al2_patcher_disk_failed.txt")

    report = parse_qc_report(first + second)

    assert report.hostname == "rhel8-app01.corp.example.com"
    assert report.passed


def test_clean_output_removes_colour_and_carriage_returns() -> None:
    assert clean_output("\x1b[1;31mFAILED\x1b[0m\r\nnext\x07") == "FAILED\nnext"


REPORT_LINES = sample("rhel810_patcher.txt").splitlines() + sample("rhel94_engine.txt").split(
    "\r\n"
)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parser_never_raises_on_any_text(text: str) -> None:
    report = parse_qc_report(text)

    assert report.passed is (not report.failure_reasons)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(REPORT_LINES), st.text(max_size=40)), max_size=40),
    st.booleans(),
)
def test_parser_never_raises_on_shuffled_report_lines(lines: list[str], require: bool) -> None:
    report = parse_qc_report("\n".join(lines), require_crowdstrike=require)

    assert report.passed is (not report.failure_reasons)
    if report.passed:
        assert report.repos_passed and report.disk_passed and report.kernel
    for kernel in report.available_kernels:
        assert kernel == kernel.strip() and kernel


COLLECTED = """----- BEGIN CLOUDOPS FILE qc_report.txt -----
===== QC report for rhel9-db02 =====
(Current running kernel version): 5.14.0-427.13.1.el9_4.x86_64
----- END CLOUDOPS FILE qc_report.txt -----
----- BEGIN CLOUDOPS FILE patchme.sh -----
#!/bin/bash
newkernel="5.14.0-427.100.1.el9_4"
----- END CLOUDOPS FILE patchme.sh -----
"""


def test_collected_prep_files_are_split_and_the_staged_kernel_read() -> None:
    files = parse_collected_prep_files(COLLECTED)

    assert files.qc_report is not None
    assert files.qc_report.startswith("===== QC report for rhel9-db02 =====\n")
    assert files.patchme == '#!/bin/bash\nnewkernel="5.14.0-427.100.1.el9_4"\n'
    assert read_staged_kernel(files.patchme) == "5.14.0-427.100.1.el9_4"
    assert files.missing == []
    assert files.truncated == []


def test_collected_prep_files_report_missing_and_cut_files() -> None:
    text = (
        "----- CLOUDOPS FILE patchme.sh MISSING -----\n"
        "----- BEGIN CLOUDOPS FILE qc_report.txt -----\n"
        "===== QC report for x =====\n"
    )
    files = parse_collected_prep_files(text)

    assert files.patchme is None
    assert files.missing == ["patchme.sh"]
    assert files.truncated == ["qc_report.txt"]
    assert files.qc_report == "===== QC report for x =====\n"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_collected_prep_files_parser_never_raises(text: str) -> None:
    files = parse_collected_prep_files(text)

    if files.qc_report is None:
        assert "qc_report.txt" in files.missing
    if files.patchme is None:
        assert "patchme.sh" in files.missing
