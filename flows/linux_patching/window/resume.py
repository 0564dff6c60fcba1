"""What a retried flow run of the window finds it already did, so it does not do it again.

A worker that dies mid-window leaves its flow run Crashed; retried (same flow run id), the run
reads back from the store what this flow run recorded: the preflight (so it plans the very same
waves, whose commands it then re-attaches to instead of sending again), and every wave whose
instances have a final status (skipped). A wave that was sent but not recorded runs again with
the same instances: its install command is re-attached to, never sent twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from pydantic import ValidationError

from flows.common.runs import WorkflowRun
from flows.linux_patching.window.parameters import WINDOW_WORKFLOW
from flows.linux_patching.window.preflight import InstancePreflight
from flows.linux_patching.window.result import InstanceOutcome
from flows.store import RunRecord
from flows.store.store import RUNNING

# The window's steps in the store: "preflight", "wave-<n>" (each wave's install and reboot),
# "wave-<n>-post" (its post checks) and "not-started" (the instances of waves that never
# started). A retried run reads back the first two only.
PREFLIGHT_STEP = "preflight"
NOT_STARTED_STEP = "not-started"
_WAVE_STEP = re.compile(r"wave-\d+")

Recorded = TypeVar("Recorded", InstancePreflight, InstanceOutcome)


@dataclass(frozen=True)
class RecordedWave:
    """A wave this flow run finished before: its instances' outcomes and when it ran."""

    outcomes: list[InstanceOutcome]
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class RecordedWindow:
    """What this flow run recorded before it was retried (nothing on a first run)."""

    preflight: dict[str, InstancePreflight] | None = None
    waves: dict[str, RecordedWave] = field(default_factory=dict)

    @classmethod
    def load(cls, run: WorkflowRun) -> RecordedWindow:
        """This flow run's finished steps, from the store."""
        if run.change is None:
            return cls()
        finished: dict[str, RunRecord] = {
            r.step: r
            for r in run.store.runs_for_change(run.change)
            if r.flow_run_id == run.flow_run_id
            and r.workflow == WINDOW_WORKFLOW
            and r.status != RUNNING
        }
        preflight = None
        if PREFLIGHT_STEP in finished:
            preflight = _parsed(run, finished[PREFLIGHT_STEP], InstancePreflight)
        waves: dict[str, RecordedWave] = {}
        for step, record in finished.items():
            if not _WAVE_STEP.fullmatch(step):
                continue
            outcomes = _parsed(run, record, InstanceOutcome)
            if outcomes is not None:
                waves[step] = RecordedWave(
                    list(outcomes.values()), record.started_at, record.ended_at
                )
        return cls(preflight=preflight, waves=waves)


def _parsed(
    run: WorkflowRun, record: RunRecord, model: type[Recorded]
) -> dict[str, Recorded] | None:
    """Each execution's parsed model, or None when any of them cannot be read back (then the
    step is done again)."""
    parsed: dict[str, Recorded] = {}
    for execution in run.store.executions(record.id):
        try:
            parsed[execution.instance_id] = model.model_validate(execution.parsed)
        except ValidationError:
            return None
    return parsed
