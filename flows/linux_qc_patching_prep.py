"""Flow ``linux-qc-patching-prep``: get a change's Linux servers ready for the patch window.

The runbook, in the order this file follows:

1. Intake: check every parameter (nothing is sent on a bad one), then the change's instances
   from a list, a CSV, or a change already stored.
2. Connectivity check: which instances SSM can reach. Offline and unmanaged ones are reported
   and left out; Windows ones are reported as not applicable and never sent a bash script.
3. Initial QC on each Linux instance (our ``linux/qc.sh``, or the team's Linux Patcher in QC
   mode), each report also saved as ``<workdir>/<CHANGE>/qc_report.txt`` on the instance.
4. Kernel groups: the instances that passed, by distribution and base kernel, each with its
   installable kernels sorted as versions.
5. Kernel staging: one kernel per group, from ``kernel_choices`` or chosen by a person in the
   Prefect UI while the run waits; ``patchme.sh`` is written on each instance of the group.
   Nothing is installed and nothing reboots.
6. Final report: each instance's QC report and ``patchme.sh`` read back; the two markdown
   reports written and published as artifacts, with per-instance and per-group tables.

Each step that touches servers is recorded in the store under this workflow's name and the
step's name (``initial_qc``, ``stage_kernels``, ``final_report``), one execution per instance
with what was parsed from it; the post-patching flow reads them back.

With ``fan_out_per_account`` step 3 is instead one child run of this deployment per account
(see ``flows.fanout``), each doing only ``initial_qc`` on its account's instances, which the
workers of the pool share; this run takes their verdicts and does steps 4 to 6 itself, since
kernel groups and staging span accounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.runtime import flow_run

from blocks import ProviderBlock, load_provider
from flows.events import FailureKind, emit_failure_event
from flows.execution import group_targets, prepare_group, run_on_targets
from flows.fanout import fans_out, is_fan_out_child, merge_parts, run_per_account, split_by_account
from flows.kernels import KernelGroup, group_kernels
from flows.parsers import QcReport
from flows.prep_kernel_choice import (
    GroupDecision,
    KernelChoiceError,
    ask_for_kernels,
    decide_from_parameters,
    stageable_kernels,
)
from flows.prep_parameters import (
    ALL_STEPS,
    PrepParameters,
    PrepStep,
    validate_prep_parameters,
)
from flows.prep_qc import InstanceQc, QcVerdict, judge_qc, not_applicable, not_reached, qc_script
from flows.prep_report import (
    final_report_markdown,
    group_of_instances,
    group_rows,
    qc_results_markdown,
    qc_rows,
)
from flows.prep_result import PrepResult
from flows.prep_staging import (
    InstancePrepFiles,
    StagedInstance,
    collect_script,
    judge_collection,
    judge_staging,
    stage_script,
)
from flows.reporting import artifact_key, publish_markdown, utc_stamp, write_report
from flows.run_script import FAN_OUT_QUEUE_SECONDS, select_targets
from flows.settings import get_settings
from flows.store import Store
from providers.base import (
    BatchResult,
    Platform,
    Provider,
    ResultStatus,
    ScriptRequest,
    ScriptResult,
    Target,
)

WORKFLOW = "linux-qc-patching-prep"
STAGE_TIMEOUT_SECONDS = 300
COLLECT_TIMEOUT_SECONDS = 300


@dataclass
class PrepRun:
    """What every step of one run needs: the checked parameters, where to run, where to record."""

    params: PrepParameters
    change: str
    provider: Provider
    store: Store
    run_name: str
    flow_run_id: str
    require_crowdstrike: bool
    progress: StepProgress

    def request(self, step: str, script: str, timeout_seconds: int) -> ScriptRequest:
        return ScriptRequest(
            script=script,
            timeout_seconds=timeout_seconds,
            comment=f"{self.change} {WORKFLOW} {step} {self.run_name}"[:100],
        )

    def artifact(self, name: str) -> str:
        return artifact_key("linux-qc-prep", self.change, name)

    def record(
        self,
        step: PrepStep,
        results: Sequence[ScriptResult],
        parsed: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """One run record for ``step``, one execution per instance."""
        run_id = self.store.start_run(
            flow_run_id=self.flow_run_id,
            workflow=WORKFLOW,
            step=step.value,
            provider=self.provider.name,
            change_number=self.change,
        )
        self.store.record_results(run_id, results, parsed=parsed)
        batch = BatchResult.from_results(results)
        self.store.finish_run(
            run_id,
            status=batch.status.value,
            success_count=batch.success_count,
            failure_count=batch.failure_count,
        )


class StepProgress:
    """A progress artifact that moves as the run's steps finish."""

    def __init__(self, key: str, steps: int, description: str) -> None:
        self._total = max(steps, 1)
        self._done = 0
        self._id: UUID = create_progress_artifact(progress=0.0, key=key, description=description)

    def step_done(self) -> None:
        self._done = min(self._total, self._done + 1)
        update_progress_artifact(
            artifact_id=self._id, progress=round(100.0 * self._done / self._total, 1)
        )


