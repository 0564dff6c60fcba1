"""Flow ``linux-qc-patching-post``: after the patch window, check that every server of a change
runs the kernel the change staged and kept its agents up. Read-only on the servers.

The runbook, in the order this file follows:

1. Validate the parameters (change number, target kernel, work directory): nothing is sent on
   a bad one.
2. Intake: the change's instances from a list, a CSV, or the change already stored.
3. Connectivity check: offline and unmanaged instances are reported and left out; Windows ones
   are reported as not applicable and never sent a bash script.
4. Post validation: ``linux/post_qc.sh`` on each reachable Linux instance. Its target kernel is
   the ``newkernel`` line of ``<workdir>/<CHANGE>/patchme.sh`` on the instance (the script reads
   it), else the kernel the prep run staged there, else the ``target_kernel`` parameter.
5. Compare with prep: kernel before / after / target, rebooted or not, agents before and
   after, QC status before. An instance without a prep record is validated all the same.
6. Verdict: fail on a kernel mismatch, or CrowdStrike or BigFix installed but not running;
   every other finding is informational.
7. Report: passed, failed and drift tables and a summary as artifacts, the file
   ``qc_post_report_<change>_<UTC timestamp>.md``, the run in the store (one execution per
   instance, its parsed ``PostReport`` with it), and a ``cloudops.post.failed`` event when an
   instance did not pass.

With ``fan_out_per_account`` steps 3 to 6 are instead one child run of this deployment per
account (see ``flows.fanout``), which the workers of the pool share; this run merges their
verdicts and reports on the whole change.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel

from blocks import ProviderBlock, load_provider
from flows.changes import validate_change_number
from flows.events import FailureKind, emit_failure_event
from flows.execution import group_targets, prepare_group, run_on_targets
from flows.fanout import fans_out, is_fan_out_child, merge_parts, run_per_account, split_by_account
from flows.kernels import validate_kernel_version
from flows.parsers import KernelTargetSource, PostReport, parse_post_report
from flows.parsers.qc import clean_output
from flows.post_report import (
    InstancePost,
    PostResult,
    PostVerdict,
    PrepRecord,
    compare_with_prep,
    drift_rows,
    failed_rows,
    load_prep_records,
    passed_rows,
    post_report_markdown,
)
from flows.prep_parameters import check_workdir
from flows.remote_scripts import load_script, render_script
from flows.reporting import artifact_key, first_line, publish_markdown, utc_stamp, write_report
from flows.run_script import FAN_OUT_QUEUE_SECONDS, select_targets
from flows.settings import get_settings
from flows.store import Store
from providers.base import Platform, Provider, ResultStatus, ScriptRequest, ScriptResult, Target

WORKFLOW = "linux-qc-patching-post"
STEP = "post_qc"
POST_SCRIPT = "linux/post_qc.sh"
NOT_APPLICABLE_REASON = (
    "Windows server: Linux post-patching QC does not apply; verify it with the Windows patch job"
)


# --- 1. Parameters -------------------------------------------------------------------------------


class PostParameters(BaseModel):
    """The post flow's parameters once checked; values are safe to place in the script."""

    change_number: str
    workdir: str
    target_kernel: str | None
    timeout_seconds: int


