"""Flow ``linux-qc-patching-window``: the patch window itself, between prep and post.

The runbook, in the order this file follows:

1. Parameters: every problem at once, nothing sent on a bad one. The local provider (this
   worker) is refused unless it is a dry run: it never reboots the machine it runs on.
2. Intake: the change's instances whose prep QC passed and whose staged kernel prep recorded
   (or the instances named), and what prep recorded for each.
3. Preflight, read only (``linux/window_preflight.sh``): agent Online, ``patchme.sh`` there and
   naming the staged kernel, the target still offered, room in ``/boot``, no package lock,
   CrowdStrike's support of the target. Refused instances are left out with their reasons;
   those already on the target are ``already_patched``. A dry run stops here with the waves it
   would run.
4. Approval (``require_approval``): the run pauses until a person approves; recorded.
5. Waves: a canary of each kernel group, then waves of ``wave_size`` spread over accounts and
   regions. Each wave installs the kernel through the SSM agent's reboot protocol
   (``linux/window_install.sh`` exits 194, the agent reboots and runs it again; one reboot per
   change), waits for each instance to come back (its command's end and a new boot id; not back
   within ``reboot_timeout_seconds``: ``reboot_timed_out``), runs the post checks on it, and
   counts failures against the change-wide ``max_failures``. Over budget no new wave starts:
   the run pauses for a person to continue or abort (``on_halt=pause``, recorded) or fails
   (``on_halt=fail``). No wave starts after ``window_end``.
6. Report: per instance a final status (``patched``, ``already_patched``, ``refused_preflight``,
   ``install_failed``, ``wrong_kernel``, ``reboot_timed_out``, ``post_failed``,
   ``not_started``), per wave and preflight tables, the decisions, a markdown report file, the
   store records (steps ``preflight``, ``wave-1``..., ``wave-1-post``..., ``not-started``), the
   events ``cloudops.window.halted`` (budget spent) and ``cloudops.window.failed``, and the
   final state: ``Completed``, or ``Needs attention`` when any instance is not patched.

A retried flow run (its worker died) picks up where it was: same preflight, same waves, the
commands already sent re-attached to, never sent twice; instances with a recorded final status
are skipped. See :mod:`flows.linux_patching.window.resume`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger

from blocks import ProviderBlock, load_provider
from flows.common.events import FailureKind
from flows.common.naming import final_state, run_namer, run_title
from flows.common.reporting import artifact_key, utc_stamp
from flows.common.runs import RunReport, Table, WorkflowRun
from flows.common.text import markdown_text
from flows.linux_patching.post_check import Agent
from flows.linux_patching.prep_record import load_prep_records
from flows.linux_patching.window.budget import ErrorBudget
from flows.linux_patching.window.gates import (
    ask_for_approval,
    decide_on_halt,
    decisions_of_this_run,
)
from flows.linux_patching.window.intake import window_targets
from flows.linux_patching.window.ledger import WindowLedger, WindowProgress
from flows.linux_patching.window.parameters import (
    WINDOW_WORKFLOW,
    OnHalt,
    WindowParameterError,
    WindowParameters,
    validate_window_parameters,
)
from flows.linux_patching.window.patching import patch_wave, preflight
from flows.linux_patching.window.report import (
    decision_rows,
    instance_rows,
    outcome_line,
    preflight_rows,
    wave_rows,
    window_report_markdown,
)
from flows.linux_patching.window.result import FinalStatus, WindowResult
from flows.linux_patching.window.resume import NOT_STARTED_STEP, RecordedWindow
from flows.linux_patching.window.waves import Wave, plan_waves
from flows.store import Store
from providers.base import Provider, ResultStatus, ScriptResult, Target


class WindowHaltedError(RuntimeError):
    """The error budget was spent with ``on_halt=fail``: the run fails once it has reported."""


# --- 1. and 2. Parameters and intake ---------------------------------------------------------


def refuse_where_nothing_reboots(provider: Provider, params: WindowParameters) -> None:
    """Only a dry run goes through a provider without the SSM agent's reboot protocol: the
    local provider would install a kernel on this worker and could never reboot it."""
    if not params.dry_run and not provider.reboots_through_agent:
        raise WindowParameterError(
            [
                f"provider: {provider.name} cannot reboot servers through the SSM agent (the "
                "local provider runs on this worker and never reboots it): run with "
                "dry_run=true to see the preflight and the waves, or patch with the aws provider"
            ]
        )


def open_window(
    run: WorkflowRun, params: WindowParameters, named: Sequence[Target] | None
) -> WindowLedger:
    """The window's instances, what prep recorded for them, and what this run already did."""
    change = params.change_number
    change_targets: list[Target] = []
    if named is None:
        stored = run.store.load_change(change)
        if stored is None:
            raise WindowParameterError(
                [f"change {change} is not stored: run linux-qc-patching-prep on it first"]
            )
        change_targets = list(stored.targets)
    prep = load_prep_records(run.store, change)
    chosen = window_targets(change_targets, named, prep, change)
    budget = ErrorBudget(params.max_failures.of(len(chosen.targets), round_up=False))
    get_run_logger().info(
        "change %s: %d instance(s) in the window, %d left out; error budget %d (%s)",
        change,
        len(chosen.targets),
        len(chosen.left_out),
        budget.allowed,
        params.max_failures.text,
    )
    return WindowLedger(
        run=run,
        params=params,
        targets=chosen.targets,
        prep=prep,
        left_out=chosen.left_out,
        recorded=RecordedWindow.load(run),
        progress=WindowProgress(
            artifact_key("linux-qc-window", change, "progress"),
            len(chosen.targets),
            f"{change}: instances of the window with a final status",
        ),
        budget=budget,
    )


