"""A patch window's process killed while a wave's servers reboot, then the run retried: it
re-attaches to the wave's install commands (never sends an install twice, never reboots a
server twice), skips the wave it had finished, and goes on with the next wave.

The flow runs as a worker runs it (``python -m prefect.engine`` in its own process) against the
SSM emulator served over HTTP; the emulator lives in this process, so the servers go on
rebooting and running the install's second half while the flow's process is dead.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.states import Crashed, StateType

from flows.store import Store
from tests.flows.linux_patching.window.hosts import Distro, HostSpec, prepped_fleet
from tests.flows.linux_patching.window.paused import logs_of
from tests.flows.linux_patching.window.test_flow import install_commands
from tests.reliability.fleet import CALLER_ACCOUNT, MEMBER_ACCOUNT
from tests.reliability.flow_processes import (
    PREFECT_CLI,
    REPO_ROOT,
    WINDOW_ENTRYPOINT,
    create_window_run,
    start_flow_run,
    tail,
    worker_environment,
)
from tests.ssm_emulator import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

CHANGE = "CHG-WINDOW-KILL"
PLACES = [
    (CALLER_ACCOUNT, "us-east-1"),
    (CALLER_ACCOUNT, "us-west-2"),
    (MEMBER_ACCOUNT, "us-east-1"),
]
SPECS = {
    **{f"rhel-{n}": HostSpec(Distro.RHEL) for n in range(1, 4)},
    **{f"al-{n}": HostSpec(Distro.AL2023) for n in range(1, 4)},
    **{f"ubuntu-{n}": HostSpec(Distro.UBUNTU) for n in range(1, 3)},
}
WAIT_SECONDS = 120
WAVE_SIZE = 3


def reached_under(run_key: str) -> int:
    """Instances the commands recorded under ``run_key`` went to."""
    return sum(len(ref.instance_ids) for ref in Store.default().commands_for(run_key))


def kill_once_wave_2_is_out(world: SsmWorld, flow_run_id: UUID, log: Path) -> set[str]:
    """Run the flow the worker's way; SIGKILL it once wave 2's install commands (its three
    instances) are sent and recorded. Returns wave 2's instances."""
    process = start_flow_run(flow_run_id, log, WINDOW_ENTRYPOINT)
    deadline = time.monotonic() + WAIT_SECONDS
    try:
        while reached_under(f"{flow_run_id}/wave-2") < WAVE_SIZE:
            if process.poll() is not None:
                pytest.fail(f"the flow process ended on its own:\n{tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"wave 2 was not sent in time:\n{tail(log)}")
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    wave_2 = {
        i for ref in Store.default().commands_for(f"{flow_run_id}/wave-2") for i in ref.instance_ids
    }
    # Killed mid-reboot: wave 2 has not come back yet.
    assert not any(world.reboots[i] and world.instance(i).online for i in wave_2)
    return wave_2


def retry(flow_run_id: UUID) -> None:
    """What a worker reports for a process that died, then ``prefect flow-run retry``."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Crashed(message="worker process killed"))
    done = subprocess.run(
        [
            str(PREFECT_CLI),
            "--no-prompt",
            "flow-run",
            "retry",
            str(flow_run_id),
            "--entrypoint",
            WINDOW_ENTRYPOINT,
        ],
        cwd=REPO_ROOT,
        env=worker_environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_a_killed_window_retried_re_attaches_mid_reboot_and_goes_on(
    ssm_world: SsmWorld, bridged_aws: str, tmp_path: Path
) -> None:
    ssm_world.add_role(MEMBER_ACCOUNT)
    ssm_world.command_delay(pending=0.05)
    ssm_world.reboot_time(4.0)  # long enough to be killed while wave 2 reboots
    servers = prepped_fleet(ssm_world, CHANGE, SPECS, PLACES)
    flow_run = create_window_run(
        {
            "change_number": CHANGE,
            "provider": bridged_aws,
            "wave_size": str(WAVE_SIZE),
            "require_approval": False,
        }
    )

    wave_2 = kill_once_wave_2_is_out(ssm_world, flow_run.id, tmp_path / "first-attempt.log")
    retry(flow_run.id)

    with get_client(sync_client=True) as client:
        finished = client.read_flow_run(flow_run.id)
    assert finished.state is not None and finished.state.type is StateType.COMPLETED
    assert finished.run_count == 2
    # One install command and one reboot per server, whatever the kill interrupted.
    ids = {s.instance_id for s in servers.values()}
    assert install_commands(ssm_world) == {i: 1 for i in ids}
    assert {i: ssm_world.reboots[i] for i in ids} == {i: 1 for i in ids}
    for server in servers.values():
        assert server.running.startswith(server.facts.target), server.hostname
    said = logs_of(flow_run.id)
    assert any(m.startswith("wave-1: recorded before this run was retried") for m in said)
    pattern = r"wave-2: re-attaching to \d command\(s\) sent before this run was retried"
    assert any(re.fullmatch(pattern, m) for m in said)
    store = Store.default()
    runs = {r.step: r for r in store.runs_for_change(CHANGE) if r.workflow.endswith("window")}
    assert {"preflight", "wave-1", "wave-2", "wave-3"} <= set(runs)
    recorded = {
        e.instance_id: (e.parsed or {}).get("status") for e in store.executions(runs["wave-2"].id)
    }
    assert recorded == {i: "patched" for i in wave_2}
