"""Webhooks and their deliveries (an outbox), and the running totals of GET /metrics, both written by triggers in
the transaction that writes the rows they come from.

- `results`: each time a task's status is written anew (its end; a requeued task's later end), its totals are counted
  (`tasks_ended`, `task_duration`) and a delivery is written for every webhook that takes the event; the run that
  ends a sweep's last open run also writes `sweep.finished`'s.
- `tasks`: accepted tasks are counted (`tasks_accepted`), once per statement.
- `webhook_deliveries`: each delivery that ends (delivered, or failed for good) is counted.
Totals are never lowered (`flask tasks prune` deletes rows, not what was counted): they are Prometheus counters.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# metrics.DURATION_BUCKETS when this was written (a migration keeps its own copy: it must not change later).
DURATION_BOUNDS = ("0.1", "0.5", "1", "5", "10", "30", "60", "300", "900", "1800", "3600")
# The `le` of the histogram bucket of a duration in seconds (`seconds`), as text.
BUCKET = "CASE " + " ".join(f"WHEN seconds <= {bound} THEN '{bound}'" for bound in DURATION_BOUNDS) + " ELSE '+Inf' END"
# Each connection adds to the shard of its backend's pid: writers on different connections seldom queue on one row.
SHARD = "pg_backend_pid() % 16"
ADD = (
    "ON CONFLICT (metric, labels, shard) DO UPDATE SET count = total.count + excluded.count, "
    "sum = total.sum + excluded.sum"
)

# Plain (not deferred) triggers: a deferred one cost a fifth of the drain rate; a statement's trigger on `tasks`, so
# that a sweep's thousand runs add to their total once, not a thousand times over one row in one transaction.
FUNCTIONS = f"""
CREATE FUNCTION longjobs_tasks_accepted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO metric_totals AS total (metric, labels, shard, count, sum)
    SELECT 'tasks_accepted', jsonb_build_object('type', type), {SHARD}, count(*), 0 FROM accepted GROUP BY type
    {ADD};
    RETURN NULL;
END $$;

CREATE FUNCTION longjobs_task_ended() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    -- How long it ran; NULL if it never started (greatest() would take a NULL for 0).
    seconds double precision := CASE WHEN NEW.started_at IS NOT NULL
                                     THEN greatest(extract(epoch FROM NEW.ended_at - NEW.started_at), 0) END;
    sweep uuid;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status = NEW.status THEN
        RETURN NULL;  -- the same outcome written again (a job that ran twice): nothing new happened
    END IF;
    INSERT INTO metric_totals AS total (metric, labels, shard, count, sum)
    SELECT * FROM (VALUES
        ('tasks_ended', jsonb_build_object('type', NEW.type, 'status', NEW.status), {SHARD}, 1, 0::double precision),
        ('task_duration', CASE WHEN seconds IS NOT NULL THEN jsonb_build_object('type', NEW.type, 'le', {BUCKET})
                          END, {SHARD}, 1, coalesce(seconds, 0))
    ) AS counted (metric, labels, shard, count, sum) WHERE labels IS NOT NULL  -- no duration: it never started
    {ADD};
    IF NOT EXISTS (SELECT FROM webhooks) THEN
        RETURN NULL;  -- as a rule: then a task's end costs one statement here
    END IF;
    INSERT INTO webhook_deliveries (delivery_id, webhook_id, event, task_id)
    SELECT gen_random_uuid(), webhook_id, 'task.' || NEW.status, NEW.task_id FROM webhooks
    WHERE events ? ('task.' || NEW.status);
    IF EXISTS (SELECT FROM webhooks WHERE events ? 'sweep.finished') THEN
        SELECT tasks.sweep_id INTO sweep FROM tasks WHERE task_id = NEW.task_id;
        IF sweep IS NOT NULL THEN
            -- Runs of one sweep that end at once take turns here, and each looks at the others after its turn
            -- comes (a statement in PL/pgSQL sees what committed before it began): the last one to end sees
            -- every other run ended, and it alone writes the event.
            PERFORM FROM sweeps WHERE sweep_id = sweep FOR UPDATE;
            IF NOT EXISTS (SELECT FROM tasks LEFT JOIN results USING (task_id)
                           WHERE tasks.sweep_id = sweep AND results.task_id IS NULL) THEN
                INSERT INTO webhook_deliveries (delivery_id, webhook_id, event, sweep_id)
                SELECT gen_random_uuid(), webhook_id, 'sweep.finished', sweep FROM webhooks
                WHERE events ? 'sweep.finished';
            END IF;
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION longjobs_delivery_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO metric_totals AS total (metric, labels, shard, count, sum)
    VALUES ('webhook_deliveries', jsonb_build_object('outcome', NEW.outcome), {SHARD}, 1, 0)
    {ADD};
    RETURN NULL;
