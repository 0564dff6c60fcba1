"""What ``linux-qc-patching-prep`` returns: every step's outcome per instance and per group."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

from flows.linux_patching.prep.kernel_choice import GroupDecision
from flows.linux_patching.prep.kernel_groups import KernelGroup
from flows.linux_patching.prep.parameters import QcEngine
from flows.linux_patching.prep.qc import InstanceQc, QcVerdict
from flows.linux_patching.prep.staging import InstancePrepFiles
from flows.linux_patching.prep_record import PrepStep, StagedInstance

# Verdicts that need a person: the instance cannot be patched as it stands.
NEEDS_A_PERSON = (QcVerdict.FAILED, QcVerdict.QC_ERROR, QcVerdict.UNREACHABLE)


class PrepResult(BaseModel):
    """The prep run of one change: verdicts, kernel groups, staged kernels, report files."""

    change_number: str
    provider: str
    flow_run: str
    steps: list[PrepStep] = Field(description="the steps this run did, in runbook order")
    qc_engine: QcEngine
    workdir: str
    require_crowdstrike: bool
    instances: list[InstanceQc] = Field(description="every target, with its QC verdict")
    groups: list[KernelGroup] = Field(default_factory=list)
    decisions: list[GroupDecision] = Field(
        default_factory=list, description="the kernel per group, or why it was not staged"
    )
    staged: list[StagedInstance] = Field(default_factory=list)
    collected: list[InstancePrepFiles] = Field(default_factory=list)
    staging_refused: str | None = Field(
        default=None, description="why staging was refused as a whole (bad kernel choice)"
    )
    qc_results_report: str = Field(default="", description="path of qc_results_<change>_*.md")
    final_report: str | None = Field(
        default=None, description="path of qc_final_report_<change>_*.md, when that step ran"
    )

    def verdict_counts(self) -> dict[str, int]:
        counts = Counter(i.verdict.value for i in self.instances)
        return {v.value: counts[v.value] for v in QcVerdict if counts[v.value]}

    @property
    def needs_attention(self) -> bool:
        """An instance failed QC, gave no usable report, or could not be reached."""
        counts = self.verdict_counts()
        return any(counts.get(v.value, 0) for v in NEEDS_A_PERSON)

    def outcome(self) -> str:
        """One line for the run's final state: counts per verdict and what was staged."""
        counts = ", ".join(f"{n} {v}" for v, n in self.verdict_counts().items()) or "no instances"
        staged = f"; {len(self.staged_kernels())} staged" if self.staged else ""
        return f"{len(self.instances)} instance(s): {counts}{staged}"

    def staged_kernels(self) -> dict[str, str]:
        """Instance id -> the kernel its patchme.sh now installs, for every staged instance."""
        return {s.instance_id: s.kernel for s in self.staged if s.staged}
