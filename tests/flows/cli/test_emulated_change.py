"""``cloudops history`` and ``cloudops report`` on records the real flows wrote on the SSM agent
emulator, so the readers meet the payloads the flows really record: a change prepped by
``linux-qc-patching-prep``, "patched" by the test and checked by ``linux-qc-patching-post`` (the
scenario of the post end-to-end test); a change prepped, patched by
``linux-qc-patching-window`` (really installed and rebooted) and checked by post; and a window
halted with instances it never started."""

from __future__ import annotations

import csv
import io

import pytest

from flows import linux_qc_patching_post, linux_qc_patching_prep, linux_qc_patching_window
from flows.common.runs import WorkflowRun
from flows.linux_patching.window.parameters import WINDOW_WORKFLOW
from flows.linux_patching.window.result import FinalStatus
from flows.linux_patching.window.resume import RecordedWindow
from flows.store import Store
from providers.local import LocalProvider
from tests.flows.cli.conftest import Cloudops
from tests.flows.linux_patching.post.servers import emulated_provider  # noqa: F401 (fixture)
from tests.flows.linux_patching.post.test_flow import (  # the post test's scenario builders
    CHANGE,
    KERNEL_AFTER,
    KERNEL_BEFORE,
    STAGED,
    prep_patch_and_check,
)
from tests.flows.linux_patching.window.conftest import window_provider  # noqa: F401 (fixture)
from tests.flows.linux_patching.window.hosts import (
    DISTROS,
    PLACES,
    Distro,
    HostSpec,
    WindowServer,
    build_server,
    prepped_fleet,
)
from tests.providers.aws.ssm_fixtures import fleet  # noqa: F401 (fixture)
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
    assert all(r["window_status"] == "" for r in rows.values())  # patched without the window


RHEL = DISTROS[Distro.RHEL]
WINDOW_CHANGE = "CHG0013301"


def csv_rows(cloudops: Cloudops, change: str) -> dict[str, dict[str, str]]:
    made = cloudops("report", change, "--format", "csv")
    assert made.exit_code == 0, made.output
    return {r["name"]: r for r in csv.DictReader(io.StringIO(made.stdout))}


def change_file(change: str, servers: dict[str, WindowServer]) -> str:
    rows = [
        f"{change},{s.instance_id},{s.instance.account_id},{s.instance.region},linux,{name}"
        for name, s in servers.items()
    ]
    return "change_number,instance_id,account_id,region,platform,name\n" + "\n".join(rows) + "\n"


