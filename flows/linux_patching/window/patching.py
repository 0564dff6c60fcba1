"""The window's steps that touch servers: the preflight, and each wave (install and reboot
through the SSM agent, back online, the post checks), each recorded in the store.

Every command is sent under a run key made of the flow run id and the step (``<id>/wave-2``),
so a retried flow run re-attaches to every command it already sent for a wave (even while those
servers are still rebooting) instead of sending it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from prefect import get_run_logger

from flows.common.connectivity import check_connectivity
from flows.common.reporting import artifact_key
from flows.common.runs import Tally
from flows.linux_patching.post_check import KernelTargetSource
from flows.linux_patching.post_verdict import (
    InstancePost,
    judge_post,
    planned_target,
    post_script,
)
from flows.linux_patching.window.install import (
    Installed,
    InstallOutcome,
    install_script,
    judge_install,
)
from flows.linux_patching.window.intake import kernel_group_of, not_staged_reason
from flows.linux_patching.window.ledger import WindowLedger
from flows.linux_patching.window.preflight import (
    InstancePreflight,
    judge_preflight,
    preflight_script,
)
from flows.linux_patching.window.result import FinalStatus, InstanceOutcome
from flows.linux_patching.window.resume import PREFLIGHT_STEP
from flows.linux_patching.window.waves import Wave
from providers.base import ResultStatus, ScriptResult, Target

PREFLIGHT_TIMEOUT_SECONDS = 600
POST_TIMEOUT_SECONDS = 900
# The longest wait between two looks at a wave's install commands. The next wave waits for the
# last server of this one to be seen back, and the provider's own schedule (AWS: up to 15 s,
# plus jitter) has reached its ceiling by the time reboots end; 8 s halves that wait, for about
# one ListCommandInvocations call per chunk of 50 servers every 8 s while a wave runs.
INSTALL_POLL_CEILING_SECONDS = 8.0
NOT_APPLICABLE = "Windows server: the Linux patch window does not apply"


def run_key(ledger: WindowLedger, step: str) -> str:
    """The key a step's commands are recorded under: the same on every retry of this run."""
    return f"{ledger.run.flow_run_id}/{step}"


def step_progress_key(ledger: WindowLedger) -> str:
    """One progress card for the step at work (preflight, a wave, its post checks), restarted
    by each step; the window's own card counts instances with a final status."""
    return artifact_key("linux-qc-window", ledger.change, "step-progress")


# --- Preflight ---------------------------------------------------------------------------------


def preflight(ledger: WindowLedger) -> dict[str, InstancePreflight]:
    """Every instance of the window checked, read only; recorded as step ``preflight``. A
    retried run uses the preflight this flow run already recorded."""
    if ledger.recorded.preflight is not None and set(ledger.recorded.preflight) >= {
        t.instance_id for t in ledger.targets
    }:
        get_run_logger().info("preflight: using the one this flow run recorded before its retry")
        return ledger.recorded.preflight
    run, params = ledger.run, ledger.params
    run_id = run.start_step(PREFLIGHT_STEP)
    request = run.request(
        PREFLIGHT_STEP, preflight_script(ledger.change, params.workdir), PREFLIGHT_TIMEOUT_SECONDS
    )
    reach = check_connectivity(run.provider, ledger.targets, request, not_applicable=NOT_APPLICABLE)
    batch = run.run_script_once(
        PREFLIGHT_STEP,
        reach.reachable,
        request,
        run_key=run_key(ledger, PREFLIGHT_STEP),
        progress_key=step_progress_key(ledger),
    )
    results = {r.instance_id: r for r in [*reach.left_out, *batch.results]}
    checked = {
        t.instance_id: judge_preflight(
            t,
            results[t.instance_id],
            ledger.prep.get(t.instance_id),
            group=kernel_group_of(ledger.prep.get(t.instance_id)),
            change_number=ledger.change,
            workdir=params.workdir,
            not_staged=not_staged_reason(t, ledger.prep.get(t.instance_id), ledger.change),
            accept_newer_kernel=params.accept_newer_kernel,
        )
        for t in ledger.targets
    }
    ready = sum(c.verdict.value == "ready" for c in checked.values())
    run.record_results(
        run_id,
        list(results.values()),
        {iid: c.model_dump(mode="json") for iid, c in checked.items()},
    )
    run.finish_step(run_id, Tally(ready, len(checked) - ready))
    return checked


# --- A wave ------------------------------------------------------------------------------------


def _agents_online(ledger: WindowLedger, targets: Sequence[Target]) -> set[str]:
    """The instances whose SSM agent is Online now (a pre-check: nothing is sent)."""
    if not targets:
        return set()
    probe = ledger.run.request("back-online", "true", 60)
    return {
        t.instance_id
        for t in check_connectivity(
            ledger.run.provider, targets, probe, not_applicable=NOT_APPLICABLE
        ).reachable
    }


def _install(ledger: WindowLedger, wave: Wave) -> tuple[list[ScriptResult], dict[str, datetime]]:
    """The install command of the wave, through the reboot; returns the results and when each
    instance's command was sent. SSM's delivery timeout is the reboot timeout: the agent is
    Online when it goes out (preflight), so it only widens how long the command is followed, by
    the reboot."""
    params = ledger.params
    staged = {ledger.preflight[t.instance_id].staged_kernel or "" for t in wave.targets}
    request = ledger.run.request(
        wave.step,
        install_script(ledger.change, params.workdir, staged),
        params.install_timeout_seconds,
        delivery_timeout_seconds=params.reboot_timeout_seconds,
        poll_ceiling_seconds=INSTALL_POLL_CEILING_SECONDS,
    )
    get_run_logger().info(
        "%s (%s): installing on %d instance(s), kernels %s",
        wave.step,
        wave.kind.value,
        len(wave.targets),
        ", ".join(sorted(staged)),
    )
    key = run_key(ledger, wave.step)
    batch = ledger.run.run_script_once(
        wave.step,
        wave.targets,
        request,
        run_key=key,
        progress_key=step_progress_key(ledger),
    )
    sent_at = {
        instance_id: ref.sent_at
        for ref in ledger.run.store.commands_for(key)
        for instance_id in ref.instance_ids
    }
    return batch.results, sent_at


