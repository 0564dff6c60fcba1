"""Runs are named after what they do, and their final state says whether a person is needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

from flows import linux_qc_patching_prep, run_script, sft_fixer, validate_credentials
from flows.common.naming import NEEDS_ATTENTION, run_title
from providers.local import LocalProvider

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

LOCALHOST = LocalProvider.TARGET


def flow_run_name(state) -> str:  # type: ignore[no-untyped-def]
    with get_client(sync_client=True) as client:
        return str(client.read_flow_run(state.state_details.flow_run_id).name)


def test_a_script_that_succeeds_everywhere_completes_and_says_so() -> None:
    state = run_script(script="true", targets=[LOCALHOST], provider="local", return_state=True)

    assert state.type is StateType.COMPLETED and state.name == "Completed"
    assert state.message == "inline: 1 of 1 succeeded (1 success)"
    assert flow_run_name(state) == "run-script inline adhoc"


def test_a_script_that_fails_somewhere_ends_needing_attention_with_its_counts() -> None:
    state = run_script(
        script_name="linux/host_facts.sh",
        targets=[LOCALHOST, LOCALHOST.model_copy(update={"instance_id": "i-0123456789abcdef0"})],
        change_number="CHG0012345",
        provider="local",
        return_state=True,
    )

    # Completed-type: retries and automations on failed runs behave; the name says it.
    assert state.type is StateType.COMPLETED and state.name == NEEDS_ATTENTION
    assert state.message == "linux/host_facts.sh: 1 of 2 succeeded (1 error, 1 success)"
    assert state.result().batch.failure_count == 1  # the caller still gets the result
    assert flow_run_name(state) == "run-script host_facts.sh CHG0012345"


def test_a_run_given_a_change_file_is_renamed_once_the_file_is_read() -> None:
    csv = (
        "change_number,instance_id,account_id,region\n"
        "CHG0099,i-0123456789abcdef0,111122223333,us-east-1\n"
    )
    state = run_script(script="true", change_csv=csv, provider="local", return_state=True)

    assert flow_run_name(state) == "run-script inline CHG0099"


def test_a_prep_run_whose_qc_fails_is_named_by_its_change_and_needs_attention(
    tmp_path: Path,
) -> None:
    state = linux_qc_patching_prep(
        change_number="CHG0099",
        instances=[LOCALHOST],
        provider="local",
        workdir=str(tmp_path),
        steps=["initial_qc"],
        return_state=True,
    )

    assert flow_run_name(state) == "prep CHG0099"
    # This worker runs no CrowdStrike: its QC fails, which is a finding, not a broken run.
    assert state.type is StateType.COMPLETED and state.name == NEEDS_ATTENTION
    assert state.message is not None and "1 instance(s): 1 failed" in state.message


def test_sft_and_credential_runs_are_named_after_what_they_do() -> None:
    detect = sft_fixer(instances=[LOCALHOST], provider="local", return_state=True)
    check = validate_credentials(environments=["com"], provider="local", return_state=True)

    assert flow_run_name(detect) == "sft-fixer detect 1 instance(s)"
    assert flow_run_name(check) == "credentials com"


def test_a_title_is_one_line_without_empty_parts() -> None:
    assert run_title("post", None, "CHG1\n\x1b[31mred") == "post CHG1 red"