# --- 3. Preflight and the plan -------------------------------------------------------------


def check_and_plan(ledger: WindowLedger) -> list[Wave]:
    """Preflight, then the waves of the instances ready to patch."""
    ready = ledger.preflighted(preflight(ledger))
    waves = plan_waves(
        ready,
        {iid: check.group for iid, check in ledger.preflight.items()},
        canary_per_group=ledger.params.canary_per_group,
        wave_size=ledger.params.wave_size,
    )
    ledger.progress.show(len(ledger.outcomes))
    get_run_logger().info(
        "preflight: %d ready, %d already patched, %d refused; %d wave(s): %s",
        len(ready),
        ledger.counts().get("already_patched", 0),
        ledger.counts().get("refused_preflight", 0),
        len(waves),
        ", ".join(f"{w.step} {w.kind.value} {len(w.targets)}" for w in waves) or "none",
    )
    return waves


def plan_summary(ledger: WindowLedger, waves: Sequence[Wave]) -> str:
    """What a person approves: the preflight verdicts and the waves."""
    counts = ", ".join(f"{n} {s}" for s, n in ledger.counts().items()) or "none settled"
    lines = [
        f"### Patch window for change {markdown_text(ledger.change)}",
        "",
        f"Preflight: {len(ledger.targets)} instance(s); {counts}.",
        f"Error budget: at most {ledger.budget.allowed} failure(s) over the whole change "
        f"(max_failures {ledger.params.max_failures.text}).",
        "",
    ]
    lines += [f"- {w.step} ({w.kind.value}): {len(w.targets)} instance(s)" for w in waves]
    refused = [o for o in ledger.outcomes.values() if o.reasons]
    lines += ["", *[outcome_line(o, "refused") for o in refused]]
    return "\n".join(lines)


# --- 4. and 5. Approval, waves and the gate between them -------------------------------------


def approve(ledger: WindowLedger, waves: Sequence[Wave]) -> None:
    """Pause for a person's approval before wave 1 (once per flow run); recorded."""
    record = ask_for_approval(
        ledger.run, plan_summary(ledger, waves), ledger.params.pause_timeout_seconds
    )
    ledger.decided(record)


def patch(ledger: WindowLedger, wave: Wave) -> None:
    """One wave: patched now, or restored from what this flow run recorded before a retry."""
    recorded = ledger.recorded.waves.get(wave.step)
    if recorded is not None:
        get_run_logger().info("%s: recorded before this run was retried, skipped", wave.step)
        ledger.wave_done(wave, recorded.outcomes, recorded.started_at)
        ledger.waves[-1].ended_at = recorded.ended_at
        return
    started = datetime.now(UTC)
    ledger.wave_done(wave, patch_wave(ledger, wave), started)


def gate(ledger: WindowLedger, remaining: Sequence[Wave]) -> bool:
    """After a wave, with ``remaining`` waves still to go: go on, unless the error budget is
    spent; then a person decides (pause) or the window stops (fail)."""
    failures = ledger.failures
    if not remaining or not ledger.budget.spent(failures):
        return True
    ledger.halts += 1
    spent = ledger.budget.describe(failures)
    get_run_logger().warning("error budget spent: %s; no new wave starts", spent)
    if len(decisions_of_this_run(ledger.run, "halt")) < ledger.halts:
        ledger.run.alert(FailureKind.WINDOW_HALTED, ledger.counts())
    if ledger.params.on_halt is OnHalt.FAIL:
        ledger.stopped = f"halted: the error budget is spent ({spent}) and on_halt is fail"
        ledger.aborted = True
        return False
    record = decide_on_halt(
        ledger.run,
        halt_summary(ledger, spent),
        ledger.halts,
        ledger.params.pause_timeout_seconds,
    )
    ledger.decided(record)
    if record.decision == "continue":
        ledger.budget.accept(failures)
        return True
    ledger.stopped = (
        f"aborted by {record.approver} once the error budget was spent: {record.reason}"
    )
    ledger.aborted = True
    return False