def _post_checks(ledger: WindowLedger, wave: Wave, back: list[Target]) -> dict[str, InstancePost]:
    """The post flow's checks and verdicts on the instances that came back, recorded as the
    post flow records them (each execution with its parsed report), as step ``wave-N-post``."""
    if not back:
        return {}
    run, params = ledger.run, ledger.params
    step = f"{wave.step}-post"
    run_id = run.start_step(step)
    # patchme.sh on each server names its target; the prep record backs it up in the verdict.
    request = run.request(
        step,
        post_script(ledger.change, params.workdir, None, KernelTargetSource.NONE),
        POST_TIMEOUT_SECONDS,
    )
    batch = run.run_script_once(
        step, back, request, run_key=run_key(ledger, step), progress_key=step_progress_key(ledger)
    )
    by_id = {t.instance_id: t for t in back}
    judged = {
        r.instance_id: judge_post(
            by_id[r.instance_id],
            r,
            ledger.prep.get(r.instance_id),
            planned_target(by_id[r.instance_id], ledger.prep.get(r.instance_id), None),
            ledger.change,
            accept_newer_kernel=params.accept_newer_kernel,
            required_agents=params.required_agents,
        )
        for r in batch.results
    }
    passed = sum(p.passed for p in judged.values())
    run.record_results(
        run_id,
        batch.results,
        {iid: p.report.model_dump(mode="json") for iid, p in judged.items() if p.report},
    )
    run.finish_step(run_id, Tally(passed, len(judged) - passed))
    return judged


def _outcome(
    ledger: WindowLedger,
    wave: Wave,
    target: Target,
    result: ScriptResult,
    installed: InstallOutcome,
    post: InstancePost | None,
    sent_at: datetime | None,
) -> InstanceOutcome:
    check = ledger.preflight[target.instance_id]
    facts = installed.facts
    outcome = InstanceOutcome(
        instance_id=target.instance_id,
        account_id=target.account_id,
        region=target.region,
        hostname=check.hostname,
        group=check.group,
        wave=wave.number,
        status=installed.failure or FinalStatus.PATCHED,
        reasons=list(installed.reasons),
        notes=list(installed.notes),
        target=check.staged_kernel,
        kernel_before=(facts.kernel_before if facts else None)
        or (check.facts.kernel_running if check.facts else None),
        kernel_after=facts.kernel_running if facts else None,
        boot_id_before=facts.boot_id_before if facts else None,
        boot_id_after=facts.boot_id if facts else None,
        install_command=result.command_id,
    )
    if installed.installed is Installed.ALREADY:
        outcome.status = FinalStatus.ALREADY_PATCHED
        outcome.notes.append("already ran the target when the install started: not rebooted")
    if installed.installed is Installed.BACK and result.ended_at and sent_at:
        outcome.seconds_to_back_online = round((result.ended_at - sent_at).total_seconds(), 1)
    if post is not None:
        outcome.post_verdict = post.verdict.value
        outcome.post_reasons = list(post.reasons)
        if not post.passed:
            outcome.status = FinalStatus.POST_FAILED
            outcome.reasons = list(post.reasons)
    return outcome


def patch_wave(ledger: WindowLedger, wave: Wave) -> list[InstanceOutcome]:
    """Install and reboot the wave through the SSM agent, wait for each instance to come back
    (the command's end and a new boot id), run the post checks on those that did, and record
    every instance's final status as step ``wave-N``."""
    run, params = ledger.run, ledger.params
    run_id = run.start_step(wave.step)
    results, sent_at = _install(ledger, wave)
    by_id = {r.instance_id: r for r in results}
    # A command still running at its deadline: a reboot the agent never came back from, or an
    # install that ran too long; SSM's view of the agent tells them apart.
    timed_out = [t for t in wave.targets if by_id[t.instance_id].status is ResultStatus.TIMED_OUT]
    online = _agents_online(ledger, timed_out)
    installs = {
        t.instance_id: judge_install(
            by_id[t.instance_id],
            ledger.preflight[t.instance_id].staged_kernel or "",
            accept_newer_kernel=params.accept_newer_kernel,
            agent_online=(t.instance_id in online) if t in timed_out else None,
            reboot_timeout_seconds=params.reboot_timeout_seconds,
        )
        for t in wave.targets
    }
    back = [t for t in wave.targets if installs[t.instance_id].installed is Installed.BACK]
    posts = _post_checks(ledger, wave, back)
    outcomes = [
        _outcome(
            ledger,
            wave,
            t,
            by_id[t.instance_id],
            installs[t.instance_id],
            posts.get(t.instance_id),
            sent_at.get(t.instance_id),
        )
        for t in wave.targets
    ]
    failed = sum(o.status.spends_budget for o in outcomes)
    run.record_results(
        run_id, results, {o.instance_id: o.model_dump(mode="json") for o in outcomes}
    )
    run.finish_step(run_id, Tally(len(outcomes) - failed, failed))
    get_run_logger().info(
        "%s: %s",
        wave.step,
        ", ".join(
            f"{sum(o.status is s for o in outcomes)} {s.value}"
            for s in FinalStatus
            if any(o.status is s for o in outcomes)
        ),
    )
    return outcomes
