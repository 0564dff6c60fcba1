"""The README's operator path, for real: a Prefect server on PostgreSQL, the blocks registered,
the ``cloudops`` process pool, ``prefect deploy --all`` from ``prefect.yaml``, a process worker,
runs triggered with ``prefect deployment run ... --param ...``, and their outcome read back
through the API: final states, artifacts, the QC failure event, the daily schedule.

Everything runs on the ``local`` provider (this machine is the one server), so no AWS is
involved. QC fails here (no CrowdStrike on a test machine): the prep run must still complete,
since a flow reports failing servers instead of crashing on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterName,
)
from prefect.client.schemas.objects import Artifact, FlowRun

from tests.deploy.conftest import PrefectStack, stop_process_group

RUN_SECONDS = 300
CHANGE = "CHG0042E2E"
LOCALHOST = {"instance_id": "localhost", "account_id": "local", "region": "local"}


def artifacts_of(stack: PrefectStack, flow_run_id: UUID) -> dict[str, Artifact]:
    with stack.client() as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found if a.key}


def table_rows(artifact: Artifact) -> list[dict[str, object]]:
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else list(data or [])


@dataclass(frozen=True)
class OperatorRuns:
    """The two runs an operator triggered from the CLI, once final."""

    run_script: FlowRun
    prep: FlowRun
    window_dry_run: FlowRun
    window_refused: FlowRun
    workdir: Path


@pytest.fixture(scope="module")
def operator_runs(
    prefect_stack: PrefectStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorRuns]:
    """A process worker, and ``run-script`` and ``linux-qc-patching-prep`` triggered through
    ``prefect deployment run`` on the local provider and waited for."""
    worker = prefect_stack.start_worker("e2e-worker", limit=2)
    workdir = tmp_path_factory.mktemp("servers-root")
    try:
        run_script_id = prefect_stack.trigger(
            "run-script/on-demand",
            script_name="linux/host_facts.sh",
            provider="local",
            targets=[LOCALHOST],
        )
        prep_id = prefect_stack.trigger(
            "linux-qc-patching-prep/on-demand",
            change_number=CHANGE,
            provider="local",
            instances=[LOCALHOST],
            workdir=str(workdir),
            choose_in_ui=False,
        )
        prep = prefect_stack.wait_for_flow_run(prep_id, RUN_SECONDS)
        # The patch window of the same change on this machine: a dry run shows the preflight
        # and the waves; a real run is refused, since the local provider never reboots.
        window = {
            "change_number": CHANGE,
            "provider": "local",
            "instances": [LOCALHOST],
            "workdir": str(workdir),
        }
        dry_run_id = prefect_stack.trigger(
            "linux-qc-patching-window/on-demand", **window, dry_run=True
        )
        refused_id = prefect_stack.trigger("linux-qc-patching-window/on-demand", **window)
        yield OperatorRuns(
            run_script=prefect_stack.wait_for_flow_run(run_script_id, RUN_SECONDS),
            prep=prep,
            window_dry_run=prefect_stack.wait_for_flow_run(dry_run_id, RUN_SECONDS),
            window_refused=prefect_stack.wait_for_flow_run(refused_id, RUN_SECONDS),
            workdir=workdir,
        )
    finally:
        stop_process_group(worker)
        prefect_stack.processes.remove(worker)


def test_runs_triggered_from_the_cli_complete_with_their_parameters(
    prefect_stack: PrefectStack, operator_runs: OperatorRuns
) -> None:
    for run in (operator_runs.run_script, operator_runs.prep):
        assert run.state is not None and run.state.is_completed(), (
            run.name,
            run.state,
            prefect_stack.log_tail(),
        )
    # The CLI parameters reached the runs as typed values, with the deployment's defaults.
    assert operator_runs.run_script.parameters["timeout_seconds"] == 300
    assert operator_runs.prep.parameters["instances"] == [LOCALHOST]
    assert operator_runs.prep.parameters["choose_in_ui"] is False


def test_run_script_artifacts_read_back_through_the_api(
    prefect_stack: PrefectStack, operator_runs: OperatorRuns
) -> None:
    artifacts = artifacts_of(prefect_stack, operator_runs.run_script.id)
    rows = table_rows(artifacts["run-script-results"])
    assert [(r["instance"], r["status"]) for r in rows] == [("localhost", "success")]
    summary = str(artifacts["run-script-summary"].data)
    assert "linux/host_facts.sh" in summary and "1 succeeded" in summary


def test_prep_reports_the_failed_qc_in_artifacts_and_files(
    prefect_stack: PrefectStack, operator_runs: OperatorRuns
) -> None:
    # QC ran on this machine, failed on CrowdStrike, and the run said so instead of crashing.
    artifacts = artifacts_of(prefect_stack, operator_runs.prep.id)
    key = f"linux-qc-prep-{CHANGE.lower()}"
    assert {f"{key}-qc", f"{key}-qc-results", f"{key}-kernel-groups"} <= set(artifacts)
    (qc_row,) = table_rows(artifacts[f"{key}-qc"])
    assert qc_row["instance"] == "localhost"
    assert qc_row["verdict"] == "failed"
    assert "crowdstrike" in str(qc_row["reasons"]).lower()
    assert (operator_runs.workdir / CHANGE / "qc_report.txt").is_file()
    reports = sorted((prefect_stack.data_dir / "reports").glob(f"qc_results_{CHANGE}_*.md"))
    assert reports, "the prep run wrote no qc_results report on the worker"


def test_the_qc_failure_reaches_the_event_feed(
    prefect_stack: PrefectStack, operator_runs: OperatorRuns
) -> None:
    (event,) = prefect_stack.events("cloudops.qc.failed", f"cloudops.change.{CHANGE}")
    assert event.payload["change_number"] == CHANGE
    assert event.payload["counts"].get("failed") == 1
    assert f"prefect.flow-run.{operator_runs.prep.id}" in {r.id for r in event.related}


def test_the_patch_window_dry_runs_on_this_machine_and_never_installs_here(
    prefect_stack: PrefectStack, operator_runs: OperatorRuns
) -> None:
    dry_run = operator_runs.window_dry_run
    assert dry_run.state is not None and dry_run.state.is_completed(), prefect_stack.log_tail()
    assert dry_run.parameters["require_approval"] is True  # the deployment's default
    artifacts = artifacts_of(prefect_stack, dry_run.id)
    key = f"linux-qc-window-{CHANGE.lower()}"
    (row,) = table_rows(artifacts[f"{key}-preflight"])
    assert (row["instance"], row["verdict"]) == ("localhost", "refused")
    assert "prep QC failed" in str(row["reasons"])  # no CrowdStrike on a test machine
    assert "(dry run: nothing installed)" in str(artifacts[f"{key}-summary"].data)
    assert not (operator_runs.workdir / CHANGE / "window").exists()

    refused = operator_runs.window_refused
    assert refused.state is not None and refused.state.is_failed()
    assert "never reboots it): run with dry_run=true" in (refused.state.message or "")


def test_every_flow_is_deployed_and_credentials_are_checked_daily(
    prefect_stack: PrefectStack,
) -> None:
    with prefect_stack.client() as client:
        (daily,) = client.read_deployments(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["daily"]))
        )
        deployed = {d.entrypoint for d in client.read_deployments()}
    assert daily.schedules and daily.schedules[0].schedule.cron == "0 6 * * *"
    assert {
        "flows.credentials.flow:validate_credentials",
        "flows.script_run.flow:run_script",
        "flows.linux_patching.prep.flow:linux_qc_patching_prep",
        "flows.linux_patching.post.flow:linux_qc_patching_post",
        "flows.linux_patching.window.flow:linux_qc_patching_window",
        "flows.sft.flow:sft_fixer",
    } <= deployed
