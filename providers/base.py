"""The provider interface every execution backend implements, and the models it speaks.

A provider runs scripts on servers and tells who it is. Running is split in steps so that each
can be its own retryable Prefect task and a resumed run can re-attach to what it already sent:

    plan = provider.prepare(targets, request)      # group, pre-check, chunk; nothing sent
    ref = provider.send(chunk, request)             # one command per chunk
    progress = provider.poll(ref)                    # one poll round, terminal results so far
    results = provider.collect(ref)                  # poll with backoff until done or deadline

``run_request`` (and ``execute_script``/``execute_script_batch`` on top of it) runs those steps
through ``providers.engine``, the one orchestration there is: the flows drive the same engine
with each step as a Prefect task. This module imports nothing from Prefect.
"""

from __future__ import annotations

import hashlib
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from providers.partitions import Environment

# Steps of one run going on at once, unless a provider's settings say otherwise.
DEFAULT_MAX_CONCURRENT_GROUPS = 8


class Platform(StrEnum):
    LINUX = "linux"
    WINDOWS = "windows"


class Interpreter(StrEnum):
    """How a script is run. bash, sh and python run on Linux; powershell on Windows."""

    BASH = "bash"
    SH = "sh"
    PYTHON = "python"
    POWERSHELL = "powershell"

    @property
    def platform(self) -> Platform:
        return Platform.WINDOWS if self is Interpreter.POWERSHELL else Platform.LINUX


class ResultStatus(StrEnum):
    """Outcome of a script on one instance."""

    SUCCESS = "success"
    FAILED = "failed"  # ran and exited non-zero
    TIMED_OUT = "timed_out"  # ran past its execution timeout, or the run's deadline passed
    CANCELLED = "cancelled"
    UNDELIVERABLE = "undeliverable"  # the agent never received it (delivery timeout, gone)
    NOT_MANAGED = "not_managed"  # unknown to SSM: no agent, no instance profile, wrong account
    OFFLINE = "offline"  # known to SSM but its agent is not Online
    SKIPPED = "skipped"  # deliberately not sent (platform mismatch, not applicable)
    ERROR = "error"  # we could not run it (credentials, API refusal, bad target)

    @property
    def is_success(self) -> bool:
        return self is ResultStatus.SUCCESS

    @property
    def reached(self) -> bool:
        """The script ran to an exit code on the instance (``success`` or ``failed``), so its
        output can be read; every other status means it never ran, or never finished."""
        return self in (ResultStatus.SUCCESS, ResultStatus.FAILED)


class CredentialSource(StrEnum):
    BLOCK = "block"
    ENV = "env"
    PROFILE = "profile"
    DEFAULT_CHAIN = "default_chain"
    LOCAL = "local"


class Target(BaseModel):
    """One server to run on. The local provider's only target is ``localhost``."""

    model_config = ConfigDict(frozen=True)

    instance_id: str = Field(min_length=1, max_length=64)
    account_id: str = Field(default="", max_length=12)
    region: str = Field(default="", max_length=32)
    platform: Platform = Platform.LINUX
    name: str | None = Field(default=None, max_length=255)

    @property
    def label(self) -> str:
        """How a person names this target in a message."""
        where = "/".join(p for p in (self.account_id, self.region) if p)
        return f"{self.instance_id} ({where})" if where else self.instance_id


class Instance(BaseModel):
    """A server found by discovery."""

    instance_id: str
    name: str | None = None
    state: str
    platform: Platform
    tags: dict[str, str] = Field(default_factory=dict)
    account_id: str
    region: str
    environment: Environment | None = None
    ssm_managed: bool = False
    ping_status: str | None = None

    def to_target(self) -> Target:
        return Target(
            instance_id=self.instance_id,
            account_id=self.account_id,
            region=self.region,
            platform=self.platform,
            name=self.name,
        )


class DiscoveryFilter(BaseModel):
    """Which instances to find: accounts and regions to look in, tags that must match."""

    accounts: list[str] = Field(default_factory=list, description="empty: the caller's account")
    regions: list[str] = Field(default_factory=list, description="empty: the provider's defaults")
    tags: dict[str, str] = Field(default_factory=dict, description="tag key -> required value")
    states: list[str] = Field(default_factory=lambda: ["running"])
    platform: Platform | None = None


