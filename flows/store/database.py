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
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError

from flows.common.private_files import PRIVATE_FILE, private_directory, private_file, tighten
from flows.common.settings import get_settings

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any fixed number: PostgreSQL advisory locks are keyed by integers.
_MIGRATION_LOCK_KEY = 0x436C6F75644F7073  # "CloudOps"


_EXAMPLES = (
    "write it like sqlite:////var/lib/cloudops/cloudops.db or "
    "postgresql+psycopg://user:password@host:5432/cloudops"
)
# The installable driver of each backend whose default driver is not installed here.
_DRIVER_PACKAGES = {"mysql": "mysqlclient", "mssql": "pyodbc", "oracle": "oracledb"}


class StoreError(Exception):
    """The record store cannot be used; the message says which database and what to do."""


def parse_database_url(url: str) -> URL:
    """The URL as SQLAlchemy reads it, with PostgreSQL pointed at the psycopg 3 driver.

    ``StoreError`` (naming ``DATABASE_URL``, never its password) when it cannot be one.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"DATABASE_URL is not a database URL; {_EXAMPLES}") from None
    except ValueError:
        # SQLAlchemy reads the port with int(); its message would quote the URL's text.
        raise StoreError(
            f"DATABASE_URL has a port that is not a number (host:port, such as db:5432); "
            f"{_EXAMPLES}"
        ) from None
    if parsed.host and "@" in parsed.host:
        # An '@' in the password ends it early: the rest would be read (and shown) as the host.
        raise StoreError(
            "DATABASE_URL holds more than one '@': a password with '@' (or ':', '/', '?', '#', "
            "'%') in it must be percent-encoded, '@' as %40 (python -c \"import urllib.parse; "
            "print(urllib.parse.quote(input(), safe=''))\" does it)"
        )
    # psycopg 3 is the driver this package installs; plain postgresql:// would ask for psycopg2.
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def describe_url(url: str | URL) -> str:
    """The URL for a message: the password is never shown (nor an unreadable URL at all)."""
    try:
        parsed = url if isinstance(url, URL) else parse_database_url(url)
    except StoreError:
        return "(the DATABASE_URL that cannot be read)"
    return parsed.render_as_string(hide_password=True)


def create_store_engine(url: str) -> Engine:
    """A new engine for ``url`` with the store's connection settings. Not migrated.

    Raises ``StoreError`` for a URL no engine can be made from: an unknown dialect, a driver
    that is not installed, an asynchronous driver, a SQLite file in a missing directory.
    """
    parsed = parse_database_url(url)
    _check_dialect(parsed)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = 10
    try:
        return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    except ImportError as exc:
        backend = parsed.get_backend_name()
        package = _DRIVER_PACKAGES.get(backend, exc.name or parsed.get_driver_name())
        raise StoreError(
            f"DATABASE_URL asks for {backend} through the {parsed.get_driver_name()} driver, "
            f"which is not installed on this worker: install it (pip install {package}) or "
            f"use a database this package supports; {_EXAMPLES}"
        ) from None


def _check_dialect(url: URL) -> None:
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise StoreError(
            f"DATABASE_URL names {url.drivername!r}, for which there is no SQLAlchemy dialect "
            f"on this worker; {_EXAMPLES}"
        ) from None
    if getattr(dialect, "is_async", False):
        raise StoreError(
            f"DATABASE_URL uses the asynchronous driver {url.get_driver_name()!r}, which the "
            "store cannot use (it is what the Prefect server's own database URL takes); use "
            "postgresql+psycopg:// (or sqlite:///) here"
        )


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        _private_sqlite_file(Path(database).expanduser())
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


def _private_sqlite_file(database: Path) -> None:
    """The database file, created 0600 before SQLite opens it: SQLite gives its -wal, -shm
    and -journal files the mode of the database file. Files of ours already there are
    tightened to 0600, and the data directory to 0700."""
    _sqlite_directory(database.parent)
    try:
        private_file(database)
        for suffix in ("-wal", "-shm", "-journal"):
            tighten(database.with_name(database.name + suffix), PRIVATE_FILE)
    except OSError as exc:
        raise StoreError(
            f"cannot use the SQLite file {str(database)!r} of DATABASE_URL: {exc.strerror}; "
            "check that the file and its directory are writable by this worker's user"
        ) from None


def _sqlite_directory(directory: Path) -> None:
    """The data directory is created on first use (0700); any other directory must exist
    already, so that a mistyped ``DATABASE_URL`` does not scatter databases over the disk."""
    data_dir = get_settings().data_dir
    is_data_dir = directory.absolute() == data_dir.absolute()
    if directory.is_dir():
        if is_data_dir:
            private_directory(directory)
        return
    if is_data_dir:
        try:
            private_directory(directory)
        except OSError as exc:
            raise StoreError(
                f"cannot create the data directory {str(directory)!r} for the record store: "
                f"{exc.strerror}; set CLOUDOPS_DATA_DIR (or DATABASE_URL) to a writable place"
            ) from None
        return
    raise StoreError(
        f"DATABASE_URL names a SQLite file in {str(directory)!r}, which does not exist: create it "
        f"(mkdir -m 700 {directory}) or point DATABASE_URL at an existing directory"
    )


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
    except DatabaseError as exc:
        raise _database_error(engine.url, exc) from None


def _database_error(url: URL, exc: DatabaseError) -> StoreError:
    """What a person should know when the database itself refused or could not be reached."""
    where = describe_url(url)
    detail = _without_password(str(exc.orig), url.password)
    if url.get_backend_name() == "sqlite" and "not a database" in detail:
        return StoreError(
            f"the SQLite file {url.database!r} of DATABASE_URL is not a SQLite database (it "
            "is damaged, or another kind of file): move it aside so the store creates a new "
            "one, or point DATABASE_URL at the right file"
        )
    if url.get_backend_name() == "sqlite":
        return StoreError(
            f"cannot use the record store {where}: {detail}; check DATABASE_URL and that the "
            "file and its directory are writable"
        )
    return StoreError(
        f"cannot use the record store {where}: {detail}; check DATABASE_URL and that the "
        "database server is reachable"
    )


def _without_password(text: str, password: str | None) -> str:
    # Drivers do not put the password in their messages; this is the second lock. A password
    # of one or two characters would mask letters at random and say nothing about it.
    if password and len(password) > 2:
        return text.replace(password, "***")
    return text


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
