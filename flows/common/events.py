"""Prefect events that operators hang automations on: a workflow found failures in a change.

Each failing workflow emits one event, named ``cloudops.<kind>.failed`` (and the patch window
``cloudops.window.halted`` when its error budget is spent), about the resource
``cloudops.change.<change number>`` (``cloudops.change.adhoc`` for a run without a change).
Its payload holds the change number and counts, nothing else: no output, no parameter, no
error text, so no secret can travel in it. Emitted inside a flow run, Prefect relates the event
to that flow run, its flow, deployment, work pool and tags, so an automation can match on those
too. An automation in the UI (Automations → Add → Trigger: Custom, event
``cloudops.qc.failed``, resource ``cloudops.change.*``) can then page, open a ticket or start
another deployment.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from prefect.events import Event, emit_event
from pydantic import BaseModel, Field, NonNegativeInt

from flows.changes import validate_change_number

EVENT_PREFIX = "cloudops"
CHANGE_RESOURCE_PREFIX = f"{EVENT_PREFIX}.change."
ADHOC_CHANGE = "adhoc"


class FailureKind(StrEnum):
    """Which workflow failed; the middle part of the event name."""

    QC = "qc"  # linux-qc-patching-prep: instances failed the initial QC
    POST = "post"  # linux-qc-patching-post: instances failed the post-patch validation
    SFT = "sft"  # sft-fixer: the agent could not be fixed on some instances
    RUN_SCRIPT = "run-script"  # run-script: the script did not succeed everywhere
    WINDOW = "window"  # linux-qc-patching-window: instances failed in the patch window
    # linux-qc-patching-window: the error budget is spent, no new wave starts (sent at once, so
    # an automation can call a person to decide while the run waits)
    WINDOW_HALTED = "window-halted"

    @property
    def event_name(self) -> str:
        """``cloudops.<kind>.failed``; ``cloudops.window.halted`` for a halted window."""
        if self is FailureKind.WINDOW_HALTED:
            return f"{EVENT_PREFIX}.window.halted"
        return f"{EVENT_PREFIX}.{self.value}.failed"


class FailurePayload(BaseModel):
    """What a failure event carries: the change and how many instances ended how."""

    kind: FailureKind
    change_number: str | None = Field(description="None for a run outside a change")
    counts: dict[str, NonNegativeInt] = Field(
        description="instances per outcome, e.g. {'passed': 10, 'failed': 2}"
    )


def change_resource_id(change_number: str | None) -> str:
    """The event resource id of a change: ``cloudops.change.<number>``."""
    return CHANGE_RESOURCE_PREFIX + (change_number or ADHOC_CHANGE)


def emit_failure_event(
    kind: FailureKind | str,
    change_number: str | None,
    counts: Mapping[str, int],
) -> Event | None:
    """Emit ``cloudops.<kind>.failed`` about change ``change_number`` with ``counts``.

    Args:
        kind: ``qc``, ``post``, ``sft``, ``run-script``, ``window`` or ``window-halted``.
        change_number: the change the run worked on; None for an ad hoc run.
        counts: instances per outcome (non-negative integers keyed by a short label).

    Returns:
        The event as sent, or None when Prefect is not sending events (no API configured).

    Raises:
        ValueError: ``kind``, the change number or a count is not acceptable.
    """
    payload = FailurePayload(
        kind=FailureKind(kind),
        change_number=None if change_number is None else validate_change_number(change_number),
        counts=dict(counts),
    )
    number = payload.change_number
    return emit_event(
        event=payload.kind.event_name,
        resource={
            "prefect.resource.id": change_resource_id(number),
            "prefect.resource.name": number or ADHOC_CHANGE,
        },
        payload=payload.model_dump(mode="json"),
    )
