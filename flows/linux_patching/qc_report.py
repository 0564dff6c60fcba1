"""Reads the Linux QC report, from our engine (``linux/qc.sh``) or the external Linux Patcher.

The report is the one operators already read, one ``(Fact): value`` line per fact::

    ===== QC report for web01 =====
    (Current date): Tue May 14 10:00:00 UTC 2024
    (Server running since): 2024-05-01 08:12:44
    (Current running kernel version): 4.18.0-553.5.1.el8_10.x86_64
    (Is Crowdstrike running): Yes
    (Current Crowdstrike Version): 7.10.16303.0
    (Available Kernel Updates):
    kernel.x86_64  4.18.0-553.45.1.el8_10  rhel-8-for-x86_64-baseos-rpms
    (Test Repositories Result): PASSED
    (Disk Space Check Result): PASSED

Our engine adds a ``----- CLOUDOPS FACTS -----`` block after it (``KEY=value`` lines from
``/etc/os-release`` and the checks); when it is there the distribution comes from it, otherwise
from the running kernel's suffix. Parsing never raises: whatever is missing or unreadable makes
the report fail with a reason a person can act on.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from flows.common.text import clean_output
from flows.linux_patching.kernels import (
    DEBIAN_RELEASES,
    UBUNTU_RELEASES,
    distro_from_kernel,
    normalize_kernel,
    sort_kernels,
)

FACTS_BEGIN = "----- CLOUDOPS FACTS -----"
FACTS_END = "----- END CLOUDOPS FACTS -----"

# Greedy up to the last "=" and nothing lazy: a padded header line without its closing rule
# must fail in linear time (a lazy host between two \s* backtracked cubically).
_HEADER = re.compile(r"^=+\s*QC report for(?P<rest>.*=)\s*$", re.IGNORECASE)
_FACT_LINE = re.compile(r"^\((?P<label>[^()]+)\)\s*:\s*(?P<value>.*)$")
_FACT_KEY = re.compile(r"^(?P<key>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")

_YUM_KERNEL = re.compile(
    r"^kernel(?:-core)?\.[A-Za-z0-9_]+\s+(?P<version>(?:\d+:)?\d+\.\d+\S*)(?:\s+\S+)?"
)
_YUM_PACKAGE_ALONE = re.compile(r"^kernel(?:-core)?\.[A-Za-z0-9_]+$")
_APT_VERSIONED = re.compile(
    r"^linux-image-(?:unsigned-)?(?P<kernel>\d+\.\d+[^\s/]*)(?:/(?P<suite>\S+))?(?:\s|$)"
)
# `apt list --upgradable` shows flavour meta packages: linux-image-generic/jammy-updates
# 5.15.0.105.102 amd64 [...]; the kernel they pull in is 5.15.0-105-generic.
_APT_META = re.compile(
    r"^linux-image-(?P<flavour>[a-z][a-z0-9.-]*)/(?P<suite>\S+)\s+"
    r"(?P<upstream>\d+\.\d+\.\d+)\.(?P<abi>\d+)(?:\.\S+)?(?:\s|$)"
)
_HWE_SUFFIX = re.compile(r"-hwe-\d+\.\d+(?:-edge)?$")

# Report label (lower case, single spaces) -> the field it fills, in report order.
_LABELS: dict[str, str] = {
    "current date": "date",
    "server running since": "uptime",
    "current running kernel version": "kernel",
    "is crowdstrike running": "crowdstrike_running",
    "current crowdstrike version": "crowdstrike_version",
    "available kernel updates": "available_kernels",
    "test repositories result": "repos_passed",
    "disk space check result": "disk_passed",
}
_DISPLAY_LABELS: dict[str, str] = {
    "date": "Current date",
    "uptime": "Server running since",
    "kernel": "Current running kernel version",
    "crowdstrike_running": "Is Crowdstrike running",
    "crowdstrike_version": "Current Crowdstrike Version",
    "available_kernels": "Available Kernel Updates",
    "repos_passed": "Test Repositories Result",
    "disk_passed": "Disk Space Check Result",
}

_OS_NAMES: dict[str, str] = {
    "rhel": "RHEL",
    "centos": "CentOS",
    "rocky": "Rocky",
    "almalinux": "Alma",
    "ol": "OL",
    "fedora": "Fedora",
    "ubuntu": "Ubuntu",
    "debian": "Debian",
    "sles": "SLES",
}


class QcReport(BaseModel):
    """One instance's QC report, read from its output. ``None`` means the line was missing."""

    hostname: str | None = None
    date: str | None = None
    uptime: str | None = Field(default=None, description="'Server running since' as printed")
    kernel: str | None = Field(default=None, description="running kernel, as uname -r prints it")
    distro: str | None = Field(default=None, description="e.g. RHEL8.10, AL2, Ubuntu22.04")
    crowdstrike_running: bool | None = None
    crowdstrike_version: str | None = None
    available_kernels: list[str] = Field(
        default_factory=list, description="normalised versions the instance can install, sorted"
    )
    kernel_update_lines: list[str] = Field(
        default_factory=list, description="the lines under (Available Kernel Updates), as printed"
    )
    repos_passed: bool | None = None
    disk_passed: bool | None = None
    passed: bool = False
    failure_reasons: list[str] = Field(default_factory=list)
    facts: dict[str, str] = Field(
        default_factory=dict, description="the CLOUDOPS FACTS block of our engine, if present"
    )


