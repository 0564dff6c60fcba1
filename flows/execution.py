"""Running one script on many targets as Prefect tasks, the engine every workflow uses.

The steps a person would describe, each its own retryable task:

1. ``prepare_group``: per (account, region), check the targets (SSM registration, ping,
   platform) and cut them into chunks. Nothing is sent.
2. ``send_chunk``: per chunk, one command. A chunk already sent under the same run key (a
   retried or resumed flow run) is re-attached to, never sent again.
3. ``collect_command``: per command, poll with backoff until every instance is final or the
   deadline passes.

Task runs grow with the number of chunks (at most 50 instances each), not with instances.
Transient faults (throttling, connection errors, expired tokens) are retried with jitter;
permanent ones (access denied, invalid input) are reported at once.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.context import get_run_context
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import Task, exponential_backoff

from flows.settings import get_settings
from flows.store import Store
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


def retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry throttling and connection faults only."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, re-raised by result()
        return is_transient(exc)
    return False


TRANSIENT_RETRIES = dict(
    retries=5,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_if_transient,
    # Providers hold clients and credentials: never hash or persist them as task inputs.
    cache_policy=NO_CACHE,
)


class RunProgress:
    """Counts final results and shows them as one Prefect progress artifact."""

    def __init__(self, total: int, key: str | None, description: str):
        self._total = max(total, 1)
        self._done: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self._shown = -1
        self._artifact_id: UUID = create_progress_artifact(
            progress=0.0, key=key, description=description
        )

    def add(self, results: Sequence[ScriptResult]) -> None:
        with self._lock:
            self._done.update((r.account_id, r.region, r.instance_id) for r in results)
            percent = int(100 * len(self._done) / self._total)
            if percent == self._shown:
                return
            self._shown = percent
        update_progress_artifact(artifact_id=self._artifact_id, progress=float(percent))

    def on_poll(self, progress: CommandProgress) -> None:
        if progress.results:
            self.add(progress.results)


@task(name="prepare-targets", task_run_name="prepare-{group_name}", **TRANSIENT_RETRIES)
def prepare_group(
    provider: Provider, targets: list[Target], request: ScriptRequest, group_name: str
) -> Plan:
    """Pre-check one (account, region) group and cut it into chunks."""
    plan = provider.prepare(targets, request)
    logger = get_run_logger()
    not_sent = len(plan.results)
    logger.info(
        "%s: %d target(s), %d to send in %d chunk(s), %d not sent",
        group_name,
        len(targets),
        len(targets) - not_sent,
        len(plan.chunks),
        not_sent,
    )
    return plan


@task(name="send-command", task_run_name="send-{chunk.key}", **TRANSIENT_RETRIES)
def send_chunk(
    provider: Provider, chunk: Chunk, request: ScriptRequest, run_key: str, store: Store
) -> CommandRef:
    """Send one chunk, or re-attach to the command this run already sent for it."""
    logger = get_run_logger()
    already = store.find_command(run_key, chunk.key)
    if already is not None:
        logger.info(
            "re-attaching to command %s already sent for %d instance(s) in %s/%s",
            already.command_id,
            len(already.instance_ids),
            already.account_id,
            already.region,
        )
        return already
    ref = provider.send(chunk, request)
    try:
        store.record_command(run_key, ref)
    except Exception as exc:
        # The command is out and running: failing this task would report its instances as
        # never sent (and a retry would send again). Go on collecting; only a crash before
        # the run ends could now send this chunk a second time.
        logger.error(
            "command %s was sent but could not be recorded for re-attaching: %s",
            ref.command_id,
            exc,
        )
    logger.info(
        "sent command %s to %d instance(s) in %s/%s",
        ref.command_id,
        len(ref.instance_ids),
        ref.account_id,
        ref.region,
    )
    return ref


@task(name="collect-results", task_run_name="collect-{ref.command_id}", **TRANSIENT_RETRIES)
def collect_command(
    provider: Provider, ref: CommandRef, on_poll: Callable[[CommandProgress], None]
) -> list[ScriptResult]:
    """Poll one command until all its instances are final or its deadline has passed."""
    return provider.collect(ref, on_progress=on_poll)


def group_targets(targets: Sequence[Target]) -> dict[tuple[str, str], list[Target]]:
    """Targets per (account, region), in the order given, each instance once."""
    groups: dict[tuple[str, str], list[Target]] = defaultdict(list)
    seen: set[tuple[str, str, str]] = set()
    for target in targets:
        key = (target.account_id, target.region, target.instance_id)
        if key in seen:
            continue
        seen.add(key)
        groups[(target.account_id, target.region)].append(target)
    return dict(groups)


def current_run_key() -> str:
    """The key commands are recorded under: the flow run id, stable across its retries."""
    context = get_run_context()
    flow_run = getattr(context, "flow_run", None)
    if flow_run is None:
        task_run = getattr(context, "task_run", None)
        return str(task_run.flow_run_id if task_run else "no-flow-run")
    return str(flow_run.id)


def _failed_chunk(chunk: Chunk, exc: BaseException) -> list[ScriptResult]:
    reason = f"could not send to {chunk.account_id}/{chunk.region}: {exc}"
    return [
        ScriptResult.without_running(target, ResultStatus.ERROR, reason) for target in chunk.targets
    ]


def run_on_targets(
    provider: Provider,
    targets: Sequence[Target],
    request: ScriptRequest,
    *,
    store: Store,
    progress_key: str | None = None,
    run_key: str | None = None,
) -> BatchResult:
    """Run ``request`` on every target through ``provider``; every target gets one result.

    Call from inside a flow. Groups, chunks and commands run concurrently, at most
    ``concurrency_limit(provider)`` task runs at a time.
    """
    with ThreadPoolTaskRunner(max_workers=concurrency_limit(provider)) as runner:
        return _run_on_targets(
            runner, provider, targets, request, store, progress_key, run_key or current_run_key()
        )


def concurrency_limit(provider: Provider) -> int:
    """The provider block's ``max_concurrent_groups`` when it has one, else the
    ``CLOUDOPS_MAX_CONCURRENT_GROUPS`` setting."""
    config = getattr(provider, "config", None)
    return getattr(config, "max_concurrent_groups", None) or get_settings().max_concurrent_groups


def _run_on_targets(
    runner: ThreadPoolTaskRunner,
    provider: Provider,
    targets: Sequence[Target],
    request: ScriptRequest,
    store: Store,
    progress_key: str | None,
    run_key: str,
) -> BatchResult:
    logger = get_run_logger()
    progress = RunProgress(
        total=len(targets),
        key=progress_key,
        description=f"{request.comment or 'script'}: instances with a final result",
    )
    groups = group_targets(targets)
    results: list[ScriptResult] = []

    plans = {
        key: runner.submit(
            prepare_group,
            {
                "provider": provider,
                "targets": group,
                "request": request,
                "group_name": f"{key[0]}-{key[1]}",
            },
        )
        for key, group in groups.items()
    }
    sends: list[tuple[Chunk, Any]] = []
    for key, future in plans.items():
        try:
            plan: Plan = future.result()
        except Exception as exc:
            logger.error("group %s/%s could not be prepared: %s", key[0], key[1], exc)
            failed = [
                ScriptResult.without_running(t, ResultStatus.ERROR, str(exc)) for t in groups[key]
            ]
            results.extend(failed)
            progress.add(failed)
            continue
        results.extend(plan.results)
        progress.add(plan.results)
        for chunk in plan.chunks:
            parameters = {
                "provider": provider,
                "chunk": chunk,
                "request": request,
                "run_key": run_key,
                "store": store,
            }
            sends.append((chunk, runner.submit(send_chunk, parameters)))

    collects: list[tuple[Chunk, Any]] = []
    for chunk, future in sends:
        try:
            ref: CommandRef = future.result()
        except Exception as exc:
            logger.error("chunk %s could not be sent: %s", chunk.key, exc)
            failed = _failed_chunk(chunk, exc)
            results.extend(failed)
            progress.add(failed)
            continue
        parameters = {"provider": provider, "ref": ref, "on_poll": progress.on_poll}
        collects.append((chunk, runner.submit(collect_command, parameters)))

    for chunk, future in collects:
        try:
            results.extend(future.result())
        except Exception as exc:
            logger.error("results of chunk %s could not be collected: %s", chunk.key, exc)
            failed = [
                ScriptResult.without_running(
                    t, ResultStatus.ERROR, f"sent, but results could not be read: {exc}"
                )
                for t in chunk.targets
            ]
            results.extend(failed)
            progress.add(failed)
    return BatchResult.from_results(results)
