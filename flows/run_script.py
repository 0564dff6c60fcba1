"""Flow ``run-script``: run one script on many servers and report what each one did.

The runbook:
1. Check the parameters: which script, which targets, which provider. Nothing runs on a bad one.
2. Resolve the targets: a list, a change (stored, or a CSV file), or a discovery query.
3. Run the script on them through the provider (pre-check, send, collect: see
   ``flows.execution``), showing progress.
4. Report: a summary and a per-instance table as artifacts, a markdown file, the store; a
   ``cloudops.run-script.failed`` event when the script did not succeed everywhere.

With ``fan_out_per_account`` step 3 is instead one child run of this deployment per account
(see ``flows.fanout``), which the workers of the pool share; this run merges their results.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from blocks import load_provider
from flows.changes import ChangeSpec, load_change_input, validate_change_number
from flows.events import FailureKind, emit_failure_event
from flows.execution import run_on_targets
from flows.fanout import is_fan_out_child, merge_batches, run_per_account, split_by_account
from flows.remote_scripts import interpreter_for, load_script, render_script
from flows.reporting import (
    artifact_key,
    markdown_table,
    publish_markdown,
    publish_results_table,
    result_rows,
    status_counts,
    utc_stamp,
    write_report,
)
from flows.settings import get_settings
from flows.store import Store
from providers.base import (
    BatchResult,
    DiscoveryFilter,
    Interpreter,
    Provider,
    ScriptRequest,
    Target,
)


class RunScriptResult(BaseModel):
    """What ``run-script`` returns."""

    change_number: str | None
    provider: str
    script: str = Field(description="the bundled script's name, or 'inline'")
    batch: BatchResult
    report_path: str
    child_flow_runs: list[str] = Field(
        default_factory=list, description="the per-account child runs, when fanned out"
    )


# How long a fanned-out run waits for its children beyond their own limits: the time a child
# may sit in the work pool until a worker is free.
FAN_OUT_QUEUE_SECONDS = 3600


class TargetSelectionError(ValueError):
    """The flow was not told (clearly) which servers to run on."""


def choose_script(
    script: str | None, script_name: str | None, interpreter: Interpreter | None
) -> tuple[str, str, Interpreter]:
    """(label, text, interpreter) of the script to run, from inline text or a bundled name."""
    if bool(script) == bool(script_name):
        raise ValueError("give exactly one of `script` (inline text) or `script_name` (bundled)")
    if script_name:
        return script_name, load_script(script_name), interpreter or interpreter_for(script_name)
    assert script is not None
    return "inline", script, interpreter or Interpreter.BASH


def select_targets(
    provider: Provider,
    store: Store,
    *,
    targets: list[Target] | None,
    change_number: str | None,
    change_csv: str | None,
    discovery: DiscoveryFilter | None,
) -> tuple[list[Target], str | None]:
    """The targets to run on and the change they belong to, from exactly one source."""
    given = [
        name
        for name, value in (
            ("targets", targets),
            ("change_csv", change_csv),
            ("discovery", discovery),
        )
        if value is not None
    ]
    if change_number and not given:
        given.append("change_number")
    if len(given) != 1:
        raise TargetSelectionError(
            "give exactly one source of targets: `targets`, `change_number` (a stored change), "
            f"`change_csv` (path or CSV text) or `discovery`; got {given or 'none'}"
        )
    source = given[0]
    if source == "targets":
        assert targets is not None
        return list(targets), change_number and validate_change_number(change_number)
    if source == "change_csv":
        assert change_csv is not None
        spec = load_change_input(change_csv)
        if change_number and validate_change_number(change_number) != spec.change_number:
            raise TargetSelectionError(
                f"change_number {change_number!r} does not match the file's {spec.change_number!r}"
            )
        store.save_change(spec)
        return list(spec.targets), spec.change_number
    if source == "change_number":
        assert change_number is not None
        number = validate_change_number(change_number)
        stored: ChangeSpec | None = store.load_change(number)
        if stored is None:
            raise TargetSelectionError(
                f"change {number} is not stored: give its CSV as `change_csv` first"
            )
        return list(stored.targets), number
    assert discovery is not None
    found = provider.discover_instances(discovery)
    return [i.to_target() for i in found], change_number and validate_change_number(change_number)


def _summary(result: RunScriptResult, run_name: str) -> str:
    batch = result.batch
    lines = [
        f"# run-script: {result.script} ({result.change_number or 'no change'})",
        "",
        f"- flow run: `{run_name}`",
        f"- provider: `{result.provider}`",
        f"- overall: **{batch.status.value}**: {batch.success_count} succeeded, "
        f"{batch.failure_count} did not ({status_counts(batch)})",
    ]
    if result.child_flow_runs:
        lines.append(f"- fanned out per account to: {', '.join(result.child_flow_runs)}")
    lines.append("")
    problems = [r for r in batch.results if not r.status.is_success]
    if problems:
        lines += ["## Needs attention", "", markdown_table(result_rows(problems))]
    lines += ["## Every instance", "", markdown_table(result_rows(batch.results))]
    return "\n".join(lines)


def run_fanned_out(
    selected: list[Target], request_parameters: dict[str, object], timeout_seconds: float
) -> tuple[BatchResult, list[str]]:
    """One child run of this deployment per account; their merged batch and run names."""
    outcomes = run_per_account(
        split_by_account(selected),
        parameters=request_parameters,
        result_type=RunScriptResult,
        timeout_seconds=timeout_seconds,
    )
    return merge_batches(outcomes, lambda r: r.batch), [o.flow_run_name for o in outcomes]


# persist_result: a fanned-out parent reads its children's results back from result storage.
@flow(name="run-script", log_prints=False, persist_result=True)
def run_script(
    script: str | None = None,
    script_name: str | None = None,
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
        script_name: a bundled script such as ``linux/host_facts.sh``.
        interpreter: bash, sh, python or powershell (default from the script).
        timeout_seconds: the script's own execution limit on each server.
        parameters: values the script reads as environment variables (quoted, never spliced).
        targets: servers to run on.
        change_number: a stored change to run on (or the number of ``change_csv``).
        change_csv: a change file (path or CSV text) to store and run on.
        discovery: accounts, regions and tags to find servers by.
        provider: provider block slug, block name, or ``aws``/``local``.
        delivery_timeout_seconds: how long SSM keeps trying to deliver the command.
        max_concurrency: SSM MaxConcurrency (e.g. ``50`` or ``10%``).
        max_errors: SSM MaxErrors (e.g. ``0`` or ``5%``).
        fan_out_per_account: run each account's targets as a child run of this deployment, so
            that the workers of its pool share a large change (needs a deployment).
    """
    logger = get_run_logger()
    label, body, chosen_interpreter = choose_script(script, script_name, interpreter)
    text = render_script(body, parameters or {}, chosen_interpreter)
    chosen = load_provider(provider)
    store = Store.default()
    selected, change = select_targets(
        chosen,
        store,
        targets=targets,
        change_number=change_number,
        change_csv=change_csv,
        discovery=discovery,
    )
    run_name = str(flow_run.name or "local")
    request = ScriptRequest(
        script=text,
        interpreter=chosen_interpreter,
        timeout_seconds=timeout_seconds,
        delivery_timeout_seconds=delivery_timeout_seconds,
        comment=f"{change or 'adhoc'} run-script {run_name}"[:100],
        max_concurrency=max_concurrency,
        max_errors=max_errors,
    )
    logger.info("running %s on %d target(s) through %s", label, len(selected), chosen.name)

    run_id = store.start_run(
        flow_run_id=str(flow_run.id or ""),
        workflow="run-script",
        step=label,
        provider=chosen.name,
        change_number=change,
    )
    children: list[str] = []
    accounts = {t.account_id for t in selected}
    if fan_out_per_account and len(accounts) > 1:
        logger.info("fanning out over %d accounts", len(accounts))
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
        if fan_out_per_account:
            logger.info("one account only: running here instead of fanning out")
        batch = run_on_targets(
            chosen,
            selected,
            request,
            store=store,
            progress_key=artifact_key("run-script-progress"),
        )
        store.record_results(run_id, batch.results)
    store.finish_run(
        run_id,
        status=batch.status.value,
        success_count=batch.success_count,
        failure_count=batch.failure_count,
    )

    filename = f"run_script_{change or 'adhoc'}_{utc_stamp()}.md"
    placeholder = RunScriptResult(
        change_number=change,
        provider=chosen.name,
        script=label,
        batch=batch,
        report_path="",
        child_flow_runs=children,
    )
    summary = _summary(placeholder, run_name)
    report = write_report(Path(get_settings().reports_dir), filename, summary)
    result = placeholder.model_copy(update={"report_path": str(report)})

    publish_results_table(
        artifact_key("run-script-results"), batch, f"{label}: one row per instance"
    )
    publish_markdown(artifact_key("run-script-summary"), summary, f"{label}: summary")
    # A fan-out child's failures reach operators once, in its parent's merged event.
    if batch.failure_count and not is_fan_out_child():
        emit_failure_event(
            FailureKind.RUN_SCRIPT,
            change,
            {
                "instances": len(batch.results),
                "succeeded": batch.success_count,
                "failed": batch.failure_count,
            },
        )
    logger.info("%s: %s; report written to %s", label, status_counts(batch), report)
    return result
