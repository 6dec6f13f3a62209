"""Task lifecycle: accepted tasks, idempotency keys, and results with type, timings and any JSON result.

Rows written under 0001 are kept: they were all multiplications, so they get type 'multiply', their
number becomes a JSON number, finished_at becomes ended_at, and each gets the tasks row it lacked.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.Uuid(), primary_key=True),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("priority", sa.Text(), nullable=False),
        sa.Column("params", postgresql.JSONB(), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("priority IN ('high', 'default', 'low')", name="tasks_priority"),
    )
    op.create_index("tasks_newest_first", "tasks", ["enqueued_at", "task_id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("endpoint", sa.Text(), primary_key=True),
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    )

    op.add_column("results", sa.Column("type", sa.Text(), nullable=False, server_default="multiply"))
    op.alter_column("results", "type", server_default=None)
    op.alter_column("results", "result", type_=postgresql.JSONB(), postgresql_using="to_jsonb(result)")
    op.add_column("results", sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
    op.alter_column("results", "finished_at", new_column_name="ended_at")
    op.drop_constraint("results_status", "results", type_="check")
    op.create_check_constraint("results_status", "results", "status IN ('finished', 'failed', 'canceled', 'stopped')")
    op.execute(
        "INSERT INTO tasks (task_id, type, priority, params, enqueued_at) "
        "SELECT task_id, type, 'default', '{}'::jsonb, ended_at FROM results"
    )


def downgrade() -> None:
    op.execute("DELETE FROM results WHERE type <> 'multiply' OR status NOT IN ('finished', 'failed')")
    op.drop_constraint("results_status", "results", type_="check")
    op.create_check_constraint("results_status", "results", "status IN ('finished', 'failed')")
    op.alter_column("results", "ended_at", new_column_name="finished_at")
    op.drop_column("results", "started_at")
    op.alter_column("results", "result", type_=sa.Double(), postgresql_using="(result #>> '{}')::double precision")
    op.drop_column("results", "type")
    op.drop_table("idempotency_keys")
    op.drop_index("tasks_newest_first", "tasks")
    op.drop_table("tasks")
