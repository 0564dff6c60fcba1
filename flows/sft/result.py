"""What ``sft-fixer`` found and did on each instance, and what it returns."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from flows.sft.detection import SftState
from flows.sft.parameters import SftAction
from providers.base import Platform


class SftVerdict(StrEnum):
    """How one instance ended."""

    FIXED = "fixed"  # acted on, and the second detection found the agent healthy
    ALREADY_HEALTHY = "already_healthy"  # healthy at the first detection; nothing was changed
    UNHEALTHY = "unhealthy"  # detect only: the agent needs a fix (the reason says which)
    FAILED = "failed"  # the fix did not take, or the state could not be told
    SKIPPED = "skipped"  # deliberately left alone (no Windows installer, wrong platform)
    NOT_REACHABLE = "not_reachable"  # unmanaged, offline or undeliverable

    @property
    def is_good(self) -> bool:
        """The agent is healthy now; every other verdict needs a person's attention."""
        return self in {SftVerdict.FIXED, SftVerdict.ALREADY_HEALTHY}


class SftInstanceOutcome(BaseModel):
    """What happened to the agent on one instance."""

    instance_id: str
    account_id: str = ""
    region: str = ""
    platform: Platform
    name: str | None = None
    verdict: SftVerdict
    reason: str = Field(description="why this verdict, for a person")
    action_taken: SftAction | None = Field(default=None, description="install or reset, if sent")
    before: SftState | None = Field(default=None, description="the first detection")
    after: SftState | None = Field(default=None, description="the last verifying detection")

    @property
    def hostname(self) -> str:
        """The name from the change file, else the one the host reported."""
        detected = self.after or self.before
        return self.name or (detected.hostname if detected else None) or ""


class SftFixerResult(BaseModel):
    """What ``sft-fixer`` returns."""

    action: SftAction
    change_number: str | None
    provider: str
    outcomes: list[SftInstanceOutcome]
    report_path: str

    def count(self, verdict: SftVerdict) -> int:
        return sum(1 for o in self.outcomes if o.verdict is verdict)

    @property
    def needs_attention(self) -> bool:
        """The agent is not healthy now on some instance."""
        return any(not o.verdict.is_good for o in self.outcomes)

    def summary_line(self) -> str:
        """One line for the run's final state: counts per verdict."""
        counts = ", ".join(f"{self.count(v)} {v.value}" for v in SftVerdict if self.count(v))
        return f"{self.action.value} on {len(self.outcomes)} instance(s): {counts or 'none'}"

    def outcome(self, instance_id: str) -> SftInstanceOutcome:
        """The outcome of one instance, by id."""
        for outcome in self.outcomes:
            if outcome.instance_id == instance_id:
                return outcome
        raise KeyError(f"{instance_id} was not part of this sft-fixer run")
