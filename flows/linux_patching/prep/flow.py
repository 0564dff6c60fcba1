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
with what was parsed from it; the patch window and the post flow read them back (see
:mod:`flows.linux_patching.prep_record`).

With ``fan_out_per_account`` step 3 is instead one child run of this deployment per account
(see :mod:`flows.common.fanout`), each doing only ``initial_qc`` on its account's instances,
which the workers of the pool share; this run takes their verdicts and does steps 4 to 6
itself, since kernel groups and staging span accounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger

from blocks import ProviderBlock, load_provider
from flows.common.connectivity import check_connectivity
from flows.common.events import FailureKind
from flows.common.fanout import (
    FAN_OUT_QUEUE_SECONDS,
    fans_out,
    merge_parts,
    run_per_account,
    split_by_account,
)
from flows.common.naming import final_state, run_namer, run_title
from flows.common.pauses import announce_pause
from flows.common.progress import StepProgress
from flows.common.reporting import artifact_key, utc_stamp
from flows.common.runs import RunReport, Table, WorkflowRun
from flows.common.targets import select_targets
from flows.linux_patching.prep.kernel_choice import (
    GroupDecision,
    KernelChoiceError,
    ask_for_kernels,
    decide_from_parameters,
    stageable_kernels,
)
from flows.linux_patching.prep.kernel_groups import KernelGroup, group_kernels
from flows.linux_patching.prep.parameters import (
    ALL_STEPS,
    PrepParameterError,
    PrepParameters,
    validate_prep_parameters,
)
from flows.linux_patching.prep.qc import (
    NOT_APPLICABLE_REASON,
    InstanceQc,
    QcVerdict,
    judge_qc,
    not_reached,
    qc_script,
)
from flows.linux_patching.prep.report import (
    final_report_markdown,
    group_of_instances,
    group_rows,
    qc_results_markdown,
    qc_rows,
)
from flows.linux_patching.prep.result import PrepResult
from flows.linux_patching.prep.staging import (
    InstancePrepFiles,
    collect_script,
    judge_collection,
    judge_staging,
    not_offered,
    stage_script,
)
from flows.linux_patching.prep_record import PREP_WORKFLOW, PrepStep, StagedInstance
from flows.linux_patching.qc_report import QcReport
from flows.store import Store
from providers.base import ResultStatus, ScriptResult, Target

STAGE_TIMEOUT_SECONDS = 300
COLLECT_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class PrepRun:
    """What every step of one prep run needs: the run, its checked parameters, its progress."""

    run: WorkflowRun
    params: PrepParameters
    require_crowdstrike: bool
    progress: StepProgress

    @property
    def change(self) -> str:
        assert self.run.change is not None  # prep always works on a change
        return self.run.change

    def artifact(self, name: str) -> str:
        return artifact_key("linux-qc-prep", self.change, name)


def start(
    run: WorkflowRun, params: PrepParameters, require_crowdstrike: bool, targets: Sequence[Target]
) -> PrepRun:
    """The prep run of a change, its step progress shown from the start. Refuses to stage
    without a QC to stage from, before anything is sent."""
    assert run.change is not None  # validate_prep_parameters requires a number or a CSV
    if not params.runs(PrepStep.INITIAL_QC) and params.runs(PrepStep.STAGE_KERNELS):
        recorded = run.store.latest_executions(run.change, PREP_WORKFLOW, PrepStep.INITIAL_QC.value)
        if not recorded:
            raise PrepParameterError(
                [
                    f"steps: {', '.join(s.value for s in params.steps)} stages kernels from the "
                    f"recorded initial QC, and no initial QC is recorded for change "
                    f"{run.change}: run the QC first (steps initial_qc, stage_kernels, "
                    "final_report: the default), or add initial_qc to steps"
                ]
            )
    get_run_logger().info(
        "change %s: %d instance(s) through %s; steps %s",
        run.change,
        len(targets),
        run.provider.name,
        ", ".join(s.value for s in params.steps),
    )
    return PrepRun(
        run=run,
        params=params,
        require_crowdstrike=require_crowdstrike,
        progress=StepProgress(
            artifact_key("linux-qc-prep", run.change, "progress"),
            steps=len(params.steps) + 2,
            description=f"{run.change}: prep steps done",
        ),
    )


# --- 2. Connectivity check ----------------------------------------------------------------------


