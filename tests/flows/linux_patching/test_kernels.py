"""Kernel versions: normalising, ordering as versions, distribution suffixes and grouping."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.linux_patching.kernels import (
    KernelComparison,
    base_kernel,
    compare_kernels,
    distro_from_kernel,
    kernel_sort_key,
    newer_than_staged,
    normalize_kernel,
    read_staged_kernel,
    sort_kernels,
    validate_kernel_version,
)
from flows.linux_patching.prep.kernel_groups import KernelGroup, group_kernels
from flows.parsers import parse_qc_report

SAMPLES = Path(__file__).parent / "samples" / "qc"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kernel-4.18.0-553.45.1.el8_10.x86_64", "4.18.0-553.45.1.el8_10"),
        ("kernel-core-5.14.0-427.13.1.el9_4.aarch64", "5.14.0-427.13.1.el9_4"),
        ("  4.14.343-261.564.amzn2.x86_64\n", "4.14.343-261.564.amzn2"),
        ("linux-image-5.15.0-105-generic", "5.15.0-105-generic"),
        ("0:4.18.0-553.45.1.el8_10", "4.18.0-553.45.1.el8_10"),
        ("6.1.79-99.167.amzn2023.noarch", "6.1.79-99.167.amzn2023"),
        ("3.10.0-1160.119.1.el7.i686", "3.10.0-1160.119.1.el7"),
    ],
)
def test_normalize_kernel(text: str, expected: str) -> None:
    assert normalize_kernel(text) == expected


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("4.18.0-553.5.1.el8_10", "4.18.0-553.45.1.el8_10"),
        ("5.14.0-427.13.1", "5.14.0-427.100.1"),
        ("4.18.0-513.24.1.el8_9", "4.18.0-553.5.1.el8_10"),
        ("4.14.343-261.564.amzn2", "4.14.348-265.562.amzn2"),
        ("5.15.0-97-generic", "5.15.0-105-generic"),
        ("4.18.0-553", "4.18.0.1-1"),  # the version is compared before the release
        ("5.9.0-1", "5.10.0-1"),
    ],
)
def test_kernels_compare_as_versions_not_strings(older: str, newer: str) -> None:
    assert kernel_sort_key(older) < kernel_sort_key(newer)
    assert sort_kernels([newer, older]) == [older, newer]


def test_very_long_numbers_still_compare_as_numbers() -> None:
    huge = "1." + "9" * 5000 + "-1"
    assert sort_kernels([huge, "1.010-1", "1.9-1"]) == ["1.9-1", "1.010-1", huge]


def test_sort_kernels_normalises_and_drops_duplicates() -> None:
    listed = [
        "kernel-4.18.0-553.45.1.el8_10.x86_64",
        "4.18.0-553.45.1.el8_10",
        "4.18.0-553.8.1.el8_10",
        "kernel-core-4.18.0-553.16.1.el8_10",
        "",
    ]
    assert sort_kernels(listed) == [
        "4.18.0-553.8.1.el8_10",
        "4.18.0-553.16.1.el8_10",
        "4.18.0-553.45.1.el8_10",
    ]


NUMERIC_KERNELS = r"[0-9]{1,3}(\.[0-9]{1,4}){0,3}-[0-9]{1,4}(\.[0-9]{1,3}){0,2}"


@given(st.lists(st.from_regex(NUMERIC_KERNELS, fullmatch=True)))
def test_sorting_is_a_total_order_consistent_with_numbers(kernels: list[str]) -> None:
    ordered = sort_kernels(kernels)
    assert ordered == sort_kernels(reversed(kernels))
    numeric = [
        tuple(tuple(int(n) for n in part.split(".")) for part in k.split("-")) for k in ordered
    ]
    assert numeric == sorted(numeric)


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [
        ("4.18.0-553.45.1.el8_10", "4.18.0-553"),
        ("kernel-5.14.0-427.13.1.el9_4.x86_64", "5.14.0-427"),
        ("4.14.343-261.564.amzn2", "4.14.343-261"),
        ("6.1.79-99.167.amzn2023", "6.1.79-99"),
        ("5.15.0-105-generic", "5.15.0-105"),
        ("6.1.0-18-cloud-amd64", "6.1.0-18"),
        ("5.10.0", "5.10.0"),
    ],
)
def test_base_kernel(kernel: str, expected: str) -> None:
    assert base_kernel(kernel) == expected


@pytest.mark.parametrize(
    ("kernel", "codename", "expected"),
    [
        ("4.18.0-553.45.1.el8_10.x86_64", None, "RHEL8.10"),
        ("4.18.0-348.el8.x86_64", None, "RHEL8"),
        ("5.14.0-427.13.1.el9_4.x86_64", None, "RHEL9.4"),
        ("5.14.0-70.13.1.el9", None, "RHEL9"),
        ("3.10.0-1160.119.1.el7.x86_64", None, "RHEL7"),
        ("6.1.79-99.167.amzn2023.x86_64", None, "AL2023"),
        ("4.14.343-261.564.amzn2.x86_64", None, "AL2"),
        ("5.10.215-203.850.amzn2.x86_64", None, "AL2"),
        ("5.15.0-105-generic", None, "Ubuntu"),
        ("5.15.0-1050-aws", "jammy", "Ubuntu22.04"),
        ("5.4.0-1120-aws", "focal", "Ubuntu20.04"),
        ("6.8.0-1008-aws", "no-such-codename", "Ubuntu"),
        ("6.1.0-18-cloud-amd64", "bookworm", "Debian12"),
        ("6.1.0-18-amd64", None, "Debian"),
        ("5.18.19-100.fc35", None, None),
    ],
)
def test_distro_from_kernel_suffix(kernel: str, codename: str | None, expected: str) -> None:
    assert distro_from_kernel(kernel, codename) == expected


@pytest.mark.parametrize(
    "text",
    [
        "4.18.0-553.45.1.el8_10",
        "kernel-4.18.0-553.45.1.el8_10.x86_64",
        "5.15.0-105-generic",
        "6.1.79-99.167.amzn2023",
        " 5.14.0-427.100.1.el9_4\n",
    ],
)
def test_validate_kernel_version_accepts_real_versions(text: str) -> None:
    assert validate_kernel_version(text) == normalize_kernel(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "latest",
        "4.18.0-553 ; reboot",
        "4.18.0-553$(reboot)",
        "4.18.0-`id`",
        '4.18.0-553"',
        "4.18.0-553'",
        "4.18.0 553",
        "4.18.0-553\nreboot",
        "4.18.0-553|sh",
        "4.18.0-553&",
        "../../etc/passwd",
        "4.18/../x",
        "4.18.0-553\\",
        "4." + "1" * 200,
    ],
)
def test_validate_kernel_version_refuses_anything_a_shell_could_act_on(text: str) -> None:
    with pytest.raises(ValueError, match="is not a kernel version"):
        validate_kernel_version(text)


def test_read_staged_kernel() -> None:
    assert read_staged_kernel('set -u\nnewkernel="4.18.0-553.45.1.el8_10"\n') == (
        "4.18.0-553.45.1.el8_10"
    )
    assert read_staged_kernel("#!/bin/bash\nreboot\n") is None


def _report(host: str, kernel: str, updates: list[str], *, disk: str = "PASSED") -> str:
    lines = "\n".join(updates) if updates else "NO KERNEL UPDATES AVAILABLE"
    return (
        f"===== QC report for {host} =====\n"
        "(Current date): Tue May 14 10:00:00 UTC 2024\n"
        "(Server running since): 2024-05-01 08:00:00\n"
        f"(Current running kernel version): {kernel}\n"
        "(Is Crowdstrike running): Yes\n"
        "(Current Crowdstrike Version): 7.10.16303.0\n"
        f"(Available Kernel Updates):\n{lines}\n"
        "(Test Repositories Result): PASSED\n"
        f"(Disk Space Check Result): {disk}\n"
    )


def test_group_kernels_groups_passed_instances_by_distro_and_base_kernel() -> None:
    reports = {
        "i-0aaaaaaaaaaaaaaa1": parse_qc_report(
            _report(
                "a",
                "4.18.0-553.5.1.el8_10.x86_64",
                ["kernel.x86_64  4.18.0-553.45.1.el8_10  baseos"],
            )
        ),
        "i-0aaaaaaaaaaaaaaa0": parse_qc_report(
            _report(
                "b",
                "4.18.0-553.8.1.el8_10.x86_64",
                [
                    "kernel.x86_64  4.18.0-553.16.1.el8_10  baseos",
                    "kernel.x86_64  4.18.0-553.45.1.el8_10  baseos",
                ],
            )
        ),
        # same distro, other base kernel: a group of its own
        "i-0bbbbbbbbbbbbbbb0": parse_qc_report(
            _report(
                "c", "4.18.0-513.24.1.el8_10.x86_64", ["kernel.x86_64  4.18.0-553.5.1.el8_10  r"]
            )
        ),
        # failed QC: left out of every group
        "i-0ccccccccccccccc0": parse_qc_report(
            _report(
                "d",
                "4.18.0-553.5.1.el8_10.x86_64",
                ["kernel.x86_64  4.18.0-553.99.1.el8_10  r"],
                disk="FAILED",
            )
        ),
        "i-0ddddddddddddddd0": parse_qc_report(
            (SAMPLES / "al2023_engine_crowdstrike_rfm.txt").read_text(), require_crowdstrike=False
        ),
        "i-0eeeeeeeeeeeeeee0": parse_qc_report((SAMPLES / "ubuntu2204_patcher.txt").read_text()),
    }

    groups = group_kernels(reports)

    assert [g.name for g in groups] == [
        "AL2023 - Kernel 6.1.79-99",
        "RHEL8.10 - Kernel 4.18.0-513",
        "RHEL8.10 - Kernel 4.18.0-553",
        "Ubuntu22.04 - Kernel 5.15.0-101",
    ]
    rhel = groups[2]
    assert rhel == KernelGroup(
        name="RHEL8.10 - Kernel 4.18.0-553",
        distro="RHEL8.10",
        base_kernel="4.18.0-553",
        instance_ids=["i-0aaaaaaaaaaaaaaa0", "i-0aaaaaaaaaaaaaaa1"],
        available_kernels=["4.18.0-553.16.1.el8_10", "4.18.0-553.45.1.el8_10"],
        instance_kernels={
            "i-0aaaaaaaaaaaaaaa0": ["4.18.0-553.16.1.el8_10", "4.18.0-553.45.1.el8_10"],
            "i-0aaaaaaaaaaaaaaa1": ["4.18.0-553.45.1.el8_10"],
        },
    )
    # Each host's own list is kept: 553.16.1 is offered by one host of the two.
    assert rhel.offered_by("4.18.0-553.16.1.el8_10") == ["i-0aaaaaaaaaaaaaaa0"]
    assert all("i-0ccccccccccccccc0" not in g.instance_ids for g in groups)
    assert groups[1].available_kernels == ["4.18.0-553.5.1.el8_10"]


def test_group_kernels_of_nothing_passed_is_empty() -> None:
    failed = parse_qc_report(_report("x", "4.18.0-553.5.1.el8_10", [], disk="FAILED"))
    assert group_kernels({"i-0123456789abcdef0": failed}) == []
    assert group_kernels({}) == []


def test_group_without_updates_offers_no_kernel() -> None:
    report = parse_qc_report(_report("x", "5.14.0-427.13.1.el9_4.x86_64", []))
    (group,) = group_kernels({"i-0123456789abcdef0": report})
    assert group.name == "RHEL9.4 - Kernel 5.14.0-427"
    assert group.available_kernels == []


@pytest.mark.parametrize(
    ("running", "target", "expected"),
    [
        ("4.18.0-553.45.1.el8_10.x86_64", "4.18.0-553.45.1.el8_10", KernelComparison.SAME),
        ("4.18.0-553.45.1.el8_10.x86_64", "4.18.0-553.5.1.el8_10", KernelComparison.NEWER),
        ("4.18.0-553.5.1.el8_10.x86_64", "kernel-4.18.0-553.45.1.el8_10", KernelComparison.OLDER),
        ("5.15.0-105-generic", "5.15.0-97-generic", KernelComparison.NEWER),
        ("6.1.79-99.167.amzn2023.x86_64", "6.1.102-108.177.amzn2023", KernelComparison.OLDER),
    ],
)
def test_a_running_kernel_is_same_newer_or_older_than_its_target(
    running: str, target: str, expected: KernelComparison
) -> None:
    assert compare_kernels(running, target) is expected


def test_a_newer_kernel_is_named_with_both_versions() -> None:
    assert (
        newer_than_staged("4.18.0-553.45.1.el8_10.x86_64", "4.18.0-553.5.1.el8_10")
        == "newer than staged (4.18.0-553.45.1.el8_10 > 4.18.0-553.5.1.el8_10)"
    )