# --- 2. Connectivity check ----------------------------------------------------------------------


def check_connectivity(
    run: PrepRun, targets: Sequence[Target]
) -> tuple[list[Target], dict[str, InstanceQc], list[ScriptResult]]:
    """The Linux targets SSM can reach now; verdicts and results for the ones left out."""
    logger = get_run_logger()
    left_out: dict[str, InstanceQc] = {}
    not_sent: list[ScriptResult] = []
    linux: list[Target] = []
    for target in targets:
        if target.platform is Platform.WINDOWS:
            verdict = not_applicable(target)
            left_out[target.instance_id] = verdict
            not_sent.append(
                ScriptResult.without_running(target, ResultStatus.SKIPPED, verdict.reasons[0])
            )
        else:
            linux.append(target)

    # The provider's own pre-check (SSM registration and ping, platform), without sending.
    request = run.request("connectivity", qc_script(run.params, run.change), 60)
    groups = group_targets(linux)
    plans = {
        key: prepare_group.submit(run.provider, group, request, group_name=f"{key[0]}-{key[1]}")
        for key, group in groups.items()
    }
    reachable_ids: set[str] = set()
    for key, future in plans.items():
        try:
            plan = future.result()
        except Exception as exc:  # one account's failure (role, credentials) is its own
            reason = f"could not check {key[0]}/{key[1]} through SSM: {exc}"
            plan_results = [
                ScriptResult.without_running(t, ResultStatus.ERROR, reason) for t in groups[key]
            ]
        else:
            plan_results = plan.results
            reachable_ids.update(t.instance_id for c in plan.chunks for t in c.targets)
        by_id = {t.instance_id: t for t in groups[key]}
        for result in plan_results:
            left_out[result.instance_id] = not_reached(by_id[result.instance_id], result)
            not_sent.append(result)
    reachable = [t for t in linux if t.instance_id in reachable_ids]
    logger.info(
        "connectivity: %d of %d instance(s) reachable; %d left out",
        len(reachable),
        len(targets),
        len(left_out),
    )
    return reachable, left_out, not_sent


# --- 3. Initial QC -------------------------------------------------------------------------------


def run_initial_qc(
    run: PrepRun, reachable: Sequence[Target], not_sent: Sequence[ScriptResult]
) -> dict[str, InstanceQc]:
    """QC on every reachable instance; recorded with each parsed report."""
    request = run.request(
        PrepStep.INITIAL_QC.value,
        qc_script(run.params, run.change),
        run.params.qc_timeout_seconds,
    )
    batch = run_on_targets(
        run.provider,
        reachable,
        request,
        store=run.store,
        progress_key=run.artifact("qc-progress"),
    )
    by_id = {t.instance_id: t for t in reachable}
    verdicts = {
        r.instance_id: judge_qc(by_id[r.instance_id], r, run.require_crowdstrike)
        for r in batch.results
    }
    parsed = {
        iid: v.report.model_dump(mode="json") for iid, v in verdicts.items() if v.report is not None
    }
    run.record(PrepStep.INITIAL_QC, [*not_sent, *batch.results], parsed)
    return verdicts


