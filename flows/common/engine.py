"""The engine every workflow uses, with each step a retryable Prefect task.

The orchestration itself (group, prepare, send, collect; one result per target whatever
fails) is :func:`providers.engine.run_batch`, the same code ``execute_script_batch`` runs in
plain Python. Here each step is a Prefect task, so a person sees it in the run's page and
Prefect retries it:

1. ``prepare-<account>-<region> (<step>)``: check the group's targets (SSM registration, ping,
   platform) and cut them into chunks. Nothing is sent.
2. ``send-<account>-<region>-<n> (<step>)``: one command per chunk. A chunk already sent
   under the same run key (a retried or resumed flow run) is re-attached to, never sent again.
   The intent to send is recorded before the command goes out, so a run that died between
   sending and recording looks the command up in the provider's history
   (``Provider.find_sent``) instead of sending it twice; a send retried after a connection
   fault does the same.
3. ``collect-<account>-<region>-<n> (<step>)``: poll the command with backoff until every
   instance is final or the deadline passes.

Task runs grow with the number of chunks (at most 50 instances each), not with instances.
Transient faults (``ProviderError.transient``: throttling, connection errors, expired tokens)
are retried with jitter; permanent ones (access denied, invalid input) are reported at once.

Each call that spends the provider's API budget of an (account, region) first takes a slot of
the Prefect global rate limit of that name, shared by every run (see
:mod:`flows.common.api_budget`): a prepare per page of 50 instances, a send, a poll round.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.context import get_run_context
from prefect.futures import PrefectFuture
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import Task, exponential_backoff

from flows.common.api_budget import spend_api_budget
from flows.common.progress import InstanceProgress
from flows.common.settings import get_settings
from flows.store import Store
from providers import engine
from providers.base import (
    BatchResult,
    Chunk,
    CommandProgress,
    CommandRef,
    Plan,
    Provider,
    ResultStatus,
    ScriptRequest,
    ScriptResult,
    Target,
    is_transient,
)
from providers.engine import TargetGroup, look_up_sent
from providers.local import LOCAL_ACCOUNT_ID, LOCAL_REGION


def retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry throttling and connection faults only."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, re-raised by result()
        return is_transient(exc)
    return False


TRANSIENT_RETRIES: dict[str, Any] = dict(
    retries=5,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_if_transient,
    # Providers hold clients and credentials: never hash or persist them as task inputs.
    cache_policy=NO_CACHE,
)


def place_label(account_id: str, region: str) -> str:
    """How a person names where a group runs: ``111122223333-us-east-1``, or ``local`` for
    the worker itself."""
    if {account_id, region} <= {"", LOCAL_ACCOUNT_ID} | {LOCAL_REGION}:
        return "local"
    return f"{account_id or 'no-account'}-{region or 'no-region'}"


@task(name="prepare-targets", task_run_name="prepare-{label} ({step})", **TRANSIENT_RETRIES)
def prepare_group(
    provider: Provider, targets: list[Target], request: ScriptRequest, label: str, step: str
) -> Plan:
    """Pre-check one (account, region) group and cut it into chunks."""
    if targets:
        # One DescribeInstanceInformation page per 50 instances.
        pages = -(-len(targets) // 50)
        spend_api_budget(provider, targets[0].account_id, targets[0].region, pages)
    plan = provider.prepare(targets, request)
    not_sent = len(plan.results)
    get_run_logger().info(
        "%s %s: %d target(s), %d to send in %d chunk(s), %d not sent",
        step,
        label,
        len(targets),
        len(targets) - not_sent,
        len(plan.chunks),
        not_sent,
    )
    return plan


# Retried on every transient fault, a connection fault included: each attempt looks for the
# command an earlier one may have sent before it sends (the intent says when to look from).
@task(name="send-command", task_run_name="send-{label} ({step})", **TRANSIENT_RETRIES)
def send_chunk(
    provider: Provider,
    chunk: Chunk,
    request: ScriptRequest,
    run_key: str,
    store: Store,
    label: str,
    step: str,
) -> CommandRef:
    """Send one chunk, or re-attach to the command this run already sent for it: the one
    recorded, else the one a send that may have gone out left in the provider's history."""
    logger = get_run_logger()
    already = store.find_command(run_key, chunk.key)
    if already is not None:
        logger.info(
            "re-attaching to command %s already sent for %d instance(s) (%s %s)",
            already.command_id,
            len(already.instance_ids),
            step,
            label,
        )
        return already
    intent = store.find_send_intent(run_key, chunk.key)
    found = None
    if intent is not None:
        # An earlier attempt meant to send this chunk and never recorded a command: it may
        # have gone out all the same (the process died, or the answer was lost).
        spend_api_budget(provider, chunk.account_id, chunk.region)
        found = look_up_sent(provider, chunk, request, intent.recorded_at)
    else:
        store.record_send_intent(run_key, chunk)
    if found is None:
        spend_api_budget(provider, chunk.account_id, chunk.region)
    ref = found or provider.send(chunk, request)
    record_sent(store, run_key, ref)
    if found is not None:
        logger.info(
            "re-attaching to command %s found in the provider's history for %d instance(s): "
            "sent before, never recorded (%s %s)",
            ref.command_id,
            len(ref.instance_ids),
            step,
            label,
        )
    else:
        logger.info(
            "%s %s: sent command %s to %d instance(s)",
            step,
            label,
            ref.command_id,
            len(ref.instance_ids),
        )
    return ref


