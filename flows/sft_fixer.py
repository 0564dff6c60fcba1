"""Flow ``sft-fixer``: find out what is wrong with the ScaleFT / Okta ASA agent (``sftd``) on a
few servers, repair it, and check that the repair held.

The runbook, in the order the flow follows it:

1. Validate: the action (detect, install, reset, auto), the instances (a list, or a stored
   change), and a cap on how many, since this flow changes servers one ticket at a time.
2. Token: install, reset and auto need the ASA enrollment token, from a Prefect Secret block
   or ``SFT_ENROLLMENT_TOKEN``. Without one they refuse before any command is sent. ``auto``
   is refused up front too, even if every instance might turn out healthy: an operator learns
   at once that the run cannot repair anything, rather than after a detection round. To only
   look, use ``detect``, which never loads the token.
3. Detect: ``sft_detect.sh`` / ``sft_detect.ps1`` on every instance.
4. Act: ``auto`` installs where the agent is missing and resets where it is stopped or not
   enrolled; the rule is :attr:`flows.parsers.SftState.needs`, which judges enrollment by the
   device token, because an enrolled agent deletes its enrollment token. ``install`` and
   ``reset`` act on every reachable instance. Windows has no install: no installer source is
   configured for it, so such instances are ``skipped`` and say so.
5. Verify: detect again; the agent enrolls in the background, so a few tries with a delay.
6. Verdict per instance: ``fixed``, ``already_healthy``, ``unhealthy`` (detect only),
   ``failed`` (the reason from the second detection), ``skipped`` or ``not_reachable``.
7. Report: a table and a summary artifact, a markdown file, the store.

Secrecy: the token goes into the text of the install/reset scripts sent to the instances and
nowhere else. It is not a flow parameter, it is never logged, and every result is passed
through :func:`redact` before it is recorded, logged, returned or shown. SSM itself keeps the
parameters of every command (``ListCommands``, the console's command history), so with the
AWS provider anyone allowed ``ssm:ListCommands`` in the target account can read it there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.blocks.system import Secret
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from blocks import load_provider
from flows.events import FailureKind, emit_failure_event
from flows.execution import group_targets, run_on_targets
from flows.parsers import (
    SftActionResult,
    SftNeed,
    SftState,
    parse_sft_action_result,
    parse_sft_detection,
)
from flows.remote_scripts import interpreter_for, load_script, render_script
from flows.reporting import (
    artifact_key,
    markdown_table,
    publish_markdown,
    utc_stamp,
    write_report,
)
from flows.run_script import select_targets
from flows.settings import get_settings
from flows.store import Store
from providers.aws.precheck import target_problem
from providers.base import (
    BatchResult,
    Platform,
    Provider,
    ResultStatus,
    ScriptRequest,
    ScriptResult,
    Target,
)

WORKFLOW = "sft-fixer"
TOKEN_VARIABLE = "SFT_ENROLLMENT_TOKEN"
REDACTED = "***"
# A real ASA enrollment token is a long opaque string; a short one is a paste mistake, and
# redacting a short string from output would also mangle ordinary words in it.
TOKEN_MIN_LENGTH = 16
NO_WINDOWS_INSTALLER = (
    "no Windows installer configured: install the ScaleFT server tools on the instance by "
    "hand, then run sft-fixer with action=reset or auto"
)


class SftAction(StrEnum):
    """What the flow is asked to do."""

    DETECT = "detect"
    INSTALL = "install"
    RESET = "reset"
    AUTO = "auto"

    @property
    def needs_token(self) -> bool:
        return self is not SftAction.DETECT


class SftVerdict(StrEnum):
    """How one instance ended."""

    FIXED = "fixed"  # acted on, and the second detection found the agent healthy
    ALREADY_HEALTHY = "already_healthy"  # healthy at the first detection; nothing was changed
    UNHEALTHY = "unhealthy"  # detect only: the agent needs a fix (the reason says which)
    FAILED = "failed"  # the fix did not take, or the state could not be told
    SKIPPED = "skipped"  # deliberately left alone (no Windows installer, wrong platform)
    NOT_REACHABLE = "not_reachable"  # unmanaged, offline or undeliverable

    @property
    def is_good(self) -> bool:
        """The agent is healthy now; every other verdict needs a person's attention."""
        return self in {SftVerdict.FIXED, SftVerdict.ALREADY_HEALTHY}