END $$;

CREATE TRIGGER tasks_accepted AFTER INSERT ON tasks REFERENCING NEW TABLE AS accepted
    FOR EACH STATEMENT EXECUTE FUNCTION longjobs_tasks_accepted();
CREATE TRIGGER results_ended AFTER INSERT OR UPDATE OF status ON results
    FOR EACH ROW EXECUTE FUNCTION longjobs_task_ended();
CREATE TRIGGER webhook_deliveries_ended AFTER UPDATE OF outcome ON webhook_deliveries
    FOR EACH ROW WHEN (OLD.outcome = 'pending' AND NEW.outcome <> 'pending')
    EXECUTE FUNCTION longjobs_delivery_ended();
"""

# What the tables held before the triggers were there, counted once.
TOTALS_SO_FAR = f"""
INSERT INTO metric_totals (metric, labels, shard, count, sum)
SELECT 'tasks_accepted', jsonb_build_object('type', type), 0, count(*), 0 FROM tasks GROUP BY type;
INSERT INTO metric_totals (metric, labels, shard, count, sum)
SELECT 'tasks_ended', jsonb_build_object('type', type, 'status', status), 0, count(*), 0 FROM results
GROUP BY type, status;
INSERT INTO metric_totals (metric, labels, shard, count, sum)
SELECT 'task_duration', jsonb_build_object('type', type, 'le', {BUCKET}), 0, count(*), sum(seconds)
FROM (SELECT type, greatest(extract(epoch FROM ended_at - started_at), 0) AS seconds FROM results
      WHERE started_at IS NOT NULL) AS durations
GROUP BY 1, 2;
"""


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("webhook_id", sa.Uuid(), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", postgresql.JSONB(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", sa.Uuid(), primary_key=True),
        sa.Column("webhook_id", sa.Uuid(), sa.ForeignKey("webhooks.webhook_id", ondelete="CASCADE"), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("sweep_id", sa.Uuid(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("outcome", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("outcome IN ('pending', 'delivered', 'failed')", name="webhook_deliveries_outcome"),
    )
    op.create_index("webhook_deliveries_newest_first", "webhook_deliveries", ["webhook_id", "created_at"])
    op.create_index(
        "webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("outcome = 'pending'"),
    )
    op.create_table(
        "metric_totals",
        sa.Column("metric", sa.Text(), primary_key=True),
        sa.Column("labels", postgresql.JSONB(), primary_key=True),
        sa.Column("shard", sa.SmallInteger(), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
    )
    op.execute(FUNCTIONS)
    op.execute(TOTALS_SO_FAR)


def downgrade() -> None:
    op.execute("DROP TRIGGER webhook_deliveries_ended ON webhook_deliveries")
    op.execute("DROP TRIGGER results_ended ON results")
    op.execute("DROP TRIGGER tasks_accepted ON tasks")
    op.execute("DROP FUNCTION longjobs_delivery_ended(), longjobs_task_ended(), longjobs_tasks_accepted()")
    op.drop_table("metric_totals")
    op.drop_index("webhook_deliveries_due", "webhook_deliveries")
    op.drop_index("webhook_deliveries_newest_first", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
