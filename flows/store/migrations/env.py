"""Alembic environment of the record store.

The store runs migrations through ``flows.store.database.upgrade``, which passes a connection
that already holds the migration lock. Run from the ``alembic`` command line instead, the
database comes from ``DATABASE_URL`` and the same lock is taken here.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from flows.common.settings import get_settings
from flows.store.database import create_store_engine, migration_lock, parse_database_url
from flows.store.tables import metadata


def run_migrations(connection: Connection) -> None:
    # Batch mode lets future revisions alter columns on SQLite, which lacks ALTER COLUMN.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """``alembic upgrade --sql``: write the SQL instead of running it."""
    context.configure(
        url=parse_database_url(get_settings().database_url),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    run_migrations(given)
elif context.is_offline_mode():
    run_migrations_offline()
else:
    engine = create_store_engine(get_settings().database_url)
    try:
        with migration_lock(engine) as connection:
            run_migrations(connection)
    finally:
        engine.dispose()
