"""The emulated SSM agent's plugin runner: runs one script for real in an instance's sandbox.

Like the real agent it writes the script under ``var/lib/amazon/ssm/<instance>/document/
orchestration/<command>/<plugin dir>/`` (inside the sandbox), runs it from that directory and
sets ``AWS_SSM_INSTANCE_ID`` and ``AWS_SSM_REGION_NAME``. On top of that, scripts get
``CLOUDOPS_ROOT`` (the sandbox, which our scripts put in front of absolute paths), ``HOME``
(``<sandbox>/root``) and the sandbox's ``bin`` first on ``PATH``, so a test can drop fake
``uname``, ``systemctl`` or ``yum`` commands there. Each script gets its own process group,
which is killed whole at the execution timeout or on cancel.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.ssm_emulator.instance_api import INSTANCE_TOOLS

# Exit code the emulator reports for a script it killed (real SSM gives no code to rely on).
KILLED_EXIT_CODE = -1


@dataclass(frozen=True)
class ScriptRun:
    """What one script did."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    started_at: float
    ended_at: float


@dataclass(frozen=True)
class Sandbox:
    """The directories one emulated instance runs scripts in."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def home(self) -> Path:
        return self.root / "root"

    def create(self) -> None:
        for path in (self.root, self.bin, self.home):
            path.mkdir(parents=True, exist_ok=True)


class ProcessHandle:
    """Lets another thread kill a running script's whole process group."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._killed = False

    def attach(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._process = process
            if self._killed:
                _kill_group(process)

    def kill(self) -> None:
        with self._lock:
            self._killed = True
            if self._process is not None:
                _kill_group(self._process)

    @property
    def killed(self) -> bool:
        with self._lock:
            return self._killed


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def run_script(
    sandbox: Sandbox,
    *,
    instance_id: str,
    region: str,
    command_id: str,
    plugin_dir: str,
    script: str,
    powershell: bool,
    timeout_seconds: float,
    handle: ProcessHandle,
    instance_api: str | None = None,
) -> ScriptRun:
    """Run ``script`` in ``sandbox`` with bash (or pwsh), killed at ``timeout_seconds``.

    With ``instance_api`` (see ``tests.ssm_emulator.instance_api``), the instance's fake AWS
    CLI comes right after the sandbox's ``bin`` on the PATH and reads secrets there.
    """
    work_dir = (
        sandbox.root
        / "var/lib/amazon/ssm"
        / instance_id
        / "document/orchestration"
        / command_id
        / plugin_dir
        / f"0.{plugin_dir}"
    )
    work_dir.mkdir(parents=True, exist_ok=True)
    path = [str(sandbox.bin), os.environ.get("PATH", os.defpath)]
    if instance_api is not None:
        path.insert(1, str(INSTANCE_TOOLS))
    env = {
        "PATH": os.pathsep.join(path),
        "HOME": str(sandbox.home),
        "CLOUDOPS_ROOT": str(sandbox.root),
        "LANG": "C.UTF-8",
        "AWS_SSM_INSTANCE_ID": instance_id,
        "AWS_SSM_REGION_NAME": region,
    }
    if instance_api is not None:
        env["CLOUDOPS_EMULATOR_INSTANCE_API"] = instance_api
    started = time.time()
    if powershell:
        interpreter = shutil.which("pwsh", path=env["PATH"])
        if interpreter is None:
            message = (
                f"pwsh is not installed on this machine or in {sandbox.bin}: the emulator cannot "
                "run PowerShell scripts here; install PowerShell or put a fake pwsh there\n"
            )
            return ScriptRun(1, "", message, False, started, time.time())
        script_path = work_dir / "_script.ps1"
        argv = [interpreter, "-NoProfile", "-NonInteractive", "-File", str(script_path)]
    else:
        script_path = work_dir / "_script.sh"
        argv = ["bash", str(script_path)]
    script_path.write_text(script)

    process = subprocess.Popen(
        argv,
        cwd=work_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    handle.attach(process)
    timed_out = False
    try:
        out, err = process.communicate(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process)
        out, err = process.communicate()
    # Children left behind in the group (``sleep &``) die with the script, as under the agent.
    _kill_group(process)
    exit_code = KILLED_EXIT_CODE if timed_out or handle.killed else process.returncode
    return ScriptRun(
        exit_code,
        out.decode("utf-8", errors="replace"),
        err.decode("utf-8", errors="replace"),
        timed_out,
        started,
        time.time(),
    )
