"""What a run is called and how it ends, as the runs list and ``--watch`` show it.

A run is named after what it does (``prep CHG0012345``, ``post CHG0012345``,
``run-script host_facts.sh CHG0012345``), so Prefect's runs list reads like the change log.
The name is given at start from the parameters (Prefect's ``flow_run_name``) and corrected
once the change is known (a change file names its own change). A fan-out child keeps the
name its parent gave it (``prep CHG0012345-111122223333``).

A run that did its job but found servers needing a person ends in a Completed-type state
named ``Needs attention`` whose message gives the counts; a run where everything passed ends
``Completed`` with the counts as its message. Completed-type on purpose: retries do not
re-run a QC that worked, automations on failed runs stay for runs that broke, fan-out parents
read their children's results, and Python callers get the result as before. Automations can
match ``prefect.flow-run.Needs attention``, or the ``cloudops.<kind>.failed`` events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from prefect.states import Completed

from flows.common.fanout import is_fan_out_child
from flows.common.text import one_line

NEEDS_ATTENTION = "Needs attention"
_NAME_LIMIT = 120


def run_title(*parts: str | None) -> str:
    """``prep CHG0012345``: the non-empty parts on one line."""
    return one_line(" ".join(p for p in parts if p))[:_NAME_LIMIT]


def run_namer(describe: Callable[[Mapping[str, Any]], str]) -> Callable[[], str]:
    """A ``flow_run_name`` for ``@flow``: ``describe(parameters)``; a fan-out child keeps the
    name its parent gave it; a description that fails falls back to Prefect's own name."""

    def name() -> str:
        current = str(flow_run.name or "")
        if is_fan_out_child() and current:
            return current
        try:
            return run_title(describe(flow_run.parameters)) or current or "run"
        except Exception:  # a name must never fail a run
            return current or "run"

    return name


def rename_run(title: str) -> str:
    """Give the current flow run the name ``title`` (once the change is known), unless it is
    a fan-out child or already so named; returns the run's name now. Outside a flow run,
    nothing is renamed and ``title`` is returned."""
    current = flow_run.name
    run_id = flow_run.id
    if not run_id or not current:
        return title
    if current == title or is_fan_out_child():
        return str(current)
    with get_client(sync_client=True) as client:
        client.set_flow_run_name(flow_run_id=run_id, name=title)
    get_run_logger().info("run named %r", title)
    return title


def final_state(result: Any, summary: str, needs_attention: bool) -> Any:
    """The state the flow returns: Prefect makes it the run's final state, persists its data
    (``result``) and gives that data to a caller; ``summary`` (counts) is its message."""
    if needs_attention:
        return Completed(data=result, name=NEEDS_ATTENTION, message=summary)
    return Completed(data=result, message=summary)
