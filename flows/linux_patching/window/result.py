"""What ``linux-qc-patching-window`` returns: a final status per instance, the waves, the
decisions people took."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class FinalStatus(StrEnum):
    """How an instance ended the window."""

    PATCHED = "patched"  # back on the target (or an accepted newer kernel), post checks passed
    ALREADY_PATCHED = "already_patched"  # ran the target already: not touched
    REFUSED_PREFLIGHT = "refused_preflight"  # left out of the waves, with the reasons
    INSTALL_FAILED = "install_failed"  # the install failed; nothing rebooted
    WRONG_KERNEL = "wrong_kernel"  # rebooted, but runs another kernel than the target
    REBOOT_TIMED_OUT = "reboot_timed_out"  # its agent did not come back in time
    POST_FAILED = "post_failed"  # back on the target, but the post checks failed
    NOT_STARTED = "not_started"  # its wave never started (halted, aborted, window closed)

    @property
    def spends_budget(self) -> bool:
        """A failure of a wave, counted against ``max_failures``."""
        return self in (
            FinalStatus.INSTALL_FAILED,
            FinalStatus.WRONG_KERNEL,
            FinalStatus.REBOOT_TIMED_OUT,
            FinalStatus.POST_FAILED,
        )


class WaveKind(StrEnum):
    CANARY = "canary"
    WAVE = "wave"


class InstanceOutcome(BaseModel):
    """One instance at the end of the window."""

    instance_id: str
    account_id: str = ""
    region: str = ""
    hostname: str = ""
    group: str = Field(default="unknown", description="kernel group (distribution, base kernel)")
    wave: int | None = Field(default=None, description="its wave, when it was in one")
    status: FinalStatus
    reasons: list[str] = Field(default_factory=list, description="why it is not patched")
    notes: list[str] = Field(default_factory=list)
    target: str | None = Field(default=None, description="the kernel prep staged")
    kernel_before: str | None = None
    kernel_after: str | None = None
    seconds_to_back_online: float | None = Field(
        default=None, description="from sending the install to the command's end after boot"
    )
    boot_id_before: str | None = None
    boot_id_after: str | None = None
    post_verdict: str | None = Field(default=None, description="of the wave's post checks")
    post_reasons: list[str] = Field(default_factory=list)
    install_command: str | None = None


class WaveSummary(BaseModel):
    """One wave: who was in it, when it ran, how many of them failed."""

    number: int
    kind: WaveKind
    instance_ids: list[str]
    started_at: datetime | None = None
    ended_at: datetime | None = None
    failures: int = 0
    state: str = Field(description="done, not started, or planned (dry run)")


class DecisionSummary(BaseModel):
    """A decision a person took during the run."""

    kind: str = Field(description="approval or halt")
    decision: str = Field(description="approved, continue or abort")
    approver: str
    reason: str = ""
    decided_at: datetime | None = None


class LeftOutInstance(BaseModel):
    """An instance of the change that is not part of this window, and why."""

    instance_id: str
    account_id: str = ""
    region: str = ""
    name: str | None = None
    reason: str


class WindowResult(BaseModel):
    """The window of one change, as it ended."""

    change_number: str
    provider: str
    flow_run: str
    dry_run: bool
    max_failures: int = Field(description="the error budget in instances")
    instances: list[InstanceOutcome]
    waves: list[WaveSummary] = Field(default_factory=list)
    decisions: list[DecisionSummary] = Field(default_factory=list)
    left_out: list[LeftOutInstance] = Field(default_factory=list)
    halted: bool = Field(default=False, description="the error budget was spent at some point")
    aborted: bool = Field(default=False, description="a person chose abort, or on_halt=fail")
    window_closed: bool = Field(default=False, description="window_end passed before a wave")
    report_path: str = ""

    @property
    def failures(self) -> int:
        return sum(i.status.spends_budget for i in self.instances)

    def status_counts(self) -> dict[str, int]:
        counts = Counter(i.status.value for i in self.instances)
        return {s.value: counts[s.value] for s in FinalStatus if counts[s.value]}

    def by_status(self, status: FinalStatus) -> list[InstanceOutcome]:
        return [i for i in self.instances if i.status is status]
