"""Webhook deliveries without a foreign key to their webhook: the check locked the webhook's row (FOR KEY SHARE) in
every transaction that records a task's end, and cost that write more than half of what a webhook adds to it (in
Postgres CPU per end, measured with pgbench: 44 µs with the key, 26 µs without). A webhook's delete removes its
deliveries itself (webhooks.delete_webhook), under the table lock that keeps an end from writing one meanwhile.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("webhook_deliveries_webhook_id_fkey", "webhook_deliveries", type_="foreignkey")


def downgrade() -> None:
    op.execute("DELETE FROM webhook_deliveries WHERE webhook_id NOT IN (SELECT webhook_id FROM webhooks)")
    op.create_foreign_key(
        "webhook_deliveries_webhook_id_fkey", "webhook_deliveries", "webhooks", ["webhook_id"], ["webhook_id"],
        ondelete="CASCADE",
    )  # fmt: skip
