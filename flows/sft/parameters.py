"""What ``sft-fixer`` is asked to do, and on which few servers."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from flows.common.targets import select_targets
from flows.store import Store
from providers.base import Provider, Target
from providers.engine import group_targets


class SftAction(StrEnum):
    """What the flow is asked to do."""

    DETECT = "detect"
    INSTALL = "install"
    RESET = "reset"
    AUTO = "auto"

    @property
    def needs_token(self) -> bool:
        return self is not SftAction.DETECT


class SftFixerInputError(ValueError):
    """The flow was given something it will not run with; nothing was sent."""


def resolve_instances(
    instances: list[Target] | str, provider: Provider, store: Store
) -> tuple[list[Target], str | None]:
    """The instances to work on (each once) and their change: ``instances`` is a list of
    targets, or the number of a change already stored. A target the provider cannot address
    refuses the run."""
    if isinstance(instances, str):
        targets, change = select_targets(
            provider, store, targets=None, change_number=instances, change_csv=None
        )
    else:
        targets, change = list(instances), None
    unique = [t for group in group_targets(targets) for t in group.targets]
    if not unique:
        raise SftFixerInputError("no instances given: pass a list of targets or a change number")
    problems = [p for t in unique if (p := provider.target_problem(t)) is not None]
    if problems:
        raise SftFixerInputError("; ".join(problems))
    return unique, change


def check_instance_cap(targets: Sequence[Target], max_instances: int) -> None:
    """Refuse more instances than the cap: this flow repairs a few servers, not a fleet."""
    if max_instances < 1:
        raise SftFixerInputError(f"max_instances must be at least 1, got {max_instances}")
    if len(targets) > max_instances:
        raise SftFixerInputError(
            f"{len(targets)} instances given, more than max_instances={max_instances}: sft-fixer "
            "changes servers one ticket at a time, as a guard against bulk use. Check the list; "
            f"to run on all of them on purpose, pass max_instances={len(targets)}."
        )


def check_verify_settings(attempts: int, delay_seconds: float) -> None:
    """Refuse a verification that could never run or never wait."""
    if attempts < 1 or delay_seconds < 0:
        raise SftFixerInputError(
            "verify_attempts must be at least 1 and verify_delay_seconds not negative, got "
            f"{attempts} and {delay_seconds}"
        )
