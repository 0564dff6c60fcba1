"""Scale one change out over many workers: one child flow run per AWS account.

A large change can span dozens of accounts. Instead of running every account from one worker,
a flow started with ``fan_out_per_account=True`` splits its targets per account and starts one
child flow run of its own deployment per account (Prefect's ``run_deployment``). The children
land in the deployment's work pool like any other run, so every worker polling that pool (on
any machine) takes some of them; Prefect's own work pool, queue and worker limits decide who
runs what. The parent waits for every child, reads their typed results back and merges them.

What the parent and its children agree on:

- a child gets the parent's parameters with ``targets`` replaced by its account's targets and
  ``fan_out_per_account=False``, so it runs its part itself instead of fanning out again;
- a child's result is read back through Prefect's result persistence, so the flow must persist
  its result (``@flow(persist_result=True)``) and, with workers on several machines, the result
  storage must be one they all reach (``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK``, e.g. an S3
  bucket block; see the README);
- each child is created with an idempotency key made of the parent flow run and the account,
  so a retried parent re-attaches to the children it already started instead of sending every
  command twice.

A child that fails, crashes, is cancelled or is not finished in time does not fail its
neighbours: its targets get ``error`` results saying which child run to look at.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar
from uuid import UUID

from prefect import get_run_logger
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.runtime import deployment as current_deployment
from prefect.runtime import flow_run as current_flow_run
from pydantic import BaseModel, Field
from pydantic_core import to_jsonable_python

from providers.base import BatchResult, ResultStatus, ScriptResult, Target

FAN_OUT_FLAG = "fan_out_per_account"
TARGETS_PARAMETER = "targets"
# Marks a child run, so that it leaves failure events to its parent's merged one.
FAN_OUT_CHILD_TAG = "fan-out-part"
DEFAULT_POLL_SECONDS = 5.0
# How long a fanned-out run waits for its children beyond their own limits: the time a child
# may sit in the work pool until a worker is free.
FAN_OUT_QUEUE_SECONDS = 3600

ResultT = TypeVar("ResultT", bound=BaseModel)


class FanOutError(RuntimeError):
    """The run cannot fan out (no deployment to start the children from)."""


class AccountPart(BaseModel):
    """The targets of one account: what one child flow run works on."""

    account_id: str = Field(description="empty for targets that name no account")
    targets: list[Target]

    @property
    def label(self) -> str:
        return self.account_id or "no-account"


class PartOutcome(BaseModel, Generic[ResultT]):
    """How one child flow run ended, and its result when it has one."""

    part: AccountPart
    flow_run_id: UUID
    flow_run_name: str
    state: str = Field(description="the child's final state name, e.g. Completed")
    result: ResultT | None = None
    problem: str | None = Field(default=None, description="why there is no result")

    def unrun_results(self) -> list[ScriptResult]:
        """An ``error`` result per target of this part, for a child without a result."""
        reason = self.problem or f"child flow run {self.flow_run_name} gave no result"
        return [
            ScriptResult.without_running(target, ResultStatus.ERROR, reason)
            for target in self.part.targets
        ]


def split_by_account(targets: Sequence[Target]) -> list[AccountPart]:
    """The targets grouped per account, accounts in order, targets in their given order."""
    by_account: dict[str, list[Target]] = {}
    for target in targets:
        by_account.setdefault(target.account_id, []).append(target)
    return [AccountPart(account_id=a, targets=by_account[a]) for a in sorted(by_account)]


def own_deployment_id() -> UUID:
    """The deployment of the running flow run; fanning out starts the children from it."""
    deployment_id = current_deployment.id
    if not deployment_id:
        raise FanOutError(
            f"fan_out_per_account needs a deployment to start its child runs from, and flow run "
            f"{current_flow_run.name or '(none)'} was not started from one: trigger it with "
            "`prefect deployment run '<flow>/<deployment>' ...` (or from the UI), or run it "
            "without fan_out_per_account"
        )
    return UUID(str(deployment_id))


def is_fan_out_child() -> bool:
    """Whether the running flow run is one part of a fanned-out parent."""
    return FAN_OUT_CHILD_TAG in (current_flow_run.tags or [])


def child_parameters(
    parameters: Mapping[str, Any], part: AccountPart, targets_parameter: str
) -> dict[str, Any]:
    """The parent's parameters for one child: its own targets, and no further fan-out."""
    child = {name: _by_reference(name, value) for name, value in parameters.items()}
    child[targets_parameter] = part.targets
    child[FAN_OUT_FLAG] = False
    # The API takes JSON; models and enums become what Prefect's parameter form would send.
    return to_jsonable_python(child)