def connectivity(
    prep: PrepRun, targets: Sequence[Target]
) -> tuple[list[Target], dict[str, InstanceQc], list[ScriptResult]]:
    """The Linux targets SSM can reach now; verdicts and results for the ones left out."""
    probe = prep.run.request("connectivity", qc_script(prep.params, prep.change), 60)
    reach = check_connectivity(
        prep.run.provider, targets, probe, not_applicable=NOT_APPLICABLE_REASON
    )
    by_id = {t.instance_id: t for t in targets}
    left_out = {r.instance_id: not_reached(by_id[r.instance_id], r) for r in reach.left_out}
    return reach.reachable, left_out, reach.left_out


# --- 3. Initial QC -------------------------------------------------------------------------------


def run_initial_qc(
    prep: PrepRun, reachable: Sequence[Target], not_sent: Sequence[ScriptResult]
) -> dict[str, InstanceQc]:
    """QC on every reachable instance; recorded with each parsed report."""
    request = prep.run.request(
        PrepStep.INITIAL_QC.value,
        qc_script(prep.params, prep.change),
        prep.params.qc_timeout_seconds,
    )
    batch = prep.run.run_script(
        PrepStep.INITIAL_QC.value, reachable, request, progress_key=prep.artifact("qc-progress")
    )
    by_id = {t.instance_id: t for t in reachable}
    verdicts = {
        r.instance_id: judge_qc(by_id[r.instance_id], r, prep.require_crowdstrike)
        for r in batch.results
    }
    parsed = {
        iid: v.report.model_dump(mode="json") for iid, v in verdicts.items() if v.report is not None
    }
    prep.run.record_step(PrepStep.INITIAL_QC.value, [*not_sent, *batch.results], parsed)
    return verdicts


def qc_child_parameters(prep: PrepRun, provider: str | ProviderBlock | None) -> dict[str, Any]:
    """The parameters of this run that its per-account QC children run with."""
    params = prep.params
    return {
        "change_number": prep.change,
        "provider": provider,
        "qc_engine": params.qc_engine,
        "patcher_url": params.patcher_url,
        "workdir": params.workdir,
        "require_crowdstrike": prep.require_crowdstrike,
        "min_var_free_gb": params.min_var_free_gb,
        "patcher_args": params.patcher_args,
        "patcher_sha256": params.patcher_sha256,
        "qc_timeout_seconds": params.qc_timeout_seconds,
    }


def qc_fanned_out(
    prep: PrepRun, targets: Sequence[Target], parent_parameters: dict[str, Any]
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
        timeout_seconds=prep.params.qc_timeout_seconds + FAN_OUT_QUEUE_SECONDS,
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


def qc_from_store(prep: PrepRun, reachable: Sequence[Target]) -> dict[str, InstanceQc]:
    """The QC of an earlier run of this change, judged again with today's CrowdStrike rule."""
    recorded = prep.run.store.latest_executions(
        prep.change, PREP_WORKFLOW, PrepStep.INITIAL_QC.value
    )
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
                    f"no initial QC is recorded for change {prep.change} on this instance; "
                    "run the flow with the initial_qc step"
                ],
            )
        else:
            verdicts[target.instance_id] = judge_qc(
                target, record.to_result(), prep.require_crowdstrike
            )
    return verdicts


def initial_qc(
    prep: PrepRun,
    targets: Sequence[Target],
    reachable: Sequence[Target],
    not_sent: Sequence[ScriptResult],
    fan_out_parameters: dict[str, Any] | None,
) -> dict[str, InstanceQc]:
    """Step 3 as the parameters say: here, fanned out per account, or read from the store."""
    if not prep.params.runs(PrepStep.INITIAL_QC):
        return qc_from_store(prep, reachable)
    if fan_out_parameters is not None:
        qc, children = qc_fanned_out(prep, targets, fan_out_parameters)
        get_run_logger().info("initial QC fanned out per account to %s", ", ".join(children))
    else:
        qc = run_initial_qc(prep, reachable, not_sent)
    prep.progress.step_done()
    return qc


# --- 4. Kernel groups ----------------------------------------------------------------------------


def form_kernel_groups(instances: Sequence[InstanceQc]) -> list[KernelGroup]:
    reports: dict[str, QcReport] = {
        i.instance_id: i.report for i in instances if i.passed and i.report is not None
    }
    return group_kernels(reports)


def group_kernels_of(prep: PrepRun, instances: list[InstanceQc]) -> PrepResult:
    """The run's result so far: every verdict and the kernel groups, published at once."""
    result = PrepResult(
        change_number=prep.change,
        provider=prep.run.provider.name,
        flow_run=prep.run.run_name,
        steps=list(prep.params.steps),
        qc_engine=prep.params.qc_engine,
        workdir=prep.params.workdir,
        require_crowdstrike=prep.require_crowdstrike,
        instances=instances,
        groups=form_kernel_groups(instances),
    )
    for table in qc_tables(prep, result):
        prep.run.show(table)
    return result


