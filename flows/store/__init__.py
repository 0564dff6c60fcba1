"""The record store: changes, workflow runs and executions in SQLite or PostgreSQL.

``Store.default()`` opens the database named by ``DATABASE_URL`` (default: a SQLite file in
the data directory) and brings its schema up to date on first use; ``python -m flows.store
upgrade`` does the same from a shell.
"""

from flows.store.database import StoreError
from flows.store.records import (
    ChangeSummary,
    ChangeVersionRecord,
    DecisionRecord,
    ExecutionRecord,
    RunExecution,
    RunRecord,
    SendIntent,
)
from flows.store.store import Store

__all__ = [
    "ChangeSummary",
    "ChangeVersionRecord",
    "DecisionRecord",
    "ExecutionRecord",
    "RunExecution",
    "RunRecord",
    "SendIntent",
    "Store",
    "StoreError",
]
