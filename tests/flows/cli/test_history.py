"""``cloudops history``: every run of a change and the latest verdict per instance in prep, the
patch window and post, read from records written as the flows write them."""

from __future__ import annotations

from flows.linux_patching.window.preflight import PreflightVerdict
from flows.linux_patching.window.result import FinalStatus
from flows.store import Store
from providers.base import ResultStatus
from tests.flows.cli.change_records import (
    CHANGE,
    STAGED,
    ChangeRecords,
    change,
    checked,
    instance,
    outcome,
    qc,
    through_prep_window_and_post,
)
from tests.flows.cli.conftest import Cloudops


def row_of(output: str, instance_id: str) -> list[str]:
    """The cells of the row of ``instance_id`` in the table of latest verdicts."""
    table = output.split("Latest verdict", 1)[1]
    line = next(ln for ln in table.splitlines() if ln.startswith("│") and instance_id in ln)
    return [cell.strip() for cell in line.split("│")[1:-1]]


def verdict_columns(output: str) -> list[str]:
    line = next(ln for ln in output.splitlines() if ln.startswith("┃ instance"))
    return [cell.strip() for cell in line.split("┃")[1:-1]]


def test_the_latest_verdict_of_each_instance_across_prep_window_and_post(
    cloudops: Cloudops, store: Store
) -> None:
    through_prep_window_and_post(store)

    shown = cloudops("history", CHANGE)

    assert shown.exit_code == 0, shown.output
    columns = ["prep QC", "staged kernel", "window", "post"]
    header = verdict_columns(shown.stdout)
    cells = {
        n: dict(zip(header, row_of(shown.stdout, instance(n)), strict=True)) for n in range(1, 6)
    }
    assert [cells[1][c] for c in columns] == ["passed", STAGED, "patched", "passed"]
    # web-02 failed the first prep, passed the second: the latest prep counts
    assert [cells[2][c] for c in columns] == ["passed", STAGED, "install_failed", ""]
    assert "window: install_failed: dnf: no space left on /boot" in cells[2]["needs attention"]
    assert [cells[3][c] for c in columns] == ["passed", STAGED, "patched", "failed"]
    assert "post: failed: running kernel is not the target" in cells[3]["needs attention"]
    assert [cells[4][c] for c in columns] == ["unreachable", "", "refused_preflight", ""]
    assert [cells[5][c] for c in columns] == ["not_applicable", "", "", "not_applicable"]
    assert "prep: 4 passed" not in shown.stdout  # counts are per latest verdict
    assert "prep: 1 not_applicable, 3 passed, 1 unreachable" in shown.stdout


def test_runs_say_who_approved_and_decisions_are_listed(cloudops: Cloudops, store: Store) -> None:
    records = through_prep_window_and_post(store)

    shown = cloudops("history", CHANGE)

    runs = shown.stdout.split("Runs (", 1)[1].split("Decisions (", 1)[0]
    steps = [
        [c.strip() for c in ln.split("│")[1:-1]]
        for ln in runs.splitlines()
        if "linux-qc-patching" in ln
    ]
    assert [(s[1], s[2]) for s in steps] == [
        ("linux-qc-patching-prep", "initial_qc"),
        ("linux-qc-patching-prep", "initial_qc"),
        ("linux-qc-patching-prep", "stage_kernels"),
        ("linux-qc-patching-window", "preflight"),
        ("linux-qc-patching-window", "wave-1"),
        ("linux-qc-patching-post", "post_qc"),
    ]
    window_steps = [s for s in steps if s[1] == "linux-qc-patching-window"]
    assert {s[6] for s in window_steps} == {"Jane Doe"}
    assert {s[7] for s in window_steps} == {records.flow_runs["window"]}
    assert steps[0][4:6] == ["3", "2"]  # first prep: 3 commands ran, 2 not (offline, Windows)
    decisions = shown.stdout.split("Decisions (2)", 1)[1]
    assert "approval" in decisions and "Jane Doe" in decisions
    assert "halt" in decisions and "continue" in decisions and "budget is 2" in decisions


def test_one_instance_history_lists_its_executions(cloudops: Cloudops, store: Store) -> None:
    through_prep_window_and_post(store)

    shown = cloudops("history", CHANGE, "--instance", instance(2))

    assert shown.exit_code == 0, shown.output
    executions = shown.stdout.split("Executions on", 1)[1]
    lines = [ln for ln in executions.splitlines() if "linux-qc-patching" in ln]
    assert len(lines) == 5  # prep twice, staging, the window's preflight and wave 1
    assert "failed: CrowdStrike is not running" in lines[0]
    assert "preflight" in lines[3] and "success" in lines[3]  # ready: nothing final yet
    assert "install_failed: dnf: no space left on /boot" in lines[4]
    assert instance(1) not in shown.stdout
    unknown = cloudops("history", CHANGE, "--instance", "i-0ffffffffffffffff")
    assert unknown.exit_code == 1
    assert "neither in change" in unknown.stderr


def test_payloads_it_does_not_know_are_judged_from_the_status(
    cloudops: Cloudops, store: Store
) -> None:
    store.save_change(change(1, 2, 3))
    records = ChangeRecords(store)
    records.prep("prep", {1: {"hostname_v9": "web-01", "passed": "maybe"}, 2: qc(True, "web-02")})
    rolled_back = {**outcome(1, FinalStatus.PATCHED), "status": "rolled_back"}
    records.window(
        "window",
        {
            "preflight": {2: checked(2, PreflightVerdict.READY), 3: {"verdict": "maybe"}},
            "wave-1": {1: rolled_back},
            "rollback": {2: {"from": "a later release"}},
        },
        unreached={3: ResultStatus.OFFLINE},
    )
    records.post("post", {1: {"shape": "from a later release"}, 2: ResultStatus.FAILED})

    shown = cloudops("history", CHANGE, "--instance", instance(1))
    table = cloudops("history", CHANGE)

    assert shown.exit_code == 0, shown.output
    assert "qc_error" in shown.stdout and "does not read" in shown.stdout
    [wave] = [ln for ln in shown.stdout.splitlines() if "wave-1" in ln]
    assert "unknown" in wave and "does not read" in wave and "rolled_back" not in wave
    assert row_of(table.stdout, instance(1))[6] == "unknown"
    assert row_of(table.stdout, instance(2))[6] == ""  # ready, then a step it does not know
    assert row_of(table.stdout, instance(2))[7] == "check_error"
    assert row_of(table.stdout, instance(3))[6] == "unreachable"  # judged from its status


def test_text_from_servers_cannot_restyle_or_rewrite_the_terminal(
    cloudops: Cloudops, store: Store
) -> None:
    store.save_change(change(1))
    hostile = "[bold red]all fine[/bold red] \x1b[2J\x1b]0;pwned\x07 | done"
    ChangeRecords(store).prep("prep", {1: qc(False, "web-01", hostile)})

    shown = cloudops("history", CHANGE)

    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "[bold red]all fine[/bold red]" in shown.stdout  # shown as text, not as markup


def test_an_unknown_change_or_an_unreachable_store_is_an_error_not_a_traceback(
    cloudops: Cloudops, store: Store, monkeypatch
) -> None:
    unknown = cloudops("history", "CHG0000404")
    assert unknown.exit_code == 1
    assert "holds no change CHG0000404" in unknown.stderr

    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://ops:s3cret-pw@127.0.0.1:9/cloudops")
    down = cloudops("history", CHANGE)
    assert down.exit_code == 1
    assert "record store: cannot use the record store postgresql+psycopg://ops:***@" in down.stderr
    assert "s3cret-pw" not in down.output
    assert "Traceback" not in down.output
