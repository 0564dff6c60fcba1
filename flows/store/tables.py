"""The record store's tables, as SQLModel classes.

These classes are the store's private layout; callers get typed records (``records.py``) and
change specs back. The migrations under ``migrations/versions`` create exactly these tables
(a test compares them), so a change here needs a new migration revision.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

# Named constraints, so that migrations can refer to them by the same name on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware.

    SQLite keeps no time zone, so values are converted to UTC on the way in and marked UTC on
    the way out; PostgreSQL stores ``timestamp with time zone``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"refusing a timestamp without time zone: {value.isoformat()}")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StoreTable(SQLModel, registry=registry(metadata=metadata)):
    """Base of the store's tables: keeps them in their own metadata, apart from any other."""


class ChangeRow(StoreTable, table=True):
    __tablename__ = "change"

    change_number: str = Field(sa_type=String(50), primary_key=True)
    created_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(sa_type=UtcDateTime, nullable=False)


class ChangeVersionRow(StoreTable, table=True):
    """One saved version of a change's instance list, kept when a later save replaces it, so
    that a person can see what a new version added, removed or moved (revision 0005)."""

    __tablename__ = "change_version"
    __table_args__ = (UniqueConstraint("change_number", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    change_number: str = Field(sa_type=String(50), foreign_key="change.change_number")
    version: int = Field(description="1 for the first save, then one more per changed list")
    saved_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    instances: list[dict[str, Any]] = Field(
        sa_type=JSON, description="the targets in file order, as Target.model_dump(mode='json')"
    )


class ChangeInstanceRow(StoreTable, table=True):
    __tablename__ = "change_instance"
    __table_args__ = (UniqueConstraint("change_number", "instance_id"),)

    id: int | None = Field(default=None, primary_key=True)
    change_number: str = Field(sa_type=String(50), foreign_key="change.change_number")
    position: int = Field(description="order of the instance in the change file")
    instance_id: str = Field(sa_type=String(64))
    account_id: str = Field(sa_type=String(12))
    region: str = Field(sa_type=String(32))
    platform: str = Field(sa_type=String(16))
    name: str | None = Field(default=None, sa_type=String(255), nullable=True)


class WorkflowRunRow(StoreTable, table=True):
    __tablename__ = "workflow_run"
    __table_args__ = (
        UniqueConstraint("flow_run_id", "workflow", "step"),
        Index(None, "change_number", "workflow", "step"),
    )

    id: int | None = Field(default=None, primary_key=True)
    flow_run_id: str = Field(sa_type=String(64))
    workflow: str = Field(sa_type=String(64))
    step: str = Field(sa_type=String(64))
    provider: str = Field(sa_type=String(128), description="the provider's name, never a secret")
    # Not a foreign key: a run may name a change given as a list of instances, never saved.
    change_number: str | None = Field(default=None, sa_type=String(50), nullable=True)
    status: str = Field(sa_type=String(32))
    success_count: int = 0
    failure_count: int = 0
    started_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    ended_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)


class ExecutionRow(StoreTable, table=True):
    __tablename__ = "execution"
    __table_args__ = (UniqueConstraint("run_id", "instance_id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="workflow_run.id")
    instance_id: str = Field(sa_type=String(64))
    account_id: str = Field(sa_type=String(12))
    region: str = Field(sa_type=String(32))
    command_id: str | None = Field(default=None, sa_type=String(100), nullable=True)
    status: str = Field(sa_type=String(32))
    exit_code: int | None = Field(default=None, nullable=True)
    stdout: str = Field(sa_type=Text)
    stderr: str = Field(sa_type=Text)
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    error: str | None = Field(default=None, sa_type=Text, nullable=True)
    parsed: dict[str, Any] | None = Field(
        default=None, sa_type=JSON(none_as_null=True), nullable=True
    )
    started_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    ended_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)


class SentCommandRow(StoreTable, table=True):
    """A command sent for one chunk of a run, so that a resumed run polls it instead of
    sending it again (added by revision 0002)."""

    __tablename__ = "sent_command"
    __table_args__ = (UniqueConstraint("run_key", "chunk_key"),)

    id: int | None = Field(default=None, primary_key=True)
    run_key: str = Field(sa_type=String(200))
    chunk_key: str = Field(sa_type=String(64))
    command_id: str = Field(sa_type=String(100))
    account_id: str = Field(sa_type=String(12))
    region: str = Field(sa_type=String(32))
    instance_ids: list[str] = Field(sa_type=JSON)
    sent_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    deadline: datetime = Field(sa_type=UtcDateTime, nullable=False)
    output_s3_bucket: str | None = Field(default=None, sa_type=String(255), nullable=True)
    output_s3_prefix: str | None = Field(default=None, sa_type=String(1024), nullable=True)


class SendIntentRow(StoreTable, table=True):
    """A chunk of a run about to be sent, recorded before its ``SendCommand`` (revision 0004).

    A run that died between sending and recording the command (``SentCommandRow``) finds its
    intent when it resumes, and looks the command up in the provider's history from
    ``recorded_at`` on before it sends anything again.
    """

    __tablename__ = "send_intent"
    __table_args__ = (UniqueConstraint("run_key", "chunk_key"),)

    id: int | None = Field(default=None, primary_key=True)
    run_key: str = Field(sa_type=String(200))
    chunk_key: str = Field(sa_type=String(64))
    account_id: str = Field(sa_type=String(12))
    region: str = Field(sa_type=String(32))
    instance_ids: list[str] = Field(sa_type=JSON)
    recorded_at: datetime = Field(sa_type=UtcDateTime, nullable=False)


class DecisionRow(StoreTable, table=True):
    """A decision a person took during a run: an approval, a halt decision (revision 0003)."""

    __tablename__ = "decision"
    __table_args__ = (Index(None, "change_number"),)

    id: int | None = Field(default=None, primary_key=True)
    flow_run_id: str = Field(sa_type=String(64))
    workflow: str = Field(sa_type=String(64))
    change_number: str | None = Field(default=None, sa_type=String(50), nullable=True)
    kind: str = Field(sa_type=String(32))
    decision: str = Field(sa_type=String(32))
    approver: str = Field(sa_type=String(100))
    reason: str = Field(sa_type=Text)
    decided_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
