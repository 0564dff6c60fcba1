"""``cloudops history`` and ``cloudops report`` on records the real flows wrote: a change prepped,
patched and checked by ``linux-qc-patching-prep`` and ``linux-qc-patching-post`` on the SSM agent
emulator (the scenario of the post end-to-end test), so the readers meet the payloads the flows
really record."""

from __future__ import annotations

import csv
import io

import pytest

from tests.flows.cli.conftest import Cloudops
from tests.flows.linux_patching.post.test_flow import (  # the post test's scenario builders
    CHANGE,
    KERNEL_AFTER,
    KERNEL_BEFORE,
    STAGED,
    emulated_provider,  # noqa: F401 (fixture)
    prep_patch_and_check,
)
from tests.ssm_emulator import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")


def test_history_and_report_of_a_change_through_prep_and_post(
    ssm_world: SsmWorld, emulated_provider: str, cloudops: Cloudops  # noqa: F811
) -> None:
    change = prep_patch_and_check(ssm_world, emulated_provider)

    history = cloudops("history", CHANGE)
    report = cloudops("report", CHANGE, "--format", "csv")
    print(history.stdout, report.stdout, sep="\n")  # the session an operator sees (pytest -s)

    assert history.exit_code == 0 and report.exit_code == 0, history.output + report.output
    assert "prep: 1 no record, 1 not_applicable, 4 passed" in history.stdout
    assert "post: 1 failed, 1 not_applicable, 3 passed, 1 unreachable" in history.stdout
    rows = {r["instance_id"]: r for r in csv.DictReader(io.StringIO(report.stdout))}
    patched = rows[change.web1.instance_id]
    assert (patched["prep_qc"], patched["staged_kernel"], patched["post"]) == (
        "passed",
        STAGED,
        "passed",
    )
    assert (patched["kernel_before"], patched["kernel_after"]) == (KERNEL_BEFORE, KERNEL_AFTER)
    unpatched = rows[change.web3.instance_id]
    assert unpatched["post"] == "failed"
    assert (
        unpatched["post_reasons"] == f"Kernel mismatch: running {KERNEL_BEFORE}, expected {STAGED}"
    )
    assert rows[change.web4.instance_id]["post"] == "unreachable"
    windows = rows[change.windows.instance_id]
    assert (windows["prep_qc"], windows["post"]) == ("not_applicable", "not_applicable")
    # built after prep, checked by post only: in no version of the change
    late = rows[change.late.instance_id]
    assert (late["in_change"], late["prep_qc"], late["post"]) == ("no", "", "passed")
    assert all(r["window_status"] == "" for r in rows.values())  # no patch window on this branch