class PostParameterError(ValueError):
    """One or more parameters of the post flow are not acceptable; every problem is listed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"- {problem}" for problem in problems)
        super().__init__(f"{WORKFLOW} refused its parameters; nothing was sent:\n{listed}")


def validate_post_parameters(
    *, change_number: str, workdir: str, target_kernel: str | None, timeout_seconds: int
) -> PostParameters:
    """The checked parameters, or ``PostParameterError`` listing every problem at once."""
    problems: list[str] = []
    number = ""
    try:
        number = validate_change_number(change_number)
    except ValueError as exc:
        problems.append(f"change_number: {exc}")
    workdir_problem = check_workdir(workdir)
    if workdir_problem:
        problems.append(workdir_problem)
    kernel: str | None = None
    if target_kernel is not None and str(target_kernel).strip():
        try:
            kernel = validate_kernel_version(target_kernel)
        except ValueError as exc:
            problems.append(f"target_kernel: {exc}")
    if not 60 <= timeout_seconds <= 7_200:
        problems.append(f"timeout_seconds {timeout_seconds} must be between 60 and 7200 seconds")
    if problems:
        raise PostParameterError(problems)
    return PostParameters(
        change_number=number,
        workdir=workdir,
        target_kernel=kernel,
        timeout_seconds=timeout_seconds,
    )


def post_script(params: PostParameters, target: str | None, source: KernelTargetSource) -> str:
    """``post_qc.sh`` with its quoted parameters; a target is passed only when one is known."""
    values = {"CHANGE_NUMBER": params.change_number, "WORKDIR": params.workdir}
    if target:
        values["TARGET_KERNEL"] = target
        values["TARGET_KERNEL_SOURCE"] = source.value
    return render_script(load_script(POST_SCRIPT), values)


def post_request(params: PostParameters, script: str, run_name: str) -> ScriptRequest:
    return ScriptRequest(
        script=script,
        timeout_seconds=params.timeout_seconds,
        comment=f"{params.change_number} {WORKFLOW} {run_name}"[:100],
    )


# --- 2. Intake ----------------------------------------------------------------------------------


def distinct_targets(targets: Sequence[Target]) -> list[Target]:
    """Each instance once, in the order first given: a list may repeat one."""
    first: dict[str, Target] = {}
    for target in targets:
        first.setdefault(target.instance_id, target)
    return list(first.values())


# --- 3. Connectivity check -----------------------------------------------------------------------


def check_connectivity(
    provider: Provider, targets: Sequence[Target], request: ScriptRequest
) -> tuple[list[Target], list[ScriptResult]]:
    """The Linux targets SSM can reach now, and a result for each target left out."""
    logger = get_run_logger()
    not_sent: list[ScriptResult] = []
    linux: list[Target] = []
    for target in targets:
        if target.platform is Platform.WINDOWS:
            not_sent.append(
                ScriptResult.without_running(target, ResultStatus.SKIPPED, NOT_APPLICABLE_REASON)
            )
        else:
            linux.append(target)

    # The provider's own pre-check (SSM registration and ping, platform), without sending.
    groups = group_targets(linux)
    plans = {
        key: prepare_group.submit(provider, group, request, group_name=f"{key[0]}-{key[1]}")
        for key, group in groups.items()
    }
    reachable_ids: set[str] = set()
    for key, future in plans.items():
        try:
            plan = future.result()
        except Exception as exc:  # one account's failure (role, credentials) is its own
            reason = f"could not check {key[0]}/{key[1]} through SSM: {exc}"
            not_sent.extend(
                ScriptResult.without_running(t, ResultStatus.ERROR, reason) for t in groups[key]
            )
            continue
        not_sent.extend(plan.results)
        reachable_ids.update(t.instance_id for chunk in plan.chunks for t in chunk.targets)
    reachable = [t for t in linux if t.instance_id in reachable_ids]
    logger.info(
        "connectivity: %d of %d instance(s) reachable; %d left out",
        len(reachable),
        len(targets),
        len(not_sent),
    )
    return reachable, not_sent


# --- 4. Post validation --------------------------------------------------------------------------


def planned_target(
    target: Target, prep: PrepRecord | None, params: PostParameters
) -> tuple[str | None, KernelTargetSource]:
    """The target to tell the script, which ``patchme.sh`` on the instance still overrides:
    the kernel prep staged there, else the ``target_kernel`` parameter (none for Windows)."""
    if target.platform is Platform.WINDOWS:
        return None, KernelTargetSource.NONE
    if prep is not None and prep.staged_kernel:
        # Read back from the store, so checked again like every value that reaches a script;
        # a record that does not hold a plain kernel version is not a target.
        try:
            return validate_kernel_version(prep.staged_kernel), KernelTargetSource.PREP
        except ValueError:
            pass
    if params.target_kernel:
        return params.target_kernel, KernelTargetSource.PARAMETER
    return None, KernelTargetSource.NONE


def run_post_checks(
    provider: Provider,
    store: Store,
    params: PostParameters,
    reachable: Sequence[Target],
    targets_planned: dict[str, tuple[str | None, KernelTargetSource]],
    run_name: str,
) -> list[ScriptResult]:
    """``post_qc.sh`` on every reachable instance: one run per distinct target kernel, since the
    target travels in the script's header."""
    logger = get_run_logger()
    by_target: dict[tuple[str | None, KernelTargetSource], list[Target]] = defaultdict(list)
    for target in reachable:
        by_target[targets_planned[target.instance_id]].append(target)
    results: list[ScriptResult] = []
    for (kernel, source), targets in by_target.items():
        logger.info(
            "post check of %d instance(s) with target %s (from %s; patchme.sh wins)",
            len(targets),
            kernel or "none",
            source.value,
        )
        request = post_request(params, post_script(params, kernel, source), run_name)
        batch = run_on_targets(
            provider,
            targets,
            request,
            store=store,
            progress_key=artifact_key("linux-qc-post", params.change_number, "progress"),
        )
        results.extend(batch.results)
    return results


# --- 5 and 6. Compare with prep, verdict --------------------------------------------------------