def test_history_and_report_of_a_change_through_prep_the_window_and_post(
    ssm_world: SsmWorld, window_provider: str, cloudops: Cloudops  # noqa: F811
) -> None:
    specs = {
        **{f"rhel-0{n}": HostSpec(Distro.RHEL) for n in range(1, 4)},
        "rhel-04": HostSpec(Distro.RHEL, install_fails=True),
        "rhel-05": HostSpec(Distro.RHEL, boot_full=True),
    }
    servers = {
        name: build_server(ssm_world, *PLACES[i % len(PLACES)], name, spec)
        for i, (name, spec) in enumerate(specs.items())
    }
    prep = linux_qc_patching_prep(
        change_csv=change_file(WINDOW_CHANGE, servers),
        provider=window_provider,
        kernel_choices=RHEL.target,
    )
    assert len(prep.staged_kernels()) == 5
    window = linux_qc_patching_window(
        WINDOW_CHANGE, provider=window_provider, max_failures="1", require_approval=False
    )
    assert window.status_counts() == {"patched": 3, "refused_preflight": 1, "install_failed": 1}

    after_window = csv_rows(cloudops, WINDOW_CHANGE)
    history = cloudops("history", WINDOW_CHANGE)
    print(history.stdout)  # what an operator sees once the window ended (pytest -s)

    assert "window: 1 install_failed, 3 patched, 1 refused_preflight" in history.stdout
    for name in ("rhel-01", "rhel-02", "rhel-03"):
        row = after_window[name]
        assert (row["prep_qc"], row["staged_kernel"], row["window_status"]) == (
            "passed",
            RHEL.target,
            "patched",
        )
        assert (row["kernel_before"], row["kernel_after"]) == (
            RHEL.running,
            RHEL.target + ".x86_64",
        )
    failed = after_window["rhel-04"]
    assert failed["window_status"] == "install_failed"
    assert "Transaction test error" in failed["window_reasons"]
    assert failed["kernel_after"] == RHEL.running  # never rebooted: still its old kernel
    refused = after_window["rhel-05"]
    assert refused["window_status"] == "refused_preflight"
    assert "/boot has 19 MB free" in refused["window_reasons"]

    linux_qc_patching_post(WINDOW_CHANGE, provider=window_provider)
    after_post = csv_rows(cloudops, WINDOW_CHANGE)
    one = cloudops("history", WINDOW_CHANGE, "--instance", servers["rhel-01"].instance_id)

    assert [after_post[f"rhel-0{n}"]["post"] for n in range(1, 6)] == [
        "passed",
        "passed",
        "passed",
        "failed",
        "failed",
    ]
    # post checks a server again; what the window did to it stays in its column
    assert [after_post[f"rhel-0{n}"]["window_status"] for n in range(1, 6)] == [
        after_window[f"rhel-0{n}"]["window_status"] for n in range(1, 6)
    ]
    steps = {
        cells[2]: cells[4]
        for cells in (
            [c.strip() for c in line.split("│")[1:-1]]
            for line in one.stdout.split("Executions on", 1)[1].splitlines()
            if "linux-qc-patching" in line
        )
    }
    assert steps["initial_qc"] == "passed"
    assert steps["preflight"] == "success"  # ready: nothing final yet
    wave = next(step for step in steps if step.startswith("wave-") and "post" not in step)
    assert steps[wave] == "patched"
    assert steps[f"{wave}-post"] == "passed"  # the wave's post checks, read as post's report
    assert steps["post_qc"] == "passed"


def test_a_halted_window_records_the_instances_it_never_started(
    ssm_world: SsmWorld, window_provider: str, cloudops: Cloudops  # noqa: F811
) -> None:
    change = "CHG0013302"
    failing = {f"rhel-0{n}": HostSpec(Distro.RHEL, install_fails=True) for n in range(1, 5)}
    prepped_fleet(ssm_world, change, failing)

    state = linux_qc_patching_window(
        change,
        provider=window_provider,
        on_halt="fail",
        require_approval=False,
        return_state=True,
    )

    assert state.is_failed()  # the canary failed: the budget of 0 is spent
    rows = csv_rows(cloudops, change)
    statuses = sorted(r["window_status"] for r in rows.values())
    assert statuses == ["install_failed", *["not_started"] * 3]
    for row in rows.values():
        if row["window_status"] == "not_started":
            assert row["window_reasons"].startswith("halted: the error budget is spent")
    history = cloudops("history", change)
    assert "window: 1 install_failed, 3 not_started" in history.stdout
    # A retry of this flow run would find its preflight and wave 1, and no wave in the
    # instances it never started: it would start their waves.
    store = Store.default()
    [recorded] = [r for r in store.runs_for_change(change) if r.step == "not-started"]
    assert (recorded.workflow, recorded.success_count, recorded.failure_count) == (
        WINDOW_WORKFLOW,
        0,
        3,
    )
    again = RecordedWindow.load(
        WorkflowRun(
            workflow=WINDOW_WORKFLOW,
            provider=LocalProvider(),
            store=store,
            change=change,
            flow_run_id=recorded.flow_run_id,
            run_name="retried",
        )
    )
    assert again.preflight is not None and len(again.preflight) == 4
    assert list(again.waves) == ["wave-1"]
    assert [o.status for o in again.waves["wave-1"].outcomes] == [FinalStatus.INSTALL_FAILED]
