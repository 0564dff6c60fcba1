"""The connectivity check: which servers the provider can reach now, before anything is sent.

Prep, post and the patch window start the same way: Windows servers in a Linux change are
reported as not applicable and never sent a bash script; the rest go through the provider's
own pre-check (for AWS: SSM registration, ping status, platform), which sends nothing. What
cannot be reached gets one result saying why (offline, not managed, the account's role could
not be assumed), so the flow reports it and leaves it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.common.engine import concurrency_limit, place_label, prepare_group
from providers.base import Platform, Provider, ResultStatus, ScriptRequest, ScriptResult, Target
from providers.engine import group_targets


@dataclass(frozen=True)
class Connectivity:
    """The Linux servers that can be reached, and a result for each server left out."""

    reachable: list[Target]
    left_out: list[ScriptResult]

    @property
    def left_out_ids(self) -> set[str]:
        return {r.instance_id for r in self.left_out}


def check_connectivity(
    provider: Provider,
    targets: Sequence[Target],
    probe: ScriptRequest,
    *,
    not_applicable: str,
) -> Connectivity:
    """Who of ``targets`` can run ``probe`` now, without sending it.

    Args:
        provider: the provider the flow runs through.
        targets: the change's servers, each once.
        probe: the request the flow is about to send (its platform decides who is skipped).
        not_applicable: why a Windows server is left out, for the person reading the report.
    """
    left_out: list[ScriptResult] = []
    linux: list[Target] = []
    for target in targets:
        if target.platform is Platform.WINDOWS:
            left_out.append(
                ScriptResult.without_running(target, ResultStatus.SKIPPED, not_applicable)
            )
        else:
            linux.append(target)

    groups = {(g.account_id, g.region): list(g.targets) for g in group_targets(linux)}
    reachable_ids: set[str] = set()
    task_runner: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(
        max_workers=concurrency_limit(provider)
    )
    with task_runner as runner:
        plans = {
            key: runner.submit(
                prepare_group,
                {
                    "provider": provider,
                    "targets": group,
                    "request": probe,
                    "label": place_label(*key),
                    "step": "connectivity",
                },
            )
            for key, group in groups.items()
        }
        for key, future in plans.items():
            try:
                plan = future.result()
            except Exception as exc:  # one account's failure (role, credentials) is its own
                reason = f"could not check {key[0]}/{key[1]} through {provider.name}: {exc}"
                left_out.extend(
                    ScriptResult.without_running(t, ResultStatus.ERROR, reason) for t in groups[key]
                )
                continue
            left_out.extend(plan.results)
            reachable_ids.update(t.instance_id for chunk in plan.chunks for t in chunk.targets)
    reachable = [t for t in linux if t.instance_id in reachable_ids]
    get_run_logger().info(
        "connectivity: %d of %d instance(s) reachable; %d left out",
        len(reachable),
        len(targets),
        len(left_out),
    )
    return Connectivity(reachable=reachable, left_out=left_out)