def qc_fanned_out(
    run: PrepRun, targets: Sequence[Target], parent_parameters: dict[str, Any]
) -> tuple[dict[str, InstanceQc], list[str]]:
    """The initial QC as one child run of this deployment per account, each with the step
    ``initial_qc`` only (and recording it in the store like any QC run): their verdicts, a
    child without a result giving its instances a QC error naming it, and their run names."""
    outcomes = run_per_account(
        split_by_account(targets),
        parameters={
            **parent_parameters,
            "steps": [PrepStep.INITIAL_QC.value],
            # Nothing to choose in a QC-only child; the parent asks once, for every group.
            "choose_in_ui": False,
            "kernel_choices": None,
        },
        result_type=PrepResult,
        targets_parameter="instances",
        # Each child may wait in the pool for a free worker before its own limits start.
        timeout_seconds=run.params.qc_timeout_seconds + FAN_OUT_QUEUE_SECONDS,
        run_key=PrepStep.INITIAL_QC.value,
    )
    verdicts = merge_parts(
        outcomes,
        lambda child: child.instances,
        lambda target, error: InstanceQc(
            instance_id=target.instance_id,
            account_id=target.account_id,
            region=target.region,
            name=target.name,
            verdict=QcVerdict.QC_ERROR,
            status=error.status,
            reasons=[error.error or "its fan-out child run gave no result"],
        ),
    )
    return {v.instance_id: v for v in verdicts}, [o.flow_run_name for o in outcomes]


def qc_from_store(run: PrepRun, reachable: Sequence[Target]) -> dict[str, InstanceQc]:
    """The QC of an earlier run of this change, judged again with today's CrowdStrike rule."""
    recorded = run.store.latest_executions(run.change, WORKFLOW, PrepStep.INITIAL_QC.value)
    verdicts: dict[str, InstanceQc] = {}
    for target in reachable:
        record = recorded.get(target.instance_id)
        if record is None:
            verdicts[target.instance_id] = InstanceQc(
                instance_id=target.instance_id,
                account_id=target.account_id,
                region=target.region,
                name=target.name,
                verdict=QcVerdict.QC_ERROR,
                status=ResultStatus.SKIPPED,
                reasons=[
                    f"no initial QC is recorded for change {run.change} on this instance; "
                    "run the flow with the initial_qc step"
                ],
            )
        else:
            verdicts[target.instance_id] = judge_qc(
                target, record.to_result(), run.require_crowdstrike
            )
    return verdicts


# --- 4. Kernel groups ----------------------------------------------------------------------------


def form_kernel_groups(instances: Sequence[InstanceQc]) -> list[KernelGroup]:
    reports: dict[str, QcReport] = {
        i.instance_id: i.report for i in instances if i.passed and i.report is not None
    }
    return group_kernels(reports)


# --- 5. Kernel staging ---------------------------------------------------------------------------


def choose_kernels(
    run: PrepRun, groups: Sequence[KernelGroup], choose_in_ui: bool, timeout_seconds: int
) -> list[GroupDecision]:
    """The kernel per group: asked in the UI, or from ``kernel_choices``."""
    logger = get_run_logger()
    if choose_in_ui and any(stageable_kernels(g) for g in groups):
        logger.info(
            "waiting up to %d s for a person to choose the kernels in the Prefect UI "
            "(flow run %s: Resume)",
            timeout_seconds,
            run.run_name,
        )
        return ask_for_kernels(groups, run.params.kernel_choices, run.change, timeout_seconds)
    return decide_from_parameters(groups, run.params.kernel_choices)


