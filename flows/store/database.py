"""Engines for the record store, and the schema migrations they get on first use.

SQLite (the default) is opened in WAL mode with a busy timeout, and every transaction starts
with ``BEGIN IMMEDIATE``: writers queue for the lock instead of failing half-way, so two flows
writing at once both succeed. PostgreSQL needs nothing special.

Migrations run under a lock (SQLite's write lock, a PostgreSQL advisory lock), so two
processes that open a new database at the same moment do not both try to create it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any fixed number: PostgreSQL advisory locks are keyed by integers.
_MIGRATION_LOCK_KEY = 0x436C6F75644F7073  # "CloudOps"


class StoreError(Exception):
    """The record store cannot be used; the message says which database and what to do."""


def parse_database_url(url: str) -> URL:
    """The URL as SQLAlchemy reads it, with PostgreSQL pointed at the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            "DATABASE_URL is not a database URL; use e.g. sqlite:////var/lib/cloudops/cloudops.db "
            "or postgresql+psycopg://user:password@host:5432/cloudops"
        ) from None
    # psycopg 3 is the driver this package installs; plain postgresql:// would ask for psycopg2.
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def describe_url(url: str | URL) -> str:
    """The URL for a message: the password is never shown."""
    parsed = url if isinstance(url, URL) else parse_database_url(url)
    return parsed.render_as_string(hide_password=True)


def create_store_engine(url: str) -> Engine:
    """A new engine for ``url`` with the store's connection settings. Not migrated."""
    parsed = parse_database_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = 10
    return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Take the write lock up front: a transaction that reads, then writes after another
        # process committed, would otherwise fail with SQLITE_BUSY instead of waiting.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the store, bound to ``connection`` when given."""
    config = Config(str(ALEMBIC_INI))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the store's migration lock until it ends."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        yield connection


def head_revision() -> str | None:
    """The newest schema revision this version of the package knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@contextmanager
def _explaining_connection_errors(engine: Engine) -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        raise StoreError(
            f"cannot use the record store {describe_url(engine.url)}: {exc.orig}; check "
            "DATABASE_URL and that the database server is reachable"
        ) from None


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None for a database never migrated)."""
    with _explaining_connection_errors(engine), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the newest), keeping its records."""
    with _explaining_connection_errors(engine), migration_lock(engine) as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        script = ScriptDirectory.from_config(alembic_config())
        known = {script_revision.revision for script_revision in script.walk_revisions()}
        if current is not None and current not in known:
            raise StoreError(
                f"the database {describe_url(engine.url)} is at schema revision {current!r}, "
                f"which this version of cloudops-flows does not know (newest: "
                f"{head_revision()!r}); upgrade cloudops-flows"
            )
        command.upgrade(alembic_config(connection), revision)


def open_store_engine(url: str) -> Engine:
    """An engine for ``url`` whose database is migrated to the newest revision."""
    engine = create_store_engine(url)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine
