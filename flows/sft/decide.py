"""What ``sft-fixer`` does on each instance, decided from what its detection found, and the
verdict once the repair was verified."""

from __future__ import annotations

from dataclasses import dataclass

from flows.sft.detection import SftActionResult, SftNeed, SftState
from flows.sft.parameters import SftAction
from flows.sft.result import SftVerdict
from flows.sft.steps import why_not_run
from providers.base import Platform, ResultStatus, ScriptResult, Target

NO_WINDOWS_INSTALLER = (
    "no Windows installer configured: install the ScaleFT server tools on the instance by "
    "hand, then run sft-fixer with action=reset or auto"
)


@dataclass(frozen=True)
class Judgement:
    """A verdict and why."""

    verdict: SftVerdict
    reason: str


_UNREACHABLE = {ResultStatus.NOT_MANAGED, ResultStatus.OFFLINE, ResultStatus.UNDELIVERABLE}


def decide(
    action: SftAction, target: Target, detected: ScriptResult, state: SftState
) -> SftAction | Judgement:
    """What to do on ``target`` given what its first detection found: the action to send
    (install or reset), or the verdict when nothing is to be sent."""
    if detected.status in _UNREACHABLE:
        return Judgement(SftVerdict.NOT_REACHABLE, why_not_run(detected))
    if detected.status is ResultStatus.SKIPPED:
        return Judgement(SftVerdict.SKIPPED, why_not_run(detected))
    if not detected.status.reached:
        return Judgement(
            SftVerdict.FAILED,
            f"detection did not complete: {why_not_run(detected)}; nothing was changed",
        )
    needs = state.needs
    if action is SftAction.DETECT:
        if needs is SftNeed.NOTHING:
            return Judgement(SftVerdict.ALREADY_HEALTHY, state.summary)
        if needs is SftNeed.UNKNOWN:
            return Judgement(SftVerdict.FAILED, state.summary)
        return Judgement(SftVerdict.UNHEALTHY, f"{state.summary}; auto would {needs.value}")
    if action is SftAction.AUTO:
        if needs is SftNeed.NOTHING:
            return Judgement(SftVerdict.ALREADY_HEALTHY, state.summary)
        if needs is SftNeed.UNKNOWN:
            return Judgement(
                SftVerdict.FAILED,
                f"could not tell the agent's state ({state.summary}); nothing was changed",
            )
        action = SftAction(needs.value)
    if action is SftAction.INSTALL and target.platform is Platform.WINDOWS:
        return Judgement(SftVerdict.SKIPPED, NO_WINDOWS_INSTALLER)
    if action is SftAction.RESET and state.installed is False:
        then = (
            "install it by hand, then reset"
            if target.platform is Platform.WINDOWS
            else "run action=auto or install"
        )
        return Judgement(
            SftVerdict.FAILED,
            f"the agent is not installed and reset needs it installed: {then}; nothing "
            "was changed",
        )
    return action


def judge_fix(action: SftAction, acted: SftActionResult | None, after: SftState) -> Judgement:
    """The verdict on an instance that was acted on, from its last verifying detection."""
    if after.healthy:
        return Judgement(SftVerdict.FIXED, f"after {action.value}: {after.summary}")
    reason = f"after {action.value}: {after.summary}"
    if acted is not None and not acted.succeeded and acted.message:
        reason += f"; the {action.value} script said: {acted.message}"
    return Judgement(SftVerdict.FAILED, reason)
