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
from pathlib import Path
from uuid import UUID

from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterName,
)
from prefect.client.schemas.objects import Artifact

from tests.deploy.conftest import PrefectStack

RUN_SECONDS = 300
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


def test_operator_path_deploys_runs_from_the_cli_and_reads_back_artifacts(
    prefect_stack: PrefectStack, start_worker, tmp_path: Path
) -> None:
    start_worker("e2e-worker", 2)
    workdir = tmp_path / "servers-root"
    workdir.mkdir()

    run_script_id = prefect_stack.trigger(
        "run-script/on-demand",
        script_name="linux/host_facts.sh",
        provider="local",
        targets=[LOCALHOST],
    )
    prep_id = prefect_stack.trigger(
        "linux-qc-patching-prep/on-demand",
        change_number="CHG0042E2E",
        provider="local",
        instances=[LOCALHOST],
        workdir=str(workdir),
        choose_in_ui=False,
    )

    script_run = prefect_stack.wait_for_flow_run(run_script_id, RUN_SECONDS)
    prep_run = prefect_stack.wait_for_flow_run(prep_id, RUN_SECONDS)
    assert script_run.state is not None and script_run.state.is_completed(), (
        script_run.state,
        prefect_stack.log_tail(),
    )
    assert prep_run.state is not None and prep_run.state.is_completed(), (
        prep_run.state,
        prefect_stack.log_tail(),
    )
    # The CLI parameters reached the runs as typed values, through the deployment defaults.
    assert script_run.parameters["timeout_seconds"] == 300
    assert prep_run.parameters["instances"] == [LOCALHOST]

    # run-script: the per-instance table and the summary, as a person opens them in the UI.
    script_artifacts = artifacts_of(prefect_stack, run_script_id)
    rows = table_rows(script_artifacts["run-script-results"])
    assert [(r["instance"], r["status"]) for r in rows] == [("localhost", "success")]
    summary = str(script_artifacts["run-script-summary"].data)
    assert "linux/host_facts.sh" in summary and "1 succeeded" in summary

    # prep: QC ran on this machine, failed on CrowdStrike, and said so in its tables and reports.
    prep_artifacts = artifacts_of(prefect_stack, prep_id)
    assert {
        "linux-qc-prep-chg0042e2e-qc",
        "linux-qc-prep-chg0042e2e-qc-results",
        "linux-qc-prep-chg0042e2e-kernel-groups",
    } <= set(prep_artifacts)
    (qc_row,) = table_rows(prep_artifacts["linux-qc-prep-chg0042e2e-qc"])
    assert qc_row["instance"] == "localhost"
    assert qc_row["verdict"] == "failed"
    assert "crowdstrike" in str(qc_row["reasons"]).lower()
    assert (workdir / "CHG0042E2E" / "qc_report.txt").is_file()
    reports = sorted((prefect_stack.data_dir / "reports").glob("qc_results_CHG0042E2E_*.md"))
    assert reports, "the prep run wrote no qc_results report on the worker"

    # The QC failure reached the event feed, for automations to act on.
    (event,) = prefect_stack.events("cloudops.qc.failed", "cloudops.change.CHG0042E2E")
    assert event.payload["change_number"] == "CHG0042E2E"
    assert event.payload["counts"].get("failed") == 1
    assert f"prefect.flow-run.{prep_id}" in {r.id for r in event.related}

    # The daily credential check is scheduled (UTC cron), and every flow is deployed.
    with prefect_stack.client() as client:
        deployments = client.read_deployments(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["daily"]))
        )
        (daily,) = deployments
        assert daily.schedules and daily.schedules[0].schedule.cron == "0 6 * * *"
        deployed = {d.entrypoint for d in client.read_deployments()}
    assert {
        "flows.auth:validate_credentials",
        "flows.run_script:run_script",
        "flows.linux_qc_patching_prep:linux_qc_patching_prep",
        "flows.linux_qc_patching_post:linux_qc_patching_post",
        "flows.sft_fixer:sft_fixer",
    } <= deployed
