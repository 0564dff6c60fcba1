"""The vocabulary of providers: targets, requests, results and the steps of a run.

Plain data (pydantic models and enums): what a flow gives a provider and what it gets back.
Imported by the interface (``providers.base``), the engine and every provider; imports none
of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from providers.partitions import Environment


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


# How much of a command's comment (SSM allows 100 characters) a request's own comment should
# use: a provider ends it with a marker of the chunk (``#<20-character key>`` for SSM), so that
# a run which never learnt of a command it sent can find it again. Longer comments are cut.
REQUEST_COMMENT_ROOM = 78


class ScriptRequest(BaseModel):
    """What to run and its limits, shared by every chunk of one run."""

    script: str = Field(min_length=1)
    interpreter: Interpreter = Interpreter.BASH
    timeout_seconds: int = Field(default=300, ge=1, le=172_800, description="execution limit")
    delivery_timeout_seconds: int = Field(
        default=600, ge=30, le=2_592_000, description="how long SSM tries to deliver"
    )
    comment: str = Field(
        default="",
        max_length=100,
        description=f"for a person reading the command history; past {REQUEST_COMMENT_ROOM} "
        "characters it is cut to leave room for the provider's chunk marker",
    )
    max_concurrency: str | None = None
    max_errors: str | None = None
    poll_ceiling_seconds: float | None = Field(
        default=None,
        gt=0,
        description="the longest wait between two looks at a command of this request, below "
        "the provider's own ceiling: for a run that must act the moment its commands end (a "
        "wave of reboots), at the price of more polls; None keeps the provider's schedule",
    )

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


class SecretStore(StrEnum):
    """Where a script reads a secret at run time, on the machine it runs on."""

    PARAMETER_STORE = "parameter-store"  # an SSM SecureString parameter
    SECRETS_MANAGER = "secrets-manager"  # a Secrets Manager secret
    FILE = "file"  # a file only the script's user can read (the local provider)


class SecretHandle(BaseModel):
    """Where the scripts of a run find a secret: its store and name, never its value.

    ``created_in``: the (account, region) pairs where this run put the secret itself, and so
    deletes it from once the scripts that needed it have run (empty for a secret an operator
    keeps there).
    """

    model_config = ConfigDict(frozen=True)

    store: SecretStore
    name: str = Field(min_length=1, max_length=2048)
    created_in: tuple[tuple[str, str], ...] = ()


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

    def capped(self, ceiling_seconds: float | None) -> PollSchedule:
        """This schedule with waits of at most ``ceiling_seconds`` (itself when None or
        higher than its own ceiling)."""
        if ceiling_seconds is None or ceiling_seconds >= self.max_seconds:
            return self
        return self.model_copy(
            update={
                "max_seconds": ceiling_seconds,
                "initial_seconds": min(self.initial_seconds, ceiling_seconds),
            }
        )

    def delays(self, rng: Callable[[], float]) -> Iterable[float]:
        delay = self.initial_seconds
        while True:
            spread = delay * self.jitter
            yield max(0.0, delay - spread + 2 * spread * rng())
            delay = min(self.max_seconds, delay * self.factor)
