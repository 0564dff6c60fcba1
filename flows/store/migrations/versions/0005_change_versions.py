"""Versions of a change: each save that alters a change's instance list keeps the list it had,
so that ``cloudops changes diff`` can say what the latest version added, removed or moved.

Every change already stored gets its current list as version 1.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_change = sa.table(
    "change",
    sa.column("change_number", sa.String(50)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
_instance = sa.table(
    "change_instance",
    sa.column("change_number", sa.String(50)),
    sa.column("position", sa.Integer()),
    sa.column("instance_id", sa.String(64)),
    sa.column("account_id", sa.String(12)),
    sa.column("region", sa.String(32)),
    sa.column("platform", sa.String(16)),
    sa.column("name", sa.String(255)),
)


def upgrade() -> None:
    version = op.create_table(
        "change_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("change_number", sa.String(50), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("instances", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["change_number"],
            ["change.change_number"],
            name="fk_change_version_change_number_change",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_change_version"),
        sa.UniqueConstraint(
            "change_number", "version", name="uq_change_version_change_number_version"
        ),
    )
    assert version is not None
    # Written as SQL (``alembic upgrade --sql``) there are no rows to read: the stored changes
    # then start their versions at their next save, which the store handles.
    if not context.is_offline_mode():
        _first_versions_of_stored_changes(version)


def _first_versions_of_stored_changes(version: sa.Table) -> None:
    """Version 1 of every change stored before this revision: its instance list as it is."""
    connection = op.get_bind()
    targets: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in connection.execute(
        sa.select(_instance).order_by(_instance.c.change_number, _instance.c.position)
    ):
        targets[row.change_number].append(
            {
                "instance_id": row.instance_id,
                "account_id": row.account_id,
                "region": row.region,
                "platform": row.platform,
                "name": row.name,
            }
        )
    rows = [
        {
            "change_number": change.change_number,
            "version": 1,
            "saved_at": change.updated_at,
            "instances": targets.get(change.change_number, []),
        }
        for change in connection.execute(sa.select(_change))
    ]
    if rows:
        op.bulk_insert(version, rows)


def downgrade() -> None:
    op.drop_table("change_version")