class Account(BaseModel):
    account_id: str
    account_name: str | None = None
    environment: Environment | None = None


class CredentialReport(BaseModel):
    """Who a provider acts as. Never holds the secret."""

    environment: Environment | None = None
    account_id: str
    arn: str
    partition: str
    source: CredentialSource
    expiry: datetime | None = None
    region: str | None = None


class ScriptRequest(BaseModel):
    """What to run and its limits, shared by every chunk of one run."""

    script: str = Field(min_length=1)
    interpreter: Interpreter = Interpreter.BASH
    timeout_seconds: int = Field(default=300, ge=1, le=172_800, description="execution limit")
    delivery_timeout_seconds: int = Field(
        default=600, ge=30, le=2_592_000, description="how long SSM tries to deliver"
    )
    comment: str = Field(default="", max_length=100)
    max_concurrency: str | None = None
    max_errors: str | None = None

    @property
    def platform(self) -> Platform:
        return self.interpreter.platform

    def fingerprint(self) -> str:
        """Identifies this request, so a chunk key changes when the script changes."""
        h = hashlib.sha256()
        for part in (self.script, self.interpreter, str(self.timeout_seconds), self.comment):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()[:16]


class ScriptResult(BaseModel):
    """The outcome of a script on one instance."""

    instance_id: str
    account_id: str = ""
    region: str = ""
    status: ResultStatus
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    command_id: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = Field(default=None, description="what went wrong, for a person")

    @classmethod
    def without_running(
        cls, target: Target, status: ResultStatus, error: str, command_id: str | None = None
    ) -> ScriptResult:
        """A result for a target that was not (or could not be) run."""
        now = datetime.now(UTC)
        return cls(
            instance_id=target.instance_id,
            account_id=target.account_id,
            region=target.region,
            status=status,
            error=error,
            command_id=command_id,
            started_at=now,
            ended_at=now,
        )


class BatchStatus(StrEnum):
    """Outcome of a run over many instances, from how many succeeded and how many did not."""

    SUCCESS = "success"
    PARTIAL = "partial"
    FAILED = "failed"

    @classmethod
    def of(cls, succeeded: int, failed: int) -> BatchStatus:
        """``success`` when at least one instance succeeded and none failed; ``partial`` when
        some succeeded and some failed; ``failed`` when none succeeded, which includes a run
        over no instance at all (nothing was shown to work).

        ``failed`` counts every instance that did not succeed, whatever the reason (a non-zero
        exit, a timeout, an offline agent, a skipped target).
        """
        if succeeded < 0 or failed < 0:
            raise ValueError(f"counts cannot be negative: {succeeded} succeeded, {failed} failed")
        if succeeded and not failed:
            return cls.SUCCESS
        if succeeded:
            return cls.PARTIAL
        return cls.FAILED


class BatchResult(BaseModel):
    """Every instance's result of one run, its counts and its overall status."""

    status: BatchStatus
    results: list[ScriptResult]
    success_count: int
    failure_count: int

    @classmethod
    def from_results(cls, results: Iterable[ScriptResult]) -> BatchResult:
        """The results in a stable order (account, region, instance) with ``BatchStatus.of``
        their counts; an instance that did not succeed counts as a failure."""
        ordered = sorted(results, key=lambda r: (r.account_id, r.region, r.instance_id))
        ok = sum(1 for r in ordered if r.status.is_success)
        failed = len(ordered) - ok
        return cls(
            status=BatchStatus.of(ok, failed),
            results=ordered,
            success_count=ok,
            failure_count=failed,
        )


class Chunk(BaseModel):
    """Targets that go out as one command: same account, region and document, at most 50."""

    key: str = Field(description="stable across re-runs of the same request on the same targets")
    account_id: str
    region: str
    targets: list[Target]

    @property
    def instance_ids(self) -> list[str]:
        return [t.instance_id for t in self.targets]

    @staticmethod
    def make_key(account_id: str, region: str, instance_ids: Sequence[str], request_id: str) -> str:
        h = hashlib.sha256("|".join([account_id, region, request_id, *instance_ids]).encode())
        return h.hexdigest()[:20]


