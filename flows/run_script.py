"""Flow ``run-script``: run one script on many servers and report what each one did.

The runbook:
1. Check the parameters: which script, which targets, which provider. Nothing runs on a bad one.
2. Resolve the targets: a list, a change (stored, or a CSV file), or a discovery query.
3. Run the script on them through the provider (pre-check, send, collect: see
   ``flows.execution``), showing progress.
4. Report: a summary and a per-instance table as artifacts, a markdown file, the store.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from blocks import load_provider
from flows.changes import ChangeSpec, load_change_input, validate_change_number
from flows.execution import run_on_targets
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
        "",
    ]
    problems = [r for r in batch.results if not r.status.is_success]
    if problems:
        lines += ["## Needs attention", "", markdown_table(result_rows(problems))]
    lines += ["## Every instance", "", markdown_table(result_rows(batch.results))]
    return "\n".join(lines)


@flow(name="run-script", log_prints=False)
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
    batch = run_on_targets(
        chosen, selected, request, store=store, progress_key=artifact_key("run-script-progress")
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
        change_number=change, provider=chosen.name, script=label, batch=batch, report_path=""
    )
    summary = _summary(placeholder, run_name)
    report = write_report(Path(get_settings().reports_dir), filename, summary)
    result = placeholder.model_copy(update={"report_path": str(report)})

    publish_results_table(
        artifact_key("run-script-results"), batch, f"{label}: one row per instance"
    )
    publish_markdown(artifact_key("run-script-summary"), summary, f"{label}: summary")
    logger.info("%s: %s; report written to %s", label, status_counts(batch), report)
    return result