class SftInstanceOutcome(BaseModel):
    """What happened to the agent on one instance."""

    instance_id: str
    account_id: str = ""
    region: str = ""
    platform: Platform
    name: str | None = None
    verdict: SftVerdict
    reason: str = Field(description="why this verdict, for a person")
    action_taken: SftAction | None = Field(default=None, description="install or reset, if sent")
    before: SftState | None = Field(default=None, description="the first detection")
    after: SftState | None = Field(default=None, description="the last verifying detection")


class SftFixerResult(BaseModel):
    """What ``sft-fixer`` returns."""

    action: SftAction
    change_number: str | None
    provider: str
    outcomes: list[SftInstanceOutcome]
    report_path: str

    def count(self, verdict: SftVerdict) -> int:
        return sum(1 for o in self.outcomes if o.verdict is verdict)

    def outcome(self, instance_id: str) -> SftInstanceOutcome:
        """The outcome of one instance, by id."""
        for outcome in self.outcomes:
            if outcome.instance_id == instance_id:
                return outcome
        raise KeyError(f"{instance_id} was not part of this sft-fixer run")


class SftFixerInputError(ValueError):
    """The flow was given something it will not run with; nothing was sent."""


class EnrollmentTokenMissingError(SftFixerInputError):
    """Install, reset or auto was asked for, and no enrollment token is configured."""


# --- 1. validate ------------------------------------------------------------------------------


def resolve_instances(
    instances: list[Target] | str, provider: Provider, store: Store
) -> tuple[list[Target], str | None]:
    """The instances to work on (each once) and their change: ``instances`` is a list of
    targets, or the number of a change already stored."""
    if isinstance(instances, str):
        targets, change = select_targets(
            provider,
            store,
            targets=None,
            change_number=instances,
            change_csv=None,
            discovery=None,
        )
    else:
        targets, change = list(instances), None
    unique = [t for group in group_targets(targets).values() for t in group]
    if not unique:
        raise SftFixerInputError("no instances given: pass a list of targets or a change number")
    if provider.name == "aws":
        problems = [p for t in unique if (p := target_problem(t)) is not None]
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


# --- 2. token ---------------------------------------------------------------------------------


def load_enrollment_token(token_block: str) -> str:
    """The ASA enrollment token: the Prefect Secret block ``token_block`` when it is saved,
    else the ``SFT_ENROLLMENT_TOKEN`` variable. Raises when neither holds a usable one; the
    message never contains the token."""
    where = f"Prefect Secret block {token_block!r}"
    value: object = None
    if token_block.strip():
        try:
            block = Secret.load(token_block.strip(), _sync=True)
        except ValueError as exc:
            # Prefect reports a missing block document as a ValueError from ObjectNotFound.
            if not isinstance(exc.__cause__, ObjectNotFound):
                raise
        else:
            # The raw value: Secret.get() would turn a token that looks like JSON into a number.
            value = block.value.get_secret_value()
    if not value:  # no block, or an empty one: the variable is the fallback either way
        where = f"variable {TOKEN_VARIABLE}"
        value = os.environ.get(TOKEN_VARIABLE)
    token = value.strip() if isinstance(value, str) else ""
    if not token:
        raise EnrollmentTokenMissingError(
            f"no SFT enrollment token: install, reset and auto need one, and none was found in "
            f"the Prefect Secret block {token_block!r} or the variable {TOKEN_VARIABLE}. Save "
            f"the token from the ASA project's Enrollment tab as a Secret block (UI: Blocks > "
            f"Secret, named {token_block!r}; or `Secret(value=...).save({token_block!r})`), or "
            f"set {TOKEN_VARIABLE} for the worker. To only look at the agent, run with "
            "action=detect. Nothing was sent."
        )
    if len(token) < TOKEN_MIN_LENGTH or any(c.isspace() or not c.isprintable() for c in token):
        raise SftFixerInputError(
            f"the enrollment token in the {where} is not a usable token ({len(token)} "
            f"characters; expected at least {TOKEN_MIN_LENGTH}, with no spaces or line "
            "breaks): copy it again from the ASA project's Enrollment tab. Nothing was sent."
        )
    return token


def redact(result: ScriptResult, secret: str | None) -> ScriptResult:
    """``result`` with every occurrence of ``secret`` in its output and error replaced."""
    if not secret:
        return result
    return result.model_copy(
        update={
            "stdout": result.stdout.replace(secret, REDACTED),
            "stderr": result.stderr.replace(secret, REDACTED),
            "error": result.error.replace(secret, REDACTED) if result.error else result.error,
        }
    )


# --- running one step on several instances -----------------------------------------------------

