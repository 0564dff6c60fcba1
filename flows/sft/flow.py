"""Flow ``sft-fixer``: find out what is wrong with the ScaleFT / Okta ASA agent (``sftd``) on a
few servers, repair it, and check that the repair held.

The runbook, in the order the flow follows it:

1. Validate: the action (detect, install, reset, auto), the instances (a list, or a stored
   change), and a cap on how many, since this flow changes servers one ticket at a time.
2. Token: install, reset and auto need the ASA enrollment token: a Parameter Store or Secrets
   Manager name the operator keeps it under, else a designated Prefect Secret block or
   ``SFT_ENROLLMENT_TOKEN``. Without one they refuse before any command is sent. ``auto``
   is refused up front too, even if every instance might turn out healthy: an operator learns
   at once that the run cannot repair anything, rather than after a detection round. To only
   look, use ``detect``, which never loads the token. The token never travels in a script:
   the instances read it where the flow says (:mod:`flows.sft.token`).
3. Detect: ``sft_detect.sh`` / ``sft_detect.ps1`` on every instance.
4. Act: ``auto`` installs where the agent is missing and resets where it is stopped or not
   enrolled; the rule is :attr:`flows.sft.detection.SftState.needs`, which judges enrollment
   by the device token, because an enrolled agent deletes its enrollment token. ``install``
   and ``reset`` act on every reachable instance. Windows has no install: no installer source
   is configured for it, so such instances are ``skipped`` and say so.
5. Verify: detect again; the agent enrolls in the background, so a few tries with a delay.
6. Verdict per instance: ``fixed``, ``already_healthy``, ``unhealthy`` (detect only),
   ``failed`` (the reason from the second detection), ``skipped`` or ``not_reachable``.
7. Report: a table and a summary artifact, a markdown file, the store.

Secrecy: see :mod:`flows.sft.token`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from prefect import flow, get_run_logger

from blocks import load_provider
from flows.common.events import FailureKind
from flows.common.naming import final_state, run_namer, run_title
from flows.common.reporting import artifact_key, utc_stamp
from flows.common.runs import RunReport, Table, Tally, WorkflowRun
from flows.sft.decide import Judgement, decide, judge_fix
from flows.sft.detection import SftActionResult, SftState, parse_sft_action_result
from flows.sft.parameters import (
    SftAction,
    check_instance_cap,
    check_verify_settings,
    resolve_instances,
)
from flows.sft.report import outcome_rows, summary_markdown
from flows.sft.result import SftFixerResult, SftInstanceOutcome, SftVerdict
from flows.sft.steps import SftScript, SftSteps, action_of, detection_of
from flows.sft.token import enrollment_token
from flows.store import Store
from providers.base import ScriptResult, Target

WORKFLOW = "sft-fixer"

Decision = SftAction | Judgement


def instances_title(instances: object) -> str:
    """The change number, or how many instances were named."""
    if isinstance(instances, str):
        return instances
    count = len(instances) if isinstance(instances, list) else 0
    return f"{count} instance(s)"


def act(
    steps: SftSteps,
    targets: Sequence[Target],
    decisions: Mapping[str, Decision],
    timeout_seconds: int,
) -> dict[str, SftActionResult]:
    """Install where install was decided, reset where reset was; what each script said. The
    enrollment token is where those scripts read it for this step only."""
    chosen = {
        action: [t for t in targets if decisions[t.instance_id] is action]
        for action in (SftAction.INSTALL, SftAction.RESET)
    }
    acting = [t for group in chosen.values() for t in group]
    if not acting:
        return {}
    acted: dict[str, SftActionResult] = {}
    with steps.token_for(acting) as token_parameters:
        for action, group in chosen.items():
            if not group:
                continue
            get_run_logger().info("%s on %d instance(s)", action.value, len(group))
            done = steps.run_step(
                action.value,
                SftScript(action.value),
                group,
                timeout_seconds=timeout_seconds,
                parse=action_of,
                params=token_parameters,
            )
            acted.update({i: parse_sft_action_result(r.stdout) for i, r in done.items()})
    return acted


def outcome_of(
    target: Target,
    decision: Decision,
    before: SftState,
    acted: SftActionResult | None,
    after: SftState | None,
) -> SftInstanceOutcome:
    """The verdict on one instance: decided without acting, or judged after acting."""
    if isinstance(decision, SftAction):
        assert after is not None  # every instance acted on is verified
        judgement = judge_fix(decision, acted, after)
    else:
        judgement = decision
    return SftInstanceOutcome(
        instance_id=target.instance_id,
        account_id=target.account_id,
        region=target.region,
        platform=target.platform,
        name=target.name,
        verdict=judgement.verdict,
        reason=judgement.reason,
        action_taken=decision if isinstance(decision, SftAction) else None,
        before=before,
        after=after,
    )


def record_verdicts(
    run: WorkflowRun,
    outcomes: Sequence[SftInstanceOutcome],
    last_results: Mapping[str, ScriptResult],
) -> None:
    """One ``verdict`` step in the store: per instance its last result and its verdict."""
    good = sum(1 for o in outcomes if o.verdict.is_good)
    run.record_step(
        "verdict",
        [last_results[o.instance_id] for o in outcomes],
        {
            o.instance_id: {
                "verdict": o.verdict.value,
                "reason": o.reason,
                "action": o.action_taken.value if o.action_taken else None,
            }
            for o in outcomes
        },
        tally=Tally(good, len(outcomes) - good),
    )


def report_run(
    run: WorkflowRun, action: SftAction, outcomes: list[SftInstanceOutcome]
) -> SftFixerResult:
    """The report file and artifacts, and the failure event when a fix did not take."""
    result = SftFixerResult(
        action=action,
        change_number=run.change,
        provider=run.provider.name,
        outcomes=outcomes,
        report_path="",
    )
    report = run.publish(
        RunReport(
            filename=f"sft_fixer_{run.change or 'adhoc'}_{utc_stamp()}.md",
            markdown=summary_markdown(result, run.run_name),
            summary_key=artifact_key(WORKFLOW, "summary"),
            summary_description=f"sft-fixer {action.value}: summary",
            tables=[
                Table(
                    artifact_key(WORKFLOW, "results"),
                    outcome_rows(outcomes),
                    f"sft-fixer {action.value}: one row per instance",
                    empty="No instance was given.",
                )
            ],
        )
    )
    if result.count(SftVerdict.FAILED):
        run.alert(FailureKind.SFT, Counter(o.verdict.value for o in outcomes))
    get_run_logger().info(
        "sft-fixer %s: %s; report written to %s",
        action.value,
        ", ".join(f"{o.instance_id} {o.verdict.value}" for o in outcomes),
        report,
    )
    return result.model_copy(update={"report_path": str(report)})


@flow(
    name=WORKFLOW,
    log_prints=False,
    flow_run_name=run_namer(
        lambda p: run_title(
            WORKFLOW, str(p.get("action") or SftAction.DETECT), instances_title(p.get("instances"))
        )
    ),
)
def sft_fixer(
    instances: list[Target] | str,
    action: SftAction = SftAction.DETECT,
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
        action: detect (read only, the default: a call that names no action changes
            nothing), install, reset, or auto (detect, then install where the agent is missing
            and reset where it is stopped or not enrolled).
        provider: provider block slug, block name, or ``aws``/``local``.
        token_block: the Prefect Secret block holding the ASA enrollment token, one of those
            designated in ``CLOUDOPS_SFT_TOKEN_BLOCKS`` (any other is refused unread); when it
            is not saved, the ``SFT_ENROLLMENT_TOKEN`` variable is used. Unused when the
            operator keeps the token in Parameter Store (``CLOUDOPS_SFT_TOKEN_PARAMETER``) or
            Secrets Manager (``CLOUDOPS_SFT_TOKEN_SECRET_ID``).
        max_instances: refuse more instances than this (raise it on purpose for a bigger run).
        verify_attempts: detections after acting before a not yet healthy agent is failed.
        verify_delay_seconds: wait between verifying detections, while the agent enrolls.
        detect_timeout_seconds: execution limit of a detection on each instance.
        action_timeout_seconds: execution limit of an install or reset on each instance.
    """
    # 1. Validate
    action = SftAction(action)
    check_verify_settings(verify_attempts, verify_delay_seconds)
    chosen = load_provider(provider)
    store = Store.default()
    targets, change = resolve_instances(instances, chosen, store)
    check_instance_cap(targets, max_instances)

    # 2. Token: where install and reset will read it, checked before anything is sent
    token = enrollment_token(token_block, chosen) if action.needs_token else None
    run = WorkflowRun.begin(WORKFLOW, chosen, store, change)
    steps = SftSteps(run, token)
    get_run_logger().info(
        "sft-fixer %s on %d instance(s) through %s", action.value, len(targets), chosen.name
    )

    # 3. Detect
    detected = steps.run_step(
        "detect",
        SftScript.DETECT,
        targets,
        timeout_seconds=detect_timeout_seconds,
        parse=detection_of,
    )
    before = {t.instance_id: detection_of(detected[t.instance_id], t) for t in targets}
    decisions = {
        t.instance_id: decide(action, t, detected[t.instance_id], before[t.instance_id])
        for t in targets
    }

    # 4. Act
    acted = act(steps, targets, decisions, action_timeout_seconds)

    # 5. Verify
    verified = steps.verify(
        [t for t in targets if isinstance(decisions[t.instance_id], SftAction)],
        attempts=verify_attempts,
        delay_seconds=verify_delay_seconds,
        timeout_seconds=detect_timeout_seconds,
    )

    # 6. Verdict
    outcomes = [
        outcome_of(
            t,
            decisions[t.instance_id],
            before[t.instance_id],
            acted.get(t.instance_id),
            verified[t.instance_id][1] if t.instance_id in verified else None,
        )
        for t in targets
    ]
    record_verdicts(run, outcomes, {**detected, **{i: r for i, (r, _) in verified.items()}})

    # 7. Report
    result = report_run(run, action, outcomes)
    return final_state(result, result.summary_line(), result.needs_attention)
