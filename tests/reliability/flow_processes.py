"""Flow runs in their own processes, started the way a process worker starts them.

A worker creates nothing itself: the flow run exists on the server, and the worker runs
``python -m prefect.engine`` with ``PREFECT__FLOW_RUN_ID`` and ``PREFECT__FLOW_ENTRYPOINT`` set.
The reliability tests do the same, so that what they kill or run side by side is a real flow
run process, with the SSM emulator reached over ``tests.ssm_emulator.http_bridge``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL

from flows import linux_qc_patching_window, run_script

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_SCRIPT_ENTRYPOINT = "flows/script_run/flow.py:run_script"
WINDOW_ENTRYPOINT = "flows/linux_patching/window/flow.py:linux_qc_patching_window"
PREFECT_CLI = Path(sys.executable).with_name("prefect")


def worker_environment() -> dict[str, str]:
    """This process's environment (data directory, database URL) aimed at the test server."""
    return {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}


def create_run_script_run(parameters: dict[str, Any]) -> FlowRun:
    """A pending ``run-script`` flow run with these (JSON-ready) parameters."""
    with get_client(sync_client=True) as client:
        return client.create_flow_run(run_script, parameters=parameters)


def create_window_run(parameters: dict[str, Any]) -> FlowRun:
    """A pending ``linux-qc-patching-window`` flow run with these (JSON-ready) parameters."""
    with get_client(sync_client=True) as client:
        return client.create_flow_run(linux_qc_patching_window, parameters=parameters)


def start_flow_run(
    flow_run_id: UUID, log: Path, entrypoint: str = RUN_SCRIPT_ENTRYPOINT
) -> subprocess.Popen[bytes]:
    """``python -m prefect.engine`` for the flow run, in its own session (so the test can kill
    its whole process group); its output goes to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect.engine"],
            cwd=REPO_ROOT,
            env={
                **worker_environment(),
                "PREFECT__FLOW_RUN_ID": str(flow_run_id),
                "PREFECT__FLOW_ENTRYPOINT": entrypoint,
            },
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_exit(process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait for a flow run process; fail the test with its log when it fails or hangs."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=30)
            pytest.fail(f"flow run process still running after {timeout:.0f} s:\n{tail(log)}")
        time.sleep(0.1)
    if process.returncode != 0:
        pytest.fail(f"flow run process exited {process.returncode}:\n{tail(log)}")


def tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
