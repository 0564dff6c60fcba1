"""The local provider: runs a script on the machine of the Prefect worker itself.

It needs no cloud account, so a new user can run a real workflow at once. It has exactly one
target, ``localhost`` (see ``LocalProvider.TARGET``): account ``local``, region ``local``. A
target naming ``localhost`` with an empty account or region is accepted too; every other target
is refused with an ``error`` result.

A script runs as a child process in its own session (so a timeout can kill the whole process
group, children included), from a private temporary directory that holds the script file and
its output files; the directory is removed once the result is read, because a rendered script
may carry a secret parameter. Output is capped as SSM caps ``GetCommandInvocation`` (first
24,000 characters of stdout, 8,000 of stderr) so a flow behaves the same on either provider.

It never reboots the machine it runs on: a script that exits 194 (asking the SSM agent for a
reboot) ends ``failed`` with a result that says so, and is not run again.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

from pydantic import SecretStr

from providers.base import (
    Account,
    Chunk,
    CommandProgress,
    CommandRef,
    CredentialReport,
    CredentialSource,
    DiscoveryFilter,
    Instance,
    Interpreter,
    Plan,
    Platform,
    PollSchedule,
    Provider,
    ProviderError,
    ResultStatus,
    ScriptRequest,
    ScriptResult,
    SecretHandle,
    SecretStore,
    Target,
)
from providers.partitions import Environment

LOCAL_INSTANCE_ID = "localhost"
LOCAL_ACCOUNT_ID = "local"
LOCAL_REGION = "local"

# The same caps as SSM's GetCommandInvocation, so results look alike on both providers.
STDOUT_LIMIT = 24_000
STDERR_LIMIT = 8_000

# The directories that hold a secret for the scripts of one run (see stage_secret).
_SECRET_DIR_PREFIX = "cloudops-secret-"

# After SIGTERM, how long the script's process group gets to exit before SIGKILL.
KILL_GRACE_SECONDS = 2.0

# The exit code with which a Linux script asks the SSM agent to reboot the server and run it
# again; this provider runs on the worker itself and never reboots it.
REBOOT_REQUEST_EXIT_CODE = 194

# Program and arguments per interpreter; the script file's path is appended.
_COMMANDS: dict[Interpreter, tuple[str, ...]] = {
    Interpreter.BASH: ("bash",),
    Interpreter.SH: ("sh",),
    Interpreter.PYTHON: ("python3",),
    Interpreter.POWERSHELL: ("pwsh", "-NoLogo", "-NoProfile", "-NonInteractive", "-File"),
}
_SUFFIXES: dict[Interpreter, str] = {
    Interpreter.BASH: ".sh",
    Interpreter.SH: ".sh",
    Interpreter.PYTHON: ".py",
    # pwsh -File refuses a script whose name does not end in .ps1.
    Interpreter.POWERSHELL: ".ps1",
}


def _host_platform() -> Platform:
    return Platform.WINDOWS if sys.platform.startswith("win") else Platform.LINUX


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # A container user without a passwd entry and no USER variable.
        return f"uid{os.getuid()}"


def _read_capped(path: Path, limit: int) -> tuple[str, bool]:
    """The first ``limit`` characters of a file, and whether there was more."""
    with path.open(encoding="utf-8", errors="replace") as f:
        text = f.read(limit + 1)
    if len(text) > limit:
        return text[:limit], True
    return text, False


@dataclass
class _RunningCommand:
    """One started script: its process, its files, and its result once final."""

    ref: CommandRef
    target: Target
    process: subprocess.Popen[bytes]
    workdir: Path
    stdout_path: Path
    stderr_path: Path
    started_at: datetime
    timeout_seconds: int
    result: ScriptResult | None = None
    # Held while the result is built, so two pollers never kill or read the same script twice.
    lock: threading.Lock = field(default_factory=threading.Lock)


class LocalProvider(Provider):
    """Runs scripts on this host with a subprocess: bash, sh, python3, or pwsh if installed."""

    name = "local"

    TARGET: ClassVar[Target] = Target(
        instance_id=LOCAL_INSTANCE_ID,
        account_id=LOCAL_ACCOUNT_ID,
        region=LOCAL_REGION,
        platform=_host_platform(),
    )

    # Shared by every instance in this process: a flow may build a new provider in each task
    # (``load_provider("local")``), and the task that polls must find what another task sent.
    _commands: ClassVar[dict[str, _RunningCommand]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def poll_schedule(self) -> PollSchedule:
        # A local process is cheap to look at: poll fast so short scripts finish quickly.
        return PollSchedule(
            initial_seconds=0.2, max_seconds=1.0, factor=1.5, jitter=0.1, grace_seconds=5.0
        )

    # -- identity and inventory ---------------------------------------------------------------

    def validate_credentials(self, environment: Environment | None = None) -> CredentialReport:
        """This worker's user and host. The local provider has no environments: the report is
        the same whatever ``environment`` is asked for, and its ``environment`` is None."""
        return CredentialReport(
            environment=None,
            account_id=LOCAL_ACCOUNT_ID,
            arn=f"local:{_user_name()}@{socket.gethostname()}",
            partition="local",
            source=CredentialSource.LOCAL,
            region=LOCAL_REGION,
        )

    def discover_instances(self, filters: DiscoveryFilter) -> list[Instance]:
        """The one local instance, when ``filters`` allow it."""
        hostname = socket.gethostname()
        instance = Instance(
            instance_id=LOCAL_INSTANCE_ID,
            name=hostname,
            state="running",
            platform=self.TARGET.platform,
            tags={"Name": hostname},
            account_id=LOCAL_ACCOUNT_ID,
            region=LOCAL_REGION,
            # Reachable by this provider, which is what flows check "managed"/"Online" for.
            ssm_managed=True,
            ping_status="Online",
        )
        if filters.accounts and LOCAL_ACCOUNT_ID not in filters.accounts:
            return []
        if filters.regions and LOCAL_REGION not in filters.regions:
            return []
        if filters.states and instance.state not in filters.states:
            return []
        if filters.platform is not None and filters.platform is not instance.platform:
            return []
        if any(instance.tags.get(key) != value for key, value in filters.tags.items()):
            return []
        return [instance]

    def enumerate_accounts(self) -> list[Account]:
        return [Account(account_id=LOCAL_ACCOUNT_ID, account_name=socket.gethostname())]

    def enumerate_regions(self) -> list[str]:
        return [LOCAL_REGION]

    # -- running ------------------------------------------------------------------------------

    @staticmethod
    def is_local(target: Target) -> bool:
        """``localhost``, in account ``local`` (or none) and region ``local`` (or none)."""
        return (
            target.instance_id == LOCAL_INSTANCE_ID
            and target.account_id in ("", LOCAL_ACCOUNT_ID)
            and target.region in ("", LOCAL_REGION)
        )

    def target_problem(self, target: Target) -> str | None:
        """Why ``target`` is not this worker, the one machine this provider runs on, or None."""
        if self.is_local(target):
            return None
        return (
            f"the local provider runs scripts only on '{LOCAL_INSTANCE_ID}' (this worker); "
            f"{target.label} is another machine: run it with the aws provider instead"
        )

    def prepare(self, targets: Sequence[Target], request: ScriptRequest) -> Plan:
        """One chunk holding ``localhost``; refusals for every other target."""
        plan = Plan()
        local: Target | None = None
        for target in targets:
            problem = self.target_problem(target)
            if problem is not None:
                plan.results.append(
                    ScriptResult.without_running(target, ResultStatus.ERROR, problem)
                )
                continue
            if local is not None:
                continue  # the same machine named twice runs once
            local = target
            refusal = self._refusal(target, request)
            if refusal is not None:
                plan.results.append(
                    ScriptResult.without_running(target, ResultStatus.SKIPPED, refusal)
                )
                continue
            key = Chunk.make_key(
                target.account_id, target.region, [target.instance_id], request.fingerprint()
            )
            plan.chunks.append(
                Chunk(key=key, account_id=target.account_id, region=target.region, targets=[target])
            )
        return plan

    def _refusal(self, target: Target, request: ScriptRequest) -> str | None:
        """Why ``request`` cannot run on this host, or None when it can."""
        if request.platform is Platform.LINUX and target.platform is Platform.WINDOWS:
            return (
                f"{request.interpreter.value} is a Linux interpreter and {target.label} is "
                "declared windows: send a powershell script instead"
            )
        program = _COMMANDS[request.interpreter][0]
        if shutil.which(program) is None:
            return (
                f"{program} is not installed on this worker ({socket.gethostname()}), so the "
                f"{request.interpreter.value} script cannot run here: install {program} or use "
                "another interpreter"
            )
        return None

    def send(self, chunk: Chunk, request: ScriptRequest) -> CommandRef:
        """Start the script as a new session (its own process group) and return at once."""
        if len(chunk.targets) != 1 or not self.is_local(chunk.targets[0]):
            raise ProviderError(
                f"the local provider runs one chunk of '{LOCAL_INSTANCE_ID}' only; got "
                f"{', '.join(t.label for t in chunk.targets) or 'no target'}"
            )
        target = chunk.targets[0]
        refusal = self._refusal(target, request)
        if refusal is not None:
            raise ProviderError(refusal)

        command_id = f"local-{uuid.uuid4().hex}"
        workdir = Path(tempfile.mkdtemp(prefix="cloudops-local-"))
        script_path = workdir / f"script{_SUFFIXES[request.interpreter]}"
        script_path.write_text(request.script, encoding="utf-8")
        script_path.chmod(0o700)
        stdout_path = workdir / "stdout"
        stderr_path = workdir / "stderr"
        program, *args = _COMMANDS[request.interpreter]
        started_at = datetime.now(UTC)
        try:
            with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
                # Files, not pipes: a chatty script can never block on a full pipe buffer.
                process = subprocess.Popen(
                    [shutil.which(program) or program, *args, str(script_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=workdir,
                    env=os.environ.copy(),
                    start_new_session=True,
                )
        except OSError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise ProviderError(
                f"could not start {program} on {target.label}: {exc.strerror or exc}"
            ) from exc

        schedule = self.poll_schedule()
        deadline = started_at + timedelta(
            seconds=request.timeout_seconds + KILL_GRACE_SECONDS + schedule.grace_seconds
        )
        ref = CommandRef(
            command_id=command_id,
            chunk_key=chunk.key,
            account_id=chunk.account_id,
            region=chunk.region,
            instance_ids=[target.instance_id],
            sent_at=started_at,
            deadline=deadline,
        )
        with self._lock:
            self._commands[command_id] = _RunningCommand(
                ref=ref,
                target=target,
                process=process,
                workdir=workdir,
                stdout_path=stdout_path,
                stderr_path=stderr_path,
                started_at=started_at,
                timeout_seconds=request.timeout_seconds,
            )
        return ref

    def find_sent(self, chunk: Chunk, request: ScriptRequest, since: datetime) -> CommandRef | None:
        """The script this worker process started for ``chunk`` at or after ``since``, from
        its own process table, or None. The table lives in the process: a script started by
        another process (a worker that died since) is not in it and cannot be re-attached to,
        so a resumed local run starts it again."""
        with self._lock:
            started = [
                command.ref
                for command in self._commands.values()
                if command.ref.chunk_key == chunk.key and command.started_at >= since
            ]
        return min(started, key=lambda ref: ref.sent_at, default=None)

    def poll(self, ref: CommandRef, finished: Collection[str] = ()) -> CommandProgress:
        """The result once the script ended; past its timeout its process group is killed."""
        pending = [i for i in ref.instance_ids if i not in finished]
        if not pending:
            return CommandProgress(ref=ref)
        command = self._command(ref)
        if command is None:
            return CommandProgress(ref=ref, results=self._unknown(ref, pending))
        with command.lock:
            if command.result is None:
                if command.process.poll() is not None:
                    command.result = self._finish(command, timed_out=False)
                elif self._past_timeout(command):
                    command.result = self._finish(command, timed_out=True)
            result = command.result
        if result is None:
            return CommandProgress(ref=ref, pending=pending)
        return CommandProgress(ref=ref, results=[result])

    def expire(self, ref: CommandRef, pending: Sequence[str]) -> list[ScriptResult]:
        """Kill what still runs at the run's deadline and report it ``timed_out``."""
        if not pending:
            return []
        command = self._command(ref)
        if command is None:
            return self._unknown(ref, pending)
        with command.lock:
            if command.result is None:
                command.result = self._finish(
                    command, timed_out=command.process.poll() is None, deadline=True
                )
            return [command.result]

    # -- secrets a script reads at run time ------------------------------------------------

    @property
    def secret_stores(self) -> frozenset[SecretStore]:
        """A file: the scripts run as this worker's user, on this machine."""
        return frozenset({SecretStore.FILE})

    def stage_secret(
        self, name: str, value: SecretStr, places: Collection[tuple[str, str]]
    ) -> SecretHandle:
        """``value`` in a file only this worker's user can read (mode 0600, in a fresh 0700
        directory), for the script to read at run time; ``places`` is this machine."""
        directory = Path(tempfile.mkdtemp(prefix=_SECRET_DIR_PREFIX))
        path = directory / name.replace("/", "_")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(value.get_secret_value() + "\n")
        return SecretHandle(
            store=SecretStore.FILE,
            name=str(path),
            created_in=((LOCAL_ACCOUNT_ID, LOCAL_REGION),),
        )

    def discard_secret(self, handle: SecretHandle) -> None:
        """Delete the file ``stage_secret`` wrote, and its directory."""
        if not handle.created_in or handle.store is not SecretStore.FILE:
            return
        directory = Path(handle.name).parent
        # Only ever a directory stage_secret made: a handle is data, and could name anything.
        if directory.parent != Path(tempfile.gettempdir()) or not directory.name.startswith(
            _SECRET_DIR_PREFIX
        ):
            raise ProviderError(f"{handle.name} is not a secret file the local provider wrote")
        shutil.rmtree(directory, ignore_errors=True)
        if directory.exists():
            raise ProviderError(f"the secret file {handle.name} could not be deleted")

    # -- inner workings -----------------------------------------------------------------------

    def _command(self, ref: CommandRef) -> _RunningCommand | None:
        with self._lock:
            return self._commands.get(ref.command_id)

    @staticmethod
    def _unknown(ref: CommandRef, pending: Sequence[str]) -> list[ScriptResult]:
        # The table lives in the worker process that sent the command; another process (a
        # restarted worker) cannot see or reach that script any more.
        now = datetime.now(UTC)
        return [
            ScriptResult(
                instance_id=instance_id,
                account_id=ref.account_id,
                region=ref.region,
                status=ResultStatus.ERROR,
                command_id=ref.command_id,
                ended_at=now,
                error=(
                    f"local command {ref.command_id} is not known to this worker process: it was "
                    "started by another process (was the worker restarted?); run the script again"
                ),
            )
            for instance_id in pending
        ]

    @staticmethod
    def _past_timeout(command: _RunningCommand) -> bool:
        elapsed = (datetime.now(UTC) - command.started_at).total_seconds()
        return elapsed >= command.timeout_seconds

    def _finish(
        self, command: _RunningCommand, *, timed_out: bool, deadline: bool = False
    ) -> ScriptResult:
        """Build the final result, killing the process group first when it ran too long."""
        if timed_out:
            self._kill_group(command.process)
        ended_at = datetime.now(UTC)
        exit_code = command.process.returncode
        stdout, stdout_truncated = _read_capped(command.stdout_path, STDOUT_LIMIT)
        stderr, stderr_truncated = _read_capped(command.stderr_path, STDERR_LIMIT)
        # The script file may hold secret parameters: nothing of it outlives the result.
        shutil.rmtree(command.workdir, ignore_errors=True)

        error: str | None = None
        if timed_out:
            status = ResultStatus.TIMED_OUT
            exit_code = None
            limit = "the run's deadline" if deadline else "its execution timeout"
            error = (
                f"the script ran past {limit} ({command.timeout_seconds} s) on "
                f"{command.target.label}; its process group was killed. Raise the timeout or "
                "make the script faster"
            )
        elif exit_code == 0:
            status = ResultStatus.SUCCESS
        elif exit_code == REBOOT_REQUEST_EXIT_CODE:
            status = ResultStatus.FAILED
            error = (
                f"the script asked for a reboot (exit {exit_code}, the SSM agent's reboot "
                f"protocol), and the local provider never reboots the machine it runs on (this "
                f"worker, {socket.gethostname()}): nothing was rebooted and the script was not "
                "run again. Patch servers with the aws provider, or use a dry run here"
            )
        else:
            status = ResultStatus.FAILED
            if exit_code is not None and exit_code < 0:
                # Killed by a signal it did not handle: report it the way a shell would.
                signal_name = signal.Signals(-exit_code).name
                error = f"the script was killed by {signal_name} on {command.target.label}"
                exit_code = 128 - exit_code
            else:
                error = f"the script exited with code {exit_code} on {command.target.label}"
        return ScriptResult(
            instance_id=command.target.instance_id,
            account_id=command.target.account_id,
            region=command.target.region,
            status=status,
            exit_code=exit_code,
            stdout=stdout,
            stderr=stderr,
            stdout_truncated=stdout_truncated,
            stderr_truncated=stderr_truncated,
            command_id=command.ref.command_id,
            started_at=command.started_at,
            ended_at=ended_at,
            error=error,
        )

    @staticmethod
    def _kill_group(process: subprocess.Popen[bytes]) -> None:
        """SIGTERM the script's process group, then SIGKILL whatever is left of it."""
        # start_new_session made the script the leader of a group whose id is its pid.
        group = process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=KILL_GRACE_SECONDS)
        # Children that ignore SIGTERM (or outlive their leader) still belong to the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        process.wait()