_SCRIPTS: dict[tuple[str, Platform], str] = {
    ("detect", Platform.LINUX): "linux/sft_detect.sh",
    ("detect", Platform.WINDOWS): "windows/sft_detect.ps1",
    ("install", Platform.LINUX): "linux/sft_install.sh",
    ("reset", Platform.LINUX): "linux/sft_reset.sh",
    ("reset", Platform.WINDOWS): "windows/sft_reset.ps1",
}


@dataclass(frozen=True)
class StepRunner:
    """Runs one SFT script per platform on a set of instances through the engine, redacts the
    results and records them in the store as one step of this flow run."""

    provider: Provider
    store: Store
    flow_run_id: str
    run_name: str
    change: str | None
    token: str | None

    def run(
        self,
        step: str,
        script: str,
        targets: Sequence[Target],
        *,
        timeout_seconds: int,
        parse: Callable[[ScriptResult, Target], BaseModel],
    ) -> dict[str, ScriptResult]:
        """Results of ``script`` (``detect``, ``install``, ``reset``) by instance id."""
        results: list[ScriptResult] = []
        for platform in Platform:
            chosen = [t for t in targets if t.platform is platform]
            if not chosen:
                continue
            name = _SCRIPTS[(script, platform)]
            interpreter = interpreter_for(name)
            params = {TOKEN_VARIABLE: self.token} if script != "detect" and self.token else {}
            request = ScriptRequest(
                script=render_script(load_script(name), params, interpreter),
                interpreter=interpreter,
                timeout_seconds=timeout_seconds,
                comment=f"{self.change or 'adhoc'} {WORKFLOW} {step} {self.run_name}"[:100],
            )
            batch = run_on_targets(
                self.provider,
                chosen,
                request,
                store=self.store,
                progress_key=artifact_key(WORKFLOW, step, platform.value, "progress"),
                # Per step: verifying runs the same script as detecting, and the engine
                # re-attaches to a command already sent under the same key instead of sending.
                run_key=f"{self.flow_run_id}:{WORKFLOW}:{step}",
            )
            results.extend(redact(r, self.token) for r in batch.results)
        self._record(step, results, targets, parse)
        return {r.instance_id: r for r in results}

    def _record(
        self,
        step: str,
        results: Sequence[ScriptResult],
        targets: Sequence[Target],
        parse: Callable[[ScriptResult, Target], BaseModel],
    ) -> None:
        by_id = {t.instance_id: t for t in targets}
        run_id = self.store.start_run(
            flow_run_id=self.flow_run_id,
            workflow=WORKFLOW,
            step=step,
            provider=self.provider.name,
            change_number=self.change,
        )
        parsed = {
            r.instance_id: parse(r, by_id[r.instance_id]).model_dump(mode="json") for r in results
        }
        self.store.record_results(run_id, results, parsed)
        batch = BatchResult.from_results(results)
        self.store.finish_run(run_id, batch.status.value, batch.success_count, batch.failure_count)


def detection_of(result: ScriptResult, target: Target) -> SftState:
    """The agent's state from a detection result (unknown, with the reason, if it never ran)."""
    if result.status in {ResultStatus.SUCCESS, ResultStatus.FAILED}:
        return parse_sft_detection(result.stdout, target.platform)
    return SftState(platform=target.platform, error=_why_not_run(result))


def action_of(result: ScriptResult, _target: Target) -> SftActionResult:
    return parse_sft_action_result(result.stdout)


def _why_not_run(result: ScriptResult) -> str:
    return result.error or f"the script ended {result.status.value}"