# --- 5. Kernel staging ---------------------------------------------------------------------------


def choose_kernels(
    prep: PrepRun, groups: Sequence[KernelGroup], choose_in_ui: bool, timeout_seconds: int
) -> list[GroupDecision]:
    """The kernel per group: asked in the UI, or from ``kernel_choices``."""
    if choose_in_ui and any(stageable_kernels(g) for g in groups):
        announce_pause(
            f"the kernel to stage for each of {len(groups)} kernel group(s) of change "
            f"{prep.change}",
            timeout_seconds,
            '--kernel "<group>=<kernel>" (once per group; the form lists each group\'s kernels)',
        )
        return ask_for_kernels(groups, prep.params.kernel_choices, prep.change, timeout_seconds)
    return decide_from_parameters(groups, prep.params.kernel_choices)


def stage_kernels(
    prep: PrepRun,
    groups: Sequence[KernelGroup],
    decisions: Sequence[GroupDecision],
    reachable: Sequence[Target],
) -> list[StagedInstance]:
    """Write patchme.sh on each instance of every group that has a kernel, where the instance's
    own QC offers that kernel; the others are ``not_offered``. Recorded."""
    by_id = {t.instance_id: t for t in reachable}
    by_name = {g.name: g for g in groups}
    staged: list[StagedInstance] = []
    results: list[ScriptResult] = []
    for decision in decisions:
        if decision.kernel is None:
            continue
        group = by_name[decision.group]
        members = [by_id[i] for i in group.instance_ids if i in by_id]
        offering = [t for t in members if group.offers(t.instance_id, decision.kernel)]
        for target in members:
            if target not in offering:
                own = group.instance_kernels.get(target.instance_id, [])
                result, refused = not_offered(target, group.name, decision.kernel, own)
                results.append(result)
                staged.append(refused)
        if len(offering) < len(members):
            get_run_logger().warning(
                "%s: %d of %d instance(s) do not offer %s and are not staged (not_offered)",
                group.name,
                len(members) - len(offering),
                len(members),
                decision.kernel,
            )
        if not offering:
            continue
        request = prep.run.request(
            PrepStep.STAGE_KERNELS.value,
            stage_script(prep.change, prep.params.workdir, decision.kernel),
            STAGE_TIMEOUT_SECONDS,
        )
        get_run_logger().info(
            "staging %s on %d instance(s) of %s", decision.kernel, len(offering), group.name
        )
        batch = prep.run.run_script(
            PrepStep.STAGE_KERNELS.value,
            offering,
            request,
            progress_key=prep.artifact("staging-progress"),
        )
        results.extend(batch.results)
        staged.extend(judge_staging(r, group.name, decision.kernel) for r in batch.results)
    if results:
        parsed = {s.instance_id: s.model_dump(mode="json") for s in staged}
        prep.run.record_step(PrepStep.STAGE_KERNELS.value, results, parsed)
    return staged


def staging(
    prep: PrepRun,
    result: PrepResult,
    reachable: Sequence[Target],
    choose_in_ui: bool,
    choice_timeout_seconds: int,
) -> PrepResult:
    """Step 5: choose, then stage. A refused choice writes the QC report and fails the run."""
    try:
        decisions = choose_kernels(prep, result.groups, choose_in_ui, choice_timeout_seconds)
    except KernelChoiceError as exc:
        refused = write_reports(prep, result.model_copy(update={"staging_refused": str(exc)}))
        raise KernelChoiceError(f"{exc}. The QC report is at {refused.qc_results_report}") from None
    staged = stage_kernels(prep, result.groups, decisions, reachable)
    prep.progress.step_done()
    return result.model_copy(update={"decisions": decisions, "staged": staged})


# --- 6. Final report -----------------------------------------------------------------------------


def collect_prep_files(prep: PrepRun, targets: Sequence[Target]) -> list[InstancePrepFiles]:
    """Read back each instance's QC report and patchme.sh; recorded."""
    if not targets:
        return []
    request = prep.run.request(
        PrepStep.FINAL_REPORT.value,
        collect_script(prep.change, prep.params.workdir),
        COLLECT_TIMEOUT_SECONDS,
    )
    batch = prep.run.run_script(
        PrepStep.FINAL_REPORT.value,
        targets,
        request,
        progress_key=prep.artifact("collect-progress"),
    )
    collected = [judge_collection(r) for r in batch.results]
    parsed = {c.instance_id: c.files.model_dump(mode="json") for c in collected if c.files}
    prep.run.record_step(PrepStep.FINAL_REPORT.value, batch.results, parsed)
    return collected


