"""A change's history, built from the record store: its runs, the decisions people took during
them, and the latest verdict of each instance in prep, the patch window and post.

The one model behind ``cloudops history`` and ``cloudops report``, so that what the terminal
shows and what the report file says cannot drift apart.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from flows.changes import validate_change_number
from flows.cli.console import CliError, UsageError
from flows.cli.verdicts import (
    POST_STEP,
    POST_WORKFLOW,
    WINDOW_WORKFLOW,
    Verdict,
    read_post,
    read_prep_qc,
    read_staged_kernel,
    read_window,
    verdict_of,
)
from flows.linux_patching.prep_record import PREP_WORKFLOW, PrepStep
from flows.store import (
    ChangeVersionRecord,
    DecisionRecord,
    ExecutionRecord,
    RunExecution,
    RunRecord,
    Store,
)
from flows.store.database import describe_url
from providers.base import Target


class RunLine(BaseModel):
    """One step of one flow run of the change, with who approved that flow run."""

    run: RunRecord
    approved_by: list[str] = Field(default_factory=list)


class ExecutionLine(BaseModel):
    """One execution on one instance, with its run and what it says."""

    run: RunRecord
    execution: ExecutionRecord
    verdict: Verdict


class InstanceStanding(BaseModel):
    """Where one instance of the change stands: its latest verdict in each workflow."""

    instance_id: str
    name: str | None = None
    account_id: str = ""
    region: str = ""
    platform: str = ""
    in_change: bool = Field(description="in the change's current instance list")
    prep: Verdict | None = None
    staged_kernel: str | None = None
    window: Verdict | None = None
    post: Verdict | None = None

    @property
    def kernel_before(self) -> str | None:
        """The kernel it ran at prep's QC."""
        return self.prep.kernel if self.prep else None

    @property
    def kernel_after(self) -> str | None:
        """The kernel it ran at the latest post check (or patch window)."""
        for verdict in (self.post, self.window):
            if verdict is not None and verdict.kernel:
                return verdict.kernel
        return None


class ChangeHistory(BaseModel):
    """Everything the store holds about one change."""

    change_number: str
    store: str = Field(description="the store it was read from, password hidden")
    version: ChangeVersionRecord | None = Field(description="the current instance list")
    runs: list[RunLine]
    decisions: list[DecisionRecord]
    instances: list[InstanceStanding]
    executions: list[ExecutionLine] = Field(
        description="of the one instance asked for; empty otherwise"
    )
    read_at: datetime

    def counts(self, family: str) -> dict[str, int]:
        """Instances per latest label in ``prep``, ``window`` or ``post``."""
        tally: dict[str, int] = defaultdict(int)
        for standing in self.instances:
            verdict = getattr(standing, family)
            tally[verdict.label if verdict else "no record"] += 1
        return dict(sorted(tally.items()))


def change_number_argument(value: str) -> str:
    """A change number from the command line, or a ``UsageError`` saying what is wrong."""
    try:
        return validate_change_number(value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def load_history(store: Store, change_number: str, instance_id: str | None = None) -> ChangeHistory:
    """The history of ``change_number`` (of one instance when ``instance_id`` is given).

    Raises ``CliError`` when the store holds nothing about the change or the instance.
    """
    where = describe_url(store.url)
    versions = store.change_versions(change_number)
    runs = store.runs_for_change(change_number)
    spec = store.load_change(change_number)
    if spec is None and not runs:
        raise CliError(
            f"the store {where} holds no change {change_number} and no run of it; "
            "`cloudops changes list` shows the stored changes"
        )
    executions = store.executions_for_change(change_number, instance_id)
    targets = list(spec.targets) if spec else []
    if instance_id is not None:
        targets = [t for t in targets if t.instance_id == instance_id]
        if not targets and not executions:
            raise CliError(
                f"instance {instance_id} is neither in change {change_number} nor in any of "
                "its runs; `cloudops changes show` lists its instances"
            )
    decisions = store.decisions_for_change(change_number)
    approvals: dict[str, list[str]] = defaultdict(list)
    for decision in decisions:
        if decision.kind == "approval":
            approvals[decision.flow_run_id].append(decision.approver)
    return ChangeHistory(
        change_number=change_number,
        store=where,
        version=versions[-1] if versions else None,
        runs=[RunLine(run=run, approved_by=approvals.get(run.flow_run_id, [])) for run in runs],
        decisions=decisions,
        instances=standings(targets, executions),
        executions=(
            [
                ExecutionLine(
                    run=e.run, execution=e.execution, verdict=verdict_of(e.run, e.execution)
                )
                for e in executions
            ]
            if instance_id is not None
            else []
        ),
        read_at=datetime.now(UTC),
    )


def standings(targets: list[Target], executions: list[RunExecution]) -> list[InstanceStanding]:
    """One standing per instance: those of the change in its order, then any other instance
    its runs recorded (removed from a later version of the change, say)."""
    by_id: dict[str, InstanceStanding] = {
        t.instance_id: InstanceStanding(
            instance_id=t.instance_id,
            name=t.name,
            account_id=t.account_id,
            region=t.region,
            platform=t.platform.value,
            in_change=True,
        )
        for t in targets
    }
    extra: dict[str, InstanceStanding] = {}
    # Oldest first: a later execution replaces what an earlier one said.
    for item in executions:
        run, execution = item.run, item.execution
        standing = by_id.get(execution.instance_id) or extra.setdefault(
            execution.instance_id,
            InstanceStanding(
                instance_id=execution.instance_id,
                account_id=execution.account_id,
                region=execution.region,
                in_change=False,
            ),
        )
        _apply(standing, run, execution)
    return [*by_id.values(), *(extra[key] for key in sorted(extra))]


def _apply(standing: InstanceStanding, run: RunRecord, execution: ExecutionRecord) -> None:
    if run.workflow == PREP_WORKFLOW:
        if run.step == PrepStep.INITIAL_QC.value:
            standing.prep = read_prep_qc(execution)
        elif run.step == PrepStep.STAGE_KERNELS.value:
            standing.staged_kernel = read_staged_kernel(execution)
    elif run.workflow == WINDOW_WORKFLOW:
        window = read_window(run.step, execution)
        if window is not None:
            standing.window = window
    elif run.workflow == POST_WORKFLOW and run.step == POST_STEP:
        standing.post = read_post(execution)