def halt_summary(ledger: WindowLedger, spent: str) -> str:
    """What a person reads before deciding: what failed and why."""
    failed = [o for o in ledger.outcomes.values() if o.status.spends_budget]
    lines = [
        f"### Patch window {markdown_text(ledger.change)} halted: error budget spent",
        "",
        f"{spent}. Choose **continue** to start the next wave anyway, or **abort** to start "
        "no further wave.",
        "",
        *[outcome_line(o, o.status.value, f"wave {o.wave}") for o in failed],
    ]
    return "\n".join(lines)


# --- 6. Report -----------------------------------------------------------------------------------


def finish(ledger: WindowLedger, waves: Sequence[Wave]) -> WindowResult:
    """Instances of waves that never started, the report and its artifacts, the failure event;
    with ``on_halt=fail`` and the budget spent, the run then fails."""
    done = {w.number for w in ledger.waves}
    left = [w for w in waves if w.number not in done]
    if ledger.params.dry_run:
        ledger.stopped = "dry run: nothing installed"
    ledger.not_started(left)
    if ledger.params.dry_run:
        for summary in ledger.waves:
            summary.state = "planned (dry run)"
    elif left:
        # Recorded like a wave, so a change's history names every instance. A retried run reads
        # back only its preflight and wave-<n> steps (resume.py): this step never skips a wave.
        unstarted = [t for wave in left for t in wave.targets]
        ledger.run.record_step(
            NOT_STARTED_STEP,
            [
                ScriptResult.without_running(
                    t, ResultStatus.SKIPPED, "; ".join(ledger.outcomes[t.instance_id].reasons)
                )
                for t in unstarted
            ],
            {
                t.instance_id: ledger.outcomes[t.instance_id].model_dump(mode="json")
                for t in unstarted
            },
        )
    result = WindowResult(
        change_number=ledger.change,
        provider=ledger.run.provider.name,
        flow_run=ledger.run.run_name,
        dry_run=ledger.params.dry_run,
        max_failures=ledger.budget.allowed,
        instances=[ledger.outcomes[t.instance_id] for t in ledger.targets],
        waves=sorted(ledger.waves, key=lambda w: w.number),
        decisions=ledger.decisions,
        left_out=ledger.left_out,
        halted=ledger.halts > 0,
        aborted=ledger.aborted,
        window_closed=ledger.window_closed,
    )
    result.report_path = str(publish(ledger, result))
    if result.failures:
        ledger.run.alert(FailureKind.WINDOW, result.status_counts())
    get_run_logger().info(
        "change %s: %s; report %s",
        ledger.change,
        ", ".join(f"{n} {s}" for s, n in result.status_counts().items()) or "no instances",
        result.report_path,
    )
    if result.halted and ledger.params.on_halt is OnHalt.FAIL:
        raise WindowHaltedError(
            f"{ledger.stopped}; {result.failures} instance(s) failed, "
            f"{len(result.by_status(FinalStatus.NOT_STARTED))} not started. "
            f"Report: {result.report_path}"
        )
    return result


def publish(ledger: WindowLedger, result: WindowResult) -> Path:
    """The report file, its summary artifact and the tables; returns the file."""
    change = ledger.change

    def key(name: str) -> str:
        return artifact_key("linux-qc-window", change, name)

    tables = [
        Table(
            key("instances"),
            instance_rows(result.instances),
            f"{change}: final status per instance",
        ),
        Table(key("waves"), wave_rows(result), f"{change}: the waves, when they ran, failures"),
        Table(
            key("preflight"), preflight_rows(ledger.preflight), f"{change}: preflight per instance"
        ),
    ]
    if result.decisions:
        tables.append(Table(key("decisions"), decision_rows(result), f"{change}: who decided what"))
    return ledger.run.publish(
        RunReport(
            filename=f"window_report_{change}_{utc_stamp()}.md",
            markdown=window_report_markdown(result),
            summary_key=key("summary"),
            summary_description=f"{change}: the patch window",
            tables=tables,
        )
    )


