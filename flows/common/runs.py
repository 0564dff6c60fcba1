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
from flows.common.naming import rename_run
from flows.common.report_copies import ReportDestinationError, copy_report_file
from flows.common.reporting import ArtifactBoard, artifact_key, publish_link, write_report
from flows.common.settings import get_settings
from flows.store import Store
from providers.base import (
    REQUEST_COMMENT_ROOM,
    BatchResult,
    BatchStatus,
    Interpreter,
    Provider,
    ScriptRequest,
    ScriptResult,
    Target,
)


def fit_parts(parts: Sequence[str], limit: int) -> str:
    """``parts`` joined by spaces in at most ``limit`` characters, the longest part cut by one
    character at a time until they fit."""
    kept = list(parts)
    while kept and len(" ".join(kept)) > limit:
        longest = max(range(len(kept)), key=lambda i: len(kept[i]))
        kept[longest] = kept[longest][:-1]
    return " ".join(p for p in kept if p)


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
    empty: str = "Nothing to show."


@dataclass(frozen=True)
class Document:
    """A markdown artifact besides the summary (each instance's whole output, say)."""

    key: str
    markdown: str
    description: str


@dataclass(frozen=True)
class RunReport:
    """How a run ends for a person: a report file and its artifacts.

    The file holds ``markdown`` then ``appendix`` (long parts such as every instance's output);
    the summary artifact holds ``markdown`` only, the ``documents`` are artifacts of their own.
    """

    filename: str
    markdown: str
    summary_key: str
    summary_description: str
    tables: Sequence[Table] = field(default_factory=tuple)
    appendix: str = ""
    documents: Sequence[Document] = field(default_factory=tuple)


@dataclass(frozen=True)
class WorkflowRun:
    """One flow run of a workflow: where it runs its scripts, where it records, how it ends."""

    workflow: str
    provider: Provider
    store: Store
    change: str | None
    flow_run_id: str
    run_name: str
    artifacts: ArtifactBoard = field(default_factory=ArtifactBoard, compare=False)

    @classmethod
    def begin(
        cls,
        workflow: str,
        provider: Provider,
        store: Store,
        change: str | None,
        title: str | None = None,
    ) -> WorkflowRun:
        """The run of ``workflow`` in the current Prefect flow run (a fresh id outside one),
        renamed ``title`` when given (the change is known now: a change file names it)."""
        name = rename_run(title) if title else str(flow_run.name or "local")
        return cls(
            workflow=workflow,
            provider=provider,
            store=store,
            change=change,
            flow_run_id=str(flow_run.id or f"local-{uuid.uuid4()}"),
            run_name=name,
        )

    # -- commands ---------------------------------------------------------------------------

    def comment(self, step: str | None = None) -> str:
        """The comment of a command of ``step``: change, workflow, step and flow run, so a
        person reading SSM's command history knows what sent it. It fits in the room a
        provider's chunk marker leaves (``REQUEST_COMMENT_ROOM``): the longest part is
        shortened until it does, so every part keeps its start."""
        parts = [p for p in (self.change or "adhoc", self.workflow, step, self.run_name) if p]
        return fit_parts(parts, REQUEST_COMMENT_ROOM)

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
            r
            for r in collect_sent(
                self.provider,
                sent,
                step=step,
                progress_key=progress_key,
                poll_ceiling=request.poll_ceiling_seconds,
            )
            if r.instance_id in wanted
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
        """Write the report file and publish its tables, summary and documents; returns the
        file.

        When a reports destination is named (``CLOUDOPS_REPORTS_DESTINATION`` or the AWS
        provider block), the file is also copied there and the run links to the copy. A copy
        that cannot be written is logged as an error; the local file stays either way.
        """
        text = report.markdown + (f"\n\n{report.appendix}" if report.appendix else "")
        path = write_report(Path(get_settings().reports_dir), report.filename, text)
        for table in report.tables:
            self.show(table)
        self.artifacts.markdown(report.summary_key, report.markdown, report.summary_description)
        for document in report.documents:
            self.artifacts.markdown(document.key, document.markdown, document.description)
        try:
            copy = copy_report_file(self.provider, path, self.change)
        except ReportDestinationError as exc:
            # The run did its work and its report is on this worker: failing the run now
            # would hide its results, so the missing copy is reported, not raised.
            get_run_logger().error("%s; the report stays at %s on this worker", exc, path)
            return path
        if copy is not None:
            publish_link(
                artifact_key(report.summary_key, "copy"),
                copy.url,
                copy.location,
                f"{report.filename} in the reports destination",
            )
            get_run_logger().info("report copied to %s", copy.location)
        return path

    def show(self, table: Table) -> None:
        """Publish ``table`` as an artifact of this run (again: updated, not added)."""
        self.artifacts.table(table.key, table.rows, table.description, table.empty)

    def alert(self, kind: FailureKind, counts: Mapping[str, int]) -> None:
        """Emit ``cloudops.<kind>.failed`` about this run's change, with ``counts`` only.

        A fan-out child stays quiet: its findings reach operators once, in its parent's merged
        event. An operator hangs paging or ticketing automations on this event.
        """
        if is_fan_out_child():
            return
        emit_failure_event(kind, self.change, counts)
        get_run_logger().info("emitted %s for %s", kind.event_name, self.change or "adhoc")
