"""What the post-patching run found per instance, set beside the prep record of the same change,
and the tables and markdown a person reads.

The prep flow records, per instance, its initial QC (step ``initial_qc``: the parsed
``QcReport``) and the kernel it staged (step ``stage_kernels``: a ``StagedInstance``).
``load_prep_records`` reads them back and ``compare_with_prep`` puts them next to what the post
check finds now: kernel before / after / target, whether the server rebooted since the prep
QC, CrowdStrike before and the agents after, and the QC status before. An instance the prep
run never saw is validated all the same; its drift says there was no prep record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from flows.kernels import normalize_kernel
from flows.linux_qc_patching_prep import WORKFLOW as PREP_WORKFLOW
from flows.parsers import AgentState, KernelTargetSource, PostReport, QcReport
from flows.parsers.post import AGENT_LABELS
from flows.prep_parameters import PrepStep
from flows.prep_staging import StagedInstance
from flows.reporting import markdown_table
from flows.store import ExecutionRecord, Store
from providers.base import ResultStatus

NO_PREP_RECORD = "no prep record"


class PostVerdict(StrEnum):
    """How one instance ended the post-patching check."""

    PASSED = "passed"
    FAILED = "failed"  # the report names why: kernel mismatch, a required agent down...
    CHECK_ERROR = "check_error"  # no usable post report came back
    UNREACHABLE = "unreachable"  # offline, unknown to SSM, or not reachable with our credentials
    NOT_APPLICABLE = "not_applicable"  # a Windows server in a Linux change


class PrepRecord(BaseModel):
    """What the prep flow recorded for one instance of the change (the latest of each step)."""

    qc_status: ResultStatus | None = Field(
        default=None, description="of the prep QC command; None when no QC is recorded"
    )
    qc_at: datetime | None = Field(default=None, description="when the prep QC ran there (UTC)")
    qc_error: str | None = None
    qc_report: QcReport | None = None
    staged_kernel: str | None = Field(
        default=None, description="the newkernel of the patchme.sh prep wrote there"
    )
    staging_problem: str | None = Field(
        default=None, description="why staging is recorded but left no kernel"
    )

    @property
    def qc_before(self) -> str:
        """The prep QC verdict as a person reads it: passed, failed, unreachable..."""
        if self.qc_status is None:
            return "not recorded"
        if self.qc_report is not None and self.qc_report.hostname is not None:
            return "passed" if self.qc_report.passed else "failed"
        if self.qc_status in (ResultStatus.OFFLINE, ResultStatus.NOT_MANAGED):
            return "unreachable"
        if self.qc_status is ResultStatus.SKIPPED:
            return "not applicable"
        return "qc error"


def _utc(moment: datetime | None) -> datetime | None:
    # The store and the providers give aware UTC times; a naive one can only be UTC too.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _qc_part(execution: ExecutionRecord) -> dict[str, Any]:
    report: QcReport | None = None
    if execution.parsed is not None:
        try:
            report = QcReport.model_validate(execution.parsed)
        except ValidationError:
            report = None  # written by another release: judged from the status alone
    return {
        "qc_status": execution.status,
        "qc_at": _utc(execution.started_at or execution.ended_at),
        "qc_error": execution.error,
        "qc_report": report,
    }


def _staging_part(execution: ExecutionRecord) -> dict[str, Any]:
    staged: StagedInstance | None = None
    if execution.parsed is not None:
        try:
            staged = StagedInstance.model_validate(execution.parsed)
        except ValidationError:
            staged = None
    if staged is not None and staged.staged:
        return {"staged_kernel": staged.staged_kernel}
    problem = (staged.error if staged else None) or execution.error
    return {"staging_problem": problem or f"staging ended {execution.status.value}"}


def load_prep_records(store: Store, change_number: str) -> dict[str, PrepRecord]:
    """Per instance id, what the latest prep runs of ``change_number`` recorded for it."""
    qc = store.latest_executions(change_number, PREP_WORKFLOW, PrepStep.INITIAL_QC.value)
    staging = store.latest_executions(change_number, PREP_WORKFLOW, PrepStep.STAGE_KERNELS.value)
    records: dict[str, PrepRecord] = {}
    for instance_id in sorted(set(qc) | set(staging)):
        fields: dict[str, Any] = {}
        if instance_id in qc:
            fields.update(_qc_part(qc[instance_id]))
        if instance_id in staging:
            fields.update(_staging_part(staging[instance_id]))
        records[instance_id] = PrepRecord(**fields)
    return records


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
    agents_after: dict[str, AgentState] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


def boot_moment(report: PostReport, checked_at: datetime | None) -> datetime | None:
    """When the server last booted, in UTC.

    The uptime counter against the command's own (UTC) time needs no time zone; the host's
    ``last boot`` is local time, so it is used only with the offset its clock printed.
    """
    checked_at = _utc(checked_at)
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
    prep_at = _utc(prep.qc_at)
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
        agents_after=dict(report.agents) if report else {},
        notes=notes,
    )


class InstancePost(BaseModel):
    """One instance after the post-patching check: its verdict, report and drift."""

    instance_id: str
    account_id: str = ""
    region: str = ""
    name: str | None = None
    verdict: PostVerdict
    status: ResultStatus = Field(description="of the post check command, or why it was not sent")
    reasons: list[str] = Field(default_factory=list, description="why it did not pass")
    report: PostReport | None = None
    drift: InstanceDrift
    command_id: str | None = None

    @property
    def passed(self) -> bool:
        return self.verdict is PostVerdict.PASSED


class PostResult(BaseModel):
    """What ``linux-qc-patching-post`` returns."""

    change_number: str
    provider: str
    flow_run: str
    workdir: str
    target_kernel: str | None = Field(description="the target_kernel parameter, if given")
    instances: list[InstancePost]
    report_path: str = Field(default="", description="path of qc_post_report_<change>_*.md")

    def verdict_counts(self) -> dict[str, int]:
        counts = Counter(i.verdict.value for i in self.instances)
        return {v.value: counts[v.value] for v in PostVerdict if counts[v.value]}

    @property
    def passed(self) -> list[InstancePost]:
        return [i for i in self.instances if i.passed]

    @property
    def not_passed(self) -> list[InstancePost]:
        """Every instance that did not pass, the not applicable ones included."""
        return [i for i in self.instances if not i.passed]


# --- Tables --------------------------------------------------------------------------------------


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def _agent(state: AgentState | None) -> str:
    return {
        None: "",
        AgentState.RUNNING: "running",
        AgentState.STOPPED: "installed, not running",
        AgentState.NOT_INSTALLED: "not installed",
        AgentState.UNKNOWN: "unknown",
    }[state]


def _crowdstrike_before(drift: InstanceDrift) -> str:
    if not drift.prep_record:
        return NO_PREP_RECORD
    if drift.crowdstrike_before is None:
        return "unknown"
    return "running" if drift.crowdstrike_before else "not running"


def _name(instance: InstancePost) -> str:
    return instance.name or (instance.report.hostname if instance.report else None) or ""


def _target(drift: InstanceDrift) -> str:
    return drift.kernel_target or "none known"


def passed_rows(instances: Iterable[InstancePost]) -> list[dict[str, Any]]:
    """One row per instance that passed."""
    return [
        {
            "instance": i.instance_id,
            "name": _name(i),
            "account": i.account_id,
            "region": i.region,
            "running kernel": i.drift.kernel_after or "",
            "target kernel": _target(i.drift),
            "target from": i.drift.kernel_target_source.value,
            "rebooted": _yes_no(i.drift.rebooted),
            "notes": "; ".join((i.report.notes if i.report else []) + i.drift.notes),
        }
        for i in instances
        if i.passed
    ]


def failed_rows(instances: Iterable[InstancePost]) -> list[dict[str, Any]]:
    """One row per instance that did not pass, with the reasons."""
    return [
        {
            "instance": i.instance_id,
            "name": _name(i),
            "account": i.account_id,
            "region": i.region,
            "verdict": i.verdict.value,
            "status": i.status.value,
            "running kernel": i.drift.kernel_after or "",
            "target kernel": _target(i.drift),
            "reasons": "; ".join(i.reasons),
            "command": i.command_id or "",
        }
        for i in instances
        if not i.passed
    ]


def drift_rows(instances: Iterable[InstancePost]) -> list[dict[str, Any]]:
    """One row per instance: prep time beside now."""
    rows = []
    for i in instances:
        drift = i.drift
        row: dict[str, Any] = {
            "instance": i.instance_id,
            "name": _name(i),
            "verdict": i.verdict.value,
            "QC before": drift.qc_before,
            "kernel before": drift.kernel_before or "",
            "kernel after": drift.kernel_after or "",
            "target kernel": _target(drift),
            "target from": drift.kernel_target_source.value,
            "kernel changed": _yes_no(drift.kernel_changed),
            "rebooted": _yes_no(drift.rebooted),
            "CrowdStrike before": _crowdstrike_before(drift),
        }
        for unit, label in AGENT_LABELS.items():
            row[f"{label} after"] = _agent(drift.agents_after.get(unit))
        rows.append(row)
    return rows


# --- Markdown ------------------------------------------------------------------------------------


def _counts(result: PostResult) -> str:
    return ", ".join(f"{n} {v}" for v, n in result.verdict_counts().items()) or "none"


def _needs_attention(result: PostResult) -> list[str]:
    lines = []
    for i in result.not_passed:
        if i.verdict is PostVerdict.NOT_APPLICABLE:
            continue
        lines.append(f"- `{i.instance_id}` ({i.verdict.value}): " + "; ".join(i.reasons))
    if not lines:
        return []
    return ["## Needs attention", "", *lines, ""]


def _findings(result: PostResult) -> list[str]:
    lines = []
    for i in result.instances:
        notes = (i.report.notes if i.report else []) + i.drift.notes
        if notes:
            lines.append(f"- `{i.instance_id}`: " + "; ".join(notes))
    if not lines:
        return []
    return ["## Informational findings", "", "They do not fail a server.", "", *lines, ""]


def post_report_markdown(result: PostResult) -> str:
    """The ``qc_post_report``: verdicts, what needs attention, drift since prep, every table."""
    without_prep = [i.instance_id for i in result.instances if not i.drift.prep_record]
    not_applicable = [
        i.instance_id for i in result.instances if i.verdict is PostVerdict.NOT_APPLICABLE
    ]
    lines = [
        f"# Linux post-patching QC: {result.change_number}",
        "",
        f"- flow run: `{result.flow_run}`",
        f"- provider: `{result.provider}`",
        f"- instances: {len(result.instances)} ({_counts(result)})",
        f"- change folder on each server: `{result.workdir}/{result.change_number}`",
        "- target kernel: `patchme.sh` on the server, else the kernel the prep run staged, "
        f"else the parameter ({result.target_kernel or 'not given'})",
        "- a server fails on a kernel mismatch, or CrowdStrike or BigFix installed but not "
        "running; the other findings are informational",
    ]
    if without_prep:
        lines.append(f"- {NO_PREP_RECORD} for: {', '.join(without_prep)}")
    if not_applicable:
        lines.append(f"- not applicable (Windows): {', '.join(not_applicable)}")
    lines.append("")
    lines += _needs_attention(result)
    lines += ["## Kernel and agents since prep", "", markdown_table(drift_rows(result.instances))]
    lines += ["## Passed", "", markdown_table(passed_rows(result.instances))]
    lines += ["## Did not pass", "", markdown_table(failed_rows(result.instances))]
    lines += _findings(result)
    return "\n".join(lines)
