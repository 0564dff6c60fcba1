"""A real Prefect stack for the deployment tests: ``prefect server start`` on a loopback port
backed by its own database on the PostgreSQL server of ``.ci/postgres.sh``, the blocks
registered, the ``cloudops`` process pool, the deployments of ``prefect.yaml``, and process
workers started on demand.

Under pytest-xdist (``make test``) every test of this folder runs on one worker (the scheduler
in ``tests/conftest.py``), so a run starts one stack, not one per worker.

Every process is started in its own session and its whole process group is stopped at the
end (workers first, then the server), whatever the tests did. Without
``CLOUDOPS_TEST_POSTGRES_URL`` the stack is skipped on a workstation and fails under CI (``CI``
set), so CI cannot silently stop running the end-to-end test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.events import Event
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.testing.fixtures import asserting_events_worker  # noqa: F401 (fixture)
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from tests.postgres import drop_database

REPO_ROOT = Path(__file__).resolve().parents[2]
# The CLI of the interpreter running the tests, wherever its virtual environment is.
PREFECT = Path(sys.executable).parent / "prefect"
POSTGRES_URL_VARIABLE = "CLOUDOPS_TEST_POSTGRES_URL"
WORK_POOL = "cloudops"
SERVER_START_SECONDS = 120
STOP_GRACE_SECONDS = 3  # workers and servers of a finished test hold nothing worth waiting for
CLI_SECONDS = 180
EVENT_SECONDS = 60
_FLOW_RUN_ID = re.compile(r"UUID:\s*([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


def postgres_server_url() -> str:
    """The PostgreSQL server of ``.ci/postgres.sh``; skip (workstation) or fail (CI) without."""
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if url:
        return url
    message = f"{POSTGRES_URL_VARIABLE} is not set; run `. .ci/postgres.sh` first"
    if os.environ.get("CI"):
        pytest.fail(f"the Prefect end-to-end tests cannot run under CI: {message}")
    pytest.skip(message)


@contextmanager
def prefect_database(server_url: str) -> Iterator[str]:
    """A new database for the Prefect server, as an asyncpg URL; dropped afterwards."""
    server = make_url(server_url)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"cloudops_prefect_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(drivername="postgresql+asyncpg", database=name).render_as_string(
            hide_password=False
        )
    finally:
        drop_database(admin, name)
        admin.dispose()


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group of ``process``, then SIGKILL what is left after a grace."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE_SECONDS)
    # Children of the group (a flow run a worker started) may outlive their leader.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=STOP_GRACE_SECONDS)


@dataclass
class PrefectStack:
    """A running Prefect server with the project deployed, and the processes around it."""

    api_url: str
    env: dict[str, str]
    logs: Path
    data_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def cli(self, *args: str, timeout: float = CLI_SECONDS) -> subprocess.CompletedProcess[str]:
        """Run ``prefect <args>`` from the repository root; fail with its output if it fails."""
        done = subprocess.run(
            [str(PREFECT), "--no-prompt", *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(
                f"`prefect {' '.join(args)}` exited {done.returncode}:\n"
                f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            )
        return done

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``prefect <args>`` in its own session; its output goes to ``<logs>/<name>.log``."""
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(PREFECT), "--no-prompt", *args],
                cwd=REPO_ROOT,
                env=env or self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def start_worker(self, name: str, limit: int) -> subprocess.Popen[bytes]:
        """A process worker on the ``cloudops`` pool taking at most ``limit`` runs at once."""
        return self.start(
            f"worker-{name}",
            "worker",
            "start",
            "--pool",
            WORK_POOL,
            "--type",
            "process",
            "--name",
            name,
            "--limit",
            str(limit),
        )

    @contextmanager
    def client(self) -> Iterator[SyncPrefectClient]:
        """A client of this server, whatever other server the test session points at."""
        with (
            temporary_settings(updates={PREFECT_API_URL: self.api_url}),
            get_client(sync_client=True) as client,
        ):
            yield client

    def wait_for_flow_run(self, flow_run_id: uuid.UUID, timeout: float) -> FlowRun:
        """The flow run once final; fails the test with the logs when it is not in time."""
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                run = client.read_flow_run(flow_run_id)
                if run.state is not None and run.state.is_final():
                    return run
                if time.monotonic() > deadline:
                    state = run.state.name if run.state else "no state"
                    pytest.fail(
                        f"flow run {run.name} still {state} after {timeout:.0f} s\n"
                        + self.log_tail()
                    )
                time.sleep(1)

    def trigger(self, deployment: str, **params: object) -> uuid.UUID:
        """``prefect deployment run <deployment> --param name=<json> ...``: the new run's id."""
        args = ["deployment", "run", deployment]
        for name, value in params.items():
            text = value if isinstance(value, str) else json.dumps(value)
            args += ["--param", f"{name}={text}"]
        out = self.cli(*args).stdout
        found = _FLOW_RUN_ID.search(out)
        assert found, f"no flow run id in the output of `prefect {' '.join(args)}`:\n{out}"
        return uuid.UUID(found.group(1))

    def events(self, name: str, resource_id: str, *, at_least: int = 1) -> list[Event]:
        """The events ``name`` about ``resource_id``, once there are ``at_least`` of them (the
        server stores events in batches, a moment after they are sent)."""
        deadline = time.monotonic() + EVENT_SECONDS
        event_filter = EventFilter(
            event=EventNameFilter(name=[name]), resource=EventResourceFilter(id=[resource_id])
        )
        while True:
            with self.client() as client:
                found = client.read_events(event_filter, limit=50).events
            if len(found) >= at_least:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"only {len(found)} {name} event(s) about {resource_id}")
            time.sleep(1)

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(parts)


