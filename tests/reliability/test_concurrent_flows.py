"""Two ``run-script`` flows at the same time, on two changes and on the same change, with the
store on SQLite and on PostgreSQL: no record lost, none attributed to the other run.

Each flow run is its own process, as a worker runs it (two flow runs on one worker, or on two),
reaching the SSM emulator over HTTP. Both save their change from a CSV, send, collect and
record at the same time; the agents wait 2 s before picking a command up, so the runs surely
overlap, and the test checks in the store that they did. Each instance prints its own id and
each command's ``Comment`` names its flow run, so an execution recorded under the wrong run,
instance or command shows.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun

from flows.store import Store
from flows.store.records import RunRecord
from providers.base import Target
from tests.reliability.figures import Figures
from tests.reliability.fleet import PRINT_OWN_ID, build_fleet, times_run
from tests.reliability.flow_processes import create_run_script_run, start_flow_run, wait_for_exit
from tests.ssm_emulator import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

PER_CHANGE = 40
RUN_SECONDS = 120


def _csv(change: str, targets: list[Target]) -> str:
    rows = [f"{change},{t.instance_id},{t.account_id},{t.region}" for t in targets]
    return "\n".join(["change_number,instance_id,account_id,region", *rows]) + "\n"


def _run_together(provider: str, csvs: list[str], logs: Path) -> list[FlowRun]:
    """One flow run process per change file, started together; the finished flow runs."""
    flow_runs = [
        create_run_script_run(
            {"script": PRINT_OWN_ID, "change_csv": csv, "provider": provider, "timeout_seconds": 60}
        )
        for csv in csvs
    ]
    processes = [
        (start_flow_run(run.id, logs / f"{n}.log"), logs / f"{n}.log")
        for n, run in enumerate(flow_runs)
    ]
    for process, log in processes:
        wait_for_exit(process, log, timeout=RUN_SECONDS)
    with get_client(sync_client=True) as client:
        return [client.read_flow_run(run.id) for run in flow_runs]


def _assert_overlapped(runs: list[RunRecord]) -> None:
    """The two runs were in the store at the same time: the test did not run them in turn."""
    first, second = runs
    assert first.ended_at is not None and second.ended_at is not None
    assert first.started_at < second.ended_at and second.started_at < first.ended_at


def _database(url: str) -> str:
    return url.split(":")[0].split("+")[0]


def _assert_run_is_whole_and_its_own(
    world: SsmWorld, store: Store, run_id: int, change: str, targets: list[Target], name: str
) -> set[str]:
    """The run's executions are exactly ``targets``, each from a command of this flow run
    that was sent to that instance and printed its id. Returns the run's command ids."""
    executions = store.executions(run_id)
    assert sorted(e.instance_id for e in executions) == sorted(t.instance_id for t in targets)
    commands = set()
    for execution in executions:
        assert execution.status.value == "success"
        assert execution.stdout.strip() == execution.instance_id
        command = world.command(execution.command_id or "")
        assert execution.instance_id in command.instance_ids
        assert re.fullmatch(rf"{change} run-script {name} #[0-9a-f]{{20}}", command.comment)
        commands.add(command.command_id)
    return commands


def test_two_flows_on_two_changes_at_once(
    ssm_world: SsmWorld, bridged_aws: str, store_url: str, tmp_path: Path
):
    targets = build_fleet(ssm_world, 2 * PER_CHANGE)
    ssm_world.command_delay(pending=2.0)
    changes = {"CHG-A-1": targets[:PER_CHANGE], "CHG-B-2": targets[PER_CHANGE:]}

    started = time.monotonic()
    flow_runs = _run_together(bridged_aws, [_csv(c, t) for c, t in changes.items()], tmp_path)
    wall = time.monotonic() - started

    assert all(r.state is not None and r.state.is_completed() for r in flow_runs)
    with Store(store_url) as store:
        _assert_overlapped([store.runs_for_change(c)[0] for c in changes])
        for (change, members), flow_run in zip(changes.items(), flow_runs, strict=True):
            [run] = store.runs_for_change(change)
            assert run.flow_run_id == str(flow_run.id)
            assert (run.status, run.success_count, run.failure_count) == ("success", 40, 0)
            _assert_run_is_whole_and_its_own(
                ssm_world, store, run.id, change, members, flow_run.name
            )
            stored = store.load_change(change)
            assert stored is not None and stored.targets == members
    assert set(ssm_world.send_commands_per_instance.values()) == {1}
    assert {times_run(ssm_world.instance(t.instance_id)) for t in targets} == {1}
    Figures.of(
        f"two flow run processes, two changes, store on {_database(store_url)}",
        ssm_world,
        len(targets),
        wall,
        [r.id for r in flow_runs],
    ).show()


def test_two_flows_on_the_same_change_at_once(
    ssm_world: SsmWorld, bridged_aws: str, store_url: str, tmp_path: Path
):
    targets = build_fleet(ssm_world, PER_CHANGE)
    ssm_world.command_delay(pending=2.0)
    change = "CHG-SAME-3"

    started = time.monotonic()
    flow_runs = _run_together(bridged_aws, [_csv(change, targets)] * 2, tmp_path)
    wall = time.monotonic() - started

    assert all(r.state is not None and r.state.is_completed() for r in flow_runs)
    names = {str(r.id): r.name for r in flow_runs}
    with Store(store_url) as store:
        runs = store.runs_for_change(change)
        _assert_overlapped(runs)
        assert sorted(r.flow_run_id for r in runs) == sorted(names)
        commands = []
        for run in runs:
            assert (run.status, run.success_count, run.failure_count) == ("success", 40, 0)
            commands.append(
                _assert_run_is_whole_and_its_own(
                    ssm_world, store, run.id, change, targets, names[run.flow_run_id]
                )
            )
        stored = store.load_change(change)
    # Each flow sent its own commands and recorded only those.
    assert not commands[0] & commands[1]
    assert stored is not None and stored.targets == targets
    assert set(ssm_world.send_commands_per_instance.values()) == {2}
    assert {times_run(ssm_world.instance(t.instance_id)) for t in targets} == {2}
    Figures.of(
        f"two flow run processes, same change, store on {_database(store_url)}",
        ssm_world,
        len(targets),
        wall,
        [r.id for r in flow_runs],
    ).show()
