"""The window's error budget on the SSM emulator: over budget no new wave starts, and the run
pauses for a person (continue or abort, answered through Prefect's API as the UI does) or fails;
and no wave starts after window_end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker

from flows import linux_qc_patching_window
from flows.linux_patching.window.flow import WindowHaltedError
from flows.linux_patching.window.result import FinalStatus, WindowResult
from flows.store import Store
from tests.flows.linux_patching.window.hosts import Distro, HostSpec, WindowServer, prepped_fleet
from tests.flows.linux_patching.window.paused import FlowInThread, answer, logs_of, wait_for_pause
from tests.ssm_emulator import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")


def seven(ubuntu: HostSpec) -> dict[str, HostSpec]:
    """Four RHEL, two AL2023 and one Ubuntu server: the Ubuntu one is its group's canary."""
    return {
        **{f"rhel-{n}": HostSpec(Distro.RHEL) for n in range(1, 5)},
        **{f"al-{n}": HostSpec(Distro.AL2023) for n in range(1, 3)},
        "ubuntu-1": ubuntu,
    }


def statuses(servers: dict[str, WindowServer], result: WindowResult) -> dict[str, FinalStatus]:
    names = {s.instance_id: name for name, s in servers.items()}
    return {names[i.instance_id]: i.status for i in result.instances}


def events() -> dict[str, dict]:
    EventsWorker.instance().drain()
    assert AssertingEventsClient.last is not None
    return {e.event: e.payload for e in AssertingEventsClient.last.events}


@pytest.mark.usefixtures("asserting_events_worker")
def test_approval_then_a_halt_that_a_person_continues(
    ssm_world: SsmWorld, window_provider: str
) -> None:
    change = "CHG0013101"
    servers = prepped_fleet(ssm_world, change, seven(HostSpec(Distro.UBUNTU, install_fails=True)))
    run = FlowInThread(
        lambda: linux_qc_patching_window(
            change, provider=window_provider, wave_size="2", max_failures="0"
        )
    ).start()

    approval = wait_for_pause(change, "window-approval")
    assert not ssm_world.reboots, "nothing is installed before the approval"
    answer(approval, approver="jdoe", comment="CAB-7781 approved")
    halted = wait_for_pause(change, "window-halt-1")
    # The canary's failure spent the budget: the next wave waits for a person.
    assert sum(ssm_world.reboots.values()) == 2
    assert events()["cloudops.window.halted"]["counts"]["install_failed"] == 1
    answer(halted, decision="continue", approver="asmith", reason="known repo mirror issue")
    result: WindowResult = run.result()

    assert statuses(servers, result) == {
        **{name: FinalStatus.PATCHED for name in servers if name != "ubuntu-1"},
        "ubuntu-1": FinalStatus.INSTALL_FAILED,
    }
    assert result.halted and not result.aborted
    assert [(d.kind, d.decision, d.approver) for d in result.decisions] == [
        ("approval", "approved", "jdoe"),
        ("halt", "continue", "asmith"),
    ]
    stored = Store.default().decisions_for_change(change)
    assert [(d.decision, d.reason) for d in stored] == [
        ("approved", "CAB-7781 approved"),
        ("continue", "known repo mirror issue"),
    ]
    report = Path(result.report_path).read_text()
    assert "jdoe" in report and "asmith" in report and "known repo mirror issue" in report
    # The log says where to answer and how to answer from a terminal.
    said = "\n".join(logs_of(halted))
    assert f"cloudops resume {halted} --decision continue|abort" in said
    assert f"/runs/flow-run/{halted}" in said