def _not_run_verdict(status: ResultStatus) -> PostVerdict:
    if status is ResultStatus.SKIPPED:
        return PostVerdict.NOT_APPLICABLE
    if status in (ResultStatus.OFFLINE, ResultStatus.NOT_MANAGED):
        return PostVerdict.UNREACHABLE
    return PostVerdict.CHECK_ERROR


def _check_problem(result: ScriptResult) -> str:
    if result.status is ResultStatus.FAILED:
        detail = first_line(clean_output(result.stderr)) or result.error or "no message"
        return (
            f"post_qc.sh exited with code {result.exit_code} ({detail}); read the command output "
            "on the instance and run the post check again"
        )
    return result.error or f"the post check ended {result.status.value}; run it again"


def judge_post(
    target: Target,
    result: ScriptResult,
    prep: PrepRecord | None,
    planned: tuple[str | None, KernelTargetSource],
    change_number: str,
) -> InstancePost:
    """The verdict on one instance from its post check's result, with its drift since prep."""
    kernel, source = planned
    parsed: PostReport | None = None
    if result.status in (ResultStatus.SUCCESS, ResultStatus.FAILED):
        parsed = parse_post_report(result.stdout, target_kernel=kernel, target_kernel_source=source)
    report = parsed if parsed is not None and parsed.summary_found else None
    reasons: list[str]
    if result.status is ResultStatus.SUCCESS and report is not None:
        verdict = PostVerdict.PASSED if report.passed else PostVerdict.FAILED
        reasons = list(report.failure_reasons)
    elif result.status is ResultStatus.SUCCESS and parsed is not None:
        # The script exits 0 only once it has printed its summary: output without one is no
        # report at all, and the parser says why.
        verdict, reasons = PostVerdict.CHECK_ERROR, list(parsed.failure_reasons)
    else:
        verdict, reasons = _not_run_verdict(result.status), [_check_problem(result)]
    drift = compare_with_prep(
        report,
        prep,
        result.ended_at or result.started_at,
        change_number=change_number,
        planned_target=kernel,
        planned_source=source,
    )
    return InstancePost(
        instance_id=target.instance_id,
        account_id=target.account_id,
        region=target.region,
        name=target.name,
        verdict=verdict,
        status=result.status,
        reasons=reasons,
        report=report,
        drift=drift,
        command_id=result.command_id,
    )


def run_outcome(instances: Sequence[InstancePost]) -> tuple[str, int, int]:
    """(status, passed, not passed) for the store; Windows servers count as neither."""
    passed = sum(i.passed for i in instances)
    failed = sum(not i.passed and i.verdict is not PostVerdict.NOT_APPLICABLE for i in instances)
    if failed == 0:
        return "success", passed, failed
    return ("partial" if passed else "failed"), passed, failed


def post_fanned_out(
    targets: Sequence[Target],
    planned: dict[str, tuple[str | None, KernelTargetSource]],
    prep_records: dict[str, PrepRecord],
    params: PostParameters,
    parent_parameters: dict[str, object],
) -> tuple[list[InstancePost], list[str]]:
    """Steps 3 to 6 as one child run of this deployment per account: the children's verdicts
    merged (a child without a result gives its instances a check error naming it), and the
    children's run names."""
    outcomes = run_per_account(
        split_by_account(targets),
        parameters=parent_parameters,
        result_type=PostResult,
        targets_parameter="instances",
        # Each child may wait in the pool for a free worker before its own limits start.
        timeout_seconds=params.timeout_seconds + FAN_OUT_QUEUE_SECONDS,
    )
    judged = merge_parts(
        outcomes,
        lambda child: child.instances,
        lambda target, error: judge_post(
            target,
            error,
            prep_records.get(target.instance_id),
            planned[target.instance_id],
            params.change_number,
        ),
    )
    return judged, [o.flow_run_name for o in outcomes]


# --- 7. Report -----------------------------------------------------------------------------------


def publish_post_artifacts(result: PostResult, summary: str) -> None:
    """The passed, failed and drift tables and the summary, read at a glance in the UI."""
    change = result.change_number

    def key(name: str) -> str:
        return artifact_key("linux-qc-post", change, name)

    create_table_artifact(
        key=key("passed"),
        table=passed_rows(result.instances),
        description=f"{change}: instances that passed the post-patching QC",
    )
    create_table_artifact(
        key=key("failed"),
        table=failed_rows(result.instances),
        description=f"{change}: instances that did not pass, with the reasons",
    )
    create_table_artifact(
        key=key("drift"),
        table=drift_rows(result.instances),
        description=f"{change}: kernel, reboot and agents at prep time and now",
    )
    publish_markdown(key("summary"), summary, f"{change}: post-patching QC summary")


# --- The flow ------------------------------------------------------------------------------------