def _by_reference(name: str, value: Any) -> Any:
    """A block as its slug, which the flows' provider parameters accept: dumped as a model its
    secrets would arrive masked (``**********``) and useless."""
    if not isinstance(value, Block):
        return value
    if value._block_document_name and not value._is_anonymous:
        return f"{value.get_block_type_slug()}/{value._block_document_name}"
    raise FanOutError(
        f"parameter {name!r} is an unsaved {value.get_block_type_name()} block, which child runs "
        "cannot receive: save it (`.save('<name>')`) and pass its slug instead"
    )


def run_per_account(
    parts: Sequence[AccountPart],
    *,
    parameters: Mapping[str, Any],
    result_type: type[ResultT],
    targets_parameter: str = TARGETS_PARAMETER,
    timeout_seconds: float | None = None,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    tags: Sequence[str] = (),
    run_key: str = "fan-out",
) -> list[PartOutcome[ResultT]]:
    """Run each part as a child flow run of this run's own deployment and wait for all of them.

    Args:
        parts: what each child works on, usually from :func:`split_by_account`.
        parameters: the parent's parameters; each child gets them with its own targets under
            ``targets_parameter`` and ``fan_out_per_account=False``.
        result_type: the flow's return type, to check what a child returned.
        targets_parameter: the flow parameter that takes a list of targets.
        timeout_seconds: give up waiting after this long (None: wait until all are final);
            a child still unfinished then is reported, not cancelled.
        poll_seconds: how often to look at the children's states.
        tags: added to each child run, besides ``fan-out-part`` and ``account:<id>``.
        run_key: tells apart two fan-outs of one parent run (e.g. two steps of a flow); a
            retried parent finds its children under the same key.

    Raises:
        FanOutError: this flow run was not started from a deployment.
    """
    logger = get_run_logger()
    deployment_id = own_deployment_id()
    parent_id = current_flow_run.id or "local"
    parent_name = current_flow_run.name or "fan-out"
    started: list[tuple[AccountPart, FlowRun]] = []
    for part in parts:
        child = run_deployment(
            deployment_id,
            parameters=child_parameters(parameters, part, targets_parameter),
            flow_run_name=f"{parent_name}-{part.label}",
            tags=[FAN_OUT_CHILD_TAG, f"account:{part.label}", *tags],
            idempotency_key=f"{parent_id}:{run_key}:{part.label}",
            timeout=0,  # start them all now; they are awaited together below
        )
        assert isinstance(child, FlowRun)  # called from sync flow code: not a coroutine
        logger.info(
            "account %s: %d target(s) in child flow run %s",
            part.label,
            len(part.targets),
            child.name,
        )
        started.append((part, child))

    finished = wait_for_flow_runs([child.id for _, child in started], timeout_seconds, poll_seconds)
    return [
        outcome_of(part, finished.get(child.id, child), result_type, timeout_seconds)
        for part, child in started
    ]