def _read_facts(lines: list[str]) -> dict[str, str]:
    facts: dict[str, str] = {}
    inside = False
    for line in lines:
        if line == FACTS_BEGIN:
            inside = True
        elif line == FACTS_END:
            inside = False
        elif inside:
            match = _FACT_KEY.match(line)
            if match:
                facts[match.group("key")] = match.group("value").strip()
    return facts


def _report_lines(lines: list[str]) -> tuple[re.Match[str] | None, list[str]]:
    """The header of the first report and its lines, up to the facts block or a next report."""
    header = None
    body = lines
    for index, line in enumerate(lines):
        header = _HEADER.match(line)
        if header:
            body = lines[index + 1 :]
            break
    end = next(
        (i for i, line in enumerate(body) if line == FACTS_BEGIN or _HEADER.match(line)), len(body)
    )
    return header, body[:end]


def _kernel_from_line(line: str) -> tuple[str | None, str | None]:
    """(kernel version, apt suite) named by one line under (Available Kernel Updates)."""
    yum = _YUM_KERNEL.match(line)
    if yum:
        return normalize_kernel(yum.group("version")), None
    meta = _APT_META.match(line)
    if meta:
        flavour = _HWE_SUFFIX.sub("", meta.group("flavour"))
        flavour = "generic" if flavour == "virtual" else flavour
        kernel = f"{meta.group('upstream')}-{meta.group('abi')}-{flavour}"
        return kernel, meta.group("suite")
    apt = _APT_VERSIONED.match(line)
    if apt:
        return normalize_kernel(apt.group("kernel")), apt.group("suite")
    return None, None


def _unwrap_yum_lines(lines: list[str]) -> list[str]:
    """yum wraps a listing line whose columns do not fit: the package name alone on one line,
    its version and repository on the next. Joins them back."""
    joined: list[str] = []
    for line in lines:
        if joined and _YUM_PACKAGE_ALONE.match(joined[-1]) and line[:1].isdigit():
            joined[-1] = f"{joined[-1]}  {line}"
        else:
            joined.append(line)
    return joined


def _passed_value(value: str) -> bool | None:
    result = re.match(r"(PASSED|FAILED)\b", value.strip().upper())
    return result.group(1) == "PASSED" if result else None


