"""Flow ``run-script``: run one script on many servers and report what each one did.

The runbook:
1. Check the parameters: which script, which targets, which provider. Nothing runs on a bad one.
2. Resolve the targets: a list, a change (stored, or a CSV file), or a discovery query.
3. Run the script on them through the provider (pre-check, send, collect: see
   ``flows.common.engine``), showing progress.
4. Report: a summary and a per-instance table as artifacts, a markdown file, the store; a
   ``cloudops.run-script.failed`` event when the script did not succeed everywhere.

With ``fan_out_per_account`` step 3 is instead one child run of this deployment per account
(see ``flows.common.fanout``), which the workers of the pool share; this run merges their
results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from blocks import load_provider
from flows.common.events import FailureKind
from flows.common.fanout import (
    FAN_OUT_QUEUE_SECONDS,
    fans_out,
    merge_batches,
    run_per_account,
    split_by_account,
)
from flows.common.naming import final_state, run_namer, run_title
from flows.common.remote_scripts import BundledScript, render_script
from flows.common.reporting import artifact_key, result_rows, status_counts, utc_stamp
from flows.common.runs import Document, RunReport, Table, Tally, WorkflowRun
from flows.common.settings import get_settings
from flows.common.targets import select_targets
from flows.script_run.parameters import choose_script
from flows.script_run.report import (
    OUTPUT_ARTIFACT_BUDGET,
    RunScriptResult,
    outcome,
    output_markdown,
    summary_markdown,
)
from flows.store import Store
from providers.base import BatchResult, DiscoveryFilter, Interpreter, Target

WORKFLOW = "run-script"


def script_title(script_name: object) -> str:
    """``host_facts.sh`` for the bundled ``linux/host_facts.sh``; ``inline`` without a name."""
    if not script_name:
        return "inline"
    return str(getattr(script_name, "value", script_name)).rsplit("/", 1)[-1]


def run_fanned_out(
    selected: list[Target], request_parameters: dict[str, Any], timeout_seconds: float
) -> tuple[BatchResult, list[str]]:
    """One child run of this deployment per account; their merged batch and run names."""
    outcomes = run_per_account(
        split_by_account(selected),
        parameters=request_parameters,
        result_type=RunScriptResult,
        timeout_seconds=timeout_seconds,
    )
    return merge_batches(outcomes, lambda r: r.batch), [o.flow_run_name for o in outcomes]


def report_run(
    run: WorkflowRun,
    label: str,
    batch: BatchResult,
    children: list[str],
    names: dict[str, str],
) -> RunScriptResult:
    """The report file, the artifacts and, when the script did not succeed everywhere, the
    failure event; returns the flow's result."""
    filename = f"run_script_{run.change or 'adhoc'}_{utc_stamp()}.md"
    result = RunScriptResult(
        change_number=run.change,
        provider=run.provider.name,
        script=label,
        batch=batch,
        report_path=str(Path(get_settings().reports_dir) / filename),
        child_flow_runs=children,
        names=names,
    )
    report = run.publish(
        RunReport(
            filename=filename,
            markdown=summary_markdown(result, run.run_name),
            summary_key=artifact_key("run-script-summary"),
            summary_description=f"{label}: summary",
            tables=[
                Table(
                    artifact_key("run-script-results"),
                    result_rows(batch.results, names),
                    f"{label}: one row per instance",
                    empty="No instance was targeted.",
                )
            ],
            appendix=output_markdown(result),
            documents=[
                Document(
                    artifact_key("run-script-output"),
                    output_markdown(result, budget=OUTPUT_ARTIFACT_BUDGET),
                    f"{label}: each instance's whole output",
                )
            ],
        )
    )
    if batch.failure_count:
        run.alert(
            FailureKind.RUN_SCRIPT,
            {
                "instances": len(batch.results),
                "succeeded": batch.success_count,
                "failed": batch.failure_count,
            },
        )
    get_run_logger().info("%s: %s; report written to %s", label, status_counts(batch), report)
    return result.model_copy(update={"report_path": str(report)})