def stage_kernels(
    run: PrepRun,
    groups: Sequence[KernelGroup],
    decisions: Sequence[GroupDecision],
    reachable: Sequence[Target],
) -> list[StagedInstance]:
    """Write patchme.sh on each instance of every group that has a kernel; recorded."""
    logger = get_run_logger()
    by_id = {t.instance_id: t for t in reachable}
    by_name = {g.name: g for g in groups}
    staged: list[StagedInstance] = []
    results: list[ScriptResult] = []
    for decision in decisions:
        if decision.kernel is None:
            continue
        group = by_name[decision.group]
        targets = [by_id[i] for i in group.instance_ids if i in by_id]
        request = run.request(
            PrepStep.STAGE_KERNELS.value,
            stage_script(run.change, run.params.workdir, decision.kernel),
            STAGE_TIMEOUT_SECONDS,
        )
        logger.info("staging %s on %d instance(s) of %s", decision.kernel, len(targets), group.name)
        batch = run_on_targets(
            run.provider,
            targets,
            request,
            store=run.store,
            progress_key=run.artifact("staging-progress"),
        )
        results.extend(batch.results)
        staged.extend(judge_staging(r, group.name, decision.kernel) for r in batch.results)
    if results:
        parsed = {s.instance_id: s.model_dump(mode="json") for s in staged}
        run.record(PrepStep.STAGE_KERNELS, results, parsed)
    return staged


# --- 6. Final report -----------------------------------------------------------------------------


def collect_prep_files(run: PrepRun, targets: Sequence[Target]) -> list[InstancePrepFiles]:
    """Read back each instance's QC report and patchme.sh; recorded."""
    if not targets:
        return []
    request = run.request(
        PrepStep.FINAL_REPORT.value,
        collect_script(run.change, run.params.workdir),
        COLLECT_TIMEOUT_SECONDS,
    )
    batch = run_on_targets(
        run.provider,
        targets,
        request,
        store=run.store,
        progress_key=run.artifact("collect-progress"),
    )
    collected = [judge_collection(r) for r in batch.results]
    parsed = {c.instance_id: c.files.model_dump(mode="json") for c in collected if c.files}
    run.record(PrepStep.FINAL_REPORT, batch.results, parsed)
    return collected


def publish_tables(run: PrepRun, result: PrepResult) -> None:
    """Per-instance QC and per-group tables, where a person reads them at a glance."""
    create_table_artifact(
        key=run.artifact("qc"),
        table=qc_rows(result.instances, group_of_instances(result)),
        description=f"{run.change}: initial QC, one row per instance",
    )
    create_table_artifact(
        key=run.artifact("kernel-groups"),
        table=group_rows(result),
        description=f"{run.change}: kernel groups, their kernels and what was staged",
    )


def write_reports(run: PrepRun, result: PrepResult) -> PrepResult:
    """Both markdown reports as files and artifacts; returns ``result`` with their paths."""
    reports_dir = Path(get_settings().reports_dir)
    stamp = utc_stamp()
    final_path: str | None = None
    if PrepStep.FINAL_REPORT in result.steps and result.staging_refused is None:
        final = final_report_markdown(result)
        final_path = str(
            write_report(reports_dir, f"qc_final_report_{run.change}_{stamp}.md", final)
        )
        publish_markdown(
            run.artifact("final-report"), final, f"{run.change}: QC reports and patch scripts"
        )
    result = result.model_copy(update={"final_report": final_path})
    summary = qc_results_markdown(result, run.run_name)
    summary_path = write_report(reports_dir, f"qc_results_{run.change}_{stamp}.md", summary)
    publish_markdown(run.artifact("qc-results"), summary, f"{run.change}: every step of the prep")
    publish_tables(run, result)
    return result.model_copy(update={"qc_results_report": str(summary_path)})