# --- 4. act: what to do on each instance -------------------------------------------------------


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
        return Judgement(SftVerdict.NOT_REACHABLE, _why_not_run(detected))
    if detected.status is ResultStatus.SKIPPED:
        return Judgement(SftVerdict.SKIPPED, _why_not_run(detected))
    if detected.status not in {ResultStatus.SUCCESS, ResultStatus.FAILED}:
        return Judgement(
            SftVerdict.FAILED,
            f"detection did not complete: {_why_not_run(detected)}; nothing was changed",
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


# --- 5. verify -------------------------------------------------------------------------------


def verify(
    runner: StepRunner,
    targets: Sequence[Target],
    *,
    attempts: int,
    delay_seconds: float,
    timeout_seconds: int,
) -> dict[str, tuple[ScriptResult, SftState]]:
    """Detect again on the instances acted on, per instance its last result and state.

    A started agent enrolls in the background, so an instance not healthy yet is detected
    again after ``delay_seconds``, up to ``attempts`` detections in all.
    """
    logger = get_run_logger()
    last: dict[str, tuple[ScriptResult, SftState]] = {}
    pending = list(targets)
    for attempt in range(1, attempts + 1):
        if not pending:
            break
        if attempt > 1:
            logger.info(
                "%d instance(s) not healthy yet; detecting again in %s s",
                len(pending),
                delay_seconds,
            )
            time.sleep(delay_seconds)
        results = runner.run(
            f"verify-{attempt}",
            "detect",
            pending,
            timeout_seconds=timeout_seconds,
            parse=detection_of,
        )
        for target in pending:
            result = results[target.instance_id]
            last[target.instance_id] = (result, detection_of(result, target))
        pending = [t for t in pending if not last[t.instance_id][1].healthy]
    return last


# --- 6. verdict --------------------------------------------------------------------------------


def judge_fix(action: SftAction, acted: SftActionResult | None, after: SftState) -> Judgement:
    """The verdict on an instance that was acted on, from its last verifying detection."""
    if after.healthy:
        return Judgement(SftVerdict.FIXED, f"after {action.value}: {after.summary}")
    reason = f"after {action.value}: {after.summary}"
    if acted is not None and not acted.succeeded and acted.message:
        reason += f"; the {action.value} script said: {acted.message}"
    return Judgement(SftVerdict.FAILED, reason)


# --- 7. report ---------------------------------------------------------------------------------


def outcome_rows(outcomes: Sequence[SftInstanceOutcome]) -> list[dict[str, Any]]:
    """One row per instance for the table artifact and the report."""
    return [
        {
            "instance": o.instance_id,
            "name": o.name or "",
            "account": o.account_id,
            "region": o.region,
            "platform": o.platform.value,
            "before": o.before.summary if o.before else "",
            "action": o.action_taken.value if o.action_taken else "",
            "after": o.after.summary if o.after else "",
            "verdict": o.verdict.value,
            "reason": o.reason,
        }
        for o in outcomes
    ]


def summary_markdown(result: SftFixerResult, run_name: str) -> str:
    counts = (
        ", ".join(f"{result.count(v)} {v.value}" for v in SftVerdict if result.count(v))
        or "no instances"
    )
    lines = [
        f"# sft-fixer: {result.action.value} ({result.change_number or 'no change'})",
        "",
        f"- flow run: `{run_name}`",
        f"- provider: `{result.provider}`",
        f"- verdicts: **{counts}**",
        "",
    ]
    problems = [o for o in result.outcomes if not o.verdict.is_good]
    if problems:
        lines += ["## Needs attention", "", markdown_table(outcome_rows(problems))]
    lines += ["## Every instance", "", markdown_table(outcome_rows(result.outcomes))]
    return "\n".join(lines)


def _record_verdicts(
    runner: StepRunner,
    outcomes: Sequence[SftInstanceOutcome],
    last_results: Mapping[str, ScriptResult],
) -> None:
    """One ``verdict`` step in the store: per instance its last result and its verdict."""
    run_id = runner.store.start_run(
        flow_run_id=runner.flow_run_id,
        workflow=WORKFLOW,
        step="verdict",
        provider=runner.provider.name,
        change_number=runner.change,
    )
    runner.store.record_results(
        run_id,
        [last_results[o.instance_id] for o in outcomes],
        {
            o.instance_id: {
                "verdict": o.verdict.value,
                "reason": o.reason,
                "action": o.action_taken.value if o.action_taken else None,
            }
            for o in outcomes
        },
    )
    good = sum(1 for o in outcomes if o.verdict.is_good)
    bad = len(outcomes) - good
    status = "success" if not bad else "partial" if good else "failed"
    runner.store.finish_run(run_id, status, good, bad)


@flow(name="sft-fixer", log_prints=False)
def sft_fixer(
    instances: list[Target] | str,
    action: SftAction = SftAction.AUTO,
    provider: str | None = None,
    token_block: str = "sft-enrollment-token",
    max_instances: int = 5,
    verify_attempts: int = 3,
    verify_delay_seconds: float = 20.0,
    detect_timeout_seconds: int = 120,
    action_timeout_seconds: int = 900,
) -> SftFixerResult:
    """Detect, and with install/reset/auto repair, the ScaleFT / Okta ASA agent on a few
    instances, then verify and give a verdict per instance.

    Args:
        instances: the servers, as targets, or the number of a stored change.
        action: detect (read only), install, reset, or auto (detect, then install where the
            agent is missing and reset where it is stopped or not enrolled).
        provider: provider block slug, block name, or ``aws``/``local``.
        token_block: the Prefect Secret block holding the ASA enrollment token; when it is not
            saved, the ``SFT_ENROLLMENT_TOKEN`` variable is used.
        max_instances: refuse more instances than this (raise it on purpose for a bigger run).
        verify_attempts: detections after acting before a not yet healthy agent is failed.
        verify_delay_seconds: wait between verifying detections, while the agent enrolls.
        detect_timeout_seconds: execution limit of a detection on each instance.
        action_timeout_seconds: execution limit of an install or reset on each instance.
    """
    logger = get_run_logger()
    action = SftAction(action)
    if verify_attempts < 1 or verify_delay_seconds < 0:
        raise SftFixerInputError(
            "verify_attempts must be at least 1 and verify_delay_seconds not negative, got "
            f"{verify_attempts} and {verify_delay_seconds}"
        )

    # 1. validate
    chosen = load_provider(provider)
    store = Store.default()
    targets, change = resolve_instances(instances, chosen, store)
    check_instance_cap(targets, max_instances)

    # 2. token: loaded only when a script will carry it
    token = load_enrollment_token(token_block) if action.needs_token else None

    run_name = str(flow_run.name or "local")
    runner = StepRunner(
        provider=chosen,
        store=store,
        flow_run_id=str(flow_run.id or f"local-{utc_stamp()}"),
        run_name=run_name,
        change=change,
        token=token,
    )
    logger.info(
        "sft-fixer %s on %d instance(s) through %s", action.value, len(targets), chosen.name
    )

    # 3. detect
    detected = runner.run(
        "detect", "detect", targets, timeout_seconds=detect_timeout_seconds, parse=detection_of
    )
    before = {t.instance_id: detection_of(detected[t.instance_id], t) for t in targets}
    decisions = {
        t.instance_id: decide(action, t, detected[t.instance_id], before[t.instance_id])
        for t in targets
    }

    # 4. act
    acted: dict[str, SftActionResult] = {}
    for step in (SftAction.INSTALL, SftAction.RESET):
        chosen_targets = [t for t in targets if decisions[t.instance_id] is step]
        if chosen_targets:
            logger.info("%s on %d instance(s)", step.value, len(chosen_targets))
            done = runner.run(
                step.value,
                step.value,
                chosen_targets,
                timeout_seconds=action_timeout_seconds,
                parse=action_of,
            )
            acted.update({i: parse_sft_action_result(r.stdout) for i, r in done.items()})

    # 5. verify
    verified = verify(
        runner,
        [t for t in targets if isinstance(decisions[t.instance_id], SftAction)],
        attempts=verify_attempts,
        delay_seconds=verify_delay_seconds,
        timeout_seconds=detect_timeout_seconds,
    )
    after = {i: state for i, (_, state) in verified.items()}

    # 6. verdict
    outcomes: list[SftInstanceOutcome] = []
    for target in targets:
        decision = decisions[target.instance_id]
        taken = decision if isinstance(decision, SftAction) else None
        judgement = (
            judge_fix(decision, acted.get(target.instance_id), after[target.instance_id])
            if isinstance(decision, SftAction)
            else decision
        )
        outcomes.append(
            SftInstanceOutcome(
                instance_id=target.instance_id,
                account_id=target.account_id,
                region=target.region,
                platform=target.platform,
                name=target.name,
                verdict=judgement.verdict,
                reason=judgement.reason,
                action_taken=taken,
                before=before[target.instance_id],
                after=after.get(target.instance_id),
            )
        )
    last_results = {**detected, **{i: result for i, (result, _) in verified.items()}}
    _record_verdicts(runner, outcomes, last_results)

    # 7. report
    placeholder = SftFixerResult(
        action=action, change_number=change, provider=chosen.name, outcomes=outcomes, report_path=""
    )
    summary = summary_markdown(placeholder, run_name)
    filename = f"sft_fixer_{change or 'adhoc'}_{utc_stamp()}.md"
    report = write_report(Path(get_settings().reports_dir), filename, summary)
    result = placeholder.model_copy(update={"report_path": str(report)})
    create_table_artifact(
        key=artifact_key(WORKFLOW, "results"),
        table=outcome_rows(outcomes),
        description=f"sft-fixer {action.value}: one row per instance",
    )
    publish_markdown(
        artifact_key(WORKFLOW, "summary"), summary, f"sft-fixer {action.value}: summary"
    )
    if result.count(SftVerdict.FAILED):
        counts: dict[str, int] = {}
        for outcome in outcomes:
            counts[outcome.verdict.value] = counts.get(outcome.verdict.value, 0) + 1
        emit_failure_event(FailureKind.SFT, change, counts)
    logger.info(
        "sft-fixer %s: %s; report written to %s",
        action.value,
        ", ".join(f"{o.instance_id} {o.verdict.value}" for o in outcomes),
        report,
    )
    return result
