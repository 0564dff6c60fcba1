"""Throw-away PostgreSQL databases of the tests (the store's, the deployed Prefect server's)."""

from __future__ import annotations

import time

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError


def drop_database(admin: Engine, name: str, attempts: int = 20) -> None:
    """Drop ``name``, ending the sessions still on it. A process of another role on it (an
    autovacuum worker, seen with four test workers at once) cannot be ended by the test role
    and fails the drop: it is tried again while that process finishes its work."""
    for attempt in range(1, attempts + 1):
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except DBAPIError as exc:
            if attempt == attempts or "pg_signal_backend" not in str(exc.orig):
                raise
            time.sleep(0.5)
