"""Sweeps and schedules: a sweep's runs and a schedule's runs are ordinary tasks that name them.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("sweep_id", sa.Uuid(), primary_key=True),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("params", postgresql.JSONB(), nullable=False),
        sa.Column("grid", postgresql.JSONB(), nullable=False),  # [[name, [values]], ...]: JSONB keeps no key order
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    )
    op.create_table(
        "schedules",
        sa.Column("schedule_id", sa.Uuid(), primary_key=True),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("params", postgresql.JSONB(), nullable=False),
        sa.Column("cron", sa.Text(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    )
    op.create_index("schedules_due", "schedules", ["next_run_at"])
    op.add_column("tasks", sa.Column("sweep_id", sa.Uuid(), sa.ForeignKey("sweeps.sweep_id"), nullable=True))
    op.add_column("tasks", sa.Column("sweep_index", sa.Integer(), nullable=True))
    op.add_column("tasks", sa.Column("schedule_id", sa.Uuid(), nullable=True))  # a deleted schedule keeps its runs
    op.create_index("tasks_of_a_sweep", "tasks", ["sweep_id", "sweep_index"], unique=True)
    op.create_index("tasks_of_a_schedule", "tasks", ["schedule_id", "enqueued_at"])


def downgrade() -> None:
    op.drop_index("tasks_of_a_schedule", "tasks")
    op.drop_index("tasks_of_a_sweep", "tasks")
    op.drop_column("tasks", "schedule_id")
    op.drop_column("tasks", "sweep_index")
    op.drop_column("tasks", "sweep_id")
    op.drop_table("schedules")
    op.drop_table("sweeps")