def qc_tables(prep: PrepRun, result: PrepResult) -> list[Table]:
    """Per-instance QC and per-group tables, where a person reads them at a glance."""
    return [
        Table(
            prep.artifact("qc"),
            qc_rows(result.instances, group_of_instances(result)),
            f"{prep.change}: initial QC, one row per instance",
            empty="The change names no instance.",
        ),
        Table(
            prep.artifact("kernel-groups"),
            group_rows(result),
            f"{prep.change}: kernel groups, their kernels and what was staged",
            empty="No instance passed QC, so there is no kernel group to stage.",
        ),
    ]


def write_reports(prep: PrepRun, result: PrepResult) -> PrepResult:
    """Both markdown reports as files and artifacts; returns ``result`` with their paths."""
    stamp = utc_stamp()
    final_path: str | None = None
    if PrepStep.FINAL_REPORT in result.steps and result.staging_refused is None:
        final = prep.run.publish(
            RunReport(
                filename=f"qc_final_report_{prep.change}_{stamp}.md",
                markdown=final_report_markdown(result),
                summary_key=prep.artifact("final-report"),
                summary_description=f"{prep.change}: QC reports and patch scripts",
            )
        )
        final_path = str(final)
    result = result.model_copy(update={"final_report": final_path})
    summary = prep.run.publish(
        RunReport(
            filename=f"qc_results_{prep.change}_{stamp}.md",
            markdown=qc_results_markdown(result, prep.run.run_name),
            summary_key=prep.artifact("qc-results"),
            summary_description=f"{prep.change}: every step of the prep",
            tables=qc_tables(prep, result),
        )
    )
    return result.model_copy(update={"qc_results_report": str(summary)})


def finish(prep: PrepRun, result: PrepResult) -> PrepResult:
    """The reports, and the QC failure event when instances did not pass."""
    result = write_reports(prep, result)
    prep.progress.step_done()
    counts = result.verdict_counts()
    if any(counts.get(verdict, 0) for verdict in ("failed", "qc_error", "unreachable")):
        # An operator hangs an automation (page, ticket) on this, not on the flow's state:
        # a QC that finds problems is a run that did its job.
        prep.run.alert(FailureKind.QC, counts)
    get_run_logger().info(
        "change %s: %s; %d kernel group(s), %d instance(s) staged; report %s",
        prep.change,
        ", ".join(f"{n} {v}" for v, n in counts.items()) or "no instances",
        len(result.groups),
        len(result.staged_kernels()),
        result.qc_results_report,
    )
    return result


# --- The flow ------------------------------------------------------------------------------------


# persist_result: a fanned-out parent reads its children's results back from result storage.
@flow(
    name=PREP_WORKFLOW,
    log_prints=False,
    persist_result=True,
    flow_run_name=run_namer(lambda p: run_title("prep", p.get("change_number") or "change-file")),
)
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
        change_csv: a change file to store and run on: the CSV text, or the name of a file in
            the changes directory (``CLOUDOPS_CHANGES_DIR``).
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
    # 1. Intake
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
    chosen = load_provider(provider)
    store = Store.default()
    targets, change = select_targets(
        chosen, store, targets=instances, change_number=params.change_number, change_csv=change_csv
    )
    run = WorkflowRun.begin(PREP_WORKFLOW, chosen, store, change, title=run_title("prep", change))
    prep = start(run, params, require_crowdstrike, targets)

    # 2. Connectivity check
    reachable, left_out, not_sent = connectivity(prep, targets)
    prep.progress.step_done()

    # 3. Initial QC
    fan_out = None
    if params.runs(PrepStep.INITIAL_QC) and fans_out(fan_out_per_account, targets):
        fan_out = qc_child_parameters(prep, provider)
    verdicts = {**initial_qc(prep, targets, reachable, not_sent, fan_out), **left_out}

    # 4. Kernel groups, shown at once so a person choosing kernels sees the QC while it waits
    result = group_kernels_of(
        prep, [verdicts[t.instance_id] for t in targets if t.instance_id in verdicts]
    )

    # 5. Kernel staging
    if params.runs(PrepStep.STAGE_KERNELS):
        result = staging(prep, result, reachable, choose_in_ui, choice_timeout_seconds)

    # 6. Final report
    if params.runs(PrepStep.FINAL_REPORT):
        reached = [t for t in reachable if verdicts[t.instance_id].reached]
        result = result.model_copy(update={"collected": collect_prep_files(prep, reached)})
        prep.progress.step_done()
    result = finish(prep, result)
    return final_state(result, result.outcome(), result.needs_attention)
