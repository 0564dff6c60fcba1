"""The numbers an operator asks of a run under faults: how many instances, which AWS calls and
how many of them AWS (the emulator) refused, how often Prefect retried a task, how long it took.

Every reliability test prints one ``Figures`` block (``pytest -s`` shows them), so a run of the
suite reads as a table of what was held and survived.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from tests.ssm_emulator import SsmWorld


@dataclass
class Figures:
    """What one run cost and survived."""

    label: str
    instances: int
    wall_seconds: float
    calls: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    task_runs: int = 0
    task_retries: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        label: str,
        world: SsmWorld,
        instances: int,
        wall_seconds: float,
        flow_run_ids: list[UUID] | None = None,
        **extra: object,
    ) -> Figures:
        """Figures from the world's request log and the Prefect task runs of the flow runs."""
        calls: Counter[str] = Counter()
        refused: Counter[str] = Counter()
        for request in world.requests:
            name = f"{request.service}:{request.operation}"
            calls[name] += 1
            if request.answered_by not in ("emulator", "moto"):
                refused[f"{name} ({request.answered_by})"] += 1
        runs, retries = task_retries(flow_run_ids or [])
        return cls(label, instances, wall_seconds, calls, refused, runs, retries, dict(extra))

    def show(self) -> str:
        """The figures as a few aligned lines, printed for the test log."""
        lines = [
            f"== {self.label}",
            f"   instances {self.instances}, wall {self.wall_seconds:.1f} s, "
            f"task runs {self.task_runs}, task retries {self.task_retries}",
            "   calls (every HTTP attempt): "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.calls.items())),
            "   refused attempts (retried): "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.refused.items())) or "none"),
        ]
        lines += [f"   {key}: {value}" for key, value in self.extra.items()]
        text = "\n".join(lines)
        print(text)
        return text


def task_retries(flow_run_ids: list[UUID]) -> tuple[int, int]:
    """(task runs, retries beyond each task's first attempt) of these flow runs."""
    if not flow_run_ids:
        return 0, 0
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(flow_run_ids)))
        )
    return len(runs), sum(max(run.run_count - 1, 0) for run in runs)