def end_state(result: WindowResult) -> WindowResult:
    """The run's final state: ``Needs attention`` when any instance is not patched for a reason
    a person must look at (a failure, a refusal at preflight, a wave never started), else
    ``Completed``; the counts are its message."""
    settled = {FinalStatus.PATCHED, FinalStatus.ALREADY_PATCHED}
    needs_person = any(i.status not in settled for i in result.instances)
    counts = ", ".join(f"{n} {s}" for s, n in result.status_counts().items()) or "no instances"
    if result.dry_run:
        counts = f"dry run: {counts}"
    # Prefect takes the returned state as the run's final state and its data as the result.
    return final_state(result, counts, needs_person and not result.dry_run)


# --- The flow ----------------------------------------------------------------------------------


@flow(
    name=WINDOW_WORKFLOW,
    flow_run_name=run_namer(lambda p: run_title("window", p.get("change_number"))),
    log_prints=False,
    persist_result=True,
)
def linux_qc_patching_window(
    change_number: str,
    provider: str | ProviderBlock | None = None,
    instances: list[Target] | None = None,
    canary_per_group: int = 1,
    wave_size: str = "25%",
    max_failures: str = "0",
    on_halt: OnHalt = OnHalt.PAUSE,
    require_approval: bool = True,
    window_end: datetime | None = None,
    reboot_timeout_seconds: int = 1200,
    install_timeout_seconds: int = 1800,
    workdir: str = "/root",
    accept_newer_kernel: bool = False,
    required_agents: list[Agent] | None = None,
    pause_timeout_seconds: int = 14400,
    dry_run: bool = False,
) -> WindowResult:
    """Install the staged kernels of a change in waves, reboot through SSM, check each wave.

    Args:
        change_number: the change ticket prep ran on; names the change folder
            ``<workdir>/<CHANGE>`` that holds ``patchme.sh``.
        provider: provider block slug, block name, block, or ``aws`` (``local`` only with
            ``dry_run``: it never reboots this worker).
        instances: a subset of the change to patch; default every instance whose prep QC passed
            and whose staged kernel prep recorded.
        canary_per_group: the first wave takes this many instances of every kernel group
            (distribution + base kernel), so each kernel is proven before the rest; 0: none.
        wave_size: the size of each later wave, a count ("10") or a share of what is left after
            the canary ("25%").
        max_failures: the change-wide error budget over every account and region, a count ("2")
            or a share of the window's instances ("5%"); more failures stop new waves.
        on_halt: once the budget is spent: ``pause`` for a person to continue or abort, or
            ``fail`` the run.
        require_approval: pause for a person's approval (approver, comment) before wave 1.
        window_end: no wave starts after this time (ISO 8601 with a time zone); instances not
            started are reported ``not_started``.
        reboot_timeout_seconds: how long a server's SSM agent may stay away after the reboot
            before it is ``reboot_timed_out`` (also SSM's delivery timeout of the install).
        install_timeout_seconds: the install script's limit on each server (per run).
        workdir: absolute directory on the servers that holds the change folder.
        accept_newer_kernel: a server that runs a later build than the staged kernel passes
            (with a note) instead of failing as "newer than staged".
        required_agents: the agents the change must leave running (default CrowdStrike and
            BigFix), checked by the post checks of each wave.
        pause_timeout_seconds: how long a paused run (approval, halt) waits for a person before
            it fails.
        dry_run: run the preflight and show the waves, install nothing (works on ``local``).
    """
    # 1. Parameters: every problem at once, nothing sent on a bad one
    params = validate_window_parameters(
        change_number=change_number,
        workdir=workdir,
        canary_per_group=canary_per_group,
        wave_size=wave_size,
        max_failures=max_failures,
        on_halt=on_halt,
        require_approval=require_approval,
        window_end=window_end,
        reboot_timeout_seconds=reboot_timeout_seconds,
        install_timeout_seconds=install_timeout_seconds,
        pause_timeout_seconds=pause_timeout_seconds,
        accept_newer_kernel=accept_newer_kernel,
        required_agents=required_agents,
        dry_run=dry_run,
    )
    chosen = load_provider(provider)
    refuse_where_nothing_reboots(chosen, params)
    run = WorkflowRun.begin(WINDOW_WORKFLOW, chosen, Store.default(), params.change_number)

    # 2. Intake
    ledger = open_window(run, params, instances)

    # 3. Preflight, and the waves it leaves (a dry run stops here)
    waves = check_and_plan(ledger)
    if params.dry_run:
        return end_state(finish(ledger, waves))

    # 4. Approval
    if params.require_approval and waves:
        approve(ledger, waves)

    # 5. Waves: canary first; over budget, a person decides or the window stops
    for number, wave in enumerate(waves, start=1):
        if not ledger.may_start(wave):
            break
        patch(ledger, wave)
        if not gate(ledger, remaining=waves[number:]):
            break

    # 6. Report
    return end_state(finish(ledger, waves))
