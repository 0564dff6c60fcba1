"""Reads the output of ``flows/scripts/linux/post_qc.sh`` into a typed ``PostReport``.

The script prints a human report followed by a machine-readable block::

    ----- CLOUDOPS POST SUMMARY BEGIN -----
    SUMMARY_VERSION=1
    KERNEL_RUNNING=4.18.0-553.45.1.el8_10.x86_64
    AGENT_FALCON_SENSOR=running
    ...
    ----- CLOUDOPS POST SUMMARY END -----

Only the block is read; the human text above it is for people and may change freely. One
``KEY=value`` a line, lists comma-separated, ``unknown`` for a fact the host could not measure.

Verdict: a server fails when its running kernel is not the target (a kernel newer than the
target is said so, and passes with a note when the caller accepts newer kernels), when no target
is known (a post check that cannot name the target cannot prove the patch), when the running
kernel is unknown, or when a required agent (CrowdStrike and BigFix unless the caller names
others) is installed but not running. Everything else (the other agents, disk, LVM, memory,
failed units, kernel messages, package activity) is reported as notes and never fails the
server. Output that holds no complete block fails with a reason; the parser never raises on bad
input.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from flows.common.text import clean_output
from flows.linux_patching.kernels import KernelComparison, compare_kernels, newer_than_staged

SUMMARY_BEGIN = "----- CLOUDOPS POST SUMMARY BEGIN -----"
SUMMARY_END = "----- CLOUDOPS POST SUMMARY END -----"
SUMMARY_VERSION = "1"

# Disk use at or above this is worth a note; it does not fail the server.
DISK_NOTE_PCT = 90

_UNKNOWN = "unknown"


class AgentState(StrEnum):
    """What the script found for one agent."""

    NOT_INSTALLED = "not_installed"
    STOPPED = "stopped"  # installed (package or unit present) but its unit is not active
    RUNNING = "running"
    UNKNOWN = "unknown"  # the host had no rpm, dpkg-query or systemctl to ask


class KernelTargetSource(StrEnum):
    """Where the target kernel came from, most trusted first."""

    PATCHME = "patchme"  # the newkernel= line of <workdir>/<change>/patchme.sh on the host
    PREP = "prep"  # the prep run recorded in the store
    PARAMETER = "parameter"  # a flow parameter
    NONE = "none"


class Agent(StrEnum):
    """An agent the post check reports, by its systemd unit name."""

    CROWDSTRIKE = "falcon-sensor"
    BIGFIX = "besclient"
    ENCASE = "enlinuxpc"
    SCALEFT = "sftd"


# Agent keys are their systemd unit names; the summary block spells them as AGENT_<KEY>.
AGENT_LABELS: dict[str, str] = {
    "falcon-sensor": "CrowdStrike",
    "besclient": "BigFix",
    "enlinuxpc": "EnCase",
    "sftd": "ScaleFT",
}
# Installed but not running fails the server only for required agents: by default these two,
# the security and patch-management agents a change must not leave down.
REQUIRED_AGENTS: tuple[str, ...] = ("falcon-sensor", "besclient")


def check_required_agents(agents: Sequence[str] | None) -> tuple[list[Agent], str | None]:
    """The agents a change must leave running (CrowdStrike and BigFix when not given), or the
    problem with the list."""
    if agents is None:
        return [Agent(a) for a in REQUIRED_AGENTS], None
    known = [a.value for a in Agent]
    unknown = [str(a) for a in agents if str(a) not in known]
    if unknown:
        return [], (
            f"required_agents: {', '.join(repr(a) for a in unknown)} is not an agent the post "
            f"check knows; choose among {', '.join(known)}"
        )
    return list(dict.fromkeys(Agent(str(a)) for a in agents)), None


def agent_label(unit: str) -> str:
    """``CrowdStrike (falcon-sensor)``: how a person names an agent."""
    return f"{AGENT_LABELS.get(unit, unit)} ({unit})"


def stopped_agent_reason(unit: str) -> str:
    """Why a server fails when a required agent is installed but not running."""
    return (
        f"{agent_label(unit)} is installed but not running: start it "
        f"(systemctl start {unit}) and check why it stopped"
    )


class DiskUsage(BaseModel):
    root_used_pct: int | None = Field(default=None, description="% used of /, None if unknown")
    boot_used_pct: int | None = Field(default=None, description="% used of /boot, None if unknown")
    boot_mount: str | None = Field(
        default=None, description="mount point holding /boot: '/boot' or '/' when not separate"
    )


class LvmState(BaseModel):
    checked: bool = Field(default=False, description="False when pvs/lvs could not be run")
    physical_volumes: int | None = None
    logical_volumes: int | None = None
    missing_pvs: list[str] = Field(
        default_factory=list, description="PV names, or uuid:<uuid> when the device is gone"
    )
    inactive_lvs: list[str] = Field(default_factory=list, description="as vg/lv")


class HostHealth(BaseModel):
    memory_total_mb: int | None = None
    memory_available_mb: int | None = None
    failed_units: int | None = Field(default=None, description="failed systemd units")
    failed_unit_names: list[str] = Field(default_factory=list)
    critical_kernel_messages: int | None = Field(
        default=None, description="emerg/alert/crit kernel messages of the current boot"
    )


class PackageActivity(BaseModel):
    manager: str = Field(default=_UNKNOWN, description="dnf, yum, apt or unknown")
    transactions: int | None = Field(default=None, description="transactions dated today")
    transaction_ids: list[str] = Field(
        default_factory=list, description="yum/dnf history ids of today's transactions"
    )


class PostReport(BaseModel):
    """The post-patching state of one server and its verdict."""

    summary_found: bool = Field(description="a complete summary block was read")
    hostname: str | None = None
    checked_at: str | None = Field(default=None, description="host time of the check (ISO)")
    last_boot: datetime | None = Field(default=None, description="host local time")
    uptime_seconds: int | None = None
    kernel_running: str | None = Field(default=None, description="uname -r")
    kernel_target: str | None = None
    kernel_target_source: KernelTargetSource = KernelTargetSource.NONE
    kernel_match: bool | None = Field(
        default=None, description="None when the running or the target kernel is unknown"
    )
    kernel_newer: bool | None = Field(
        default=None, description="the running kernel is a later build than the target"
    )
    agents: dict[str, AgentState] = Field(
        default_factory=dict, description="by unit name: falcon-sensor, besclient, enlinuxpc, sftd"
    )
    disk: DiskUsage = Field(default_factory=DiskUsage)
    lvm: LvmState = Field(default_factory=LvmState)
    health: HostHealth = Field(default_factory=HostHealth)
    package_activity_today: PackageActivity = Field(default_factory=PackageActivity)
    passed: bool
    failure_reasons: list[str] = Field(default_factory=list)
    notes: list[str] = Field(
        default_factory=list, description="informational findings; they do not fail the server"
    )


def parse_post_report(
    text: str,
    target_kernel: str | None = None,
    target_kernel_source: KernelTargetSource = KernelTargetSource.PARAMETER,
    *,
    accept_newer_kernel: bool = False,
    required_agents: Collection[str] = REQUIRED_AGENTS,
) -> PostReport:
    """Parse the output of ``post_qc.sh`` and judge it.

    ``target_kernel`` is used only when the output names no target (no ``patchme.sh`` on the
    host and none passed to the script); ``target_kernel_source`` says where it came from
    (the prep record or a flow parameter). A running kernel newer than the target fails as
    "newer than staged", or passes with a note when ``accept_newer_kernel``. An agent of
    ``required_agents`` (unit names) installed but not running fails the server. Never raises:
    output without a complete summary block gives ``passed=False`` with the reason.
    """
    values, problem = _summary_values(text if isinstance(text, str) else "")
    if problem:
        return PostReport(summary_found=False, passed=False, failure_reasons=[problem])

    failures: list[str] = []
    notes: list[str] = []

    kernel_running = _text(values, "KERNEL_RUNNING")
    kernel_target = _text(values, "KERNEL_TARGET")
    source = _target_source(values.get("KERNEL_TARGET_SOURCE", ""))
    if kernel_target is None:
        source = KernelTargetSource.NONE
        if target_kernel and target_kernel.strip():
            kernel_target = target_kernel.strip()
            source = KernelTargetSource(target_kernel_source)
    elif source is KernelTargetSource.NONE:
        source = KernelTargetSource.PARAMETER

    kernel_match, kernel_newer = _judge_kernel(
        kernel_running, kernel_target, failures, notes, accept_newer_kernel
    )
    agents = _judge_agents(values, failures, notes, required_agents)
    disk = DiskUsage(
        root_used_pct=_number(values, "DISK_ROOT_USED_PCT"),
        boot_used_pct=_number(values, "DISK_BOOT_USED_PCT"),
        boot_mount=_text(values, "DISK_BOOT_MOUNT"),
    )
    lvm = LvmState(
        checked=values.get("LVM_CHECKED") == "yes",
        physical_volumes=_number(values, "LVM_PV_COUNT"),
        logical_volumes=_number(values, "LVM_LV_COUNT"),
        missing_pvs=_list(values, "LVM_MISSING_PVS"),
        inactive_lvs=_list(values, "LVM_INACTIVE_LVS"),
    )
    health = HostHealth(
        memory_total_mb=_number(values, "MEM_TOTAL_MB"),
        memory_available_mb=_number(values, "MEM_AVAILABLE_MB"),
        failed_units=_number(values, "FAILED_UNITS"),
        failed_unit_names=_list(values, "FAILED_UNIT_NAMES"),
        critical_kernel_messages=_number(values, "CRITICAL_KERNEL_MESSAGES"),
    )
    packages = PackageActivity(
        manager=values.get("PKG_MANAGER") or _UNKNOWN,
        transactions=_number(values, "PKG_TRANSACTIONS_TODAY"),
        transaction_ids=_list(values, "PKG_TRANSACTION_IDS"),
    )
    notes.extend(_health_notes(disk, lvm, health, packages))

    return PostReport(
        summary_found=True,
        hostname=_text(values, "HOSTNAME"),
        checked_at=_text(values, "CHECKED_AT"),
        last_boot=_timestamp(values.get("LAST_BOOT", "")),
        uptime_seconds=_number(values, "UPTIME_SECONDS"),
        kernel_running=kernel_running,
        kernel_target=kernel_target,
        kernel_target_source=source,
        kernel_match=kernel_match,
        kernel_newer=kernel_newer,
        agents=agents,
        disk=disk,
        lvm=lvm,
        health=health,
        package_activity_today=packages,
        passed=not failures,
        failure_reasons=failures,
        notes=notes,
    )


def _summary_values(text: str) -> tuple[dict[str, str], str | None]:
    """The KEY=value pairs of the last summary block, or the reason there are none."""
    lines = [line.strip() for line in clean_output(text).splitlines()]
    begins = [i for i, line in enumerate(lines) if line == SUMMARY_BEGIN]
    if not begins:
        return {}, (
            "No post-check summary block in the output: the script did not run to the end or "
            "this is not post_qc.sh output; read the instance's stdout/stderr and run it again"
        )
    start = begins[-1] + 1
    try:
        end = lines.index(SUMMARY_END, start)
    except ValueError:
        return {}, (
            "The post-check summary block is cut off (no end marker): the output was truncated "
            "or the script was killed; configure an S3 output bucket or run it again"
        )
    values: dict[str, str] = {}
    for line in lines[start:end]:
        key, separator, value = line.partition("=")
        if separator and key.isidentifier():
            values[key] = value
    version = values.get("SUMMARY_VERSION")
    if version != SUMMARY_VERSION:
        return {}, (
            f"The post-check summary has version {version or 'none'}, this parser reads "
            f"version {SUMMARY_VERSION}: the script and the flow are from different releases"
        )
    return values, None


def _text(values: dict[str, str], key: str) -> str | None:
    value = values.get(key, "")
    return value if value and value != _UNKNOWN else None


def _number(values: dict[str, str], key: str) -> int | None:
    value = values.get(key, "")
    # A count or a percentage: anything longer than 18 digits is not one.
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def _list(values: dict[str, str], key: str) -> list[str]:
    value = values.get(key, "")
    if value == _UNKNOWN:
        return []
    return [item for item in value.split(",") if item]


def _timestamp(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _target_source(value: str) -> KernelTargetSource:
    try:
        return KernelTargetSource(value)
    except ValueError:
        return KernelTargetSource.NONE


def _judge_kernel(
    running: str | None,
    target: str | None,
    failures: list[str],
    notes: list[str],
    accept_newer: bool,
) -> tuple[bool | None, bool | None]:
    """Whether the running kernel is the target, and whether it is newer than the target."""
    if running is None:
        failures.append(
            "Running kernel unknown: the host gave no `uname -r`; check the instance by hand"
        )
    if target is None:
        failures.append(
            "No target kernel known: no patchme.sh on the instance, no prep record and no "
            "target_kernel parameter; pass target_kernel to verify the patch"
        )
    if running is None or target is None:
        return None, None
    comparison = compare_kernels(running, target)
    if comparison is KernelComparison.SAME:
        return True, False
    if comparison is KernelComparison.NEWER:
        newer = f"Kernel {newer_than_staged(running, target)}"
        if accept_newer:
            notes.append(f"{newer}: accepted (accept_newer_kernel)")
        else:
            failures.append(
                f"{newer}: running {running}, expected {target}; pass accept_newer_kernel to "
                "accept a later build"
            )
        return False, True
    failures.append(f"Kernel mismatch: running {running}, expected {target}")
    return False, False


def _judge_agents(
    values: dict[str, str],
    failures: list[str],
    notes: list[str],
    required_agents: Collection[str],
) -> dict[str, AgentState]:
    agents: dict[str, AgentState] = {}
    for unit, label in AGENT_LABELS.items():
        raw = values.get("AGENT_" + unit.upper().replace("-", "_"), "")
        try:
            state = AgentState(raw)
        except ValueError:
            state = AgentState.UNKNOWN
        agents[unit] = state
        required = unit in required_agents
        if state is AgentState.STOPPED and required:
            failures.append(stopped_agent_reason(unit))
        elif state is AgentState.STOPPED:
            notes.append(f"{label} ({unit}) is installed but not running")
        elif state is AgentState.UNKNOWN and required:
            notes.append(f"{label} ({unit}) state unknown: the host could not be asked")
    return agents


def _health_notes(
    disk: DiskUsage, lvm: LvmState, health: HostHealth, packages: PackageActivity
) -> list[str]:
    notes: list[str] = []
    for mount, pct in (("/", disk.root_used_pct), ("/boot", disk.boot_used_pct)):
        if pct is not None and pct >= DISK_NOTE_PCT:
            notes.append(f"{mount} is {pct}% full")
    if not lvm.checked:
        notes.append("LVM state unknown: pvs/lvs not available or failed")
    if lvm.missing_pvs:
        notes.append("LVM physical volumes missing: " + ", ".join(lvm.missing_pvs))
    if lvm.inactive_lvs:
        notes.append("LVM logical volumes inactive: " + ", ".join(lvm.inactive_lvs))
    if health.failed_units:
        names = ", ".join(health.failed_unit_names) or "names not listed"
        notes.append(f"{health.failed_units} failed systemd unit(s): {names}")
    if health.critical_kernel_messages:
        notes.append(f"{health.critical_kernel_messages} critical kernel message(s) this boot")
    if packages.transactions == 0:
        notes.append(f"No {packages.manager} package transaction today")
    return notes
