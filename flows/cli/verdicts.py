"""What each workflow's records say about one instance, read back from the store.

One small reader per workflow, each from an execution's status and its parsed payload:

- ``linux-qc-patching-prep``, step ``initial_qc``: the QC verdict of the parsed ``QcReport``
  (``passed`` / ``failed`` and its reasons), else what the status says (``unreachable``,
  ``not_applicable``, ``qc_error``); step ``stage_kernels``: the kernel staged there;
- ``linux-qc-patching-window``, step ``preflight``: the parsed ``InstancePreflight``, final for
  an instance it ``refused`` (``refused_preflight``, with its reasons) or found
  ``already_patched``; one it found ``ready`` has nothing final yet. Steps ``wave-<n>`` (and
  ``not-started``, the instances whose wave never started): the ``FinalStatus`` of the parsed
  ``InstanceOutcome`` (``patched``, ``already_patched``, ``install_failed``, ``wrong_kernel``,
  ``reboot_timed_out``, ``post_failed``, ``not_started``), its reasons and the kernel it ran
  after (or before). A preflight or wave payload it cannot read is judged from the status
  (``unreachable``, ``not_applicable``, ``unknown``). Steps ``wave-<n>-post`` hold each wave's
  post checks, nothing final: one instance's list of executions reads them as post's
  ``PostReport``;
- ``linux-qc-patching-post``, step ``post_qc``: the parsed ``PostReport``'s pass or fail and
  its reasons, else what the status says.

Every reader is tolerant: a payload written by another release, or by a workflow this command
line does not know, is judged from the execution's status alone and said to be so, never an
error.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from flows.linux_patching.post.flow import STEP as POST_STEP
from flows.linux_patching.post.parameters import POST_WORKFLOW
from flows.linux_patching.post_check import PostReport
from flows.linux_patching.prep_record import PREP_WORKFLOW, PrepStep, StagedInstance
from flows.linux_patching.qc_report import QcReport
from flows.linux_patching.window.parameters import WINDOW_WORKFLOW
from flows.linux_patching.window.preflight import InstancePreflight, PreflightVerdict
from flows.linux_patching.window.result import FinalStatus, InstanceOutcome
from flows.linux_patching.window.resume import PREFLIGHT_STEP
from flows.store import ExecutionRecord, RunRecord
from providers.base import ResultStatus

# The window's final statuses: which are good news, which need a person (not_started: neither).
WINDOW_GOOD = frozenset({FinalStatus.PATCHED, FinalStatus.ALREADY_PATCHED})
WINDOW_BAD = frozenset(
    {
        FinalStatus.REFUSED_PREFLIGHT,
        FinalStatus.INSTALL_FAILED,
        FinalStatus.WRONG_KERNEL,
        FinalStatus.REBOOT_TIMED_OUT,
        FinalStatus.POST_FAILED,
    }
)
_WAVE = re.compile(r"wave-\d+")
_UNREACHABLE = (ResultStatus.OFFLINE, ResultStatus.NOT_MANAGED)


class Verdict(BaseModel):
    """What one execution says about one instance, as a person reads it."""

    label: str = Field(description="passed, failed, unreachable, patched, ...")
    ok: bool | None = Field(description="True good, False needs a person, None neither")
    reasons: list[str] = Field(default_factory=list)
    at: datetime | None = Field(default=None, description="when the execution ran")
    kernel: str | None = Field(default=None, description="running kernel it reported, if any")
    note: str | None = Field(default=None, description="e.g. a payload it could not read")

    def describe(self) -> str:
        """``failed: CrowdStrike is not running; ...``."""
        return f"{self.label}: {'; '.join(self.reasons)}" if self.reasons else self.label


def _parsed(execution: ExecutionRecord, model: type[BaseModel]) -> tuple[Any, str | None]:
    """The payload as ``model``, or None and why not (no payload, another release's)."""
    if execution.parsed is None:
        return None, None
    try:
        return model.model_validate(execution.parsed), None
    except ValidationError:
        return None, "its recorded report is of a form this release does not read"


def _from_status(execution: ExecutionRecord, no_report: str, note: str | None) -> Verdict:
    status = execution.status
    if status in _UNREACHABLE:
        label, ok = "unreachable", False
    elif status is ResultStatus.SKIPPED:
        label, ok = "not_applicable", None
    else:
        label, ok = no_report, False
    reasons = [execution.error] if execution.error else []
    if not reasons and status is not ResultStatus.SUCCESS:
        reasons = [f"the command ended {status.value}"]
    return Verdict(label=label, ok=ok, reasons=reasons, at=_when(execution), note=note)


def _when(execution: ExecutionRecord) -> datetime | None:
    return execution.started_at or execution.ended_at


def read_prep_qc(execution: ExecutionRecord) -> Verdict:
    """The initial QC verdict of prep."""
    report, note = _parsed(execution, QcReport)
    if isinstance(report, QcReport) and report.hostname is not None:
        return Verdict(
            label="passed" if report.passed else "failed",
            ok=report.passed,
            reasons=list(report.failure_reasons),
            at=_when(execution),
            kernel=report.kernel,
        )
    return _from_status(execution, "qc_error", note)


def read_staged_kernel(execution: ExecutionRecord) -> str | None:
    """The kernel prep staged in ``patchme.sh`` on the instance, if staging worked."""
    staged, _ = _parsed(execution, StagedInstance)
    if isinstance(staged, StagedInstance) and staged.staged:
        return staged.staged_kernel
    return None


def read_window(step: str, execution: ExecutionRecord) -> Verdict | None:
    """The final status a patch window step recorded; None when the step records none (a
    preflight that found the instance ready, a wave's post checks)."""
    if step.endswith("-post"):
        return None
    if step == PREFLIGHT_STEP:
        return _read_preflight(execution)
    outcome, note = _parsed(execution, InstanceOutcome)
    if not isinstance(outcome, InstanceOutcome):
        # A wave's record is final whatever it holds; another step's is not judged.
        return _from_status(execution, "unknown", note) if _WAVE.fullmatch(step) else None
    status = outcome.status
    reasons = list(outcome.reasons)
    if status is FinalStatus.POST_FAILED:
        reasons += [r for r in outcome.post_reasons if r not in reasons]
    return Verdict(
        label=status.value,
        ok=_window_ok(status),
        reasons=reasons,
        at=_when(execution),
        kernel=outcome.kernel_after or outcome.kernel_before,
    )


def _read_preflight(execution: ExecutionRecord) -> Verdict | None:
    """Final only for an instance the preflight refused or found already patched."""
    check, note = _parsed(execution, InstancePreflight)
    if not isinstance(check, InstancePreflight):
        return _from_status(execution, "unknown", note)
    if check.verdict is PreflightVerdict.READY:
        return None
    status = (
        FinalStatus.REFUSED_PREFLIGHT
        if check.verdict is PreflightVerdict.REFUSED
        else FinalStatus.ALREADY_PATCHED
    )
    return Verdict(
        label=status.value,
        ok=_window_ok(status),
        reasons=list(check.reasons),
        at=_when(execution),
        kernel=check.facts.kernel_running if check.facts else None,
    )


def _window_ok(status: FinalStatus) -> bool | None:
    return True if status in WINDOW_GOOD else False if status in WINDOW_BAD else None


def read_post(execution: ExecutionRecord) -> Verdict:
    """The post-patching verdict."""
    report, note = _parsed(execution, PostReport)
    if isinstance(report, PostReport) and report.summary_found:
        return Verdict(
            label="passed" if report.passed else "failed",
            ok=report.passed,
            reasons=list(report.failure_reasons),
            at=_when(execution),
            kernel=report.kernel_running,
        )
    return _from_status(execution, "check_error", note)


def read_any(execution: ExecutionRecord) -> Verdict:
    """An execution of a workflow without its own reader: its status says it all."""
    ok = execution.status.is_success
    reasons = [] if ok else [execution.error or f"the command ended {execution.status.value}"]
    return Verdict(label=execution.status.value, ok=ok, reasons=reasons, at=_when(execution))


def verdict_of(run: RunRecord, execution: ExecutionRecord) -> Verdict:
    """What this execution says, read by its workflow's reader."""
    if run.workflow == PREP_WORKFLOW and run.step == PrepStep.INITIAL_QC.value:
        return read_prep_qc(execution)
    if run.workflow == PREP_WORKFLOW and run.step == PrepStep.STAGE_KERNELS.value:
        staged = read_staged_kernel(execution)
        if staged is not None:
            return Verdict(label=f"staged {staged}", ok=True, at=_when(execution))
    if run.workflow == WINDOW_WORKFLOW:
        window = read_window(run.step, execution)
        if window is not None:
            return window
    # A wave's post checks are recorded as the post flow records its own.
    if (run.workflow == POST_WORKFLOW and run.step == POST_STEP) or (
        run.workflow == WINDOW_WORKFLOW and run.step.endswith("-post")
    ):
        return read_post(execution)
    return read_any(execution)
