"""What the prep flow records for each instance of a change, and how later flows read it.

Prep records, in the store, under the workflow ``linux-qc-patching-prep``:

- step ``initial_qc``: the QC command's result, its parsed ``QcReport`` with it;
- step ``stage_kernels``: the staging command's result, its ``StagedInstance`` with it;
- step ``final_report``: the prep files read back.

The patch window and the post check read the latest of each per instance
(``load_prep_records``): the kernel staged there, the kernel and agents at QC time. This
module is that contract, so that those flows never import the prep flow itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from flows.linux_patching.post_check import AgentState
from flows.linux_patching.qc_report import QcReport
from flows.store import ExecutionRecord, Store
from providers.base import ResultStatus

PREP_WORKFLOW = "linux-qc-patching-prep"


class PrepStep(StrEnum):
    """The steps prep may do, in runbook order, as recorded in the store. The connectivity
    check always runs and is recorded with the initial QC."""

    INITIAL_QC = "initial_qc"
    STAGE_KERNELS = "stage_kernels"
    FINAL_REPORT = "final_report"


class StagedInstance(BaseModel):
    """What staging did on one instance of a group."""

    instance_id: str
    account_id: str = ""
    region: str = ""
    group: str
    kernel: str = Field(description="the kernel asked for")
    status: ResultStatus
    staged_kernel: str | None = Field(
        default=None, description="the newkernel line of the patchme.sh the instance printed"
    )
    command_id: str | None = None
    error: str | None = None
    not_offered: bool = Field(
        default=False,
        description="the group's kernel is not among the ones this instance's own QC listed: "
        "nothing was sent to it",
    )
    offered_kernels: list[str] = Field(
        default_factory=list, description="what this instance's QC listed, when not_offered"
    )

    @property
    def staged(self) -> bool:
        return self.status.is_success and self.staged_kernel == self.kernel

    @property
    def outcome(self) -> str:
        """``staged``, ``not_offered``, or the staging command's status."""
        if self.staged:
            return "staged"
        if self.not_offered:
            return "not_offered"
        return self.status.value


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

    @property
    def qc_not_passed(self) -> bool:
        """Prep QC ran (or tried to) on this Linux instance and did not pass it, so the change
        left it unpatched on purpose."""
        return self.qc_before in ("failed", "qc error", "unreachable")

    @property
    def qc_reasons(self) -> list[str]:
        """Why the prep QC did not pass, as prep reported it."""
        if self.qc_report is not None and self.qc_report.failure_reasons:
            return list(self.qc_report.failure_reasons)
        if self.qc_error:
            return [self.qc_error]
        return []

    @property
    def agents_before(self) -> dict[str, AgentState]:
        """The agents at prep QC, by unit name, as far as prep saw them: every agent our QC
        engine reports (``AGENT_<UNIT>`` facts), else CrowdStrike from the report's lines (the
        Linux Patcher reports only that one)."""
        report = self.qc_report
        if report is None:
            return {}
        agents: dict[str, AgentState] = {}
        for key, value in report.facts.items():
            if key.startswith("AGENT_"):
                unit = key.removeprefix("AGENT_").lower().replace("_", "-")
                try:
                    agents[unit] = AgentState(value)
                except ValueError:
                    agents[unit] = AgentState.UNKNOWN
        if "falcon-sensor" not in agents:
            if report.crowdstrike_running:
                agents["falcon-sensor"] = AgentState.RUNNING
            elif (report.crowdstrike_version or "").lower() == "not installed":
                agents["falcon-sensor"] = AgentState.NOT_INSTALLED
        return agents


def as_utc(moment: datetime | None) -> datetime | None:
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
        "qc_at": as_utc(execution.started_at or execution.ended_at),
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
