"""Progress a person can watch while a run works: one Prefect progress artifact per run part.

``InstanceProgress`` counts instances with a final result (what a long fan-out is waiting
on); ``StepProgress`` counts the steps of a runbook (prep's QC, grouping, staging, report).
A key shown again in the same flow run restarts its card (new total, new description) instead
of adding one: a patch window's preflight, waves and post checks share one card, not a dozen.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run

from providers.base import CommandProgress, ScriptResult


class InstanceProgress:
    """Instances with a final result out of ``total``, as one progress artifact."""

    def __init__(self, total: int, key: str | None, description: str):
        self._total = max(total, 1)
        self._done: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self._shown = -1
        self._artifact_id = _progress_card(key, description)

    def add(self, results: Sequence[ScriptResult]) -> None:
        """Count ``results`` as final (an instance counts once, however often it is added)."""
        with self._lock:
            self._done.update((r.account_id, r.region, r.instance_id) for r in results)
            percent = int(100 * len(self._done) / self._total)
            if percent == self._shown:
                return
            self._shown = percent
        update_progress_artifact(artifact_id=self._artifact_id, progress=float(percent))

    def on_poll(self, progress: CommandProgress) -> None:
        """For ``Provider.collect``: count what became final in one poll."""
        if progress.results:
            self.add(progress.results)


class StepProgress:
    """Steps done out of ``steps``, as one progress artifact."""

    def __init__(self, key: str, steps: int, description: str) -> None:
        self._total = max(steps, 1)
        self._done = 0
        self._id = cast(
            UUID, create_progress_artifact(progress=0.0, key=key, description=description)
        )

    def step_done(self) -> None:
        self._done = min(self._total, self._done + 1)
        update_progress_artifact(
            artifact_id=self._id, progress=round(100.0 * self._done / self._total, 1)
        )


# The progress cards of each flow run by key (this process's runs only: a retried run on
# another worker starts a card of its own).
_cards: dict[tuple[str, str], UUID] = {}
_cards_lock = threading.Lock()


def _progress_card(key: str | None, description: str) -> UUID:
    """A progress artifact at 0 with ``description``: the card this flow run already shows
    under ``key``, restarted, or a new one."""
    run_id = str(flow_run.id or "")
    known = _cards.get((run_id, key)) if key and run_id else None
    if known is not None:
        update_progress_artifact(artifact_id=known, progress=0.0, description=description)
        return known
    # Called from sync flow code, so Prefect's dispatcher returns the id, not a coroutine.
    created = cast(UUID, create_progress_artifact(progress=0.0, key=key, description=description))
    if key and run_id:
        with _cards_lock:
            _cards[(run_id, key)] = created
    return created