def record_sent(store: Store, run_key: str, ref: CommandRef) -> None:
    """Record a command sent for a chunk, so a resumed run re-attaches to it at once."""
    try:
        store.record_command(run_key, ref)
    except Exception as exc:
        # The command is out and running: failing the send would report its instances as
        # never sent. Go on collecting; a resumed run still finds it, from the intent.
        get_run_logger().error(
            "command %s was sent but could not be recorded for re-attaching: %s",
            ref.command_id,
            exc,
        )


@task(name="collect-results", task_run_name="collect-{label} ({step})", **TRANSIENT_RETRIES)
def collect_command(
    provider: Provider,
    ref: CommandRef,
    on_poll: Callable[[CommandProgress], None],
    label: str,
    step: str,
    poll_ceiling: float | None = None,
    poll_seed: float | None = None,
) -> list[ScriptResult]:
    """Poll one command until all its instances are final or its deadline has passed, on the
    provider's schedule with waits of at most ``poll_ceiling`` seconds, its jitter drawn from
    ``poll_seed`` (shared by the commands of one step, see :class:`TaskSteps`)."""
    results = provider.collect(
        ref,
        on_progress=on_poll,
        before_poll=lambda: spend_api_budget(provider, ref.account_id, ref.region),
        rng=None if poll_seed is None else random.Random(poll_seed).random,
        poll_ceiling=poll_ceiling,
    )
    get_run_logger().info(
        "%s %s: command %s final on %d instance(s)", step, label, ref.command_id, len(results)
    )
    return results


@dataclass
class TaskSteps:
    """:class:`providers.engine.StepRunner` whose steps are Prefect tasks of the flow run."""

    runner: ThreadPoolTaskRunner[Any]
    provider: Provider
    store: Store
    run_key: str
    step: str
    progress: InstanceProgress
    # Chunk key -> "<account>-<region>-<n>", numbered per group in the order sent.
    _labels: dict[str, str] = field(default_factory=dict)
    _sent_per_place: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Every command of the step polls on the same jittered schedule, relative to its own send
    # (as ``providers.engine.DirectSteps``): a step ends with its slowest command, and with a
    # schedule drawn per command one of a dozen nearly always looks just before its instances
    # finish and waits a whole interval more, which a wave of reboots then waits for.
    _poll_seed: float = field(default_factory=random.random)

    def prepare(self, group: TargetGroup, request: ScriptRequest) -> PrefectFuture[Plan]:
        parameters = {
            "provider": self.provider,
            "targets": list(group.targets),
            "request": request,
            "label": place_label(group.account_id, group.region),
            "step": self.step,
        }
        return self.runner.submit(prepare_group, parameters)

    def send(self, chunk: Chunk, request: ScriptRequest) -> PrefectFuture[CommandRef]:
        parameters = {
            "provider": self.provider,
            "chunk": chunk,
            "request": request,
            "run_key": self.run_key,
            "store": self.store,
            "label": self._chunk_label(chunk),
            "step": self.step,
        }
        return self.runner.submit(send_chunk, parameters)

    def collect(self, ref: CommandRef, request: ScriptRequest) -> PrefectFuture[list[ScriptResult]]:
        parameters = {
            "provider": self.provider,
            "ref": ref,
            "on_poll": self.progress.on_poll,
            "label": self._chunk_label_of(ref.chunk_key),
            "step": self.step,
            "poll_ceiling": request.poll_ceiling_seconds,
            "poll_seed": self._poll_seed,
        }
        return self.runner.submit(collect_command, parameters)

    def _chunk_label(self, chunk: Chunk) -> str:
        """``<account>-<region>-<n>``: the chunk's number within its group, from 1."""
        place = place_label(chunk.account_id, chunk.region)
        with self._lock:
            if chunk.key not in self._labels:
                self._sent_per_place[place] = self._sent_per_place.get(place, 0) + 1
                self._labels[chunk.key] = f"{place}-{self._sent_per_place[place]}"
            return self._labels[chunk.key]

    def _chunk_label_of(self, chunk_key: str) -> str:
        with self._lock:
            return self._labels.get(chunk_key, chunk_key)


