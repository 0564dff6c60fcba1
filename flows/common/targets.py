"""Which servers a run works on: a list, a change (stored, or a CSV), or a discovery query.

Every workflow takes its targets from exactly one source; a change file is stored as it is
read, so a later flow (post, the patch window) finds the same change by its number.
"""

from __future__ import annotations

from collections.abc import Sequence

from flows.changes import ChangeSpec, load_change_input, validate_change_number
from flows.store import Store
from providers.base import DiscoveryFilter, Provider, Target


class TargetSelectionError(ValueError):
    """The flow was not told (clearly) which servers to run on."""


def select_targets(
    provider: Provider,
    store: Store,
    *,
    targets: Sequence[Target] | None,
    change_number: str | None,
    change_csv: str | None,
    discovery: DiscoveryFilter | None = None,
) -> tuple[list[Target], str | None]:
    """The targets to run on and the change they belong to, from exactly one source.

    A discovery region the provider may not act in (another partition such as China or ISO,
    or no region at all) refuses the run, naming it (``discovery.regions[1]``), before
    anything is signed. A listed target in such a region is the provider's to refuse: it
    gets its own error result before any call, and its neighbours run.
    """
    given = [
        name
        for name, value in (
            ("targets", targets),
            ("change_csv", change_csv),
            ("discovery", discovery),
        )
        if value is not None
    ]
    if change_number and not given:
        given.append("change_number")
    if len(given) != 1:
        raise TargetSelectionError(
            "give exactly one source of targets: `targets`, `change_number` (a stored change), "
            "`change_csv` (CSV text, or a file in the changes directory) or `discovery`; "
            f"got {given or 'none'}"
        )
    source = given[0]
    number = validate_change_number(change_number) if change_number else None
    if source == "targets":
        assert targets is not None
        return list(targets), number
    if source == "change_csv":
        assert change_csv is not None
        spec = load_change_input(change_csv)
        if number and number != spec.change_number:
            raise TargetSelectionError(
                f"change_number {number!r} does not match the file's {spec.change_number!r}"
            )
        store.save_change(spec)
        return list(spec.targets), spec.change_number
    if source == "change_number":
        assert number is not None
        stored: ChangeSpec | None = store.load_change(number)
        if stored is None:
            raise TargetSelectionError(
                f"change {number} is not stored: give its CSV as `change_csv` first"
            )
        return list(stored.targets), number
    assert discovery is not None
    _refuse_regions(
        provider, [(r, f"discovery.regions[{i}]") for i, r in enumerate(discovery.regions)]
    )
    found = provider.discover_instances(discovery)
    return [i.to_target() for i in found], number


def _refuse_regions(provider: Provider, regions: Sequence[tuple[str, str]]) -> None:
    """Refuse the run when the provider may not act in one of ``(region, where)``."""
    problems = [
        problem
        for region, where in regions
        if (problem := provider.region_problem(region, where)) is not None
    ]
    if problems:
        listed = "\n".join(f"- {problem}" for problem in problems)
        raise TargetSelectionError(
            f"the run was refused before anything was sent, for region(s) the "
            f"{provider.name} provider does not serve:\n{listed}"
        )


def distinct_targets(targets: Sequence[Target]) -> list[Target]:
    """Each instance once, in the order first given: a list may repeat one."""
    first: dict[str, Target] = {}
    for target in targets:
        first.setdefault(target.instance_id, target)
    return list(first.values())
