"""One flow run's bookkeeping, the same for every workflow.

A workflow run is recorded in the store one step at a time (``initial_qc``, ``post_qc``,
``wave-1``...), each step with one execution per instance; its commands carry one comment
(change, workflow, step, flow run) so SSM's command history says who sent what; and it ends
the same way: a markdown report file, the artifacts a person reads, and a
``cloudops.<kind>.failed`` event when something needs a person.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.runtime import flow_run

from flows.common.engine import collect_sent, run_on_targets
from flows.common.events import FailureKind, emit_failure_event
from flows.common.fanout import is_fan_out_child
from flows.common.reporting import publish_markdown, publish_table, write_report
from flows.common.settings import get_settings
from flows.store import Store
from providers.base import (
    BatchResult,
    BatchStatus,
    Interpreter,
    Provider,
    ScriptRequest,
    ScriptResult,
    Target,
)

# SSM's limit on a command's Comment.
COMMENT_LIMIT = 100


@dataclass(frozen=True)
class Tally:
    """How a step ended, as the store records it: how many instances fared well or not."""

    succeeded: int
    failed: int

    @property
    def status(self) -> BatchStatus:
        return BatchStatus.of(self.succeeded, self.failed)

    @classmethod
    def of(cls, batch: BatchResult) -> Tally:
        return cls(batch.success_count, batch.failure_count)


@dataclass(frozen=True)
class Table:
    """A table artifact: one row per instance (or group), keyed so a person finds it again."""

    key: str
    rows: Sequence[Mapping[str, Any]]
    description: str


@dataclass(frozen=True)
class RunReport:
    """How a run ends for a person: a report file and its artifacts."""

    filename: str
    markdown: str
    summary_key: str
    summary_description: str
    tables: Sequence[Table] = field(default_factory=tuple)


@dataclass(frozen=True)
class WorkflowRun:
    """One flow run of a workflow: where it runs its scripts, where it records, how it ends."""

    workflow: str
    provider: Provider
    store: Store
    change: str | None
    flow_run_id: str
    run_name: str

    @classmethod
    def begin(
        cls, workflow: str, provider: Provider, store: Store, change: str | None
    ) -> WorkflowRun:
        """The run of ``workflow`` in the current Prefect flow run (a fresh id outside one)."""
        return cls(
            workflow=workflow,
            provider=provider,
            store=store,
            change=change,
            flow_run_id=str(flow_run.id or f"local-{uuid.uuid4()}"),
            run_name=str(flow_run.name or "local"),
        )

    # -- commands ---------------------------------------------------------------------------

    def comment(self, step: str | None = None) -> str:
        """SSM's ``Comment`` for a command of ``step``: change, workflow, step and flow run, so
        a person reading SSM's command history knows what sent it."""
        parts = [self.change or "adhoc", self.workflow, step, self.run_name]
        return " ".join(p for p in parts if p)[:COMMENT_LIMIT]

    def request(
        self,
        step: str,
        script: str,
        timeout_seconds: int,
        *,
        interpreter: Interpreter = Interpreter.BASH,
        **limits: Any,
    ) -> ScriptRequest:
        """A request for ``script`` in ``step``, commented as :meth:`comment` says."""
        return ScriptRequest(
            script=script,
            interpreter=interpreter,
            timeout_seconds=timeout_seconds,
            comment=self.comment(step),
            **limits,
        )

    def run_script(
        self,
        step: str,
        targets: Sequence[Target],
        request: ScriptRequest,
        *,
        progress_key: str | None = None,
        run_key: str | None = None,
    ) -> BatchResult:
        """``request`` on ``targets`` through the engine as ``step`` of this run (the name its
        task runs and log lines carry); every target gets one result."""
        return run_on_targets(
            self.provider,
            targets,
            request,
            store=self.store,
            step=step,
            progress_key=progress_key,
            run_key=run_key,
        )

    def run_script_once(
        self,
        step: str,
        targets: Sequence[Target],
        request: ScriptRequest,
        *,
        run_key: str,
        progress_key: str | None = None,
    ) -> BatchResult:
        """``request`` on ``targets`` as :meth:`run_script`, with commands recorded under a run
        key of this step alone: a retried run re-attaches to every command already sent under
        it, whatever the targets look like now (one that is rebooting would be cut from a new
        chunk, and the chunk sent again), and sends only to targets no command reached yet."""
        wanted = {t.instance_id for t in targets}
        sent = [ref for ref in self.store.commands_for(run_key) if wanted & set(ref.instance_ids)]
        if not sent:
            return self.run_script(
                step, targets, request, progress_key=progress_key, run_key=run_key
            )
        get_run_logger().info(
            "%s: re-attaching to %d command(s) sent before this run was retried",
            step,
            len(sent),
        )
        results = [
            r for r in collect_sent(self.provider, sent, step=step) if r.instance_id in wanted
        ]
        reached = {r.instance_id for r in results}
        rest = [t for t in targets if t.instance_id not in reached]
        if rest:
            results += self.run_script(
                step, rest, request, progress_key=progress_key, run_key=run_key
            ).results
        return BatchResult.from_results(results)

    # -- the store --------------------------------------------------------------------------

    def start_step(self, step: str) -> int:
        """Record that ``step`` started; returns its run id (the same id on a retried run)."""
        return self.store.start_run(
            flow_run_id=self.flow_run_id,
            workflow=self.workflow,
            step=step,
            provider=self.provider.name,
            change_number=self.change,
        )

    def record_results(
        self,
        run_id: int,
        results: Sequence[ScriptResult],
        parsed: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """One execution per instance of ``results`` in step ``run_id``, with what was parsed
        from each (keyed by instance id)."""
        self.store.record_results(
            run_id, results, parsed={k: dict(v) for k, v in (parsed or {}).items()}
        )

    def finish_step(self, run_id: int, tally: Tally) -> None:
        """Record how a step ended."""
        self.store.finish_run(
            run_id,
            status=tally.status.value,
            success_count=tally.succeeded,
            failure_count=tally.failed,
        )

    def record_step(
        self,
        step: str,
        results: Sequence[ScriptResult],
        parsed: Mapping[str, Mapping[str, Any]] | None = None,
        tally: Tally | None = None,
    ) -> int:
        """One record for ``step`` with one execution per instance of ``results`` (and what was
        parsed from each); ``tally`` defaults to the results' own successes and failures."""
        run_id = self.start_step(step)
        self.record_results(run_id, results, parsed)
        self.finish_step(run_id, tally or Tally.of(BatchResult.from_results(results)))
        return run_id

    # -- the end ----------------------------------------------------------------------------

    def publish(self, report: RunReport) -> Path:
        """Write the report file and publish its tables and summary; returns the file."""
        path = write_report(Path(get_settings().reports_dir), report.filename, report.markdown)
        for table in report.tables:
            publish_table(table.key, table.rows, table.description)
        publish_markdown(report.summary_key, report.markdown, report.summary_description)
        return path

    def alert(self, kind: FailureKind, counts: Mapping[str, int]) -> None:
        """Emit ``cloudops.<kind>.failed`` about this run's change, with ``counts`` only.

        A fan-out child stays quiet: its findings reach operators once, in its parent's merged
        event. An operator hangs paging or ticketing automations on this event.
        """
        if is_fan_out_child():
            return
        emit_failure_event(kind, self.change, counts)
        get_run_logger().info("emitted %s for %s", kind.event_name, self.change or "adhoc")