def wait_for_flow_runs(
    flow_run_ids: Sequence[UUID],
    timeout_seconds: float | None,
    poll_seconds: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[UUID, FlowRun]:
    """The flow runs as last read: final ones, and unfinished ones once the time is up."""
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    latest: dict[UUID, FlowRun] = {}
    waiting = list(flow_run_ids)
    with get_client(sync_client=True) as client:
        while waiting:
            for run_id in list(waiting):
                run = client.read_flow_run(run_id)
                latest[run_id] = run
                if run.state is not None and run.state.is_final():
                    waiting.remove(run_id)
            if not waiting or (deadline is not None and time.monotonic() >= deadline):
                break
            sleep(poll_seconds)
    return latest


def outcome_of(
    part: AccountPart,
    child: FlowRun,
    result_type: type[ResultT],
    timeout_seconds: float | None,
) -> PartOutcome[ResultT]:
    """What one child gave: its result when it completed, else why there is none."""
    state = child.state
    state_name = (state.name if state is not None else None) or "Unknown"
    outcome = PartOutcome[result_type](  # type: ignore[valid-type]
        part=part, flow_run_id=child.id, flow_run_name=child.name, state=state_name
    )
    if state is None or not state.is_final():
        waited = f"after {timeout_seconds:.0f} s " if timeout_seconds is not None else ""
        return outcome.model_copy(
            update={
                "problem": f"child flow run {child.name} (account {part.label}) was still "
                f"{state_name} {waited}when the parent stopped waiting: is a worker polling the "
                "work pool? Its own results will be in that run when it finishes"
            }
        )
    if not state.is_completed():
        return outcome.model_copy(
            update={
                "problem": f"child flow run {child.name} (account {part.label}) ended "
                f"{state_name}: open it in the Prefect UI for its logs, then run this account "
                "again"
            }
        )
    try:
        value = state.result(raise_on_failure=True, retry_result_failure=False)
    except Exception as exc:  # any storage or deserialisation failure has the same remedy
        return outcome.model_copy(
            update={
                "problem": f"child flow run {child.name} (account {part.label}) completed but "
                f"its result could not be read ({type(exc).__name__}): the workers need a "
                "result storage the parent can read (PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK)"
            }
        )
    if not isinstance(value, result_type):
        value = result_type.model_validate(value)
    return outcome.model_copy(update={"result": value})


def merge_batches(
    outcomes: Sequence[PartOutcome[ResultT]], batch_of: Callable[[ResultT], BatchResult]
) -> BatchResult:
    """One batch of every part: each child's results, and ``error`` results for the targets
    of children that gave none."""
    results: list[ScriptResult] = []
    for outcome in outcomes:
        if outcome.result is None:
            results.extend(outcome.unrun_results())
        else:
            results.extend(batch_of(outcome.result).results)
    return BatchResult.from_results(results)


ItemT = TypeVar("ItemT")


def merge_parts(
    outcomes: Sequence[PartOutcome[ResultT]],
    items_of: Callable[[ResultT], Sequence[ItemT]],
    unrun_item: Callable[[Target, ScriptResult], ItemT],
) -> list[ItemT]:
    """Every part's per-instance items in one list: each child's own, and for the targets of a
    child that gave no result, ``unrun_item(target, error result saying which child)``.

    The QC flows merge their per-instance verdicts with it, as :func:`merge_batches` merges
    plain script results."""
    items: list[ItemT] = []
    for outcome in outcomes:
        if outcome.result is not None:
            items.extend(items_of(outcome.result))
            continue
        for target, result in zip(outcome.part.targets, outcome.unrun_results(), strict=True):
            items.append(unrun_item(target, result))
    return items


def fans_out(fan_out_per_account: bool, targets: Sequence[Target]) -> bool:
    """Whether this run should start child runs: asked to, more than one account, and not a
    child itself (a child runs its part, whatever it was given)."""
    if not fan_out_per_account or is_fan_out_child():
        return False
    if len({t.account_id for t in targets}) > 1:
        return True
    get_run_logger().info("one account only: running here instead of fanning out")
    return False