class Plan(BaseModel):
    """What ``prepare`` decided: chunks to send, and results for targets not to be sent."""

    chunks: list[Chunk] = Field(default_factory=list)
    results: list[ScriptResult] = Field(default_factory=list)


class CommandRef(BaseModel):
    """A command that was sent: enough to poll it from any process."""

    command_id: str
    chunk_key: str
    account_id: str
    region: str
    instance_ids: list[str]
    sent_at: datetime
    deadline: datetime = Field(description="past this the remaining invocations are timed_out")
    output_s3_bucket: str | None = None
    output_s3_prefix: str | None = None
    delivery_timeout_seconds: int | None = Field(
        default=None, description="SSM's delivery limit, to say so when it ran out"
    )


class CommandProgress(BaseModel):
    """One poll of one command: the results that are final, and who is still running."""

    ref: CommandRef
    results: list[ScriptResult] = Field(default_factory=list, description="newly final")
    pending: list[str] = Field(default_factory=list, description="not final yet")

    @model_validator(mode="after")
    def _no_instance_twice(self) -> CommandProgress:
        finished = {r.instance_id for r in self.results}
        if finished & set(self.pending):
            raise ValueError("an instance cannot be both finished and pending")
        return self


class PollSchedule(BaseModel):
    """How often to poll: start fast, back off to a ceiling, with jitter."""

    initial_seconds: float = Field(default=2.0, gt=0)
    max_seconds: float = Field(default=15.0, gt=0)
    factor: float = Field(default=1.5, ge=1.0)
    jitter: float = Field(default=0.2, ge=0.0, le=1.0)
    grace_seconds: float = Field(default=60.0, ge=0)

    def delays(self, rng: Callable[[], float]) -> Iterable[float]:
        delay = self.initial_seconds
        while True:
            spread = delay * self.jitter
            yield max(0.0, delay - spread + 2 * spread * rng())
            delay = min(self.max_seconds, delay * self.factor)