# persist_result: a fanned-out parent reads its children's results back from result storage.
@flow(
    name=WORKFLOW,
    log_prints=False,
    persist_result=True,
    flow_run_name=run_namer(
        lambda p: run_title(
            WORKFLOW, script_title(p.get("script_name")), p.get("change_number") or "adhoc"
        )
    ),
)
def run_script(
    script: str | None = None,
    script_name: BundledScript | None = None,
    interpreter: Interpreter | None = None,
    timeout_seconds: int = 300,
    parameters: dict[str, str] | None = None,
    targets: list[Target] | None = None,
    change_number: str | None = None,
    change_csv: str | None = None,
    discovery: DiscoveryFilter | None = None,
    provider: str | None = None,
    delivery_timeout_seconds: int = 600,
    max_concurrency: str | None = None,
    max_errors: str | None = None,
    fan_out_per_account: bool = False,
) -> RunScriptResult:
    """Run a script (inline or bundled) on servers given as a list, a change or a query.

    Args:
        script: inline script text.
        script_name: a bundled script, such as ``linux/host_facts.sh`` (the form lists them).
        interpreter: bash, sh, python or powershell (default from the script).
        timeout_seconds: the script's own execution limit on each server.
        parameters: values the script reads as environment variables (quoted, never spliced).
        targets: servers to run on.
        change_number: a stored change to run on (or the number of ``change_csv``).
        change_csv: a change file to store and run on: the CSV text, or the name of a file in
            the changes directory (``CLOUDOPS_CHANGES_DIR``).
        discovery: accounts, regions and tags to find servers by.
        provider: provider block slug, block name, or ``aws``/``local``.
        delivery_timeout_seconds: how long SSM keeps trying to deliver the command.
        max_concurrency: SSM MaxConcurrency (e.g. ``50`` or ``10%``).
        max_errors: SSM MaxErrors (e.g. ``0`` or ``5%``).
        fan_out_per_account: run each account's targets as a child run of this deployment, so
            that the workers of its pool share a large change (needs a deployment).
    """
    # 1. Parameters
    label, body, chosen_interpreter = choose_script(script, script_name, interpreter)
    text = render_script(body, parameters or {}, chosen_interpreter)
    chosen = load_provider(provider)
    store = Store.default()

    # 2. Targets
    selected, change = select_targets(
        chosen,
        store,
        targets=targets,
        change_number=change_number,
        change_csv=change_csv,
        discovery=discovery,
    )
    title = run_title(WORKFLOW, script_title(script_name), change or "adhoc")
    run = WorkflowRun.begin(WORKFLOW, chosen, store, change, title=title)
    request = run.request(
        "",
        text,
        timeout_seconds,
        interpreter=chosen_interpreter,
        delivery_timeout_seconds=delivery_timeout_seconds,
        max_concurrency=max_concurrency,
        max_errors=max_errors,
    )
    get_run_logger().info(
        "running %s on %d target(s) through %s", label, len(selected), chosen.name
    )

    # 3. Run
    run_id = run.start_step(label)
    children: list[str] = []
    if fans_out(fan_out_per_account, selected):
        batch, children = run_fanned_out(
            selected,
            {
                "script": script,
                "script_name": script_name,
                "interpreter": chosen_interpreter,
                "timeout_seconds": timeout_seconds,
                "parameters": parameters,
                "change_number": change,
                "provider": provider,
                "delivery_timeout_seconds": delivery_timeout_seconds,
                "max_concurrency": max_concurrency,
                "max_errors": max_errors,
            },
            # Each child may wait in the pool for a free worker before its own limits start.
            timeout_seconds=delivery_timeout_seconds + timeout_seconds + FAN_OUT_QUEUE_SECONDS,
        )
        # Each child recorded its own executions; this run records the merged counts only.
    else:
        batch = run.run_script(
            label, selected, request, progress_key=artifact_key("run-script-progress")
        )
        run.record_results(run_id, batch.results)
    run.finish_step(run_id, Tally.of(batch))

    # 4. Report
    names = {t.instance_id: t.name for t in selected if t.name}
    result = report_run(run, label, batch, children, names)
    return final_state(result, outcome(result), batch.failure_count > 0)
