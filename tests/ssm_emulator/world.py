"""The emulated AWS world a test builds: fleet, roles, SSM agents, faults, and what was called.

``SsmWorld`` hooks into botocore's ``before-send`` event ahead of moto, sees every request
(recording its endpoint host and signing key), answers the SSM operations it emulates and the
faults a test asked for, and lets everything else fall through to moto.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ConnectionClosedError
from botocore.handlers import BUILTIN_HANDLERS
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.models import botocore_stubber
from moto.iam.models import iam_backends
from moto.s3.exceptions import MissingBucket
from moto.s3.models import s3_backends
from moto.utilities.utils import get_partition

from tests.ssm_emulator.agent import ScriptRun, run_script
from tests.ssm_emulator.commands import EmulatedCommand, Invocation, Outcome
from tests.ssm_emulator.faults import FaultPlan
from tests.ssm_emulator.fleet import EmulatedInstance, OfflinePlan, launch_instance
from tests.ssm_emulator.instance_api import InstanceApi, SecretRead
from tests.ssm_emulator.s3_access import S3Access
from tests.ssm_emulator.scheduler import Scheduler
from tests.ssm_emulator.ssm_api import SsmApi
from tests.ssm_emulator.wire import (
    WireRequest,
    error_response,
    protocol_of,
    read_request,
    throttle_response,
)

SimulatedOutput = tuple[str, str, int] | tuple[str, str, int, float]
"""``(stdout, stderr, exit_code)`` of a simulated script, optionally with the seconds it runs
(default: the ``in_progress_min`` of ``command_delay``)."""

# The SSM agent's reboot request on Linux: the script asks, the agent reboots the instance and
# runs the same script again after boot (amazon-ssm-agent: appconfig RebootExitCode; the plugin
# result SuccessAndReboot is reset to InProgress and run again once the agent is back).
REBOOT_EXIT_CODE = 194

_PARTITION_HOME_REGIONS = {
    "aws": "us-east-1",
    "aws-us-gov": "us-gov-west-1",
    "aws-cn": "cn-north-1",
}

_OFFLINE_OUTCOMES = {
    "DeliveryTimedOut": Outcome("TimedOut", "DeliveryTimedOut"),
    "Undeliverable": Outcome("Failed", "Undeliverable"),
}


class RecordedRequest(NamedTuple):
    """One HTTP request a client sent while the world was up (every retry attempt counts)."""

    service: str
    operation: str
    host: str
    access_key_id: str | None
    account: str
    region: str
    answered_by: str  # "emulator", "moto", "throttled", "fault:<code>", "denied:<code>"
    at: float = 0.0  # when it arrived (epoch seconds)


class Credentials(NamedTuple):
    access_key_id: str
    secret_access_key: str


class SsmWorld:
    """See the package docstring for the full API."""

    def __init__(self, sandboxes: Path, max_parallel_scripts: int = 8) -> None:
        self.lock = threading.RLock()
        self._sandboxes = sandboxes
        self._instances: dict[str, EmulatedInstance] = {}
        self._commands: dict[str, EmulatedCommand] = {}
        self._role_external_ids: dict[str, str | None] = {}
        self._require_roles = True
        self._pending_seconds = 0.0
        self._in_progress_min = 0.0
        self._delivery_timeout: float | None = None
        self._lag = 0.0
        self._reboot_seconds = 0.5
        self._reboots: Counter[str] = Counter()
        self._simulate: Callable[[EmulatedInstance, str], SimulatedOutput] | None = None
        self._calls: Counter[tuple[str, str]] = Counter()
        self._sent: Counter[str] = Counter()
        self._requests: list[RecordedRequest] = []
        self._key_owners: dict[str, tuple[str, str | None]] = {}
        self.s3_failures: list[str] = []
        self.faults = FaultPlan()
        self._s3_access = S3Access()
        self._instance_api = InstanceApi(self._instance_home)
        self._lost_answers: Counter[str] = Counter()
        self._on_accepted: Callable[[EmulatedCommand], None] | None = None
        self._api = SsmApi(self)
        self._scheduler = Scheduler()
        self._pool = ThreadPoolExecutor(max_parallel_scripts, thread_name_prefix="ssm-agent")
        self._active = False
        self._handler_entry = ("before-send", self._before_send)
        self._replaced: tuple[int, Any] | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def install(self) -> None:
        """Take moto's place in botocore's built-in ``before-send`` handlers: sessions created
        from now on send every request here first, and the world hands to moto what it does not
        answer itself. (botocore calls *every* ``before-send`` handler and keeps the first
        answer, so running alongside moto would let moto process emulated requests too.)"""
        index = next(i for i, entry in enumerate(BUILTIN_HANDLERS) if entry[1] is botocore_stubber)
        self._replaced = (index, BUILTIN_HANDLERS[index])
        BUILTIN_HANDLERS[index] = self._handler_entry
        self._instance_api.start()
        self._active = True

    def close(self) -> None:
        """Give moto its place back, kill every script still running, stop the clock."""
        self._active = False
        if self._replaced is not None:
            index, entry = self._replaced
            if index < len(BUILTIN_HANDLERS) and BUILTIN_HANDLERS[index] is self._handler_entry:
                BUILTIN_HANDLERS[index] = entry
            self._replaced = None
        with self.lock:
            for command in self._commands.values():
                for inv in command.invocations.values():
                    inv.handle.kill()
        self._scheduler.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._instance_api.stop()
        if self._scheduler.errors:
            raise RuntimeError("the SSM emulator's clock failed") from self._scheduler.errors[0]

    # --- building the world ---------------------------------------------------------------------

    def add_instance(
        self,
        account_id: str = DEFAULT_ACCOUNT_ID,
        region: str = "us-east-1",
        platform: str = "linux",
        name: str | None = None,
        tags: dict[str, str] | None = None,
        managed: bool = True,
        online: bool = True,
    ) -> EmulatedInstance:
        """A running moto EC2 instance, SSM-managed (or not), with its own sandbox."""
        instance = launch_instance(
            account_id=account_id,
            region=region,
            platform=platform,
            name=name,
            tags=tags,
            sandboxes=self._sandboxes,
        )
        instance.managed = managed
        instance.ping_status = "Online" if online else "ConnectionLost"
        with self.lock:
            self._instances[instance.instance_id] = instance
        return instance

    def add_instances(self, count: int, **kwargs: Any) -> list[EmulatedInstance]:
        return [self.add_instance(**kwargs) for _ in range(count)]

    def instance(self, instance_id: str) -> EmulatedInstance:
        with self.lock:
            return self._instances[instance_id]

    def add_role(
        self,
        account_id: str,
        role_name: str = "OrganizationAccountAccessRole",
        partition: str = "aws",
        external_id: str | None = None,
    ) -> str:
        """An IAM role in ``account_id`` that AssumeRole may use; returns its ARN. With
        ``external_id``, AssumeRole must pass that ExternalId."""
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{partition}:iam::{DEFAULT_ACCOUNT_ID}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        role = iam_backends[account_id][partition].create_role(
            role_name, json.dumps(trust), "/", None, "emulated cross-account role", [], None
        )
        with self.lock:
            self._role_external_ids[role.arn] = external_id
        return role.arn

    def credentials(
        self, account_id: str, partition: str = "aws", user_name: str = "cloudops"
    ) -> Credentials:
        """Long-term keys of a new IAM user in ``account_id``/``partition``: requests signed
        with them act as that account, and are refused by endpoints of the other partition
        (``InvalidClientTokenId``/``UnrecognizedClientException``), as in AWS."""
        iam = iam_backends[account_id][partition]
        # moto builds the user's ARN from the region's partition.
        home_region = _PARTITION_HOME_REGIONS.get(partition, "us-east-1")
        iam.create_user(region_name=home_region, user_name=user_name)
        key = iam.create_access_key(user_name)
        return Credentials(key.access_key_id, key.secret_access_key)

    def require_existing_roles(self, required: bool = True) -> None:
        """When required (the default), AssumeRole into a role no test created is AccessDenied,
        as in AWS (moto alone lets any role ARN be assumed)."""
        self._require_roles = required

    # --- agent behaviour ----------------------------------------------------------------------

    def command_delay(
        self,
        pending: float = 0.1,
        in_progress_min: float = 0.0,
        delivery_timeout: float | None = None,
    ) -> None:
        """Seconds an invocation stays Pending before the agent picks it up, the least it then
        stays InProgress, and (to keep tests short) how long SSM keeps trying to reach an
        offline agent instead of ``TimeoutSeconds + executionTimeout``."""
        self._pending_seconds = pending
        self._in_progress_min = in_progress_min
        self._delivery_timeout = delivery_timeout

    def set_offline(
        self,
        instance_id: str,
        mid_run: bool = False,
        after: float = 0.0,
        outcome: str = "DeliveryTimedOut",
    ) -> None:
        """Lose the instance's agent. Now (``mid_run=False``): PingStatus ``ConnectionLost``,
        commands to it stay Pending, then end ``TimedOut``/``DeliveryTimedOut`` at the delivery
        deadline (or at once ``Failed``/``Undeliverable`` with ``outcome="Undeliverable"``).
        Mid-run: the next invocation starts, and ``after`` seconds later the agent drops: the
        script is killed and the invocation ends with ``outcome``."""
        if outcome not in _OFFLINE_OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(_OFFLINE_OUTCOMES)}")
        terminal = _OFFLINE_OUTCOMES[outcome]
        with self.lock:
            instance = self._instances[instance_id]
            instance.offline_plan = OfflinePlan(mid_run, after, terminal.status, terminal.details)
            if not mid_run:
                instance.ping_status = "ConnectionLost"

    def set_online(self, instance_id: str) -> None:
        """Bring the agent back: it picks up commands still Pending for it."""
        with self.lock:
            instance = self._instances[instance_id]
            instance.ping_status = "Online"
            instance.offline_plan = None
            waiting = [
                inv
                for command in self._commands.values()
                for inv in command.invocations.values()
                if inv.instance is instance and inv.started_at is None and not inv.finished
            ]
        for inv in waiting:
            self._scheduler.call_at(time.time(), lambda inv=inv: self._deliver(inv))

    def set_unmanaged(self, instance_id: str) -> None:
        """SSM forgets the instance: absent from DescribeInstanceInformation, and SendCommand
        to it fails with InvalidInstanceId."""
        with self.lock:
            self._instances[instance_id].managed = False

    def never_finish(self, instance_id: str) -> None:
        """Commands to this instance start and stay InProgress (until cancelled)."""
        with self.lock:
            self._instances[instance_id].never_finish = True

    def reboot_time(self, seconds: float) -> None:
        """How long a reboot asked for with exit 194 keeps the agent away (ConnectionLost)."""
        self._reboot_seconds = seconds

    def boot_falls_back(self, instance_id: str, falls_back: bool = True) -> None:
        """This instance's next boots fall back to the kernel it ran before (a new kernel that
        does not boot, a boot entry GRUB ignores)."""
        with self.lock:
            self._instances[instance_id].boot_falls_back = falls_back

    def agent_never_returns(self, instance_id: str) -> None:
        """After a reboot this instance's agent never comes back (SSM agent issue 320: the
        agent does not start after a patch reboot): ConnectionLost for good."""
        with self.lock:
            self._instances[instance_id].returns_after_reboot = False

    @property
    def reboots(self) -> Counter[str]:
        """Reboots per instance id, each asked for by a script that exited 194."""
        with self.lock:
            return Counter(self._reboots)

    def invocation_lag(self, seconds: float) -> None:
        """For ``seconds`` after SendCommand, reads don't know the command yet:
        ListCommandInvocations lists nothing, GetCommandInvocation says InvocationDoesNotExist."""
        self._lag = seconds

    def simulate(
        self, output_fn: Callable[[EmulatedInstance, str], SimulatedOutput] | None
    ) -> None:
        """Don't run bash: ``output_fn(instance, script) -> (stdout, stderr, exit_code)``
        gives each invocation's result (for benchmarks). ``None`` runs scripts again."""
        self._simulate = output_fn

    # --- faults ---------------------------------------------------------------------------------

    def throttle(
        self, share: float = 0.3, services: Iterable[str] = ("ssm",), seed: int = 1
    ) -> None:
        """Answer that share of the requests to ``services`` with the service's throttling
        error (HTTP 400, or S3's 503), drawn from a generator seeded with ``seed``."""
        self.faults.throttle(share, services, seed)

    def fail_next(
        self,
        operation: str,
        code: str = "ThrottlingException",
        times: int = 1,
        after: int = 0,
        message: str | None = None,
        status: int = 400,
        service: str | None = None,
    ) -> None:
        """Skip ``after`` requests of ``operation`` (any service unless ``service`` is given),
        then answer the next ``times`` with error ``code``."""
        self.faults.fail_next(
            operation,
            code,
            times=times,
            after=after,
            message=message if message is not None else f"injected {code}",
            status=status,
            service=service,
        )

    def lose_answers(self, operation: str, times: int = 1) -> None:
        """The next ``times`` requests of ``operation`` are carried out, and their answer is
        lost on the way back: the client sees a connection closed (``ConnectionClosedError``;
        over the HTTP bridge, a dropped connection), not knowing whether it arrived."""
        if times < 1:
            raise ValueError("lose_answers needs times >= 1")
        with self.lock:
            self._lost_answers[operation] += times

    def on_accepted(self, callback: Callable[[EmulatedCommand], None] | None) -> None:
        """Call ``callback(command)`` each time a ``SendCommand`` is accepted, before its answer
        goes back (a crash test kills the sending process there). None removes it."""
        self._on_accepted = callback

    def deny_secret_reads(self, instance_id: str) -> None:
        """The instance's profile may read no parameter or secret: its scripts' ``aws`` reads
        are refused with ``AccessDeniedException``."""
        self._instance_api.deny_secret_reads(instance_id)

    def deny_list_bucket(self, bucket: str) -> None:
        """Callers lack ``s3:ListBucket`` on ``bucket`` (a least-privilege policy): a
        ``GetObject`` of a key that does not exist answers ``403 AccessDenied``, as S3 does,
        instead of ``404 NoSuchKey``."""
        self._s3_access.deny_list_bucket(bucket)

    def deny_get_object(self, bucket: str) -> None:
        """Callers lack ``s3:GetObject`` on ``bucket``: every read answers 403."""
        self._s3_access.deny_get_object(bucket)

    # --- what happened ---------------------------------------------------------------------------

    @property
    def calls(self) -> Counter[tuple[str, str]]:
        """Requests per ``(service, operation)``, every attempt counted."""
        with self.lock:
            return Counter(self._calls)

    @property
    def throttled(self) -> Counter[tuple[str, str]]:
        """Requests per ``(service, operation)`` that were answered with throttling."""
        with self.lock:
            return Counter(
                (r.service, r.operation) for r in self._requests if r.answered_by == "throttled"
            )

    @property
    def send_commands_per_instance(self) -> Counter[str]:
        """Accepted SendCommand calls per instance id."""
        with self.lock:
            return Counter(self._sent)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self._requests)

    @property
    def commands(self) -> list[EmulatedCommand]:
        """Every accepted command, in the order sent."""
        with self.lock:
            return list(self._commands.values())

    def command(self, command_id: str) -> EmulatedCommand:
        with self.lock:
            return self._commands[command_id]

    @property
    def secret_reads(self) -> list[SecretRead]:
        """Every read of a parameter or secret by a script on an instance (its fake ``aws``),
        in order: who, where, what, and how it was answered."""
        return self._instance_api.reads

    def _instance_home(self, instance_id: str) -> tuple[str, str] | None:
        with self.lock:
            instance = self._instances.get(instance_id)
        return None if instance is None else (instance.account_id, instance.region)

    # --- used by the SSM API --------------------------------------------------------------------

    def is_managed(self, account_id: str, region: str, instance_id: str) -> bool:
        with self.lock:
            instance = self._instances.get(instance_id)
            return (
                instance is not None
                and instance.managed
                and instance.account_id == account_id
                and instance.region == region
            )

    def instances_in(self, account_id: str, region: str) -> list[EmulatedInstance]:
        with self.lock:
            return [
                i
                for i in self._instances.values()
                if i.account_id == account_id and i.region == region
            ]

    def visible_commands(
        self, account_id: str, region: str, command_id: str | None
    ) -> list[EmulatedCommand]:
        """Commands of this account and region that SSM's reads already know (past the lag)."""
        known_before = time.time() - self._lag
        with self.lock:
            candidates = (
                [self._commands[command_id]]
                if command_id in self._commands
                else ([] if command_id else list(self._commands.values()))
            )
            return [
                c
                for c in candidates
                if c.account_id == account_id
                and c.region == region
                and c.requested_at <= known_before
            ]

    def accept_command(self, command: EmulatedCommand, instance_ids: list[str]) -> None:
        with self.lock:
            for instance_id in instance_ids:
                command.invocations[instance_id] = Invocation(command, self._instances[instance_id])
                self._sent[instance_id] += 1
            self._commands[command.command_id] = command
        due = command.requested_at + self._pending_seconds
        for inv in command.invocations.values():
            self._scheduler.call_at(due, lambda inv=inv: self._deliver(inv))
        callback = self._on_accepted
        if callback is not None:
            callback(command)

    def cancel(self, command: EmulatedCommand, instance_ids: list[str] | None) -> None:
        now = time.time()
        with self.lock:
            for inv in command.invocations.values():
                wanted = instance_ids is None or inv.instance_id in instance_ids
                if wanted and inv.finish(Outcome("Cancelled", "Canceled"), now):
                    inv.handle.kill()

    # --- the agent's side -------------------------------------------------------------------------

    def _deliver(self, inv: Invocation) -> None:
        now = time.time()
        with self.lock:
            if inv.finished or inv.started_at is not None:
                return
            instance = inv.instance
            plan = instance.offline_plan
            if not instance.online:
                if plan is not None and plan.status_details == "Undeliverable":
                    inv.finish(Outcome(plan.status, plan.status_details), now)
                else:
                    self._scheduler.call_at(self._delivery_deadline(inv), lambda: self._expire(inv))
                return
            if inv.command.document.platform != instance.platform:
                inv.start(now)
                inv.finish(Outcome("Failed", "InvalidPlatform"), now)
                return
            if instance.never_finish:
                inv.start(now)
                return
            if self._simulate is not None:
                stdout, stderr, code, seconds = self._simulated(instance, inv.command.script)
                inv.start(now)
                if code == REBOOT_EXIT_CODE:
                    self._scheduler.call_at(now + seconds, lambda: self._reboot(inv))
                    return
                inv.finish(_ended(code, stdout, stderr, False), now, now + seconds)
                finished = True
            else:
                finished = False
            mid_run = plan if plan is not None and plan.mid_run else None
        if finished:
            self._write_s3(inv)
            return
        if mid_run is not None:
            self._scheduler.call_at(now + mid_run.after_seconds, lambda: self._drop(inv, mid_run))
        self._pool.submit(self._run, inv, mid_run is None)

    def _run(self, inv: Invocation, report: bool) -> None:
        with self.lock:
            if inv.finished:
                return
            inv.start(time.time())
            command = inv.command
            sandbox = inv.instance.sandbox_dir
        run: ScriptRun = run_script(
            sandbox,
            instance_id=inv.instance_id,
            region=command.region,
            command_id=command.command_id,
            plugin_dir=command.document.plugin_dir,
            script=command.script,
            powershell=command.document.powershell,
            timeout_seconds=command.execution_timeout,
            handle=inv.handle,
            instance_api=self._instance_api.url,
        )
        if not report:
            return
        if run.exit_code == REBOOT_EXIT_CODE and not run.timed_out:
            # The agent keeps the invocation InProgress, reboots, and runs the script again.
            due = max(run.ended_at, run.started_at + self._in_progress_min)
            self._scheduler.call_at(due, lambda: self._reboot(inv))
            return
        outcome = _ended(run.exit_code, run.stdout, run.stderr, run.timed_out)
        with self.lock:
            recorded = inv.finish(outcome, run.ended_at, run.started_at + self._in_progress_min)
        if recorded:
            self._write_s3(inv)

    # --- the reboot protocol (exit 194) -----------------------------------------------------------

    def _reboot(self, inv: Invocation) -> None:
        """The agent reboots the instance: ConnectionLost for the reboot time, then the boot."""
        with self.lock:
            if inv.finished:
                return
            inv.instance.ping_status = "ConnectionLost"
            self._reboots[inv.instance_id] += 1
        self._scheduler.call_at(time.time() + self._reboot_seconds, lambda: self._booted(inv))

    def _booted(self, inv: Invocation) -> None:
        """The instance has booted (its default kernel, or the old one when it falls back);
        its agent comes back, unless told never to, and runs the script again from the start."""
        instance = inv.instance
        instance.boot()
        with self.lock:
            if not instance.returns_after_reboot:
                # Nobody will report the invocation: it ends when the command expires.
                self._scheduler.call_at(inv.command.expires_at, lambda: self._lost(inv))
                return
        self.set_online(instance.instance_id)
        with self.lock:
            if inv.finished:
                return
            simulated = self._simulate is not None
        if simulated:
            self._rerun_simulated(inv)
        else:
            self._pool.submit(self._run, inv, True)

    def _rerun_simulated(self, inv: Invocation) -> None:
        now = time.time()
        with self.lock:
            stdout, stderr, code, seconds = self._simulated(inv.instance, inv.command.script)
        if code == REBOOT_EXIT_CODE:
            self._scheduler.call_at(now + seconds, lambda: self._reboot(inv))
            return
        with self.lock:
            inv.finish(_ended(code, stdout, stderr, False), now, now + seconds)
        self._write_s3(inv)

    def _simulated(self, instance: EmulatedInstance, script: str) -> tuple[str, str, int, float]:
        assert self._simulate is not None
        answer = self._simulate(instance, script)
        if len(answer) == 4:
            return answer
        stdout, stderr, code = answer[:3]
        return stdout, stderr, code, self._in_progress_min

    def _lost(self, inv: Invocation) -> None:
        with self.lock:
            inv.finish(Outcome("TimedOut", "ExecutionTimedOut"), time.time())

    def _drop(self, inv: Invocation, plan: OfflinePlan) -> None:
        with self.lock:
            inv.instance.ping_status = "ConnectionLost"
            if inv.finish(Outcome(plan.status, plan.status_details), time.time()):
                inv.handle.kill()

    def _expire(self, inv: Invocation) -> None:
        with self.lock:
            inv.finish(Outcome("TimedOut", "DeliveryTimedOut"), time.time())

    def _delivery_deadline(self, inv: Invocation) -> float:
        if self._delivery_timeout is not None:
            return inv.command.requested_at + self._delivery_timeout
        return inv.command.expires_at

    def _write_s3(self, inv: Invocation) -> None:
        """Full output to S3 at SSM's key layout, as the agent uploads it (non-empty streams)."""
        command = inv.command
        outcome = inv.outcome
        if not command.output_s3_bucket or outcome is None:
            return
        s3 = s3_backends[command.account_id][get_partition(command.region)]
        for stream, text in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
            if not text:
                continue
            try:
                s3.put_object(command.output_s3_bucket, inv.s3_key(stream), text.encode())
            except MissingBucket:
                with self.lock:
                    self.s3_failures.append(f"s3://{command.output_s3_bucket}: no such bucket")

    # --- the botocore hook ----------------------------------------------------------------------

    def answer(self, request: AWSPreparedRequest, event_name: str) -> AWSResponse | None:
        """Answer one request as the ``before-send`` hook would (``event_name`` is
        ``before-send.<service>.<Operation>``): for requests that reach the world another way,
        such as over ``tests.ssm_emulator.http_bridge``."""
        return self._before_send(request, event_name)

    def _before_send(
        self, request: AWSPreparedRequest, event_name: str, **_: Any
    ) -> AWSResponse | None:
        if not self._active:
            # A session made while this world was up outlives it: moto answers for it again.
            return botocore_stubber(event_name=event_name, request=request)
        wire = read_request(event_name, request)
        account, key_partition = self._key_owner(wire.access_key_id)
        endpoint_partition = get_partition(wire.region)
        response: AWSResponse | None = None
        answered_by = "moto"
        if key_partition is not None and key_partition != endpoint_partition:
            code = (
                "UnrecognizedClientException"
                if protocol_of(wire.service) == "json"
                else ("InvalidClientTokenId")
            )
            message = "The security token included in the request is invalid."
            response = error_response(request, wire.service, code, message, 403)
            answered_by = f"denied:{code}"
        elif fault := self.faults.decide(wire.service, wire.operation):
            if fault.throttling:
                response = throttle_response(request, wire.service)
                answered_by = "throttled"
            else:
                response = error_response(
                    request, wire.service, fault.code, fault.message, fault.status
                )
                answered_by = f"fault:{fault.code}"
        elif (
            wire.service == "s3"
            and wire.operation == "GetObject"
            and (refused := self._s3_access.refusal(request))
        ):
            response = error_response(request, "s3", refused, "Access Denied", 403)
            answered_by = f"denied:{refused}"
        elif wire.service == "ssm" and self._api.emulates(wire.operation):
            response = self._api.answer(wire, account, request)
            answered_by = "emulator"
        elif wire.service == "sts" and wire.operation == "AssumeRole" and self._require_roles:
            response = self._refuse_unknown_role(wire, account, request)
            if response is not None:
                answered_by = "denied:AccessDenied"
        if response is None:
            response = botocore_stubber(event_name=event_name, request=request)
        with self.lock:
            self._calls[(wire.service, wire.operation)] += 1
            self._requests.append(
                RecordedRequest(
                    wire.service,
                    wire.operation,
                    wire.host,
                    wire.access_key_id,
                    account,
                    wire.region,
                    answered_by,
                    time.time(),
                )
            )
            lose = answered_by == "emulator" and self._lost_answers[wire.operation] > 0
            if lose:
                self._lost_answers[wire.operation] -= 1
        if lose:
            raise ConnectionClosedError(endpoint_url=request.url)
        return response

    def _refuse_unknown_role(
        self, wire: WireRequest, account: str, request: AWSPreparedRequest
    ) -> AWSResponse | None:
        form = wire.form_body()
        role_arn = form.get("RoleArn", "")
        parts = role_arn.split(":")
        endpoint_partition = get_partition(wire.region)
        with self.lock:
            known = role_arn in self._role_external_ids
            expected_external_id = self._role_external_ids.get(role_arn)
        exists = (
            len(parts) == 6
            and parts[1] == endpoint_partition
            and (known or _role_in_moto(parts[4], parts[1], role_arn))
        )
        external_ok = expected_external_id is None or form.get("ExternalId") == expected_external_id
        if exists and external_ok:
            return None
        caller = f"arn:{endpoint_partition}:iam::{account}:user/cloudops"
        message = (
            f"User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
        )
        return error_response(request, "sts", "AccessDenied", message, 403)

    def _key_owner(self, access_key_id: str | None) -> tuple[str, str | None]:
        """The account (and partition, when moto issued the key) a request acts as."""
        if "MOTO_ACCOUNT_ID" in os.environ:  # moto itself lets this override every key
            return os.environ["MOTO_ACCOUNT_ID"], None
        if not access_key_id:
            return DEFAULT_ACCOUNT_ID, None
        with self.lock:
            cached = self._key_owners.get(access_key_id)
        if cached is not None:
            return cached
        owner: tuple[str, str | None] = (DEFAULT_ACCOUNT_ID, None)
        for account_id, account in list(iam_backends.items()):
            for partition, backend in list(account.items()):
                if access_key_id in backend.access_keys:
                    owner = (account_id, partition)
        with self.lock:
            self._key_owners[access_key_id] = owner
        return owner


def _role_in_moto(account_id: str, partition: str, role_arn: str) -> bool:
    account = iam_backends.get(account_id)
    if account is None or partition not in account:
        return False
    return any(role.arn == role_arn for role in account[partition].get_roles())


def _ended(exit_code: int, stdout: str, stderr: str, timed_out: bool) -> Outcome:
    if timed_out:
        return Outcome("TimedOut", "ExecutionTimedOut", exit_code, stdout, stderr)
    if exit_code == 0:
        return Outcome("Success", "Success", 0, stdout, stderr)
    return Outcome("Failed", "Failed", exit_code, stdout, stderr)
