"""A flow run's process killed after its commands went out, then the run retried: it picks up
the commands it sent instead of sending them again, and ends with complete records. Killed
after sending every command and recording it; and killed in the window between SSM accepting a
command and the store recording it, where only the intent recorded before sending and the
chunk marker in the command's comment let the retry find that command.

This is what happens when a worker's machine dies mid-run. The flow runs as a worker runs it,
``python -m prefect.engine`` in its own process with ``PREFECT__FLOW_RUN_ID`` set, against the
SSM emulator served over HTTP (the emulator lives in this process). Once every command is sent
and recorded, the process group gets SIGKILL: no ``finally``, no state reported. The run is
marked Crashed (what its worker reports when the process dies) and retried the way an
operator does, ``prefect flow-run retry <id> --entrypoint ...``: the same flow run id, which
is the key the engine recorded its commands under.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.states import Crashed, StateType
from sqlalchemy import text

from flows.store import Store
from providers.base import Target
from tests.reliability.figures import Figures
from tests.reliability.fleet import PRINT_OWN_ID, build_fleet, chunks_for, times_run
from tests.reliability.flow_processes import (
    PREFECT_CLI,
    REPO_ROOT,
    RUN_SCRIPT_ENTRYPOINT,
    create_run_script_run,
    start_flow_run,
    tail,
    worker_environment,
)
from tests.ssm_emulator import EmulatedCommand, SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

CHANGE = "CHG-RESUME-1"
FLEET = 120
SEND_WAIT_SECONDS = 90
RESUME_SECONDS = 120


def _sent_commands_recorded(run_key: str) -> int:
    with Store.default() as store, store.engine.connect() as connection:
        return connection.scalar(
            text("SELECT count(*) FROM sent_command WHERE run_key = :key"), {"key": run_key}
        )


def _wait_for_every_send(
    world: SsmWorld, process: subprocess.Popen[bytes], run_key: str, chunks: int, log: Path
) -> float:
    """Seconds until the emulator accepted every SendCommand and the store recorded them."""
    started = time.monotonic()
    while True:
        if process.poll() is not None:
            pytest.fail(f"the flow process ended on its own ({process.returncode}):\n" + tail(log))
        accepted = len(world.commands)
        if accepted >= chunks and _sent_commands_recorded(run_key) >= chunks:
            return time.monotonic() - started
        if time.monotonic() - started > SEND_WAIT_SECONDS:
            pytest.fail(f"only {accepted} of {chunks} commands sent in time:\n" + tail(log))
        time.sleep(0.05)


def _logs_of(flow_run_id: UUID) -> list[str]:
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return [entry.message for entry in logs]


def run_and_kill_after_every_send(
    world: SsmWorld, flow_run_id: UUID, chunks: int, log: Path
) -> float:
    """Run the flow run the worker's way and SIGKILL it once every command is sent and
    recorded; returns how long the sending took."""
    process = start_flow_run(flow_run_id, log)
    try:
        to_send = _wait_for_every_send(world, process, str(flow_run_id), chunks, log)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    with get_client(sync_client=True) as client:
        killed = client.read_flow_run(flow_run_id)
    assert killed.state is not None and killed.state.type is StateType.RUNNING
    with Store.default() as store:
        [run] = store.runs_for_change(CHANGE)
        assert run.status == "running" and store.executions(run.id) == []
    return to_send


def retry_as_an_operator_would(flow_run_id: UUID) -> None:
    """What a worker reports for a process that died, then ``prefect flow-run retry``."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Crashed(message="worker process killed"))
    retry = subprocess.run(
        [
            str(PREFECT_CLI),
            "--no-prompt",
            "flow-run",
            "retry",
            str(flow_run_id),
            "--entrypoint",
            RUN_SCRIPT_ENTRYPOINT,
        ],
        cwd=REPO_ROOT,
        env=worker_environment(),
        capture_output=True,
        text=True,
        timeout=RESUME_SECONDS,
        check=False,
    )
    assert retry.returncode == 0, retry.stdout[-3000:] + retry.stderr[-3000:]


def check_every_instance_ran_once(
    world: SsmWorld, flow_run_id: UUID, targets: list[Target], sent_before: dict[str, list[str]]
) -> None:
    with get_client(sync_client=True) as client:
        finished = client.read_flow_run(flow_run_id)
    assert finished.state is not None and finished.state.type is StateType.COMPLETED
    assert finished.run_count == 2
    with Store.default() as store:
        [run] = store.runs_for_change(CHANGE)
        executions = store.executions(run.id)
    assert (run.status, run.success_count, run.failure_count) == ("success", FLEET, 0)
    assert sorted(e.instance_id for e in executions) == sorted(t.instance_id for t in targets)
    for execution in executions:
        assert execution.status.value == "success"
        assert execution.stdout.strip() == execution.instance_id
        assert execution.instance_id in sent_before[execution.command_id or ""]
    assert {times_run(world.instance(t.instance_id)) for t in targets} == {1}