def _wait_until_healthy(api_url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"prefect server exited {server.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {SERVER_START_SECONDS} s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def prefect_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectStack]:
    """A Prefect server on PostgreSQL with the blocks registered, the ``cloudops`` process pool
    created and every deployment of ``prefect.yaml`` deployed; no worker yet."""
    server_url = postgres_server_url()
    root = tmp_path_factory.mktemp("prefect-stack")
    logs = root / "logs"
    logs.mkdir()
    port = free_loopback_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(root / "prefect-home"),
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            # No scheduled validate-credentials run may take a worker from the tests.
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
            "CLOUDOPS_FLOWS_DIR": str(REPO_ROOT),
            "CLOUDOPS_DATA_DIR": str(root / "data"),
            "DEFAULT_PROVIDER": "local",
        }
    )
    env.pop("DATABASE_URL", None)
    env.pop("CLOUDOPS_REPORTS_DIR", None)
    stack = PrefectStack(api_url=api_url, env=env, logs=logs, data_dir=root / "data")
    with prefect_database(server_url) as database_url:
        server_env = {**env, "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url}
        try:
            server = stack.start(
                "server",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                env=server_env,
            )
            _wait_until_healthy(api_url, server, logs / "server.log")
            stack.cli("block", "register", "-m", "blocks")
            stack.cli("work-pool", "create", WORK_POOL, "--type", "process")
            stack.cli("deploy", "--all")
            yield stack
        finally:
            # Workers before the server: a worker stops cleanly only while its server answers.
            for process in reversed(stack.processes):
                stop_process_group(process)
            stack.processes.clear()


@pytest.fixture
def start_worker(prefect_stack: PrefectStack) -> Iterator[Callable[[str, int], None]]:
    """Starts process workers on the ``cloudops`` pool (name, flow run limit); each is stopped
    after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, limit: int) -> None:
        started.append(prefect_stack.start_worker(name, limit))

    try:
        yield start
    finally:
        for process in started:
            stop_process_group(process)
            if process in prefect_stack.processes:
                prefect_stack.processes.remove(process)
