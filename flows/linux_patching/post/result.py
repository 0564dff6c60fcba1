"""What ``linux-qc-patching-post`` returns."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

from flows.linux_patching.post_verdict import InstancePost, PostVerdict, post_tally


class PostResult(BaseModel):
    """What ``linux-qc-patching-post`` returns."""

    change_number: str
    provider: str
    flow_run: str
    workdir: str
    target_kernel: str | None = Field(description="the target_kernel parameter, if given")
    instances: list[InstancePost]
    report_path: str = Field(default="", description="path of qc_post_report_<change>_*.md")

    def verdict_counts(self) -> dict[str, int]:
        counts = Counter(i.verdict.value for i in self.instances)
        return {v.value: counts[v.value] for v in PostVerdict if counts[v.value]}

    def failure_event_counts(self) -> dict[str, int]:
        """The counts ``cloudops.post.failed`` carries: instances left unpatched on purpose
        (their prep QC did not pass) are not the post check's findings and stay out."""
        counts = self.verdict_counts()
        counts.pop(PostVerdict.NOT_PATCHED_PREP_FAILED.value, None)
        return counts

    @property
    def needs_attention(self) -> bool:
        """An instance did not pass (Windows servers, not applicable, aside)."""
        return post_tally(self.instances).failed > 0

    def outcome(self) -> str:
        """One line for the run's final state: counts per verdict."""
        counts = ", ".join(f"{n} {v}" for v, n in self.verdict_counts().items()) or "no instances"
        return f"{len(self.instances)} instance(s): {counts}"

    @property
    def passed(self) -> list[InstancePost]:
        return [i for i in self.instances if i.passed]

    @property
    def not_passed(self) -> list[InstancePost]:
        """Every instance that did not pass, the not applicable ones included."""
        return [i for i in self.instances if not i.passed]
