"""The window's ledger while it runs: each instance's final status, the waves so far, the
decisions people took, the error budget, and the progress a person watches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from flows.common.runs import WorkflowRun
from flows.linux_patching.prep_record import PrepRecord
from flows.linux_patching.window.budget import ErrorBudget
from flows.linux_patching.window.parameters import WindowParameters
from flows.linux_patching.window.preflight import InstancePreflight, PreflightVerdict
from flows.linux_patching.window.result import (
    DecisionSummary,
    FinalStatus,
    InstanceOutcome,
    LeftOutInstance,
    WaveSummary,
)
from flows.linux_patching.window.resume import RecordedWindow
from flows.linux_patching.window.waves import Wave
from flows.store import DecisionRecord
from providers.base import Target


class WindowProgress:
    """One progress artifact over the whole window: instances with a final status."""

    def __init__(self, key: str, total: int, description: str) -> None:
        self._total = max(total, 1)
        self._id = cast(
            UUID, create_progress_artifact(progress=0.0, key=key, description=description)
        )

    def show(self, done: int) -> None:
        update_progress_artifact(
            artifact_id=self._id, progress=round(100.0 * min(done, self._total) / self._total, 1)
        )


@dataclass
class WindowLedger:
    """One window run: what it works on and how each instance and wave ended so far."""

    run: WorkflowRun
    params: WindowParameters
    targets: list[Target]
    prep: dict[str, PrepRecord]
    left_out: list[LeftOutInstance]
    recorded: RecordedWindow
    progress: WindowProgress
    budget: ErrorBudget
    preflight: dict[str, InstancePreflight] = field(default_factory=dict)
    outcomes: dict[str, InstanceOutcome] = field(default_factory=dict)
    waves: list[WaveSummary] = field(default_factory=list)
    decisions: list[DecisionSummary] = field(default_factory=list)
    halts: int = 0
    stopped: str | None = None  # why no further wave starts
    aborted: bool = False
    window_closed: bool = False

    @property
    def change(self) -> str:
        return self.params.change_number

    @property
    def failures(self) -> int:
        return sum(o.status.spends_budget for o in self.outcomes.values())

    def counts(self) -> dict[str, int]:
        """Instances per final status so far (no event or table shows an empty one)."""
        counts: dict[str, int] = {}
        for outcome in self.outcomes.values():
            counts[outcome.status.value] = counts.get(outcome.status.value, 0) + 1
        return counts

    # -- preflight ------------------------------------------------------------------------------

    def preflighted(self, checked: dict[str, InstancePreflight]) -> list[Target]:
        """Keep the preflight; refused and already patched instances get their final status.
        Returns the instances ready to patch, in the order given."""
        self.preflight = checked
        for target in self.targets:
            check = checked[target.instance_id]
            if check.verdict is PreflightVerdict.REFUSED:
                self.settle(self._from_preflight(check, FinalStatus.REFUSED_PREFLIGHT))
            elif check.verdict is PreflightVerdict.ALREADY_PATCHED:
                self.settle(self._from_preflight(check, FinalStatus.ALREADY_PATCHED))
        return [t for t in self.targets if checked[t.instance_id].verdict is PreflightVerdict.READY]

    def _from_preflight(self, check: InstancePreflight, status: FinalStatus) -> InstanceOutcome:
        facts = check.facts
        running = facts.kernel_running if facts else None
        return InstanceOutcome(
            instance_id=check.instance_id,
            account_id=check.account_id,
            region=check.region,
            hostname=check.hostname,
            group=check.group,
            status=status,
            reasons=list(check.reasons),
            notes=list(check.notes),
            target=check.staged_kernel,
            kernel_before=running,
            kernel_after=running if status is FinalStatus.ALREADY_PATCHED else None,
        )

    # -- waves ----------------------------------------------------------------------------------

    def settle(self, outcome: InstanceOutcome) -> None:
        """An instance's final status."""
        self.outcomes[outcome.instance_id] = outcome

    def wave_done(self, wave: Wave, outcomes: list[InstanceOutcome], started: datetime) -> None:
        """A wave ended: its outcomes settle and the progress moves."""
        for outcome in outcomes:
            self.settle(outcome)
        self.waves.append(
            WaveSummary(
                number=wave.number,
                kind=wave.kind,
                instance_ids=wave.instance_ids,
                started_at=started,
                ended_at=datetime.now(UTC),
                failures=sum(o.status.spends_budget for o in outcomes),
                state="done",
            )
        )
        self.progress.show(len(self.outcomes))

    def may_start(self, wave: Wave) -> bool:
        """Whether ``wave`` may start; once one may not, none after it does."""
        end = self.params.window_end
        if self.stopped is None and end is not None and datetime.now(UTC) >= end:
            self.window_closed = True
            self.stopped = (
                f"window_end {end.isoformat()} passed before wave {wave.number} could start"
            )
        return self.stopped is None

    def not_started(self, waves: list[Wave]) -> None:
        """Instances of waves that never started: ``not_started`` with the reason."""
        for wave in waves:
            self.waves.append(
                WaveSummary(
                    number=wave.number,
                    kind=wave.kind,
                    instance_ids=wave.instance_ids,
                    state="not started",
                )
            )
            for target in wave.targets:
                check = self.preflight[target.instance_id]
                outcome = self._from_preflight(check, FinalStatus.NOT_STARTED)
                outcome.wave = wave.number
                outcome.reasons = [self.stopped or "not started"]
                self.settle(outcome)
        self.progress.show(len(self.outcomes))

    # -- decisions ------------------------------------------------------------------------------

    def decided(self, record: DecisionRecord) -> None:
        self.decisions.append(
            DecisionSummary(
                kind=record.kind,
                decision=record.decision,
                approver=record.approver,
                reason=record.reason,
                decided_at=record.decided_at,
            )
        )
