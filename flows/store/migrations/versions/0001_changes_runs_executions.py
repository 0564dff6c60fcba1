"""Changes, their instances, workflow runs and executions.

Revision ID: 0001
Revises:
Create Date: 2025-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "change",
        sa.Column("change_number", sa.String(50), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("change_number", name="pk_change"),
    )
    op.create_table(
        "change_instance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("change_number", sa.String(50), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_change_instance"),
        sa.ForeignKeyConstraint(
            ["change_number"],
            ["change.change_number"],
            name="fk_change_instance_change_number_change",
        ),
        sa.UniqueConstraint(
            "change_number", "instance_id", name="uq_change_instance_change_number_instance_id"
        ),
    )
    op.create_table(
        "workflow_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("flow_run_id", sa.String(64), nullable=False),
        sa.Column("workflow", sa.String(64), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(128), nullable=False),
        sa.Column("change_number", sa.String(50), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("success_count", sa.Integer(), nullable=False),
        sa.Column("failure_count", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_run"),
        sa.UniqueConstraint(
            "flow_run_id", "workflow", "step", name="uq_workflow_run_flow_run_id_workflow_step"
        ),
    )
    op.create_index(
        "ix_workflow_run_change_number_workflow_step",
        "workflow_run",
        ["change_number", "workflow", "step"],
    )
    op.create_table(
        "execution",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("command_id", sa.String(100), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("stdout", sa.Text(), nullable=False),
        sa.Column("stderr", sa.Text(), nullable=False),
        sa.Column("stdout_truncated", sa.Boolean(), nullable=False),
        sa.Column("stderr_truncated", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("parsed", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_execution"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["workflow_run.id"], name="fk_execution_run_id_workflow_run"
        ),
        sa.UniqueConstraint("run_id", "instance_id", name="uq_execution_run_id_instance_id"),
    )


def downgrade() -> None:
    op.drop_table("execution")
    op.drop_index("ix_workflow_run_change_number_workflow_step", table_name="workflow_run")
    op.drop_table("workflow_run")
    op.drop_table("change_instance")
    op.drop_table("change")