class ProviderError(Exception):
    """A provider could not do what was asked; the message says what and where.

    ``transient``: the failure may pass (throttling, a connection fault), so the same step may
    be tried again; permanent ones (access denied, invalid input) are reported at once.

    ``safe_to_repeat``: the provider knows the failed call changed nothing (AWS refused it by
    throttling it), so repeating even a call that creates something, a send, cannot run the
    script twice. After a connection fault nobody knows whether the call arrived: such an
    error is transient but not safe to repeat, and a send is then reported, not repeated.
    Reads (prepare, poll, collect) change nothing and are always safe to repeat.

    ``code``: the backend's own error code, when it gave one (``ThrottlingException``).
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        safe_to_repeat: bool = False,
        code: str | None = None,
    ):
        super().__init__(message)
        self.transient = transient
        self.safe_to_repeat = safe_to_repeat
        self.code = code


class CredentialError(ProviderError):
    """Credentials for an environment or an account could not be had, or were refused."""


class MissingCredentialsError(CredentialError):
    """No source holds credentials for an environment (as opposed to credentials refused)."""


def is_transient(exc: BaseException) -> bool:
    """Whether trying the failed step again may help: only a ``ProviderError`` that says so.

    Anything else (a bug, a refusal, an exception no provider classified) is permanent.
    """
    return isinstance(exc, ProviderError) and exc.transient


def is_safe_to_resend(exc: BaseException) -> bool:
    """Whether a failed send may be sent again without risk of running the script twice:
    transient, and known to have changed nothing (``ProviderError.safe_to_repeat``)."""
    return is_transient(exc) and isinstance(exc, ProviderError) and exc.safe_to_repeat


class Provider(ABC):
    """Runs scripts on servers. Subclasses register a short ``name`` (``aws``, ``local``)."""

    name: ClassVar[str]

    @abstractmethod
    def validate_credentials(self, environment: Environment | None = None) -> CredentialReport:
        """Who this provider acts as in ``environment`` (its home environment when None)."""

    @abstractmethod
    def discover_instances(self, filters: DiscoveryFilter) -> list[Instance]: ...

    @abstractmethod
    def enumerate_accounts(self) -> list[Account]: ...

    @abstractmethod
    def enumerate_regions(self) -> list[str]: ...

    @abstractmethod
    def prepare(self, targets: Sequence[Target], request: ScriptRequest) -> Plan:
        """Check targets and group them into chunks. Sends nothing.

        What this provider cannot run (a malformed target, the wrong platform, an instance
        it cannot reach) gets its result here, so it is never sent.
        """

    @abstractmethod
    def send(self, chunk: Chunk, request: ScriptRequest) -> CommandRef:
        """Send one chunk as one command."""

    @abstractmethod
    def poll(self, ref: CommandRef, finished: Collection[str] = ()) -> CommandProgress:
        """One look at a command: results of instances that became final since ``finished``
        (instance ids already reported, which are neither fetched nor returned again) and the
        instances still running."""

    @abstractmethod
    def expire(self, ref: CommandRef, pending: Sequence[str]) -> list[ScriptResult]:
        """Results for instances still running when the run's deadline passed."""

    def poll_schedule(self) -> PollSchedule:
        """How often ``collect`` looks at a command; also the wait between retried steps."""
        return PollSchedule()

    @property
    def max_concurrent_groups(self) -> int:
        """How many steps of a run (prepare, send, collect) go on at once by default."""
        return DEFAULT_MAX_CONCURRENT_GROUPS

    def target_problem(self, target: Target) -> str | None:
        """Why this provider can never run anything on ``target`` (a malformed id, a place it
        does not reach), or None. Decided from the target alone, with no call: a flow can
        check its targets with it before it starts."""
        return None

    def collect(
        self,
        ref: CommandRef,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] | None = None,
        on_progress: Callable[[CommandProgress], None] | None = None,
    ) -> list[ScriptResult]:
        """Poll ``ref`` with backoff until every instance is final or the deadline passes."""
        delays = iter(self.poll_schedule().delays(rng or random.random))
        finished: dict[str, ScriptResult] = {}
        # A command just sent is never done: the first look waits one interval after the send
        # (a re-attached, older command is looked at straight away).
        since_sent = (datetime.now(UTC) - ref.sent_at).total_seconds()
        if (first_wait := next(delays) - since_sent) > 0:
            sleep(first_wait)
        while True:
            progress = self.poll(ref, finished.keys())
            for result in progress.results:
                finished.setdefault(result.instance_id, result)
            if on_progress is not None:
                on_progress(progress)
            pending = [i for i in ref.instance_ids if i not in finished]
            if not pending:
                break
            remaining = (ref.deadline - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                for result in self.expire(ref, pending):
                    finished[result.instance_id] = result
                break
            sleep(min(next(delays), remaining))
        return [finished[i] for i in ref.instance_ids]

    def run_request(
        self,
        targets: Sequence[Target],
        request: ScriptRequest,
        *,
        max_workers: int | None = None,
    ) -> BatchResult:
        """Run ``request`` on every target and wait; every target gets exactly one result.

        The engine of every workflow (``providers.engine.run_batch``) with each step run in a
        pool of ``max_workers`` threads (default ``max_concurrent_groups``): (account, region)
        groups are prepared concurrently, each chunk is sent once its group is prepared, and
        each command is collected on the poll schedule once it is sent.
        """
        # The engine builds on this module, so it is imported when first needed.
        from providers.engine import DirectSteps, run_batch

        workers = max_workers or self.max_concurrent_groups
        with ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"{self.name}-step"
        ) as pool:
            return run_batch(DirectSteps(self, pool), targets, request)

    def execute_script_batch(
        self,
        targets: Sequence[Target],
        script: str,
        interpreter: Interpreter | str = Interpreter.BASH,
        timeout: int = 300,
    ) -> BatchResult:
        """Run ``script`` on every target and wait for all of them (``run_request`` with the
        default delivery timeout, no comment and no rate limits)."""
        request = ScriptRequest(
            script=script, interpreter=Interpreter(interpreter), timeout_seconds=timeout
        )
        return self.run_request(targets, request)

    def execute_script(
        self,
        target: Target,
        script: str,
        interpreter: Interpreter | str = Interpreter.BASH,
        timeout: int = 300,
    ) -> ScriptResult:
        """Run ``script`` on one target and wait for it."""
        return self.execute_script_batch([target], script, interpreter, timeout).results[0]