def current_run_key() -> str:
    """The key commands are recorded under: the flow run id, stable across its retries."""
    context = get_run_context()
    flow_run = getattr(context, "flow_run", None)
    if flow_run is None:
        task_run = getattr(context, "task_run", None)
        return str(task_run.flow_run_id if task_run else "no-flow-run")
    return str(flow_run.id)


def concurrency_limit(provider: Provider) -> int:
    """How many steps of a run go on at once: the provider's own bound (an AWS block's
    ``max_concurrent_groups``), capped by this worker's ``CLOUDOPS_MAX_CONCURRENT_GROUPS``."""
    return min(provider.max_concurrent_groups, get_settings().max_concurrent_groups)


def run_on_targets(
    provider: Provider,
    targets: Sequence[Target],
    request: ScriptRequest,
    *,
    store: Store,
    step: str = "run",
    progress_key: str | None = None,
    run_key: str | None = None,
) -> BatchResult:
    """Run ``request`` on every target through ``provider``; every target gets one result.

    Call from inside a flow. Groups, chunks and commands run concurrently, at most
    :func:`concurrency_limit` task runs at a time; ``step`` names them in logs.
    """
    logger = get_run_logger()
    progress = InstanceProgress(
        total=len(targets),
        key=progress_key,
        description=f"{step}: instances with a final result",
    )
    task_runner: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(
        max_workers=concurrency_limit(provider)
    )
    with task_runner as runner:
        steps = TaskSteps(
            runner=runner,
            provider=provider,
            store=store,
            run_key=run_key or current_run_key(),
            step=step,
            progress=progress,
        )
        return engine.run_batch(
            steps, targets, request, on_results=progress.add, on_problem=logger.error
        )


def collect_sent(
    provider: Provider,
    refs: Sequence[CommandRef],
    *,
    step: str,
    progress_key: str | None = None,
    poll_ceiling: float | None = None,
) -> list[ScriptResult]:
    """Re-attach to commands sent before (by a run that was then retried): poll each until its
    instances are final or its deadline passes, one ``collect`` task per command, nothing sent;
    ``poll_ceiling`` as the request they were sent for says (``poll_ceiling_seconds``).
    A command that cannot be read gives its instances ``error`` results naming it."""
    poll_seed = random.random()
    progress = InstanceProgress(
        total=sum(len(r.instance_ids) for r in refs),
        key=progress_key,
        description=f"{step}: instances of commands sent before the retry, with a final result",
    )
    results: list[ScriptResult] = []
    task_runner: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(
        max_workers=concurrency_limit(provider)
    )
    with task_runner as runner:
        pending = [
            (
                ref,
                runner.submit(
                    collect_command,
                    {
                        "provider": provider,
                        "ref": ref,
                        "on_poll": progress.on_poll,
                        "label": f"{place_label(ref.account_id, ref.region)}-reattached",
                        "step": step,
                        "poll_ceiling": poll_ceiling,
                        "poll_seed": poll_seed,
                    },
                ),
            )
            for ref in refs
        ]
        for ref, future in pending:
            try:
                results.extend(future.result())
            except Exception as exc:
                results.extend(
                    ScriptResult.without_running(
                        Target(instance_id=i, account_id=ref.account_id, region=ref.region),
                        ResultStatus.ERROR,
                        f"command {ref.command_id}, sent before this run was retried, could not "
                        f"be read: {exc}",
                        command_id=ref.command_id,
                    )
                    for i in ref.instance_ids
                )
    return results
