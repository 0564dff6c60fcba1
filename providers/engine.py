"""The one engine that runs a script on many targets: group, prepare, send, collect.

``run_batch`` is the whole orchestration, written once::

    groups = group_targets(targets)            # per (account, region), each instance once
    every group   -> runner.prepare(group)     # pre-check and chunk; nothing sent
    every chunk   -> runner.send(chunk)        # one command per chunk
    every command -> runner.collect(ref, req)  # poll with backoff until final or deadline

A ``StepRunner`` decides how each step runs. ``DirectSteps`` runs them in plain Python threads
with retries on transient faults (``Provider.run_request``, and so ``execute_script_batch``,
use it); the flows run each step as a Prefect task instead, with Prefect's retries. Either
way each step is submitted as soon as what it needs is known and returns a future
(``Pending``), so groups, chunks and commands proceed concurrently.

A send that failed in a way that may have delivered it (a connection fault: the answer was
lost, not the request) is sent again only after :func:`look_up_sent` looked the command up
and found none: a script never runs twice because an answer went missing.

Whatever fails, every target ends with exactly one result: a step that fails becomes
``error`` results for exactly the targets it concerned, naming where and what failed.

This module imports nothing from Prefect.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from providers.errors import (
    CollectInterrupted,
    ProviderError,
    SendOutcomeUnknown,
    is_safe_to_resend,
    is_transient,
)
from providers.models import (
    BatchResult,
    Chunk,
    CommandProgress,
    CommandRef,
    Plan,
    PollSchedule,
    ResultStatus,
    ScriptRequest,
    ScriptResult,
    Target,
)

T = TypeVar("T", covariant=True)
R = TypeVar("R")


class Pending(Protocol[T]):
    """A step submitted and not necessarily finished: ``result()`` waits for its value or
    raises its exception. ``concurrent.futures.Future`` and ``PrefectFuture`` both fit."""

    def result(self) -> T: ...


@dataclass(frozen=True)
class TargetGroup:
    """The targets of one (account, region), each instance once, in the order given."""

    account_id: str
    region: str
    targets: tuple[Target, ...]

    @property
    def name(self) -> str:
        """``<account>-<region>``, e.g. ``111122223333-us-east-1``, for task names and logs.

        An empty part is written ``no-account`` or ``no-region``, so the name still says what
        is missing: the local provider's bare ``localhost`` target (no account, no region)
        is in group ``no-account-no-region``.
        """
        return f"{self.account_id or 'no-account'}-{self.region or 'no-region'}"


def group_targets(targets: Iterable[Target]) -> list[TargetGroup]:
    """Targets per (account, region), groups in the order they first appear and targets in
    the order given; an instance named twice in the same account and region is kept once."""
    groups: dict[tuple[str, str], list[Target]] = {}
    seen: set[tuple[str, str, str]] = set()
    for target in targets:
        identity = _identity(target)
        if identity in seen:
            continue
        seen.add(identity)
        groups.setdefault((target.account_id, target.region), []).append(target)
    return [
        TargetGroup(account_id=account_id, region=region, targets=tuple(members))
        for (account_id, region), members in groups.items()
    ]


class StepRunner(Protocol):
    """How each step of a run is executed: directly in threads, or as a Prefect task.

    Each method submits its step and returns at once; the step's failure is raised by
    ``result()`` of what it returned.
    """

    def prepare(self, group: TargetGroup, request: ScriptRequest) -> Pending[Plan]: ...

    def send(self, chunk: Chunk, request: ScriptRequest) -> Pending[CommandRef]: ...

    def collect(self, ref: CommandRef, request: ScriptRequest) -> Pending[list[ScriptResult]]: ...


def run_batch(
    runner: StepRunner,
    targets: Sequence[Target],
    request: ScriptRequest,
    *,
    on_results: Callable[[Sequence[ScriptResult]], None] | None = None,
    on_problem: Callable[[str], None] | None = None,
) -> BatchResult:
    """Run ``request`` on every target through ``runner``; every target gets exactly one result.

    Every group's prepare is submitted first, then each chunk's send as soon as its group is
    prepared, then each command's collect as soon as it is sent. A step that fails becomes
    ``error`` results for exactly the targets it concerned (a group, a chunk, a command); a
    target a step left without a result gets one saying so.

    ``on_results`` is called with each set of final results as it becomes known (to show
    progress); ``on_problem`` gets one line for a person for each step that failed (to log).
    """
    groups = group_targets(targets)
    ledger = _Ledger(groups, on_results, on_problem)

    prepares = [(group, runner.prepare(group, request)) for group in groups]
    sends: list[tuple[Chunk, Pending[CommandRef]]] = []
    for group, pending_plan in prepares:
        try:
            plan = pending_plan.result()
        except Exception as exc:
            ledger.step_failed(
                f"prepare {group.name} failed for {len(group.targets)} target(s): {exc}",
                group.targets,
                f"not run: the targets in {_where(group.account_id, group.region)} could not "
                f"be prepared: {exc}",
            )
            continue
        ledger.add(plan.results)
        sends.extend((chunk, runner.send(chunk, request)) for chunk in plan.chunks)

    collects: list[tuple[Chunk, CommandRef, Pending[list[ScriptResult]]]] = []
    for chunk, pending_ref in sends:
        where = _where(chunk.account_id, chunk.region)
        try:
            ref = pending_ref.result()
        except Exception as exc:
            ledger.step_failed(
                f"send of chunk {chunk.key} to {len(chunk.targets)} instance(s) in {where} "
                f"failed: {exc}",
                chunk.targets,
                f"sending to {where} failed: {exc}{_maybe_sent(exc)}",
            )
            continue
        collects.append((chunk, ref, runner.collect(ref, request)))

    for chunk, ref, pending_results in collects:
        try:
            results = pending_results.result()
        except Exception as exc:
            where = _where(chunk.account_id, chunk.region)
            if isinstance(exc, CollectInterrupted):
                # The instances that were final before the command became unreadable.
                ledger.add(exc.results)
            ledger.step_failed(
                f"collect of command {ref.command_id} ({len(chunk.targets)} instance(s) in "
                f"{where}) failed: {exc}",
                chunk.targets,
                f"sent in {where} as command {ref.command_id}, but its results could not be "
                f"read: {exc}",
                command_id=ref.command_id,
            )
            continue
        ledger.add(results)
    return ledger.close()


class SteppedProvider(Protocol):
    """What the engine needs of a provider: its steps. (``providers.base.Provider`` has them;
    the engine names only what it uses, so the interface may build on the engine.)"""

    def prepare(self, targets: Sequence[Target], request: ScriptRequest) -> Plan: ...

    def send(self, chunk: Chunk, request: ScriptRequest) -> CommandRef: ...

    def find_sent(
        self, chunk: Chunk, request: ScriptRequest, since: datetime
    ) -> CommandRef | None: ...

    def collect(
        self,
        ref: CommandRef,
        *,
        sleep: Callable[[float], None] = ...,
        rng: Callable[[], float] | None = ...,
        on_progress: Callable[[CommandProgress], None] | None = ...,
        before_poll: Callable[[], None] | None = ...,
        poll_ceiling: float | None = ...,
    ) -> list[ScriptResult]: ...

    def poll_schedule(self) -> PollSchedule: ...


class DirectSteps:
    """A ``StepRunner`` in plain Python: each step of ``provider`` runs on ``executor``.

    A step that fails transiently (``ProviderError.transient``) is tried again, at most
    ``attempts`` times in all, waiting on the provider's poll schedule in between. A send that
    failed in a way that may have delivered it (a connection fault, not a throttle) is looked
    up before it is tried again (:func:`look_up_sent`), so a script never runs twice.
    """

    def __init__(
        self,
        provider: SteppedProvider,
        executor: Executor,
        *,
        attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {attempts}")
        self._provider = provider
        self._executor = executor
        self._attempts = attempts
        self._sleep = sleep
        # Every command of the run polls on the same jittered schedule (relative to its own
        # send). A run ends with its slowest command; with a schedule drawn per command, some
        # command would nearly always draw a look just before it finished and wait a whole
        # interval more. Different runs still draw different schedules.
        self._poll_seed = random.random()

    def prepare(self, group: TargetGroup, request: ScriptRequest) -> Future[Plan]:
        """Submit the pre-check and chunking of one group."""
        targets = list(group.targets)
        return self._submit(lambda: self._provider.prepare(targets, request), is_transient)

    def send(self, chunk: Chunk, request: ScriptRequest) -> Future[CommandRef]:
        """Submit the send of one chunk; after a failure that may have delivered it, the
        command is looked up before the chunk is sent again."""
        since = datetime.now(UTC)
        maybe_out = False  # an earlier attempt failed in a way that may have delivered it

        def send() -> CommandRef:
            nonlocal maybe_out
            if maybe_out and (found := look_up_sent(self._provider, chunk, request, since)):
                return found
            try:
                ref = self._provider.send(chunk, request)
            except Exception as exc:
                # A throttled send created nothing; after any other failure it may be out.
                maybe_out = not is_safe_to_resend(exc)
                raise
            return ref

        return self._submit(send, is_transient)

    def collect(self, ref: CommandRef, request: ScriptRequest) -> Future[list[ScriptResult]]:
        """Submit the polling of one command until it is final or past its deadline."""

        def collect() -> list[ScriptResult]:
            rng = random.Random(self._poll_seed).random
            return self._provider.collect(
                ref, sleep=self._sleep, rng=rng, poll_ceiling=request.poll_ceiling_seconds
            )

        return self._submit(collect, is_transient)

    def _submit(
        self, step: Callable[[], R], retry_if: Callable[[BaseException], bool]
    ) -> Future[R]:
        def attempt() -> R:
            delays = iter(self._provider.poll_schedule().delays(random.random))
            return call_with_retries(
                step,
                attempts=self._attempts,
                delays=delays,
                sleep=self._sleep,
                retry_if=retry_if,
            )

        return self._executor.submit(attempt)


def look_up_sent(
    provider: SteppedProvider, chunk: Chunk, request: ScriptRequest, since: datetime
) -> CommandRef | None:
    """The command an earlier send of ``chunk`` (at or after ``since``) left, or None.

    For a send that may have gone out without anyone learning so: a lost answer, or a
    process that died before recording it. A lookup that fails for good raises
    ``SendOutcomeUnknown``: nobody knows whether the command went out, so it is neither sent
    again nor followed.
    """
    try:
        return provider.find_sent(chunk, request, since)
    except ProviderError as exc:
        if exc.transient:
            raise
        raise SendOutcomeUnknown(
            f"an earlier send of chunk {chunk.key} may have gone out, and looking it up "
            f"failed: {exc}",
            code=exc.code,
        ) from exc


def call_with_retries(
    step: Callable[[], R],
    *,
    attempts: int,
    delays: Iterator[float],
    sleep: Callable[[float], None],
    retry_if: Callable[[BaseException], bool] = is_transient,
) -> R:
    """``step()``, tried again after ``next(delays)`` seconds while it raises an exception
    that ``retry_if`` accepts, at most ``attempts`` times in all; the last exception (or the
    first one ``retry_if`` refuses) is raised as it is."""
    attempt = 1
    while True:
        try:
            return step()
        except Exception as exc:
            if attempt >= attempts or not retry_if(exc):
                raise
        attempt += 1
        sleep(next(delays))


class _Ledger:
    """The results of one run, at most one per target, reported as they arrive."""

    def __init__(
        self,
        groups: Sequence[TargetGroup],
        on_results: Callable[[Sequence[ScriptResult]], None] | None,
        on_problem: Callable[[str], None] | None,
    ):
        self._targets = {_identity(t): t for group in groups for t in group.targets}
        self._results: dict[tuple[str, str, str], ScriptResult] = {}
        self._on_results = on_results
        self._on_problem = on_problem

    def add(self, results: Iterable[ScriptResult]) -> None:
        """Keep each target's first result; a result for no target (or a second one) is a
        provider's mistake, said to ``on_problem`` and left out."""
        fresh: list[ScriptResult] = []
        for result in results:
            key = (result.account_id, result.region, result.instance_id)
            if key not in self._targets:
                self._problem(
                    f"a result for {result.instance_id}, which was not a target, " "was left out"
                )
            elif key in self._results:
                self._problem(f"a second result for {result.instance_id} was left out")
            else:
                self._results[key] = result
                fresh.append(result)
        if fresh and self._on_results is not None:
            self._on_results(fresh)

    def step_failed(
        self,
        problem: str,
        targets: Iterable[Target],
        error: str,
        command_id: str | None = None,
    ) -> None:
        """``error`` results for ``targets`` (those still without a result)."""
        self._problem(problem)
        self.add(
            ScriptResult.without_running(t, ResultStatus.ERROR, error, command_id=command_id)
            for t in targets
            if _identity(t) not in self._results
        )

    def close(self) -> BatchResult:
        """Every target's result; a target no step answered for gets an ``error`` one."""
        missing = [t for key, t in self._targets.items() if key not in self._results]
        if missing:
            self.step_failed(
                f"{len(missing)} target(s) got no result from any step",
                missing,
                "no result came back for this target (the provider returned none for it): "
                "run it again",
            )
        return BatchResult.from_results(self._results.values())

    def _problem(self, line: str) -> None:
        if self._on_problem is not None:
            self._on_problem(line)


def _maybe_sent(exc: BaseException) -> str:
    """What a person should know when a send failed in a way that may have delivered it."""
    if isinstance(exc, SendOutcomeUnknown) or (is_transient(exc) and not is_safe_to_resend(exc)):
        return (
            " (the command may have gone out all the same, so it was not sent again: check "
            "the instances before running it again)"
        )
    return ""


def _identity(target: Target) -> tuple[str, str, str]:
    return (target.account_id, target.region, target.instance_id)


def _where(account_id: str, region: str) -> str:
    return f"account {account_id or '(none)'} region {region or '(none)'}"