def _yes_no(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in ("yes", "y", "true", "running"):
        return True
    if lowered in ("no", "n", "false", "not running"):
        return False
    return None


def _distro_from_facts(facts: dict[str, str]) -> str | None:
    os_id = facts.get("OS_ID", "").strip().lower()
    version = facts.get("OS_VERSION_ID", "").strip()
    if not os_id:
        return None
    if os_id == "amzn":
        return f"AL{version}" if version else "AL"
    name = _OS_NAMES.get(os_id, os_id)
    return f"{name}{version}"


def _codename(suite: str | None) -> str | None:
    if not suite:
        return None
    codename = suite.split("-", 1)[0].split(",", 1)[0]
    return codename if codename in UBUNTU_RELEASES or codename in DEBIAN_RELEASES else None


def _disk_reason(facts: dict[str, str]) -> str:
    needed = facts.get("MIN_VAR_FREE_GB")
    free_kb = facts.get("VAR_FREE_KB", "")
    detail = f"less than {needed} GB is free in /var" if needed else "/var is short of free space"
    if re.fullmatch(r"[0-9]{1,18}", free_kb):
        detail += f" ({int(free_kb) / 1024 / 1024:.1f} GB free)"
    return f"disk space check FAILED: {detail}; free space in /var and run QC again"


def _repos_reason(facts: dict[str, str]) -> str:
    manager = facts.get("PKG_MANAGER", "")
    message = facts.get("REPO_CHECK_MESSAGE", "")
    how = {
        "dnf": "dnf makecache",
        "yum": "yum makecache",
        "apt": "apt-get update",
    }.get(manager, "the package manager's metadata refresh")
    reason = f"repository test FAILED: {how} did not succeed"
    if message:
        reason += f" ({message})"
    return reason + "; fix the repositories or their network access and run QC again"


def parse_qc_report(text: str, require_crowdstrike: bool = True) -> QcReport:
    """Read a QC report from a script's output. Never raises.

    Pass = repositories PASSED, disk PASSED and, when ``require_crowdstrike`` is on,
    CrowdStrike running. A missing or unreadable line fails the report with a reason naming it.
    """
    lines = [
        line.strip() for line in clean_output(text if isinstance(text, str) else "").split("\n")
    ]
    facts = _read_facts(lines)
    header, body = _report_lines(lines)
    values, kernel_lines = _labelled_values(body)
    kernel_lines = _unwrap_yum_lines(kernel_lines)
    kernels, suites = _listed_kernels(kernel_lines)
    running_kernel = values.get("kernel") or None
    crowdstrike_running = (
        _yes_no(values["crowdstrike_running"]) if "crowdstrike_running" in values else None
    )
    repos_passed = _passed_value(values["repos_passed"]) if "repos_passed" in values else None
    disk_passed = _passed_value(values["disk_passed"]) if "disk_passed" in values else None

    reasons = _missing_lines(header, values)
    if "kernel" in values and not running_kernel:
        reasons.append("the QC report's running kernel version is empty; run QC again")
    reasons += _check_reasons(values, facts, repos_passed, disk_passed)
    if require_crowdstrike:
        reasons += _crowdstrike_reasons(values, crowdstrike_running)

    distro = _distro_from_facts(facts)
    if distro is None and running_kernel:
        codename = next((c for c in map(_codename, suites) if c), None)
        distro = distro_from_kernel(running_kernel, codename)

    return QcReport(
        hostname=(header.group("rest").rstrip("=").strip() or None) if header else None,
        date=values.get("date"),
        uptime=values.get("uptime"),
        kernel=running_kernel,
        distro=distro,
        crowdstrike_running=crowdstrike_running,
        crowdstrike_version=values.get("crowdstrike_version"),
        available_kernels=sort_kernels(kernels),
        kernel_update_lines=kernel_lines,
        repos_passed=repos_passed,
        disk_passed=disk_passed,
        passed=not reasons,
        failure_reasons=reasons,
        facts=facts,
    )


def _labelled_values(body: list[str]) -> tuple[dict[str, str], list[str]]:
    """The first value of each known ``(Label): value`` line, and the lines listed under
    ``(Available Kernel Updates)``."""
    values: dict[str, str] = {}
    kernel_lines: list[str] = []
    in_kernels = False
    for line in body:
        fact = _FACT_LINE.match(line)
        field = _LABELS.get(" ".join(fact.group("label").split()).lower()) if fact else None
        if fact:
            # Any "(...):" line ends the kernel list, even a label this parser does not know.
            first = field is not None and field not in values
            in_kernels = first and field == "available_kernels"
            if first:
                assert field is not None
                values[field] = fact.group("value").strip()
                if in_kernels and values[field]:
                    kernel_lines.append(values[field])
        elif in_kernels and line:
            kernel_lines.append(line)
    return values, kernel_lines


def _listed_kernels(kernel_lines: list[str]) -> tuple[list[str], list[str]]:
    """The kernel versions the lines name, and the apt suites they came from."""
    kernels: list[str] = []
    suites: list[str] = []
    for line in kernel_lines:
        kernel, suite = _kernel_from_line(line)
        if kernel:
            kernels.append(kernel)
        if suite:
            suites.append(suite)
    return kernels, suites


def _missing_lines(header: re.Match[str] | None, values: dict[str, str]) -> list[str]:
    reasons: list[str] = []
    if header is None:
        reasons.append(
            "no '===== QC report for <host> =====' header in the output: the QC script did not "
            "produce a report; read the command output on the instance"
        )
    for field, label in _DISPLAY_LABELS.items():
        if field not in values:
            reasons.append(
                f"the QC report has no '({label})' line: the QC run stopped early or printed "
                "an unexpected format; read the command output on the instance and run QC again"
            )
    return reasons


def _check_reasons(
    values: dict[str, str],
    facts: dict[str, str],
    repos_passed: bool | None,
    disk_passed: bool | None,
) -> list[str]:
    """Why the repository test or the disk check did not pass."""
    reasons: list[str] = []
    if "repos_passed" in values:
        if repos_passed is None:
            reasons.append(
                f"repository test result {values['repos_passed']!r} is neither PASSED nor FAILED"
            )
        elif not repos_passed:
            reasons.append(_repos_reason(facts))
    if "disk_passed" in values:
        if disk_passed is None:
            reasons.append(
                f"disk space check result {values['disk_passed']!r} is neither PASSED nor FAILED"
            )
        elif not disk_passed:
            reasons.append(_disk_reason(facts))
    return reasons


def _crowdstrike_reasons(values: dict[str, str], running: bool | None) -> list[str]:
    if "crowdstrike_running" not in values:
        return []
    if running is None:
        return [f"CrowdStrike state {values['crowdstrike_running']!r} is neither Yes nor No"]
    if running:
        return []
    return [
        "CrowdStrike is not running (falconctl does not report rfm-state=false or "
        "falcon-sensor is stopped): start or repair falcon-sensor and run QC again, "
        "or switch the CrowdStrike requirement off for this change"
    ]


class CollectedPrepFiles(BaseModel):
    """What ``linux/collect_prep_reports.sh`` printed: the prep files left on one instance."""

    qc_report: str | None = Field(default=None, description="qc_report.txt; None if missing")
    patchme: str | None = Field(default=None, description="patchme.sh; None if missing")
    missing: list[str] = Field(default_factory=list, description="file names not on the host")
    truncated: list[str] = Field(default_factory=list, description="file names cut short")


_FILE_BEGIN = re.compile(r"^----- BEGIN CLOUDOPS FILE (?P<name>\S+) -----$")
_FILE_END = re.compile(r"^----- END CLOUDOPS FILE (?P<name>\S+) -----$")
_FILE_STATE = re.compile(r"^----- CLOUDOPS FILE (?P<name>\S+) (?P<state>MISSING|TRUNCATED) -----$")
_COLLECTED_FIELDS = {"qc_report.txt": "qc_report", "patchme.sh": "patchme"}


def parse_collected_prep_files(text: str) -> CollectedPrepFiles:
    """Split the output of ``linux/collect_prep_reports.sh`` into its files. Never raises.

    A file whose BEGIN marker is there but whose END marker is not (output cut by SSM) is kept
    as far as it goes and listed as truncated; a file not mentioned at all counts as missing.
    """
    if not isinstance(text, str):
        text = ""
    contents: dict[str, list[str]] = {}
    missing: list[str] = []
    truncated: list[str] = []
    current: str | None = None
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the output starts no line of its own
    for line in lines:
        begin, end, state = _FILE_BEGIN.match(line), _FILE_END.match(line), _FILE_STATE.match(line)
        if current is None and begin:
            current = begin.group("name")
            contents[current] = []
        elif current is not None and end and end.group("name") == current:
            current = None
        elif state and (current is None or state.group("name") == current):
            bucket = missing if state.group("state") == "MISSING" else truncated
            bucket.append(state.group("name"))
        elif current is not None:
            contents[current].append(line)
    if current is not None:
        truncated.append(current)
    found = {name: "".join(f"{line}\n" for line in lines) for name, lines in contents.items()}
    for name in _COLLECTED_FIELDS:
        if name not in found and name not in missing:
            missing.append(name)
    return CollectedPrepFiles(
        qc_report=found.get("qc_report.txt"),
        patchme=found.get("patchme.sh"),
        missing=missing,
        truncated=sorted(set(truncated)),
    )
