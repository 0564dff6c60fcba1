"""A window flow run in a thread of the test, and the pauses it waits in: the test answers
them through Prefect's API, as the UI's Resume button does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run

WORKFLOW = "linux-qc-patching-window"


@dataclass
class FlowInThread:
    """``run()`` in a daemon thread; its result or exception once joined."""

    run: Callable[[], Any]
    outcome: dict[str, Any] = field(default_factory=dict)

    def start(self) -> FlowInThread:
        def target() -> None:
            try:
                self.outcome["result"] = self.run()
            except BaseException as exc:  # handed to the test thread by result()
                self.outcome["error"] = exc

        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()
        return self

    def result(self, timeout: float = 180) -> Any:
        self._thread.join(timeout=timeout)
        assert not self._thread.is_alive(), "the flow run did not end in time"
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["result"]


def wait_for_pause(change: str, key: str, timeout: float = 120) -> UUID:
    """The window flow run of ``change`` once it is paused under ``key``."""
    deadline = time.monotonic() + timeout
    paused = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    )
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            for run in client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[WORKFLOW])),
                flow_run_filter=paused,
            ):
                details = run.state.state_details if run.state else None
                if (
                    run.parameters.get("change_number") == change
                    and details
                    and (details.pause_key == key)
                ):
                    return run.id
            time.sleep(0.3)
    raise AssertionError(f"the window of {change} never paused for {key}")


def answer(flow_run_id: UUID, **run_input: str) -> None:
    """Resume the paused run with the form filled in, as the UI does."""
    resume_flow_run(flow_run_id, run_input=run_input)


def logs_of(flow_run_id: UUID) -> list[str]:
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return [entry.message for entry in logs]
