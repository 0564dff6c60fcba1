"""What the record store gives back: typed, read-only records of runs and executions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from providers.base import ResultStatus, ScriptResult, Target


class RunRecord(BaseModel):
    """One step of one flow run (``linux-qc-patching-prep`` / ``qc``) and how it ended."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    flow_run_id: str
    workflow: str
    step: str
    provider: str
    change_number: str | None
    status: str
    success_count: int
    failure_count: int
    started_at: datetime
    ended_at: datetime | None


class ExecutionRecord(BaseModel):
    """A script's outcome on one instance within one run, with its parsed result if any."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    run_id: int
    instance_id: str
    account_id: str
    region: str
    command_id: str | None
    status: ResultStatus
    exit_code: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    error: str | None
    parsed: dict[str, Any] | None
    started_at: datetime | None
    ended_at: datetime | None

    def to_result(self) -> ScriptResult:
        """The execution as the provider reported it."""
        return ScriptResult.model_validate(self.model_dump(exclude={"id", "run_id", "parsed"}))


class DecisionRecord(BaseModel):
    """A decision a person took during a run: who, what, why and when."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    flow_run_id: str
    workflow: str
    change_number: str | None
    kind: str = Field(description="approval, halt, ...")
    decision: str = Field(description="approved, continue, abort, ...")
    approver: str
    reason: str
    decided_at: datetime


class RunExecution(BaseModel):
    """An execution with the run (workflow, step, when) it belongs to."""

    model_config = ConfigDict(frozen=True)

    run: RunRecord
    execution: ExecutionRecord


class ChangeVersionRecord(BaseModel):
    """One saved version of a change's instance list."""

    model_config = ConfigDict(frozen=True)

    change_number: str
    version: int = Field(description="1 for the first save, one more per changed list")
    saved_at: datetime
    targets: list[Target]


class ChangeSummary(BaseModel):
    """A stored change at a glance: how many instances, versions and runs, and when."""

    model_config = ConfigDict(frozen=True)

    change_number: str
    created_at: datetime
    updated_at: datetime
    instance_count: int
    version: int = Field(description="the latest version number (0: saved before versions)")
    run_count: int
    last_run_at: datetime | None


class SendIntent(BaseModel):
    """A chunk of a run that was about to be sent, and since when: a run resuming looks for
    its command from ``recorded_at`` on before sending it again."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    run_key: str
    chunk_key: str
    account_id: str
    region: str
    instance_ids: list[str]
    recorded_at: datetime
