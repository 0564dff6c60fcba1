"""The waves of a patch window: a canary of each kernel group, then waves of ``wave_size``.

Order is stable, so a retried run plans exactly the same waves (and so re-attaches to the
commands it already sent). Instances are spread over their (account, region) places in
proportion: the k-th of a place's n instances sits at (k + 1/2) / n of the order, places in
sorted order, instances of a place by id. Every wave thus takes its share of each place, and a
small place is not used up in the first waves while the last ones all land in one account. The
canary takes the first ``canary_per_group`` instances of every kernel group in that order, so
each distinct kernel is proven once before the rest of the fleet gets it; the rest is spread
again, so the canary leaves no hole in the waves after it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from pydantic import BaseModel

from flows.linux_patching.window.parameters import Share
from flows.linux_patching.window.result import WaveKind
from providers.base import Target


class Wave(BaseModel):
    """One wave: its number (from 1), whether it is the canary, and its instances."""

    number: int
    kind: WaveKind
    targets: list[Target]

    @property
    def step(self) -> str:
        """Its step name in the store and in task names: ``wave-1``, ``wave-2``..."""
        return f"wave-{self.number}"

    @property
    def instance_ids(self) -> list[str]:
        return [t.instance_id for t in self.targets]


def spread(targets: Sequence[Target]) -> list[Target]:
    """``targets`` interleaved over their (account, region) places in proportion to each
    place's size, in a stable order: any stretch of the result holds about its share of every
    place."""
    places: dict[tuple[str, str], list[Target]] = defaultdict(list)
    for target in sorted(targets, key=lambda t: (t.account_id, t.region, t.instance_id)):
        places[(target.account_id, target.region)].append(target)
    keyed = [
        ((k + 0.5) / len(places[place]), index, target)
        for index, place in enumerate(sorted(places))
        for k, target in enumerate(places[place])
    ]
    return [target for _, _, target in sorted(keyed, key=lambda item: (item[0], item[1]))]


def plan_waves(
    ready: Sequence[Target],
    groups: Mapping[str, str],
    *,
    canary_per_group: int,
    wave_size: Share,
) -> list[Wave]:
    """The waves for the instances ``ready`` to patch; ``groups`` maps instance id to kernel
    group. The wave size is taken of what is left after the canary."""
    ordered = spread(ready)
    canary: list[Target] = []
    if canary_per_group > 0:
        taken: dict[str, int] = defaultdict(int)
        for target in ordered:
            group = groups.get(target.instance_id, "unknown")
            if taken[group] < canary_per_group:
                taken[group] += 1
                canary.append(target)
    in_canary = {t.instance_id for t in canary}
    rest = spread([t for t in ordered if t.instance_id not in in_canary])
    waves: list[Wave] = []
    if canary:
        waves.append(Wave(number=1, kind=WaveKind.CANARY, targets=canary))
    size = max(1, wave_size.of(len(rest), round_up=True)) if rest else 1
    for start in range(0, len(rest), size):
        waves.append(
            Wave(number=len(waves) + 1, kind=WaveKind.WAVE, targets=rest[start : start + size])
        )
    return waves
