"""The provider interface every execution backend implements.

A provider runs scripts on servers and tells who it is. Running is split in steps so that each
can be its own retryable Prefect task and a resumed run can re-attach to what it already sent:

    plan = provider.prepare(targets, request)      # group, pre-check, chunk; nothing sent
    ref = provider.send(chunk, request)             # one command per chunk
    ref = provider.find_sent(chunk, request, since) # the command a lost send left, if any
    progress = provider.poll(ref)                    # one poll round, terminal results so far
    results = provider.collect(ref)                  # poll with backoff until done or deadline

``run_request`` (and ``execute_script``/``execute_script_batch`` on top of it) runs those steps
through ``providers.engine``, the one orchestration there is: the flows drive the same engine
with each step as a Prefect task. This module imports nothing from Prefect.

The models (``providers.models``) and errors (``providers.errors``) are re-exported here:
``from providers.base import Target, ScriptResult, ResultStatus`` is the public way in.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import SecretStr

from providers.engine import DirectSteps, run_batch
from providers.errors import CollectInterrupted as CollectInterrupted
from providers.errors import CredentialError as CredentialError
from providers.errors import MissingCredentialsError as MissingCredentialsError
from providers.errors import ProviderError as ProviderError
from providers.errors import SendOutcomeUnknown as SendOutcomeUnknown
from providers.errors import is_safe_to_resend as is_safe_to_resend
from providers.errors import is_transient as is_transient
from providers.models import REQUEST_COMMENT_ROOM as REQUEST_COMMENT_ROOM
from providers.models import Account as Account
from providers.models import BatchResult as BatchResult
from providers.models import BatchStatus as BatchStatus
from providers.models import Chunk as Chunk
from providers.models import CommandProgress as CommandProgress
from providers.models import CommandRef as CommandRef
from providers.models import CredentialReport as CredentialReport
from providers.models import CredentialSource as CredentialSource
from providers.models import DiscoveryFilter as DiscoveryFilter
from providers.models import Instance as Instance
from providers.models import Interpreter as Interpreter
from providers.models import Plan as Plan
from providers.models import Platform as Platform
from providers.models import PollSchedule as PollSchedule
from providers.models import ResultStatus as ResultStatus
from providers.models import ScriptRequest as ScriptRequest
from providers.models import ScriptResult as ScriptResult
from providers.models import SecretHandle as SecretHandle
from providers.models import SecretStore as SecretStore
from providers.models import Target as Target
from providers.partitions import Environment

# Steps of one run going on at once, unless a provider's settings say otherwise.
DEFAULT_MAX_CONCURRENT_GROUPS = 8


class Provider(ABC):
    """Runs scripts on servers. Subclasses register a short ``name`` (``aws``, ``local``)."""

    name: ClassVar[str]

    # Whether a script that exits 194 (Linux) gets the SSM agent's reboot protocol: the agent
    # reboots the server and runs the script again. A provider without it never reboots.
    reboots_through_agent: ClassVar[bool] = False

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
    def find_sent(self, chunk: Chunk, request: ScriptRequest, since: datetime) -> CommandRef | None:
        """The command already sent for ``chunk`` of ``request`` at or after ``since``, or
        None when there is none.

        Asked before sending a chunk again whose earlier send may have gone out (the answer
        was lost to a connection fault, or the process died before recording it), so that a
        retried send re-attaches instead of running the script twice.
        """

    @abstractmethod
    def poll(self, ref: CommandRef, finished: Collection[str] = ()) -> CommandProgress:
        """One look at a command: results of instances that became final since ``finished``
        (instance ids already reported, which are neither fetched nor returned again) and the
        instances still running."""

    @abstractmethod
    def expire(self, ref: CommandRef, pending: Sequence[str]) -> list[ScriptResult]:
        """Results for instances still running when the run's deadline passed."""

    # -- secrets a script reads at run time ------------------------------------------------

    @property
    def secret_stores(self) -> frozenset[SecretStore]:
        """Where scripts this provider runs can read a secret at run time (none by default)."""
        return frozenset()

    def stage_secret(
        self, name: str, value: SecretStr, places: Collection[tuple[str, str]]
    ) -> SecretHandle:
        """Put ``value`` where the scripts this provider runs in ``places`` ((account, region)
        pairs) read it at run time, under ``name``; the handle says where, never what. The
        value never enters a script's text. ``discard_secret`` removes it again.

        A provider whose scripts cannot be handed a secret refuses, saying so.
        """
        raise ProviderError(
            f"the {self.name} provider cannot hand a secret to its scripts at run time; use a "
            "provider that can (aws, local)"
        )

    def discard_secret(self, handle: SecretHandle) -> None:
        """Remove a secret ``stage_secret`` put somewhere, from everywhere it put it. What
        could not be removed is raised at the end, naming it (never the value)."""
        if handle.created_in:
            raise ProviderError(f"the {self.name} provider staged no secret {handle.name!r}")

    def poll_schedule(self) -> PollSchedule:
        """How often ``collect`` looks at a command; also the wait between retried steps."""
        return PollSchedule()

    @property
    def max_concurrent_groups(self) -> int:
        """How many steps of a run (prepare, send, collect) go on at once by default."""
        return DEFAULT_MAX_CONCURRENT_GROUPS

    def api_budget(self, account_id: str, region: str) -> str | None:
        """The name of the API budget that a call for ``account_id``/``region`` spends, shared
        by every run that calls there (AWS: ``ssm-<account>-<region>``, SSM's per account and
        region rate limits), or None when this provider has none. Flows cap it across runs."""
        return None

    def target_problem(self, target: Target) -> str | None:
        """Why this provider can never run anything on ``target`` (a malformed id, a place it
        does not reach), or None. Decided from the target alone, with no call: a flow can
        check its targets with it before it starts."""
        return None

    def region_problem(self, region: str, where: str) -> str | None:
        """Why this provider must not be asked to act in ``region`` (given as ``where``, such
        as ``discovery.regions[0]``), or None. Decided with no call, so that a flow refuses a
        region before anything is signed for it. Providers without regions accept any."""
        return None

    def collect(
        self,
        ref: CommandRef,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] | None = None,
        on_progress: Callable[[CommandProgress], None] | None = None,
        before_poll: Callable[[], None] | None = None,
        poll_ceiling: float | None = None,
    ) -> list[ScriptResult]:
        """Poll ``ref`` with backoff until every instance is final or the deadline passes;
        ``before_poll`` is called before each poll (to wait for an API budget). The waits
        follow :meth:`poll_schedule`, at most ``poll_ceiling`` seconds each when given (the
        request's ``poll_ceiling_seconds``).

        A poll that fails transiently is raised, for the caller to run ``collect`` again. One
        that fails for good after some instances were final raises ``CollectInterrupted``
        with their results, so those are kept: only the instances still running are left
        without one.
        """
        delays = iter(self.poll_schedule().capped(poll_ceiling).delays(rng or random.random))
        finished: dict[str, ScriptResult] = {}
        # A command just sent is never done: the first look waits one interval after the send
        # (a re-attached, older command is looked at straight away).
        since_sent = (datetime.now(UTC) - ref.sent_at).total_seconds()
        if (first_wait := next(delays) - since_sent) > 0:
            sleep(first_wait)
        while True:
            if before_poll is not None:
                before_poll()
            try:
                progress = self.poll(ref, finished.keys())
            except ProviderError as exc:
                if exc.transient or not finished:
                    raise
                raise CollectInterrupted(
                    str(exc), [finished[i] for i in ref.instance_ids if i in finished], exc.code
                ) from exc
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
