"""The parameters of ``linux-qc-patching-window``, checked once before anything is sent.

Sizes and budgets are given the way operators say them, a count (``"5"``) or a share of the
instances (``"25%"``), and parsed here once into a :class:`Share`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from flows.changes import validate_change_number
from flows.common.parameters import ParameterError
from flows.linux_patching.post_check import Agent, check_required_agents
from flows.linux_patching.workdir import check_workdir

WINDOW_WORKFLOW = "linux-qc-patching-window"

_SHARE = re.compile(r"(?P<number>\d{1,6}(?:\.\d{1,3})?)\s*(?P<percent>%?)")


class OnHalt(StrEnum):
    """What the window does once its error budget is spent."""

    PAUSE = "pause"  # wait for a person to continue or abort
    FAIL = "fail"  # start no further wave and fail the run


class Share(BaseModel):
    """A count of instances, or a percentage of some number of them."""

    text: str = Field(description="as given: '5' or '25%'")
    count: int | None = None
    percent: float | None = None

    def of(self, total: int, *, round_up: bool) -> int:
        """How many instances this is out of ``total``: a count as it is, a percentage rounded
        up (a wave is never empty) or down (a budget never grows past what was given)."""
        if self.count is not None:
            return self.count
        assert self.percent is not None
        exact = self.percent * total / 100
        return math.ceil(exact - 1e-9) if round_up else math.floor(exact + 1e-9)


def parse_share(name: str, value: object, *, least: int) -> Share:
    """``value`` ("5" or "25%") as a :class:`Share`, or ``ValueError`` naming ``name``; a
    count must be at least ``least``, a percentage above 0 (or 0 when ``least`` is 0) and at
    most 100."""
    text = str(value).strip()
    match = _SHARE.fullmatch(text)
    if match is None:
        raise ValueError(f"{name} {text!r} must be a count such as 5 or a percentage such as 25%")
    number = float(match.group("number"))
    if match.group("percent"):
        if not (least <= number <= 100 and (number > 0 or least == 0)):
            raise ValueError(f"{name} {text!r} must be a percentage between {least}% and 100%")
        return Share(text=text, percent=number)
    if not number.is_integer() or number < least:
        raise ValueError(f"{name} {text!r} must be a whole number of instances, at least {least}")
    return Share(text=text, count=int(number))


class WindowParameters(BaseModel):
    """The window's parameters once checked; values are safe to place in a script."""

    change_number: str
    workdir: str
    canary_per_group: int
    wave_size: Share
    max_failures: Share
    on_halt: OnHalt
    require_approval: bool
    window_end: datetime | None
    reboot_timeout_seconds: int
    install_timeout_seconds: int
    pause_timeout_seconds: int
    accept_newer_kernel: bool
    required_agents: tuple[Agent, ...]
    dry_run: bool


class WindowParameterError(ParameterError):
    """One or more parameters of the patch window are not acceptable; every problem is listed."""

    workflow = WINDOW_WORKFLOW


def _window_end(value: datetime | str | None, now: datetime) -> tuple[datetime | None, str | None]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value.strip())
    except ValueError:
        return None, (
            f"window_end {value!r} is not an ISO 8601 time such as 2026-11-26T06:00:00+00:00"
        )
    if moment.tzinfo is None:
        return None, (
            f"window_end {moment.isoformat()} has no time zone: say which, e.g. "
            f"{moment.isoformat()}+00:00 or {moment.isoformat()}-05:00"
        )
    if moment <= now:
        return None, f"window_end {moment.isoformat()} has already passed"
    return moment.astimezone(UTC), None


def _between(name: str, value: int, low: int, high: int, problems: list[str]) -> None:
    if not low <= value <= high:
        problems.append(f"{name} {value} must be between {low} and {high} seconds")


def validate_window_parameters(
    *,
    change_number: str,
    workdir: str = "/root",
    canary_per_group: int = 1,
    wave_size: str = "25%",
    max_failures: str = "0",
    on_halt: str = "pause",
    require_approval: bool = True,
    window_end: datetime | str | None = None,
    reboot_timeout_seconds: int = 1200,
    install_timeout_seconds: int = 1800,
    pause_timeout_seconds: int = 14400,
    accept_newer_kernel: bool = False,
    required_agents: Sequence[str] | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> WindowParameters:
    """The checked parameters, or ``WindowParameterError`` listing every problem at once."""
    problems: list[str] = []
    number = ""
    try:
        number = validate_change_number(change_number)
    except ValueError as exc:
        problems.append(f"change_number: {exc}")
    if (workdir_problem := check_workdir(workdir)) is not None:
        problems.append(workdir_problem)
    if not 0 <= canary_per_group <= 100:
        problems.append(f"canary_per_group {canary_per_group} must be between 0 and 100")
    shares: dict[str, Share] = {}
    for name, value, least in (("wave_size", wave_size, 1), ("max_failures", max_failures, 0)):
        try:
            shares[name] = parse_share(name, value, least=least)
        except ValueError as exc:
            problems.append(str(exc))
    try:
        halt = OnHalt(str(on_halt).strip().lower())
    except ValueError:
        halt = OnHalt.PAUSE
        problems.append(f"on_halt {on_halt!r} must be 'pause' or 'fail'")
    end, end_problem = _window_end(window_end, now or datetime.now(UTC))
    if end_problem:
        problems.append(end_problem)
    # The reboot timeout is also SSM's delivery timeout of the install command, which SSM
    # wants at least 30 s.
    _between("reboot_timeout_seconds", reboot_timeout_seconds, 30, 14_400, problems)
    _between("install_timeout_seconds", install_timeout_seconds, 10, 14_400, problems)
    _between("pause_timeout_seconds", pause_timeout_seconds, 60, 604_800, problems)
    agents, agents_problem = check_required_agents(required_agents)
    if agents_problem:
        problems.append(agents_problem)
    if problems:
        raise WindowParameterError(problems)
    return WindowParameters(
        change_number=number,
        workdir=workdir,
        canary_per_group=canary_per_group,
        wave_size=shares["wave_size"],
        max_failures=shares["max_failures"],
        on_halt=halt,
        require_approval=require_approval,
        window_end=end,
        reboot_timeout_seconds=reboot_timeout_seconds,
        install_timeout_seconds=install_timeout_seconds,
        pause_timeout_seconds=pause_timeout_seconds,
        accept_newer_kernel=accept_newer_kernel,
        required_agents=tuple(agents),
        dry_run=dry_run,
    )
