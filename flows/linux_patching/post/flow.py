"""Flow ``linux-qc-patching-post``: after the patch window, check that every server of a change
runs the kernel the change staged and kept its agents up. Read-only on the servers.

The runbook, in the order this file follows:

1. Validate the parameters (change number, target kernel, work directory): nothing is sent on
   a bad one.
2. Intake: the change's instances from a list, a CSV, or the change already stored, and what
   the prep flow recorded for each.
3. Connectivity check: offline and unmanaged instances are reported and left out; Windows ones
   are reported as not applicable and never sent a bash script.
4. Post validation: ``linux/post_qc.sh`` on each reachable Linux instance (see
   :mod:`flows.linux_patching.post_verdict` for where its target kernel comes from).
5. Compare with prep: kernel before / after / target, rebooted or not, agents before and
   after, QC status before. An instance without a prep record is validated all the same.
6. Verdict: fail on a kernel mismatch (a newer kernel than staged is said so, and passes with
   ``accept_newer_kernel``), on a required agent installed but not running, or on a required
   agent present at prep QC and gone or stopped now; every other finding is informational. An
   instance whose prep QC did not pass is ``not_patched_prep_failed``: no post failure.
7. Report: passed, failed and drift tables and a summary as artifacts, the file
   ``qc_post_report_<change>_<UTC timestamp>.md``, the run in the store (one execution per
   instance, its parsed ``PostReport`` with it), and a ``cloudops.post.failed`` event when an
   instance did not pass.

With ``fan_out_per_account`` steps 3 to 6 are instead one child run of this deployment per
account (see :mod:`flows.common.fanout`), which the workers of the pool share; this run
merges their verdicts and reports on the whole change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from flows.common.reporting import artifact_key, utc_stamp
from flows.common.runs import RunReport, Table, WorkflowRun
from flows.common.targets import distinct_targets, select_targets
from flows.linux_patching.post.parameters import (
    POST_WORKFLOW,
    PostParameters,
    validate_post_parameters,
)
from flows.linux_patching.post.report import (
    drift_rows,
    failed_rows,
    passed_rows,
    post_report_markdown,
)
from flows.linux_patching.post.result import PostResult
from flows.linux_patching.post_check import Agent, KernelTargetSource
from flows.linux_patching.post_verdict import (
    InstancePost,
    PlannedTarget,
    judge_post,
    planned_target,
    post_script,
    post_tally,
    run_post_checks,
)
from flows.linux_patching.prep_record import PrepRecord, load_prep_records
from flows.store import Store
from providers.base import Target

STEP = "post_qc"
NOT_APPLICABLE_REASON = (
    "Windows server: Linux post-patching QC does not apply; verify it with the Windows patch job"
)


def check_here(
    run: WorkflowRun,
    run_id: int,
    params: PostParameters,
    targets: Sequence[Target],
    planned: Mapping[str, PlannedTarget],
    prep_records: Mapping[str, PrepRecord],
) -> list[InstancePost]:
    """Steps 3 to 6 in this run: connectivity, the post check, the comparison and verdicts;
    each instance's result recorded with its parsed report."""
    probe = run.request(
        STEP,
        post_script(params.change_number, params.workdir, None, KernelTargetSource.NONE),
        params.timeout_seconds,
    )
    reach = check_connectivity(run.provider, targets, probe, not_applicable=NOT_APPLICABLE_REASON)
    checked = run_post_checks(
        run,
        STEP,
        reach.reachable,
        planned,
        workdir=params.workdir,
        timeout_seconds=params.timeout_seconds,
        progress_key=artifact_key("linux-qc-post", params.change_number, "progress"),
    )
    results = {r.instance_id: r for r in [*reach.left_out, *checked]}
    judged = [
        judge_post(
            target,
            results[target.instance_id],
            prep_records.get(target.instance_id),
            planned[target.instance_id],
            params.change_number,
            accept_newer_kernel=params.accept_newer_kernel,
            required_agents=params.required_agents,
        )
        for target in targets
    ]
    parsed = {i.instance_id: i.report.model_dump(mode="json") for i in judged if i.report}
    run.record_results(run_id, list(results.values()), parsed)
    return judged


def check_fanned_out(
    targets: Sequence[Target],
    planned: Mapping[str, PlannedTarget],
    prep_records: Mapping[str, PrepRecord],
    params: PostParameters,
    parent_parameters: dict[str, Any],
) -> tuple[list[InstancePost], list[str]]:
    """Steps 3 to 6 as one child run of this deployment per account: the children's verdicts
    merged (a child without a result gives its instances a check error naming it), and the
    children's run names. Each child records its own executions."""
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
            accept_newer_kernel=params.accept_newer_kernel,
            required_agents=params.required_agents,
        ),
    )
    return judged, [o.flow_run_name for o in outcomes]


