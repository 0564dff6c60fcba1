"""parse_post_report on recorded post_qc.sh outputs (tests/flows/linux_patching/samples/post/)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.linux_patching.post_check import SUMMARY_BEGIN, SUMMARY_END
from flows.parsers import AgentState, KernelTargetSource, PostReport, parse_post_report

SAMPLES = Path(__file__).parent / "samples" / "post"
RHEL_RUNNING = "4.18.0-553.45.1.el8_10.x86_64"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


def with_yum_history(text: str, rows: int) -> str:
    """The same report with ``rows`` yum transactions today instead of the recorded ones."""
    lines = [
        f"     {100 + i} | update -y pkg{i} | 2025-03-08 0{i % 10}:00 | Upgrade | {i + 1}"
        for i in range(rows)
    ]
    human = re.sub(
        r"\(Package transactions today\): \d+\n(?: {4}.*\n)*",
        lambda _: f"(Package transactions today): {rows}\n" + "".join(f"{x}\n" for x in lines),
        text,
    )
    ids = ",".join(str(100 + i) for i in range(rows))
    human = re.sub(r"PKG_TRANSACTIONS_TODAY=\d+", f"PKG_TRANSACTIONS_TODAY={rows}", human)
    return re.sub(r"PKG_TRANSACTION_IDS=.*", f"PKG_TRANSACTION_IDS={ids}", human)


def test_passing_rhel_host() -> None:
    report = parse_post_report(sample("rhel8_passed.txt"))

    assert report.passed
    assert report.failure_reasons == []
    assert report.summary_found
    assert report.hostname == "ip-10-0-1-15.ec2.internal"
    assert report.checked_at == "2025-03-08T04:15:51+0000"
    assert report.last_boot == datetime(2025, 3, 8, 2, 14, 51)
    assert report.kernel_running == RHEL_RUNNING
    assert report.kernel_target == "4.18.0-553.45.1.el8_10"
    assert report.kernel_target_source is KernelTargetSource.PATCHME
    assert report.kernel_match is True
    assert report.agents["falcon-sensor"] is AgentState.RUNNING
    assert report.agents["besclient"] is AgentState.RUNNING
    assert report.package_activity_today.manager == "yum"
    assert report.package_activity_today.transactions == 2
    assert report.disk.root_used_pct == 41
    assert report.disk.boot_used_pct == 23
    # Findings that are only informational: reported, not failing.
    assert report.lvm.missing_pvs == ["uuid:Zq8L2p-1111-bbbb"]
    assert report.lvm.inactive_lvs == ["datavg/data"]
    assert report.health.failed_units == 1
    assert report.health.critical_kernel_messages == 1
    assert report.notes == [
        "EnCase (enlinuxpc) is installed but not running",
        "LVM physical volumes missing: uuid:Zq8L2p-1111-bbbb",
        "LVM logical volumes inactive: datavg/data",
        "1 failed systemd unit(s): kdump.service",
        "1 critical kernel message(s) this boot",
    ]


def test_passing_apt_host() -> None:
    report = parse_post_report(sample("ubuntu2204_passed.txt"))

    assert report.passed, report.failure_reasons
    assert report.kernel_running == "5.15.0-105-generic"
    assert report.kernel_target == "linux-image-5.15.0-105-generic"
    assert report.kernel_target_source is KernelTargetSource.PREP
    assert report.kernel_match is True
    assert report.package_activity_today.manager == "apt"
    assert report.package_activity_today.transactions == 2
    assert report.package_activity_today.transaction_ids == []
    assert report.agents == {
        "falcon-sensor": AgentState.RUNNING,
        "besclient": AgentState.NOT_INSTALLED,
        "enlinuxpc": AgentState.NOT_INSTALLED,
        "sftd": AgentState.RUNNING,
    }
    assert report.disk.boot_mount == "/"
    assert not report.lvm.checked
    assert report.lvm.physical_volumes is None


def test_kernel_mismatch_fails_with_both_kernels_named() -> None:
    report = parse_post_report(sample("rhel8_kernel_mismatch.txt"))

    assert not report.passed
    assert report.kernel_match is False
    assert report.failure_reasons == [
        "Kernel mismatch: running 4.18.0-553.el8_10.x86_64, expected 4.18.0-553.45.1.el8_10"
    ]
    assert report.package_activity_today.transactions == 0
    assert "No yum package transaction today" in report.notes


def test_a_kernel_newer_than_the_target_fails_as_newer_unless_accepted() -> None:
    text = sample("rhel8_kernel_mismatch.txt")
    older_target = "4.18.0-513.24.1.el8_9"

    refused = parse_post_report(text.replace("4.18.0-553.45.1.el8_10", older_target))
    accepted = parse_post_report(
        text.replace("4.18.0-553.45.1.el8_10", older_target), accept_newer_kernel=True
    )

    newer = f"Kernel newer than staged (4.18.0-553.el8_10 > {older_target})"
    assert not refused.passed and refused.kernel_newer is True
    assert refused.failure_reasons[0].startswith(newer)
    assert "accept_newer_kernel" in refused.failure_reasons[0]
    assert accepted.passed and accepted.kernel_match is False and accepted.kernel_newer is True
    assert f"{newer}: accepted (accept_newer_kernel)" in accepted.notes


def test_required_agents_are_the_callers_choice() -> None:
    report = parse_post_report(
        sample("rhel8_crowdstrike_stopped.txt"), required_agents=("besclient",)
    )

    assert report.passed
    assert "CrowdStrike (falcon-sensor) is installed but not running" in report.notes


def test_crowdstrike_installed_but_stopped_fails() -> None:
    report = parse_post_report(sample("rhel8_crowdstrike_stopped.txt"))

    assert not report.passed
    assert report.agents["falcon-sensor"] is AgentState.STOPPED
    assert report.failure_reasons == [
        "CrowdStrike (falcon-sensor) is installed but not running: start it "
        "(systemctl start falcon-sensor) and check why it stopped"
    ]
    assert report.health.failed_unit_names == ["falcon-sensor.service", "kdump.service"]


def test_bigfix_installed_but_stopped_fails() -> None:
    report = parse_post_report(sample("rhel8_bigfix_stopped.txt"))

    assert not report.passed
    assert report.agents["besclient"] is AgentState.STOPPED
    assert report.agents["enlinuxpc"] is AgentState.RUNNING
    assert report.failure_reasons == [
        "BigFix (besclient) is installed but not running: start it "
        "(systemctl start besclient) and check why it stopped"
    ]


def test_encase_or_scaleft_stopped_does_not_fail() -> None:
    text = sample("rhel8_passed.txt").replace("AGENT_SFTD=not_installed", "AGENT_SFTD=stopped")

    report = parse_post_report(text)

    assert report.agents["enlinuxpc"] is AgentState.STOPPED
    assert report.agents["sftd"] is AgentState.STOPPED
    assert report.passed
    assert "EnCase (enlinuxpc) is installed but not running" in report.notes
    assert "ScaleFT (sftd) is installed but not running" in report.notes


def test_crowdstrike_not_installed_does_not_fail() -> None:
    text = sample("rhel8_passed.txt").replace(
        "AGENT_FALCON_SENSOR=running", "AGENT_FALCON_SENSOR=not_installed"
    )

    report = parse_post_report(text)

    assert report.agents["falcon-sensor"] is AgentState.NOT_INSTALLED
    assert report.passed


def test_no_patchme_and_no_prep_record_takes_the_target_from_the_parameter() -> None:
    text = sample("rhel8_no_target.txt")

    report = parse_post_report(text, target_kernel="kernel-4.18.0-553.45.1.el8_10")

    assert report.passed, report.failure_reasons
    assert report.kernel_target == "kernel-4.18.0-553.45.1.el8_10"
    assert report.kernel_target_source is KernelTargetSource.PARAMETER
    assert report.kernel_match is True


def test_target_from_the_prep_record_is_labelled_so() -> None:
    report = parse_post_report(
        sample("rhel8_no_target.txt"),
        target_kernel="4.18.0-553.50.1.el8_10",
        target_kernel_source=KernelTargetSource.PREP,
    )

    assert report.kernel_target_source is KernelTargetSource.PREP
    assert report.failure_reasons == [
        f"Kernel mismatch: running {RHEL_RUNNING}, expected 4.18.0-553.50.1.el8_10"
    ]


def test_the_target_found_on_the_host_wins_over_the_one_passed_in() -> None:
    report = parse_post_report(sample("rhel8_passed.txt"), target_kernel="4.18.0-1.el8")

    assert report.kernel_target == "4.18.0-553.45.1.el8_10"
    assert report.kernel_target_source is KernelTargetSource.PATCHME
    assert report.passed


def test_no_target_at_all_cannot_prove_the_kernel() -> None:
    report = parse_post_report(sample("rhel8_no_target.txt"))

    assert report.kernel_match is None
    assert report.kernel_target_source is KernelTargetSource.NONE
    assert not report.passed
    assert report.failure_reasons == [
        "No target kernel known: no patchme.sh on the instance, no prep record and no "
        "target_kernel parameter; pass target_kernel to verify the patch"
    ]


@pytest.mark.parametrize("rows", [0, 1, 7, 60])
def test_verdict_does_not_depend_on_the_number_of_yum_history_lines(rows: int) -> None:
    passing = parse_post_report(with_yum_history(sample("rhel8_passed.txt"), rows))
    failing = parse_post_report(with_yum_history(sample("rhel8_kernel_mismatch.txt"), rows))

    assert passing.package_activity_today.transactions == rows
    assert len(passing.package_activity_today.transaction_ids) == rows
    assert passing.passed
    assert not failing.passed
    assert failing.failure_reasons == [
        "Kernel mismatch: running 4.18.0-553.el8_10.x86_64, expected 4.18.0-553.45.1.el8_10"
    ]


def test_colour_codes_and_windows_line_ends_are_tolerated() -> None:
    text = sample("rhel8_crowdstrike_stopped.txt").replace("\n", "\r\n")
    text = text.replace(SUMMARY_BEGIN, f"\x1b[1;32m{SUMMARY_BEGIN}\x1b[0m")

    report = parse_post_report(text)

    assert report.summary_found
    assert report.agents["falcon-sensor"] is AgentState.STOPPED
    assert not report.passed


def test_the_last_summary_block_is_the_one_read() -> None:
    text = sample("rhel8_kernel_mismatch.txt") + sample("rhel8_passed.txt")

    assert parse_post_report(text).passed


def test_output_without_a_summary_block_fails_with_the_reason() -> None:
    human_only = sample("rhel8_passed.txt").split(SUMMARY_BEGIN)[0]

    report = parse_post_report(human_only)

    assert not report.passed
    assert not report.summary_found
    assert report.failure_reasons[0].startswith("No post-check summary block in the output")


def test_a_truncated_summary_block_fails_with_the_reason() -> None:
    truncated = sample("rhel8_passed.txt").split("AGENT_BESCLIENT")[0]

    report = parse_post_report(truncated)

    assert not report.passed
    assert report.failure_reasons[0].startswith("The post-check summary block is cut off")


def test_a_summary_of_another_version_is_refused() -> None:
    text = sample("rhel8_passed.txt").replace("SUMMARY_VERSION=1", "SUMMARY_VERSION=2")

    report = parse_post_report(text)

    assert not report.passed
    assert "version 2" in report.failure_reasons[0]


def test_unmeasured_facts_are_none_not_zero() -> None:
    text = (
        sample("ubuntu2204_passed.txt")
        .replace("FAILED_UNITS=0", "FAILED_UNITS=unknown")
        .replace("DISK_ROOT_USED_PCT=63", "DISK_ROOT_USED_PCT=unknown")
        .replace("AGENT_BESCLIENT=not_installed", "AGENT_BESCLIENT=unknown")
    )

    report = parse_post_report(text)

    assert report.health.failed_units is None
    assert report.disk.root_used_pct is None
    assert report.agents["besclient"] is AgentState.UNKNOWN
    assert "BigFix (besclient) state unknown: the host could not be asked" in report.notes
    assert report.passed


def test_a_nearly_full_disk_is_a_note() -> None:
    text = sample("ubuntu2204_passed.txt").replace("DISK_BOOT_USED_PCT=63", "DISK_BOOT_USED_PCT=97")

    report = parse_post_report(text)

    assert "/boot is 97% full" in report.notes
    assert report.passed


@pytest.mark.parametrize("garbage", ["", "\x00\xff", "Traceback (most recent call last):\n"])
def test_garbage_fails_with_a_reason(garbage: str) -> None:
    report = parse_post_report(garbage)

    assert not report.passed
    assert report.failure_reasons


_LINES = st.one_of(
    st.text(max_size=80),
    st.sampled_from([SUMMARY_BEGIN, SUMMARY_END, "SUMMARY_VERSION=1", "SUMMARY_VERSION=x"]),
    st.builds(
        lambda key, value: f"{key}={value}",
        st.sampled_from(
            [
                "KERNEL_RUNNING",
                "KERNEL_TARGET",
                "KERNEL_TARGET_SOURCE",
                "AGENT_FALCON_SENSOR",
                "AGENT_BESCLIENT",
                "DISK_ROOT_USED_PCT",
                "LAST_BOOT",
                "PKG_TRANSACTIONS_TODAY",
                "LVM_MISSING_PVS",
                "FAILED_UNITS",
            ]
        ),
        st.text(max_size=40),
    ),
)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_LINES, max_size=30), target=st.none() | st.text(max_size=30))
def test_any_input_gives_a_report_and_never_an_exception(
    lines: list[str], target: str | None
) -> None:
    report = parse_post_report("\n".join(lines), target_kernel=target)

    assert isinstance(report, PostReport)
    assert report.passed == (not report.failure_reasons)
    if not report.summary_found:
        assert not report.passed
