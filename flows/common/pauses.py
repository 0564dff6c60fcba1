"""What a paused run asks a person, and how the answer is recorded.

A run pauses (Prefect's ``pause_flow_run(wait_for_input=...)``) when a person must decide:
approve a patch window before its first wave, continue or abort once its error budget is
spent. The forms are typed ``RunInput`` models, so the Prefect UI shows one field per answer
and the server refuses an answer the form would not accept; ``cloudops resume`` sends the same
input from a terminal. Every answer is recorded in the store with who gave it.
"""

from __future__ import annotations

from enum import StrEnum

from prefect import get_run_logger
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.utilities.urls import url_for
from pydantic import Field, field_validator

from flows.common.runs import WorkflowRun
from flows.store import DecisionRecord

# How often a paused run looks whether a person answered (Prefect's default is 10 s).
PAUSE_POLL_SECONDS = 5

_APPROVER = Field(
    min_length=1,
    max_length=100,
    title="Approver",
    description="Who decides: your name or user id, as the change record should show it.",
)


def _required_line(value: str) -> str:
    """A person's answer on one line; blank is no answer."""
    text = " ".join(value.split())
    if not text:
        raise ValueError("must not be empty")
    return text


class Approval(RunInput):
    """A person's go-ahead for a run that waits to be approved."""

    approver: str = _APPROVER
    comment: str = Field(
        default="",
        max_length=500,
        title="Comment",
        description="Anything the change record should say about this approval.",
    )

    @field_validator("approver")
    @classmethod
    def _approver_on_one_line(cls, value: str) -> str:
        return _required_line(value)


class HaltChoice(StrEnum):
    """What to do once a run stopped on its error budget."""

    CONTINUE = "continue"  # start the next wave anyway
    ABORT = "abort"  # start no further wave; report what was done


class HaltDecision(RunInput):
    """A person's decision on a run halted by its error budget."""

    decision: HaltChoice = Field(
        title="Decision",
        description="continue: start the next wave anyway; abort: start no further wave.",
    )
    approver: str = _APPROVER
    reason: str = Field(
        min_length=1,
        max_length=500,
        title="Reason",
        description="Why: it goes into the change record.",
    )

    @field_validator("approver", "reason")
    @classmethod
    def _on_one_line(cls, value: str) -> str:
        return _required_line(value)


def announce_pause(waiting_for: str, timeout_seconds: int, resume_options: str) -> str:
    """Log, for whoever watches the run, what it waits for and the two ways to answer: the
    run's page in the Prefect UI (``PREFECT_UI_URL``), or ``cloudops resume`` in a terminal.
    Returns the line logged."""
    run_id = flow_run.id or "<flow-run-id>"
    # url_for, not flow_run.ui_url: that one builds /flow-runs/flow-run/<id> (a page the UI
    # does not have) and "None/..." when PREFECT_UI_URL is unset.
    url = url_for("flow-run", obj_id=run_id) if flow_run.id else None
    where = (
        f"open {url} and press Resume"
        if url
        else "open the run in the Prefect UI and press Resume (set PREFECT_UI_URL to get a link)"
    )
    line = (
        f"waiting up to {timeout_seconds} s for a person: {waiting_for}. To answer, {where}; "
        f"or from a terminal: cloudops resume {run_id} {resume_options}"
    )
    get_run_logger().info(line)
    return line


def record_approval(run: WorkflowRun, approval: Approval) -> DecisionRecord:
    """The approval in the store, under this run and its change."""
    return run.store.record_decision(
        run.flow_run_id,
        run.workflow,
        run.change,
        kind="approval",
        decision="approved",
        approver=approval.approver,
        reason=approval.comment,
    )


def record_halt_decision(run: WorkflowRun, decision: HaltDecision) -> DecisionRecord:
    """The halt decision in the store, under this run and its change."""
    return run.store.record_decision(
        run.flow_run_id,
        run.workflow,
        run.change,
        kind="halt",
        decision=decision.decision.value,
        approver=decision.approver,
        reason=decision.reason,
    )