def report_run(
    run: WorkflowRun, params: PostParameters, judged: list[InstancePost], children: list[str]
) -> PostResult:
    """The report file, the passed/failed/drift tables, the summary, and the failure event
    when an instance did not pass."""
    result = PostResult(
        change_number=params.change_number,
        provider=run.provider.name,
        flow_run=run.run_name,
        workdir=params.workdir,
        target_kernel=params.target_kernel,
        instances=judged,
    )
    summary = post_report_markdown(result)
    if children:
        summary += f"\n\nFanned out per account to the flow runs {', '.join(children)}.\n"
    change = params.change_number

    def key(name: str) -> str:
        return artifact_key("linux-qc-post", change, name)

    report = run.publish(
        RunReport(
            filename=f"qc_post_report_{change}_{utc_stamp()}.md",
            markdown=summary,
            summary_key=key("summary"),
            summary_description=f"{change}: post-patching QC summary",
            tables=[
                Table(
                    key("passed"),
                    passed_rows(judged),
                    f"{change}: instances that passed the post-patching QC",
                    empty="No instance passed: see the table of those that did not.",
                ),
                Table(
                    key("failed"),
                    failed_rows(judged),
                    f"{change}: instances that did not pass, with the reasons",
                    empty="Every instance passed: nothing needs attention.",
                ),
                Table(
                    key("drift"),
                    drift_rows(judged),
                    f"{change}: kernel, reboot and agents at prep time and now",
                    empty="No instance was checked.",
                ),
            ],
        )
    )
    if post_tally(judged).failed:
        run.alert(FailureKind.POST, result.failure_event_counts())
    get_run_logger().info(
        "change %s: %s; report %s",
        change,
        ", ".join(f"{n} {v}" for v, n in result.verdict_counts().items()) or "no instances",
        report,
    )
    return result.model_copy(update={"report_path": str(report)})


# persist_result: a fanned-out parent reads its children's results back from result storage.
@flow(
    name=POST_WORKFLOW,
    log_prints=False,
    persist_result=True,
    flow_run_name=run_namer(lambda p: run_title("post", p.get("change_number"))),
)
def linux_qc_patching_post(
    change_number: str,
    change_csv: str | None = None,
    instances: list[Target] | None = None,
    provider: str | ProviderBlock | None = None,
    target_kernel: str | None = None,
    workdir: str = "/root",
    timeout_seconds: int = 900,
    fan_out_per_account: bool = False,
    accept_newer_kernel: bool = False,
    required_agents: list[Agent] | None = None,
) -> PostResult:
    """Verify a change's Linux servers after patching, against the prep run of the same change.

    Args:
        change_number: the change ticket; names the change folder ``<workdir>/<CHANGE>`` where
            prep staged ``patchme.sh``.
        change_csv: a change file to store and check, instead of the stored change: the CSV
            text, or the name of a file in the changes directory (``CLOUDOPS_CHANGES_DIR``).
        instances: the servers to check, instead of the stored change.
        provider: provider block slug, block name, block, or ``aws``/``local``.
        target_kernel: the kernel expected where neither ``patchme.sh`` nor the prep record
            names one.
        workdir: absolute directory on the servers that holds the change folder.
        timeout_seconds: the post check's limit on each server.
        fan_out_per_account: check each account's instances in a child run of this
            deployment, so that the workers of its pool share a large change (needs a
            deployment); this run merges their verdicts into one report and one event.
        accept_newer_kernel: pass a server that runs a later build than the target kernel (a
            note says so); otherwise it fails as "newer than staged".
        required_agents: the agents the change must leave running (default CrowdStrike and
            BigFix): installed but stopped, or present at prep QC and gone now, fails a server.
    """
    # 1. Parameters
    params = validate_post_parameters(
        change_number=change_number,
        workdir=workdir,
        target_kernel=target_kernel,
        timeout_seconds=timeout_seconds,
        accept_newer_kernel=accept_newer_kernel,
        required_agents=required_agents,
    )

    # 2. Intake
    chosen = load_provider(provider)
    store = Store.default()
    selected, _ = select_targets(
        chosen, store, targets=instances, change_number=params.change_number, change_csv=change_csv
    )
    targets = distinct_targets(selected)
    run = WorkflowRun.begin(POST_WORKFLOW, chosen, store, params.change_number)
    prep_records = load_prep_records(store, params.change_number)
    planned = {
        t.instance_id: planned_target(t, prep_records.get(t.instance_id), params.target_kernel)
        for t in targets
    }
    get_run_logger().info(
        "change %s: %d instance(s) through %s; %d with a prep record",
        params.change_number,
        len(targets),
        chosen.name,
        sum(t.instance_id in prep_records for t in targets),
    )

    # 3 to 6. Connectivity, post validation, comparison with prep, verdicts
    run_id = run.start_step(STEP)
    children: list[str] = []
    if fans_out(fan_out_per_account, targets):
        judged, children = check_fanned_out(
            targets,
            planned,
            prep_records,
            params,
            {
                "change_number": params.change_number,
                "provider": provider,
                "target_kernel": params.target_kernel,
                "workdir": params.workdir,
                "timeout_seconds": params.timeout_seconds,
                "accept_newer_kernel": params.accept_newer_kernel,
                "required_agents": [a.value for a in params.required_agents],
            },
        )
    else:
        judged = check_here(run, run_id, params, targets, planned, prep_records)
    run.finish_step(run_id, post_tally(judged))

    # 7. Report
    result = report_run(run, params, judged, children)
    return final_state(result, result.outcome(), result.needs_attention)
