"""webhook endpoints per channel, secret rotation with overlap, a circuit breaker, fair claims

- `owner_channel`: the storefront channel that manages the endpoint (null: an ops endpoint);
  `channel`: the one channel whose feed it receives (null: everything). A storefront's
  endpoint always receives its own channel (the CHECK).
- `previous_secret` and `previous_secret_expires_at`: after a rotation with an overlap, both
  secrets sign deliveries until the old one expires.
- `consecutive_failures` and `circuit_open_until`: an endpoint that keeps failing is left
  alone for a while instead of holding the workers.
- `webhook_delivery.next_attempt_at` is null once a delivery is finished (nothing is due),
  and `manual_retries` bounds retries by hand.
- Each subscriber named by a `product.back_in_stock` event gains its `channel` (from its
  subscription), so that a channel's view keeps its own subscribers with a plain expression.
- Claims take each endpoint's due deliveries through `(endpoint_id, next_attempt_at)`, so a
  backlog at one endpoint cannot fill a claim and starve the others; it replaces the index
  on `next_attempt_at` alone.

Revision ID: 20261206_h2
Revises: 20261206_h1
Create Date: 2026-12-06 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261206_h2"
down_revision: str | None = "20261206_h1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_SUBSCRIBERS_WITH_CHANNEL = (
    "UPDATE event e SET data = jsonb_set(e.data, ARRAY['subscribers'], COALESCE(("
    "SELECT jsonb_agg(s.v || jsonb_build_object('channel', ss.channel) ORDER BY s.n) "
    "FROM jsonb_array_elements(e.data->'subscribers') WITH ORDINALITY AS s(v, n) "
    "LEFT JOIN stock_subscription ss ON ss.id = CAST(s.v->>'subscription_id' AS uuid)"
    "), CAST('[]' AS jsonb))) WHERE e.type = 'product.back_in_stock'"
)
_SUBSCRIBERS_WITHOUT_CHANNEL = (
    "UPDATE event e SET data = jsonb_set(e.data, ARRAY['subscribers'], COALESCE(("
    "SELECT jsonb_agg(s.v - 'channel' ORDER BY s.n) "
    "FROM jsonb_array_elements(e.data->'subscribers') WITH ORDINALITY AS s(v, n)"
    "), CAST('[]' AS jsonb))) WHERE e.type = 'product.back_in_stock'"
)


def upgrade() -> None:
    op.execute(_SUBSCRIBERS_WITH_CHANNEL)
    op.add_column("webhook_endpoint", sa.Column("owner_channel", sa.Text(), nullable=True))
    op.add_column("webhook_endpoint", sa.Column("channel", sa.Text(), nullable=True))
    op.add_column("webhook_endpoint", sa.Column("previous_secret", sa.Text(), nullable=True))
    op.add_column(
        "webhook_endpoint",
        sa.Column("previous_secret_expires_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
    )
    op.add_column(
        "webhook_endpoint",
        sa.Column(
            "consecutive_failures", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.add_column(
        "webhook_endpoint",
        sa.Column("circuit_open_until", postgresql.TIMESTAMP(timezone=True), nullable=True),
    )
    op.create_check_constraint(
        op.f("ck_webhook_endpoint_owner_channel"),
        "webhook_endpoint",
        "owner_channel IS NULL OR channel = owner_channel",
    )
    op.create_index(
        "ix_webhook_endpoint_owner_channel",
        "webhook_endpoint",
        ["owner_channel"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.add_column(
        "webhook_delivery",
        sa.Column("manual_retries", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.alter_column("webhook_delivery", "next_attempt_at", nullable=True)
    op.execute("UPDATE webhook_delivery SET next_attempt_at = NULL WHERE status <> 'pending'")
    op.drop_index("ix_webhook_delivery_due", table_name="webhook_delivery")
    op.create_index(
        "ix_webhook_delivery_endpoint_id_next_attempt_at",
        "webhook_delivery",
        ["endpoint_id", "next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.execute(_SUBSCRIBERS_WITHOUT_CHANNEL)
    op.drop_index("ix_webhook_delivery_endpoint_id_next_attempt_at", table_name="webhook_delivery")
    op.create_index(
        "ix_webhook_delivery_due",
        "webhook_delivery",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.execute(
        "UPDATE webhook_delivery SET next_attempt_at = COALESCE(last_attempt_at, created_at) "
        "WHERE next_attempt_at IS NULL"
    )
    op.alter_column("webhook_delivery", "next_attempt_at", nullable=False)
    op.drop_column("webhook_delivery", "manual_retries")
    op.drop_index(
        "ix_webhook_endpoint_owner_channel",
        table_name="webhook_endpoint",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_constraint(op.f("ck_webhook_endpoint_owner_channel"), "webhook_endpoint", type_="check")
    for name in (
        "circuit_open_until",
        "consecutive_failures",
        "previous_secret_expires_at",
        "previous_secret",
        "channel",
        "owner_channel",
    ):
        op.drop_column("webhook_endpoint", name)
