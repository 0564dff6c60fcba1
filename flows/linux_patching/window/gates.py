"""Where the window waits for a person: the approval before wave 1, and the decision once the
error budget is spent.

Both pause the flow run (Prefect's ``pause_flow_run`` with a typed form from
:mod:`flows.common.pauses`), log where and how to answer (the run's page in the UI, or
``cloudops resume`` from a terminal), and record the answer in the store. A retried run finds
the answers it already got and does not ask again.
"""

from __future__ import annotations

from prefect import get_run_logger
from prefect.flow_runs import pause_flow_run

from flows.common.pauses import (
    PAUSE_POLL_SECONDS,
    Approval,
    HaltChoice,
    HaltDecision,
    announce_pause,
    record_approval,
    record_halt_decision,
)
from flows.common.runs import WorkflowRun
from flows.store import DecisionRecord


def decisions_of_this_run(run: WorkflowRun, kind: str) -> list[DecisionRecord]:
    """Decisions of ``kind`` this flow run already got (a retried run keeps them)."""
    if run.change is None:
        return []
    return [
        d
        for d in run.store.decisions_for_change(run.change)
        if d.flow_run_id == run.flow_run_id and d.kind == kind
    ]


def ask_for_approval(run: WorkflowRun, summary: str, timeout_seconds: int) -> DecisionRecord:
    """Pause until a person approves the window (the run fails if nobody does in time)."""
    done = decisions_of_this_run(run, "approval")
    if done:
        get_run_logger().info("approved already by %s (a retried run asks once)", done[0].approver)
        return done[0]
    announce_pause(
        "approval before wave 1 (approver: your name; comment: optional)",
        timeout_seconds,
        '--approver NAME --comment "TEXT"',
    )
    form = Approval.with_initial_data(description=summary)
    answer = pause_flow_run(
        wait_for_input=form,
        timeout=timeout_seconds,
        poll_interval=PAUSE_POLL_SECONDS,
        key="window-approval",
    )
    record = record_approval(run, answer)
    get_run_logger().info("window approved by %s: %s", record.approver, record.reason or "-")
    return record


def decide_on_halt(
    run: WorkflowRun, summary: str, halt_number: int, timeout_seconds: int
) -> DecisionRecord:
    """Pause until a person decides to continue or abort a halted window; the ``halt_number``-th
    halt of this run (from 1), so a retried run finds the decision it already got."""
    done = decisions_of_this_run(run, "halt")
    if len(done) >= halt_number:
        decision = done[halt_number - 1]
        get_run_logger().info(
            "halt %d already decided: %s by %s", halt_number, decision.decision, decision.approver
        )
        return decision
    announce_pause(
        f"a decision on the halted window (decision: {HaltChoice.CONTINUE.value} starts the next "
        f"wave, {HaltChoice.ABORT.value} starts no further wave; approver; reason)",
        timeout_seconds,
        '--decision continue|abort --approver NAME --reason "TEXT"',
    )
    form = HaltDecision.with_initial_data(description=summary)
    answer = pause_flow_run(
        wait_for_input=form,
        timeout=timeout_seconds,
        poll_interval=PAUSE_POLL_SECONDS,
        key=f"window-halt-{halt_number}",
    )
    record = record_halt_decision(run, answer)
    get_run_logger().info(
        "halt %d: %s by %s (%s)", halt_number, record.decision, record.approver, record.reason
    )
    return record