# --- The flow ------------------------------------------------------------------------------------


# persist_result: a fanned-out parent reads its children's results back from result storage.
@flow(name=WORKFLOW, log_prints=False, persist_result=True)
def linux_qc_patching_prep(
    change_number: str | None = None,
    change_csv: str | None = None,
    instances: list[Target] | None = None,
    provider: str | ProviderBlock | None = None,
    kernel_choices: dict[str, str] | str | None = None,
    choose_in_ui: bool = False,
    qc_engine: str = "builtin",
    patcher_url: str | None = None,
    workdir: str = "/root",
    require_crowdstrike: bool = True,
    steps: tuple[str, ...] = ALL_STEPS,
    min_var_free_gb: int = 3,
    patcher_args: str = "-q",
    patcher_sha256: str | None = None,
    qc_timeout_seconds: int = 1800,
    choice_timeout_seconds: int = 3600,
    fan_out_per_account: bool = False,
) -> PrepResult:
    """QC a change's Linux servers, group them by kernel, stage the chosen kernel, report.

    Args:
        change_number: the change ticket; names the change folder ``<workdir>/<CHANGE>`` on
            each server. Optional with ``change_csv`` (the file names it).
        change_csv: a change file (path or CSV text) to store and run on.
        instances: the servers, instead of a CSV (or of a stored change).
        provider: provider block slug, block name, block, or ``aws``/``local``.
        kernel_choices: the kernel per group, ``{"RHEL8.10 - Kernel 4.18.0-553":
            "4.18.0-553.45.1.el8_10"}``; or one kernel staged on every group that offers it.
            A kernel outside a group's list refuses the staging. Groups without a choice are
            not staged.
        choose_in_ui: wait for a person to choose each group's kernel in the Prefect UI
            (``kernel_choices`` then only preselect).
        qc_engine: ``builtin`` (our QC script) or ``linux-patcher`` (the external patcher).
        patcher_url: https:// or s3:// location of the Linux Patcher, for ``linux-patcher``.
        workdir: absolute directory on the servers that holds the change folder.
        require_crowdstrike: QC fails when CrowdStrike is not running.
        steps: any of ``initial_qc``, ``stage_kernels``, ``final_report`` (always run in that
            order; without ``initial_qc`` the change's last recorded QC is used).
        min_var_free_gb: free space the built-in QC wants in /var.
        patcher_args: the patcher's QC-only switch.
        patcher_sha256: the patcher's expected sha256; a mismatch refuses to run it.
        qc_timeout_seconds: the QC script's limit on each server.
        choice_timeout_seconds: how long the run waits for a choice in the UI.
        fan_out_per_account: run the initial QC of each account as a child run of this
            deployment (steps ``initial_qc`` only), so that the workers of its pool share a
            large change; this run then groups, stages and reports on the whole change. Needs
            a deployment, and every worker must share one record store (``DATABASE_URL`` on
            PostgreSQL), since each child records its QC there for the post flow to read.
    """
    logger = get_run_logger()
    params = validate_prep_parameters(
        change_number=change_number,
        change_csv=change_csv,
        workdir=workdir,
        qc_engine=qc_engine,
        patcher_url=patcher_url,
        patcher_args=patcher_args,
        patcher_sha256=patcher_sha256,
        kernel_choices=kernel_choices,
        steps=steps,
        min_var_free_gb=min_var_free_gb,
        qc_timeout_seconds=qc_timeout_seconds,
    )

    # 1. Intake
    chosen = load_provider(provider)
    store = Store.default()
    targets, change = select_targets(
        chosen,
        store,
        targets=instances,
        change_number=params.change_number,
        change_csv=change_csv,
        discovery=None,
    )
    assert change is not None  # validate_prep_parameters requires a number or a CSV
    run_name = str(flow_run.name or "local")
    run = PrepRun(
        params=params,
        change=change,
        provider=chosen,
        store=store,
        run_name=run_name,
        flow_run_id=str(flow_run.id or ""),
        require_crowdstrike=require_crowdstrike,
        progress=StepProgress(
            artifact_key("linux-qc-prep", change, "progress"),
            steps=len(params.steps) + 2,
            description=f"{change}: prep steps done",
        ),
    )
    logger.info(
        "change %s: %d instance(s) through %s; steps %s",
        change,
        len(targets),
        chosen.name,
        ", ".join(s.value for s in params.steps),
    )

    # 2. Connectivity check
    reachable, left_out, not_sent = check_connectivity(run, targets)
    run.progress.step_done()

    # 3. Initial QC
    if params.runs(PrepStep.INITIAL_QC):
        if fans_out(fan_out_per_account, targets):
            qc, children = qc_fanned_out(
                run,
                targets,
                {
                    "change_number": change,
                    "provider": provider,
                    "qc_engine": params.qc_engine,
                    "patcher_url": patcher_url,
                    "workdir": params.workdir,
                    "require_crowdstrike": require_crowdstrike,
                    "min_var_free_gb": min_var_free_gb,
                    "patcher_args": patcher_args,
                    "patcher_sha256": patcher_sha256,
                    "qc_timeout_seconds": qc_timeout_seconds,
                },
            )
            logger.info("initial QC fanned out per account to %s", ", ".join(children))
        else:
            qc = run_initial_qc(run, reachable, not_sent)
        run.progress.step_done()
    else:
        qc = qc_from_store(run, reachable)
    verdicts = {**qc, **left_out}
    instances_qc = [verdicts[t.instance_id] for t in targets if t.instance_id in verdicts]

    # 4. Kernel groups
    groups = form_kernel_groups(instances_qc)
    result = PrepResult(
        change_number=change,
        provider=chosen.name,
        flow_run=run_name,
        steps=list(params.steps),
        qc_engine=params.qc_engine,
        workdir=params.workdir,
        require_crowdstrike=require_crowdstrike,
        instances=instances_qc,
        groups=groups,
    )
    # Shown now, so a person choosing kernels in the UI sees the QC while the run waits.
    publish_tables(run, result)

    # 5. Kernel staging
    if params.runs(PrepStep.STAGE_KERNELS):
        try:
            decisions = choose_kernels(run, groups, choose_in_ui, choice_timeout_seconds)
        except KernelChoiceError as exc:
            refused = write_reports(run, result.model_copy(update={"staging_refused": str(exc)}))
            raise KernelChoiceError(
                f"{exc}. The QC report is at {refused.qc_results_report}"
            ) from None
        staged = stage_kernels(run, groups, decisions, reachable)
        result = result.model_copy(update={"decisions": decisions, "staged": staged})
        run.progress.step_done()

    # 6. Final report
    if params.runs(PrepStep.FINAL_REPORT):
        reached = [t for t in reachable if verdicts[t.instance_id].reached]
        result = result.model_copy(update={"collected": collect_prep_files(run, reached)})
        run.progress.step_done()
    result = write_reports(run, result)
    run.progress.step_done()
    counts = result.verdict_counts()
    # A fan-out child's findings reach operators once, in its parent's event on the change.
    problems = any(counts.get(verdict, 0) for verdict in ("failed", "qc_error", "unreachable"))
    if problems and not is_fan_out_child():
        # An operator hangs an automation (page, ticket) on this, not on the flow's state:
        # a QC that finds problems is a run that did its job.
        emit_failure_event(FailureKind.QC, change, counts)
    logger.info(
        "change %s: %s; %d kernel group(s), %d instance(s) staged; report %s",
        change,
        ", ".join(f"{n} {v}" for v, n in result.verdict_counts().items()) or "no instances",
        len(groups),
        len(result.staged_kernels()),
        result.qc_results_report,
    )
    return result