# persist_result: a fanned-out parent reads its children's results back from result storage.
@flow(name=WORKFLOW, log_prints=False, persist_result=True)
def linux_qc_patching_post(
    change_number: str,
    change_csv: str | None = None,
    instances: list[Target] | None = None,
    provider: str | ProviderBlock | None = None,
    target_kernel: str | None = None,
    workdir: str = "/root",
    timeout_seconds: int = 900,
    fan_out_per_account: bool = False,
) -> PostResult:
    """Verify a change's Linux servers after patching, against the prep run of the same change.

    Args:
        change_number: the change ticket; names the change folder ``<workdir>/<CHANGE>`` where
            prep staged ``patchme.sh``.
        change_csv: a change file (path or CSV text) to store and check, instead of the stored
            change.
        instances: the servers to check, instead of the stored change.
        provider: provider block slug, block name, block, or ``aws``/``local``.
        target_kernel: the kernel expected where neither ``patchme.sh`` nor the prep record
            names one.
        workdir: absolute directory on the servers that holds the change folder.
        timeout_seconds: the post check's limit on each server.
        fan_out_per_account: check each account's instances in a child run of this
            deployment, so that the workers of its pool share a large change (needs a
            deployment); this run merges their verdicts into one report and one event.
    """
    logger = get_run_logger()
    # 1. Parameters
    params = validate_post_parameters(
        change_number=change_number,
        workdir=workdir,
        target_kernel=target_kernel,
        timeout_seconds=timeout_seconds,
    )

    # 2. Intake
    chosen = load_provider(provider)
    store = Store.default()
    targets, _ = select_targets(
        chosen,
        store,
        targets=instances,
        change_number=params.change_number,
        change_csv=change_csv,
        discovery=None,
    )
    targets = distinct_targets(targets)
    change = params.change_number
    run_name = str(flow_run.name or "local")
    prep_records = load_prep_records(store, change)
    planned = {
        t.instance_id: planned_target(t, prep_records.get(t.instance_id), params) for t in targets
    }
    logger.info(
        "change %s: %d instance(s) through %s; %d with a prep record",
        change,
        len(targets),
        chosen.name,
        sum(t.instance_id in prep_records for t in targets),
    )
    run_id = store.start_run(
        flow_run_id=str(flow_run.id or ""),
        workflow=WORKFLOW,
        step=STEP,
        provider=chosen.name,
        change_number=change,
    )

    children: list[str] = []
    if fans_out(fan_out_per_account, targets):
        logger.info("fanning out over %d accounts", len({t.account_id for t in targets}))
        judged, children = post_fanned_out(
            targets,
            planned,
            prep_records,
            params,
            {
                "change_number": change,
                "provider": provider,
                "target_kernel": params.target_kernel,
                "workdir": params.workdir,
                "timeout_seconds": params.timeout_seconds,
            },
        )
        # Each child recorded its own executions; this run records the merged counts only.
    else:
        # 3. Connectivity check
        probe = post_request(params, post_script(params, None, KernelTargetSource.NONE), run_name)
        reachable, not_sent = check_connectivity(chosen, targets, probe)

        # 4. Post validation
        checked = run_post_checks(chosen, store, params, reachable, planned, run_name)

        # 5 and 6. Compare with prep, verdict
        results = {r.instance_id: r for r in [*not_sent, *checked]}
        judged = [
            judge_post(
                target,
                results[target.instance_id],
                prep_records.get(target.instance_id),
                planned[target.instance_id],
                change,
            )
            for target in targets
        ]
        parsed = {i.instance_id: i.report.model_dump(mode="json") for i in judged if i.report}
        store.record_results(run_id, list(results.values()), parsed=parsed)
    status, passed, failed = run_outcome(judged)
    store.finish_run(run_id, status=status, success_count=passed, failure_count=failed)

    # 7. Report
    result = PostResult(
        change_number=change,
        provider=chosen.name,
        flow_run=run_name,
        workdir=params.workdir,
        target_kernel=params.target_kernel,
        instances=judged,
    )
    summary = post_report_markdown(result)
    if children:
        summary += f"\n\nFanned out per account to the flow runs {', '.join(children)}.\n"
    report = write_report(
        Path(get_settings().reports_dir), f"qc_post_report_{change}_{utc_stamp()}.md", summary
    )
    result = result.model_copy(update={"report_path": str(report)})
    publish_post_artifacts(result, summary)
    # A fan-out child's failures reach operators once, in its parent's merged event.
    if failed and not is_fan_out_child():
        # Operators hang paging or ticketing automations on this event.
        emit_failure_event(FailureKind.POST, change, result.verdict_counts())
    logger.info(
        "change %s: %s; report %s",
        change,
        ", ".join(f"{n} {v}" for v, n in result.verdict_counts().items()) or "no instances",
        report,
    )
    return result
