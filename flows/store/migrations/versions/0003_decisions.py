"""Decisions people took during a run: approvals, halt decisions (continue / abort).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "decision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("flow_run_id", sa.String(64), nullable=False),
        sa.Column("workflow", sa.String(64), nullable=False),
        sa.Column("change_number", sa.String(50), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("approver", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_decision"),
    )
    op.create_index("ix_decision_change_number", "decision", ["change_number"])


def downgrade() -> None:
    op.drop_index("ix_decision_change_number", table_name="decision")
    op.drop_table("decision")