def test_a_killed_run_retried_re_attaches_and_sends_nothing_twice(
    ssm_world: SsmWorld, bridged_aws: str, tmp_path: Path
):
    targets = build_fleet(ssm_world, FLEET)
    chunks = chunks_for(targets)
    # Agents pick commands up 3 s after they are sent: the process dies before any result.
    ssm_world.command_delay(pending=3.0)
    flow_run = create_run_script_run(
        {
            "script": PRINT_OWN_ID,
            "targets": [t.model_dump(mode="json") for t in targets],
            "change_number": CHANGE,
            "provider": bridged_aws,
            "timeout_seconds": 60,
        }
    )
    started = time.monotonic()
    to_send = run_and_kill_after_every_send(
        ssm_world, flow_run.id, chunks, tmp_path / "first-attempt.log"
    )
    sent_before = {c.command_id: sorted(c.instance_ids) for c in ssm_world.commands}
    assert len(sent_before) == chunks

    retry_as_an_operator_would(flow_run.id)
    wall = time.monotonic() - started

    # Nothing was sent twice, and the retry said so for every chunk.
    assert {c.command_id: sorted(c.instance_ids) for c in ssm_world.commands} == sent_before
    assert set(ssm_world.send_commands_per_instance.values()) == {1}
    assert len(ssm_world.send_commands_per_instance) == FLEET
    reattached = [m for m in _logs_of(flow_run.id) if m.startswith("re-attaching to command")]
    assert len(reattached) == chunks
    check_every_instance_ran_once(ssm_world, flow_run.id, targets, sent_before)

    Figures.of(
        "process killed after sending, run retried",
        ssm_world,
        FLEET,
        wall,
        [flow_run.id],
        commands=f"{chunks} sent once, {len(reattached)} re-attached by the retry",
        first_attempt=f"every command sent and recorded {to_send:.1f} s after the process "
        "started; then SIGKILL",
    ).show()


def run_and_kill_as_ssm_accepts(
    world: SsmWorld, flow_run_id: UUID, log: Path
) -> tuple[str, list[str]]:
    """Run the flow run the worker's way and SIGKILL it the moment SSM accepts its first
    command, before the answer reaches it; returns that command's id and the instance ids of
    every command accepted by the time the process was dead."""
    killed: list[str] = []
    process: subprocess.Popen[bytes] | None = None

    def kill_on_first_accept(command: EmulatedCommand) -> None:
        if not killed and process is not None:
            killed.append(command.command_id)
            os.killpg(process.pid, signal.SIGKILL)

    world.on_accepted(kill_on_first_accept)
    process = start_flow_run(flow_run_id, log)
    try:
        process.wait(timeout=SEND_WAIT_SECONDS)
    finally:
        world.on_accepted(None)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    assert killed, "no command was accepted before the flow process ended:\n" + tail(log)
    assert process.returncode == -signal.SIGKILL
    time.sleep(1.0)  # requests already on the wire when it died are answered by now
    return killed[0], [i for c in world.commands for i in c.instance_ids]


def test_a_run_killed_before_recording_a_sent_command_finds_it_and_sends_nothing_twice(
    ssm_world: SsmWorld, bridged_aws: str, tmp_path: Path
):
    targets = build_fleet(ssm_world, FLEET)
    ssm_world.command_delay(pending=3.0)
    flow_run = create_run_script_run(
        {
            "script": PRINT_OWN_ID,
            "targets": [t.model_dump(mode="json") for t in targets],
            "change_number": CHANGE,
            "provider": bridged_aws,
            "timeout_seconds": 60,
        }
    )
    started = time.monotonic()

    unrecorded, sent_before_kill = run_and_kill_as_ssm_accepts(
        ssm_world, flow_run.id, tmp_path / "first-attempt.log"
    )

    # SSM ran it; the store never learnt its id, only that its chunk was about to be sent.
    command = ssm_world.command(unrecorded)
    chunk_key = command.comment.rsplit("#", 1)[1]
    with Store.default() as store:
        assert store.find_command(str(flow_run.id), chunk_key) is None
        assert store.find_send_intent(str(flow_run.id), chunk_key) is not None

    retry_as_an_operator_would(flow_run.id)
    wall = time.monotonic() - started

    assert set(ssm_world.send_commands_per_instance.values()) == {1}
    assert len(ssm_world.send_commands_per_instance) == FLEET
    found = [m for m in _logs_of(flow_run.id) if "found in the provider's history" in m]
    assert any(unrecorded in m for m in found)
    sent = {c.command_id: sorted(c.instance_ids) for c in ssm_world.commands}
    check_every_instance_ran_once(ssm_world, flow_run.id, targets, sent)

    Figures.of(
        "process killed between SendCommand and recording it, run retried",
        ssm_world,
        FLEET,
        wall,
        [flow_run.id],
        commands=f"{len(sent)} sent once each; {len(found)} found in SSM's history by the "
        f"retry ({len(sent_before_kill)} instance(s) sent to before the process died)",
        first_attempt="SIGKILL as SSM accepted the first command, before its answer",
    ).show()
