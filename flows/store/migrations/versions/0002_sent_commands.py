"""Commands sent per chunk, so that a resumed run re-attaches instead of sending again.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sent_command",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_key", sa.String(200), nullable=False),
        sa.Column("chunk_key", sa.String(64), nullable=False),
        sa.Column("command_id", sa.String(100), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("instance_ids", sa.JSON(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("output_s3_bucket", sa.String(255), nullable=True),
        sa.Column("output_s3_prefix", sa.String(1024), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sent_command"),
        sa.UniqueConstraint("run_key", "chunk_key", name="uq_sent_command_run_key_chunk_key"),
    )


def downgrade() -> None:
    op.drop_table("sent_command")
