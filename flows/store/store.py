"""The record store the flows write to: changes, workflow runs, executions, sent commands and
the sends about to happen.

The API takes names, results and ids, never credentials: a provider is recorded by its name,
so no secret can reach a table through it. Every method is one transaction.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import ColumnElement, Engine, delete, func
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from flows.changes import ChangeSpec, validate_change_number
from flows.common.settings import get_settings
from flows.store.database import StoreError, describe_url, open_store_engine
from flows.store.records import (
    ChangeSummary,
    ChangeVersionRecord,
    DecisionRecord,
    ExecutionRecord,
    RunExecution,
    RunRecord,
    SendIntent,
)
from flows.store.tables import (
    ChangeInstanceRow,
    ChangeRow,
    ChangeVersionRow,
    DecisionRow,
    ExecutionRow,
    SendIntentRow,
    SentCommandRow,
    StoreTable,
    WorkflowRunRow,
)
from providers.base import Chunk, CommandRef, Platform, ScriptResult, Target

RUNNING = "running"
# Names the store accepts for workflows, steps, providers and statuses: short, lowercase,
# the way Prefect names flows and blocks (``aws``, ``aws-provider/prod-gov``). Anything else,
# a key or a token passed by mistake included, is refused rather than stored.
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*")
_FLOW_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]*")
_LOWERCASE_NAME = "use lowercase letters, digits, '-', '_', '.' or '/' (at most 64)"
# label -> (pattern, longest value, what to use instead)
_RULES: dict[str, tuple[re.Pattern[str], int, str]] = {
    "flow run id": (
        _FLOW_RUN_ID,
        64,
        "use the Prefect flow run id (letters, digits, '-', '_', '.', ':')",
    ),
    "workflow": (_NAME, 64, _LOWERCASE_NAME),
    "step": (_NAME, 64, _LOWERCASE_NAME),
    "status": (_NAME, 32, "use a lowercase word such as success, partial or failed"),
    "provider": (
        _NAME,
        128,
        "record a provider by its name or block slug (aws, aws-provider/prod-gov), never by "
        "its credentials",
    ),
    "run key": (_KEY, 200, "use letters, digits, '-', '_', '.', ':' or '/' (at most 200)"),
    "kind": (_NAME, 32, _LOWERCASE_NAME),
    "decision": (_NAME, 32, _LOWERCASE_NAME),
}


class Store:
    """Records of changes and runs in the database at ``url`` (default: ``DATABASE_URL``).

    The schema is created or upgraded on first use. Example::

        store = Store.default()
        store.save_change(spec)
        run_id = store.start_run(flow_run_id, "linux-qc-patching-prep", "qc", "aws", "CHG123")
        store.record_results(run_id, results, parsed={"i-0abc...": report.model_dump()})
        store.finish_run(run_id, "success", success_count=3, failure_count=0)
    """

    def __init__(self, url: str | None = None) -> None:
        self.url = url or get_settings().database_url
        self._engine: Engine | None = None
        self._opening = threading.Lock()  # tasks in threads may share one store

    @classmethod
    def default(cls) -> Store:
        """The store named by the settings (``DATABASE_URL``, else the SQLite file)."""
        return cls(get_settings().database_url)

    def __reduce__(self) -> tuple[type[Store], tuple[str]]:
        # Prefect hashes and may pickle task arguments: a store travels as its URL.
        return (Store, (self.url,))

    def __repr__(self) -> str:
        return f"Store({describe_url(self.url)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the pooled database connections."""
        with self._opening:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    # Changes

    def save_change(self, spec: ChangeSpec) -> ChangeVersionRecord:
        """Store a change; saving it again replaces its instance list and keeps its runs.

        A save whose instances differ from the latest version (ignoring their order) keeps
        the new list as the next version; returns the version the change is now at.
        """
        now = datetime.now(UTC)
        instances = [target.model_dump(mode="json") for target in spec.targets]
        with self._transaction() as session:
            row = session.get(ChangeRow, spec.change_number, with_for_update=True)
            if row is None and not _insert_once(
                session, ChangeRow(change_number=spec.change_number, created_at=now, updated_at=now)
            ):
                # Another process saved the same new change a moment ago: update that one.
                row = session.get(ChangeRow, spec.change_number, with_for_update=True)
            if row is not None:
                row.updated_at = now
                session.add(row)
                session.flush()
            session.exec(
                delete(ChangeInstanceRow).where(
                    col(ChangeInstanceRow.change_number) == spec.change_number
                )
            )
            session.add_all(
                ChangeInstanceRow(
                    change_number=spec.change_number,
                    position=position,
                    instance_id=target.instance_id,
                    account_id=target.account_id,
                    region=target.region,
                    platform=target.platform.value,
                    name=target.name,
                )
                for position, target in enumerate(spec.targets)
            )
            # The change row is locked (or this is its first save): numbering cannot race.
            latest = _latest_version(session, spec.change_number)
            if latest is not None and _same_instances(latest.instances, instances):
                return _version_record(latest)
            version = ChangeVersionRow(
                change_number=spec.change_number,
                version=(latest.version if latest else 0) + 1,
                saved_at=now,
                instances=instances,
            )
            session.add(version)
            session.flush()
            return _version_record(version)

    def change_versions(self, change_number: str) -> list[ChangeVersionRecord]:
        """Every saved version of a change's instance list, oldest first (empty: no change)."""
        with self._session() as session:
            rows = session.exec(
                select(ChangeVersionRow)
                .where(ChangeVersionRow.change_number == change_number)
                .order_by(col(ChangeVersionRow.version))
            ).all()
            return [_version_record(row) for row in rows]

    def list_changes(self) -> list[ChangeSummary]:
        """Every stored change, most recently saved first, with its counts."""
        instances = (
            select(
                ChangeInstanceRow.change_number,
                func.count(col(ChangeInstanceRow.id)).label("instance_count"),
            )
            .group_by(col(ChangeInstanceRow.change_number))
            .subquery()
        )
        versions = (
            select(
                ChangeVersionRow.change_number,
                func.max(ChangeVersionRow.version).label("version"),
            )
            .group_by(col(ChangeVersionRow.change_number))
            .subquery()
        )
        runs = (
            select(
                WorkflowRunRow.change_number,
                func.count(func.distinct(WorkflowRunRow.flow_run_id)).label("run_count"),
                func.max(WorkflowRunRow.started_at).label("last_run_at"),
            )
            .group_by(col(WorkflowRunRow.change_number))
            .subquery()
        )
        # SQLAlchemy's own select: sqlmodel's takes at most four columns.
        query = (
            sa_select(
                ChangeRow,
                instances.c.instance_count,
                versions.c.version,
                runs.c.run_count,
                runs.c.last_run_at,
            )
            .outerjoin(instances, instances.c.change_number == ChangeRow.change_number)
            .outerjoin(versions, versions.c.change_number == ChangeRow.change_number)
            .outerjoin(runs, runs.c.change_number == ChangeRow.change_number)
            .order_by(col(ChangeRow.updated_at).desc(), col(ChangeRow.change_number))
        )
        with self._session() as session:
            return [
                ChangeSummary(
                    change_number=change.change_number,
                    created_at=change.created_at,
                    updated_at=change.updated_at,
                    instance_count=instance_count or 0,
                    version=version or 0,
                    run_count=run_count or 0,
                    last_run_at=last_run_at,
                )
                for change, instance_count, version, run_count, last_run_at in session.execute(
                    query
                ).all()
            ]

    def load_change(self, change_number: str) -> ChangeSpec | None:
        """The stored change, or None when no change has that number."""
        with self._session() as session:
            if session.get(ChangeRow, change_number) is None:
                return None
            rows = session.exec(
                select(ChangeInstanceRow)
                .where(ChangeInstanceRow.change_number == change_number)
                .order_by(col(ChangeInstanceRow.position))
            ).all()
        targets = [
            Target(
                instance_id=row.instance_id,
                account_id=row.account_id,
                region=row.region,
                platform=Platform(row.platform),
                name=row.name,
            )
            for row in rows
        ]
        return ChangeSpec(change_number=change_number, targets=targets)

    # Workflow runs and executions

    def start_run(
        self,
        flow_run_id: str | None,
        workflow: str,
        step: str,
        provider: str,
        change_number: str | None,
    ) -> int:
        """Record that a step of a flow run started; returns the run id.

        A retried flow run (same flow run id, workflow and step) gets its earlier run id back,
        marked running again, so its executions stay together. Without a flow run id (code
        run outside Prefect) every call starts a new run.
        """
        # Outside a Prefect flow run there is no id; a fresh one keeps such runs apart.
        flow_run_id = flow_run_id or f"local-{uuid.uuid4()}"
        _check("flow run id", flow_run_id)
        for label, value in (("workflow", workflow), ("step", step), ("provider", provider)):
            _check(label, value)
        if change_number is not None:
            validate_change_number(change_number)
        now = datetime.now(UTC)
        with self._transaction() as session:
            row = WorkflowRunRow(
                flow_run_id=flow_run_id,
                workflow=workflow,
                step=step,
                provider=provider,
                change_number=change_number,
                status=RUNNING,
                started_at=now,
            )
            if _insert_once(session, row):
                assert row.id is not None  # assigned by the flush in _insert_once
                return row.id
            existing = session.exec(
                select(WorkflowRunRow)
                .where(WorkflowRunRow.flow_run_id == flow_run_id)
                .where(WorkflowRunRow.workflow == workflow)
                .where(WorkflowRunRow.step == step)
                .with_for_update()
            ).one()
            existing.provider = provider
            existing.change_number = change_number
            existing.status = RUNNING
            existing.ended_at = None
            session.add(existing)
            assert existing.id is not None
            return existing.id

    def record_results(
        self,
        run_id: int,
        results: Sequence[ScriptResult],
        parsed: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Store one execution per instance of ``results`` in run ``run_id``.

        ``parsed`` holds what a flow read from an instance's output, keyed by instance id
        (anything pydantic can turn into JSON: dates, enums and models included).
        An instance recorded again in the same run replaces its earlier execution.
        """
        parsed = parsed or {}
        instance_ids = [result.instance_id for result in results]
        twice = sorted(i for i, n in Counter(instance_ids).items() if n > 1)
        if twice:
            raise ValueError(f"results name these instances more than once: {', '.join(twice)}")
        unknown = sorted(set(parsed) - set(instance_ids))
        if unknown:
            raise ValueError(f"parsed results for instances without a result: {', '.join(unknown)}")
        with self._transaction() as session:
            self._get_run_row(session, run_id)
            if instance_ids:
                session.exec(
                    delete(ExecutionRow)
                    .where(col(ExecutionRow.run_id) == run_id)
                    .where(col(ExecutionRow.instance_id).in_(instance_ids))
                )
            session.add_all(
                _execution_row(run_id, result, parsed.get(result.instance_id)) for result in results
            )

    def finish_run(self, run_id: int, status: str, success_count: int, failure_count: int) -> None:
        """Record how a run ended (``success``, ``partial``, ``failed``...) and its counts."""
        _check("status", status)
        if success_count < 0 or failure_count < 0:
            raise ValueError("success and failure counts cannot be negative")
        with self._transaction() as session:
            row = self._get_run_row(session, run_id)
            row.status = status
            row.success_count = success_count
            row.failure_count = failure_count
            row.ended_at = datetime.now(UTC)
            session.add(row)

    def get_run(self, run_id: int) -> RunRecord:
        """One run by id."""
        with self._session() as session:
            return RunRecord.model_validate(self._get_run_row(session, run_id))

    def runs_for_change(self, change_number: str) -> list[RunRecord]:
        """Every run recorded for a change, oldest first."""
        with self._session() as session:
            rows = session.exec(
                select(WorkflowRunRow)
                .where(WorkflowRunRow.change_number == change_number)
                .order_by(col(WorkflowRunRow.started_at), col(WorkflowRunRow.id))
            ).all()
            return [RunRecord.model_validate(row) for row in rows]

    def executions(self, run_id: int) -> list[ExecutionRecord]:
        """The executions of one run, by instance id."""
        with self._session() as session:
            rows = session.exec(
                select(ExecutionRow)
                .where(ExecutionRow.run_id == run_id)
                .order_by(col(ExecutionRow.instance_id))
            ).all()
            return [ExecutionRecord.model_validate(row) for row in rows]

    def latest_executions(
        self, change_number: str | None, workflow: str, step: str
    ) -> dict[str, ExecutionRecord]:
        """Per instance, its most recent execution in a run of this change, workflow and step
        (``change_number=None``: runs that named no change).

        The post-patching flow compares these (the prep flow's QC) with what it finds now.
        """
        with self._session() as session:
            rows = session.exec(
                select(ExecutionRow)
                .join(WorkflowRunRow, col(ExecutionRow.run_id) == col(WorkflowRunRow.id))
                .where(_same_change(change_number))
                .where(WorkflowRunRow.workflow == workflow)
                .where(WorkflowRunRow.step == step)
                .order_by(col(WorkflowRunRow.started_at).desc(), col(WorkflowRunRow.id).desc())
            ).all()
            latest: dict[str, ExecutionRecord] = {}
            for row in rows:
                if row.instance_id not in latest:
                    latest[row.instance_id] = ExecutionRecord.model_validate(row)
            return latest

    def executions_for_change(
        self, change_number: str, instance_id: str | None = None
    ) -> list[RunExecution]:
        """Every execution in a run of ``change_number`` (of one instance when given), each
        with its run; oldest run first."""
        query = (
            select(ExecutionRow, WorkflowRunRow)
            .join(WorkflowRunRow, col(ExecutionRow.run_id) == col(WorkflowRunRow.id))
            .where(WorkflowRunRow.change_number == change_number)
        )
        if instance_id is not None:
            query = query.where(ExecutionRow.instance_id == instance_id)
        query = query.order_by(
            col(WorkflowRunRow.started_at), col(WorkflowRunRow.id), col(ExecutionRow.instance_id)
        )
        with self._session() as session:
            return [
                RunExecution(
                    run=RunRecord.model_validate(run),
                    execution=ExecutionRecord.model_validate(execution),
                )
                for execution, run in session.exec(query)
            ]

    # Decisions

    def record_decision(
        self,
        flow_run_id: str,
        workflow: str,
        change_number: str | None,
        *,
        kind: str,
        decision: str,
        approver: str,
        reason: str,
    ) -> DecisionRecord:
        """Record a decision a person took during a run (an approval, continue or abort)."""
        _check("flow run id", flow_run_id)
        for label, value in (("workflow", workflow), ("kind", kind), ("decision", decision)):
            _check(label, value)
        if change_number is not None:
            validate_change_number(change_number)
        row = DecisionRow(
            flow_run_id=flow_run_id,
            workflow=workflow,
            change_number=change_number,
            kind=kind,
            decision=decision,
            approver=_one_line("approver", approver, 100),
            reason=_one_line("reason", reason, 2000, empty_ok=True),
            decided_at=datetime.now(UTC),
        )
        with self._transaction() as session:
            session.add(row)
            session.flush()
            return DecisionRecord.model_validate(row)

    def decisions_for_change(self, change_number: str) -> list[DecisionRecord]:
        """Every decision recorded for a change, oldest first."""
        with self._session() as session:
            rows = session.exec(
                select(DecisionRow)
                .where(col(DecisionRow.change_number) == change_number)
                .order_by(col(DecisionRow.decided_at), col(DecisionRow.id))
            ).all()
            return [DecisionRecord.model_validate(row) for row in rows]

    # Sent commands

    def record_command(self, run_key: str, ref: CommandRef) -> None:
        """Remember a command sent for a chunk of a run.

        When two processes record the same (run key, chunk key), the first one is kept and
        the second call returns quietly; ``find_command`` then returns the first.
        """
        _check("run key", run_key)
        with self._transaction() as session:
            _insert_once(
                session,
                SentCommandRow(
                    run_key=run_key,
                    chunk_key=ref.chunk_key,
                    command_id=ref.command_id,
                    account_id=ref.account_id,
                    region=ref.region,
                    instance_ids=list(ref.instance_ids),
                    sent_at=ref.sent_at,
                    deadline=ref.deadline,
                    output_s3_bucket=ref.output_s3_bucket,
                    output_s3_prefix=ref.output_s3_prefix,
                ),
            )

    def find_command(self, run_key: str, chunk_key: str) -> CommandRef | None:
        """The command already sent for this chunk of this run, if any."""
        with self._session() as session:
            row = session.exec(
                select(SentCommandRow)
                .where(SentCommandRow.run_key == run_key)
                .where(SentCommandRow.chunk_key == chunk_key)
            ).first()
            return None if row is None else _command_ref(row)

    def commands_for(self, run_key: str) -> list[CommandRef]:
        """Every command recorded under ``run_key``, in the order they were sent."""
        with self._session() as session:
            rows = session.exec(
                select(SentCommandRow)
                .where(SentCommandRow.run_key == run_key)
                .order_by(col(SentCommandRow.sent_at), col(SentCommandRow.id))
            ).all()
            return [_command_ref(row) for row in rows]

    def record_send_intent(self, run_key: str, chunk: Chunk) -> SendIntent:
        """Record that ``chunk`` of a run is about to be sent, before it is.

        Returns the intent: the first one recorded for the chunk when there already was one,
        since its time is the one a lookup of the command must start from.
        """
        _check("run key", run_key)
        with self._transaction() as session:
            _insert_once(
                session,
                SendIntentRow(
                    run_key=run_key,
                    chunk_key=chunk.key,
                    account_id=chunk.account_id,
                    region=chunk.region,
                    instance_ids=list(chunk.instance_ids),
                    recorded_at=datetime.now(UTC),
                ),
            )
            row = _intent_row(session, run_key, chunk.key)
            assert row is not None  # inserted above, or by whoever won the race
            return SendIntent.model_validate(row)

    def find_send_intent(self, run_key: str, chunk_key: str) -> SendIntent | None:
        """The intent recorded before sending this chunk of this run, if any: its command may
        have gone out even though ``find_command`` knows none."""
        with self._session() as session:
            row = _intent_row(session, run_key, chunk_key)
            return None if row is None else SendIntent.model_validate(row)

    # Plumbing

    @property
    def engine(self) -> Engine:
        """The migrated engine (opened on first use)."""
        with self._opening:
            if self._engine is None:
                self._engine = open_store_engine(self.url)
            return self._engine

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._session() as session, session.begin():
            yield session

    def _get_run_row(self, session: Session, run_id: int) -> WorkflowRunRow:
        row = session.get(WorkflowRunRow, run_id)
        if row is None:
            raise StoreError(
                f"no workflow run {run_id} in {describe_url(self.url)}; start_run returns the "
                "id to use"
            )
        return row


def _latest_version(session: Session, change_number: str) -> ChangeVersionRow | None:
    return session.exec(
        select(ChangeVersionRow)
        .where(ChangeVersionRow.change_number == change_number)
        .order_by(col(ChangeVersionRow.version).desc())
        .limit(1)
    ).first()


def _same_instances(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    """The same targets, whatever their order in the file."""

    def key(instance: dict[str, Any]) -> str:
        return json.dumps(instance, sort_keys=True)

    return sorted(map(key, old)) == sorted(map(key, new))


def _version_record(row: ChangeVersionRow) -> ChangeVersionRecord:
    return ChangeVersionRecord(
        change_number=row.change_number,
        version=row.version,
        saved_at=row.saved_at,
        targets=[Target.model_validate(instance) for instance in row.instances],
    )


def _intent_row(session: Session, run_key: str, chunk_key: str) -> SendIntentRow | None:
    return session.exec(
        select(SendIntentRow)
        .where(SendIntentRow.run_key == run_key)
        .where(SendIntentRow.chunk_key == chunk_key)
    ).first()


def _command_ref(row: SentCommandRow) -> CommandRef:
    return CommandRef(
        command_id=row.command_id,
        chunk_key=row.chunk_key,
        account_id=row.account_id,
        region=row.region,
        instance_ids=row.instance_ids,
        sent_at=row.sent_at,
        deadline=row.deadline,
        output_s3_bucket=row.output_s3_bucket,
        output_s3_prefix=row.output_s3_prefix,
    )


def _same_change(change_number: str | None) -> ColumnElement[bool]:
    column = col(WorkflowRunRow.change_number)
    return column.is_(None) if change_number is None else column == change_number


def _insert_once(session: Session, row: StoreTable) -> bool:
    """Insert ``row`` unless a row with the same unique key exists (False then).

    A savepoint keeps the surrounding transaction usable when another process won the race.
    """
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return False
    return True


def _execution_row(
    run_id: int, result: ScriptResult, parsed: dict[str, Any] | None
) -> ExecutionRow:
    return ExecutionRow(
        run_id=run_id,
        instance_id=result.instance_id,
        account_id=result.account_id,
        region=result.region,
        command_id=result.command_id,
        status=result.status.value,
        exit_code=result.exit_code,
        stdout=_storable(result.stdout),
        stderr=_storable(result.stderr),
        stdout_truncated=result.stdout_truncated,
        stderr_truncated=result.stderr_truncated,
        error=_storable(result.error) if result.error is not None else None,
        # Parsed reports may hold dates, enums or models: store their JSON form.
        parsed=to_jsonable_python(parsed) if parsed is not None else None,
        started_at=result.started_at,
        ended_at=result.ended_at,
    )


def _storable(text: str) -> str:
    # PostgreSQL text cannot hold NUL characters, which a script's output sometimes has.
    return text.replace("\x00", "\ufffd")


def _check(label: str, value: str) -> None:
    pattern, longest, expected = _RULES[label]
    if isinstance(value, str) and len(value) <= longest and pattern.fullmatch(value):
        return
    # The value is not repeated: it may be a credential passed by mistake.
    length = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
    raise ValueError(f"the {label} given ({length}) is not something the store records; {expected}")


def _one_line(label: str, value: str, longest: int, *, empty_ok: bool = False) -> str:
    """A person's free text (a name, a reason) as one stored line, or ``ValueError``."""
    text = " ".join(str(value).split())
    if not text and not empty_ok:
        raise ValueError(f"the {label} is empty: say who decided")
    if len(text) > longest:
        raise ValueError(f"the {label} is {len(text)} characters; at most {longest}")
    return _storable(text)