def test_a_person_aborts_and_the_rest_is_not_started(
    ssm_world: SsmWorld, window_provider: str
) -> None:
    change = "CHG0013102"
    servers = prepped_fleet(ssm_world, change, seven(HostSpec(Distro.UBUNTU, install_fails=True)))
    run = FlowInThread(
        lambda: linux_qc_patching_window(
            change, provider=window_provider, wave_size="2", require_approval=False
        )
    ).start()

    halted = wait_for_pause(change, "window-halt-1")
    answer(halted, decision="abort", approver="asmith", reason="stop: investigate the canary")
    result: WindowResult = run.result()

    by_name = statuses(servers, result)
    canary = [n for n, s in by_name.items() if s is not FinalStatus.NOT_STARTED]
    assert sorted(by_name[n] for n in canary) == [
        FinalStatus.INSTALL_FAILED,
        FinalStatus.PATCHED,
        FinalStatus.PATCHED,
    ]
    assert result.aborted and len(result.by_status(FinalStatus.NOT_STARTED)) == 4
    for outcome in result.by_status(FinalStatus.NOT_STARTED):
        assert outcome.reasons == [
            "aborted by asmith once the error budget was spent: stop: investigate the canary"
        ]
        assert ssm_world.reboots[outcome.instance_id] == 0
    assert [w.state for w in result.waves] == ["done", "not started", "not started"]


@pytest.mark.usefixtures("asserting_events_worker")
def test_on_halt_fail_fails_the_run_once_an_agent_does_not_come_back(
    ssm_world: SsmWorld, window_provider: str, data_dir: Path
) -> None:
    change = "CHG0013103"
    servers = prepped_fleet(ssm_world, change, seven(HostSpec(Distro.UBUNTU)))
    ssm_world.agent_never_returns(servers["ubuntu-1"].instance_id)

    state = linux_qc_patching_window(
        change,
        provider=window_provider,
        wave_size="2",
        on_halt="fail",
        require_approval=False,
        install_timeout_seconds=10,
        reboot_timeout_seconds=30,
        return_state=True,
    )

    assert state.is_failed()
    with pytest.raises(WindowHaltedError, match="on_halt is fail"):
        state.result()
    store = Store.default()
    [wave1] = [r for r in store.runs_for_change(change) if r.step == "wave-1"]
    recorded = {e.instance_id: e.parsed or {} for e in store.executions(wave1.id)}
    lost = recorded[servers["ubuntu-1"].instance_id]
    assert lost["status"] == "reboot_timed_out"
    assert "did not come back within 30 s" in lost["reasons"][0]
    assert sorted(p["status"] for p in recorded.values()) == [
        "patched",
        "patched",
        "reboot_timed_out",
    ]
    sent = events()
    assert sent["cloudops.window.halted"]["counts"]["reboot_timed_out"] == 1
    assert sent["cloudops.window.failed"]["counts"]["not_started"] == 4
    # It failed after reporting: the report file says what happened.
    [report] = (data_dir / "reports").glob(f"window_report_{change}_*.md")
    assert "reboot_timed_out" in report.read_text()


def test_no_wave_starts_after_window_end(ssm_world: SsmWorld, window_provider: str) -> None:
    change = "CHG0013104"
    end = datetime.now(UTC) + timedelta(seconds=20)
    # The canary's installs run until the window has closed; the next wave must not start.
    slow = {
        name: HostSpec(spec.distro, install_sleeps_until=end.timestamp())
        for name, spec in seven(HostSpec(Distro.UBUNTU)).items()
    }
    servers = prepped_fleet(ssm_world, change, slow)

    result = linux_qc_patching_window(
        change,
        provider=window_provider,
        wave_size="2",
        require_approval=False,
        window_end=end,
    )

    assert result.window_closed
    by_name = statuses(servers, result)
    assert sorted(by_name.values()).count(FinalStatus.PATCHED) == 3  # the canary
    not_started = result.by_status(FinalStatus.NOT_STARTED)
    assert len(not_started) == 4
    assert not_started[0].reasons == [
        f"window_end {end.astimezone(UTC).isoformat()} passed before wave 2 could start"
    ]
    assert all(ssm_world.reboots[o.instance_id] == 0 for o in not_started)
