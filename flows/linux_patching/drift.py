"""An instance at prep time set beside the same instance after patching.

``compare_with_prep`` puts what the post check finds now next to what the prep flow recorded
(see :mod:`flows.linux_patching.prep_record`): kernel before / after / target, whether the
server rebooted since the prep QC, CrowdStrike before and the agents after, and the QC
verdict before. An instance the prep run never saw is validated all the same; its drift says
there was no prep record.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta, timezone

from pydantic import BaseModel, Field

from flows.linux_patching.kernels import normalize_kernel
from flows.linux_patching.post_check import (
    AgentState,
    KernelTargetSource,
    PostReport,
    agent_label,
)
from flows.linux_patching.prep_record import PrepRecord, as_utc

NO_PREP_RECORD = "no prep record"


class InstanceDrift(BaseModel):
    """One instance then (prep) and now (post)."""

    prep_record: bool
    qc_before: str = Field(description="prep QC verdict, or 'no prep record'")
    kernel_before: str | None = Field(default=None, description="running kernel at prep QC")
    kernel_after: str | None = Field(default=None, description="running kernel now")
    kernel_target: str | None = None
    kernel_target_source: KernelTargetSource = KernelTargetSource.NONE
    kernel_changed: bool | None = Field(default=None, description="None when either is unknown")
    rebooted: bool | None = Field(
        default=None, description="since the prep QC; None when it cannot be told"
    )
    booted_at: datetime | None = Field(default=None, description="last boot (UTC), if known")
    crowdstrike_before: bool | None = Field(default=None, description="running at prep QC")
    agents_before: dict[str, AgentState] = Field(
        default_factory=dict, description="at prep QC, the agents prep reported"
    )
    agents_after: dict[str, AgentState] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


def boot_moment(report: PostReport, checked_at: datetime | None) -> datetime | None:
    """When the server last booted, in UTC.

    The uptime counter against the command's own (UTC) time needs no time zone; the host's
    ``last boot`` is local time, so it is used only with the offset its clock printed.
    """
    checked_at = as_utc(checked_at)
    if report.uptime_seconds is not None and checked_at is not None:
        return checked_at - timedelta(seconds=report.uptime_seconds)
    if report.last_boot is None or not report.checked_at:
        return None
    try:
        offset = datetime.fromisoformat(report.checked_at).utcoffset()
    except ValueError:
        return None
    if offset is None:
        return None
    return report.last_boot.replace(tzinfo=timezone(offset)).astimezone(UTC)


def _same_kernel(before: str | None, after: str | None) -> bool | None:
    if not before or not after:
        return None
    return normalize_kernel(before) == normalize_kernel(after)


def compare_with_prep(
    report: PostReport | None,
    prep: PrepRecord | None,
    checked_at: datetime | None,
    *,
    change_number: str,
    planned_target: str | None = None,
    planned_source: KernelTargetSource = KernelTargetSource.NONE,
) -> InstanceDrift:
    """The instance at prep time beside the instance now.

    ``report`` is the post check's (None when it did not run); ``checked_at`` the time its
    command ran; ``planned_target``/``planned_source`` the target the flow sent, shown when
    the report names none. Rebooted means the running kernel changed, or the last boot came
    after the prep QC.
    """
    notes: list[str] = []
    target = planned_target
    source = planned_source if planned_target else KernelTargetSource.NONE
    if report is not None and report.kernel_target:
        target, source = report.kernel_target, report.kernel_target_source
    kernel_after = report.kernel_running if report is not None else None
    booted = boot_moment(report, checked_at) if report is not None else None

    if prep is None:
        notes.append(
            f"{NO_PREP_RECORD}: the prep flow has not recorded this instance in change "
            f"{change_number}; validated without a before/after comparison"
        )
        return InstanceDrift(
            prep_record=False,
            qc_before=NO_PREP_RECORD,
            kernel_after=kernel_after,
            kernel_target=target,
            kernel_target_source=source,
            booted_at=booted,
            agents_after=dict(report.agents) if report else {},
            notes=notes,
        )

    qc = prep.qc_report
    kernel_before = qc.kernel if qc is not None else None
    same = _same_kernel(kernel_before, kernel_after)
    changed = None if same is None else not same
    prep_at = as_utc(prep.qc_at)
    rebooted: bool | None = None
    if changed:
        rebooted = True  # a new kernel runs only after a boot
    elif booted is not None and prep_at is not None:
        rebooted = booted > prep_at
    if kernel_before is None and kernel_after is not None:
        notes.append("the prep record holds no running kernel: kernel drift unknown")
    if prep.staging_problem:
        notes.append(f"prep staging left no kernel here: {prep.staging_problem}")
    if report is not None and changed is False and target and report.kernel_match is False:
        notes.append("still on the kernel it ran at prep time: not patched yet")
    return InstanceDrift(
        prep_record=True,
        qc_before=prep.qc_before,
        kernel_before=kernel_before,
        kernel_after=kernel_after,
        kernel_target=target,
        kernel_target_source=source,
        kernel_changed=changed,
        rebooted=rebooted,
        booted_at=booted,
        crowdstrike_before=qc.crowdstrike_running if qc is not None else None,
        agents_before=prep.agents_before,
        agents_after=dict(report.agents) if report else {},
        notes=notes,
    )


_PRESENT = (AgentState.RUNNING, AgentState.STOPPED)
_STATE_WORDS = {
    AgentState.RUNNING: "running",
    AgentState.STOPPED: "installed but not running",
    AgentState.NOT_INSTALLED: "not installed",
    AgentState.UNKNOWN: "unknown",
}


def lost_agents(drift: InstanceDrift, required: Collection[str]) -> dict[str, str]:
    """Required agents the change lost, by unit, each with the reason a person reads.

    An agent is lost when it was present at prep QC (running, or installed) and is now not
    installed, or when it was running at prep QC and is now installed but stopped.
    """
    lost: dict[str, str] = {}
    for unit in required:
        before = drift.agents_before.get(unit)
        after = drift.agents_after.get(unit)
        if before not in _PRESENT or after is None:
            continue
        if after is AgentState.NOT_INSTALLED or (
            before is AgentState.RUNNING and after is AgentState.STOPPED
        ):
            lost[unit] = (
                f"{agent_label(unit)} was {_STATE_WORDS[before]} at prep QC and is "
                f"{_STATE_WORDS[after]} now: the change must not remove or stop it; reinstall "
                f"or start it and find out what removed it"
            )
    return lost
