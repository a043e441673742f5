"""Order events written before events carried `channel` get it from their order

A storefront's feed and webhooks are cut by `data.channel`; without this, the order events an
existing deployment wrote before the upgrade would vanish from every storefront's feed. One
UPDATE per event type prefix; events whose order is gone keep no channel (ops still see them).
The downgrade keeps the key: older code ignores fields it does not know.

Revision ID: 20261206_0007
Revises: 0006_h6
Create Date: 2026-12-06 11:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261206_0007"
down_revision: str | None = "0006_h6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE event AS e
        SET data = e.data || jsonb_build_object('channel', o.channel)
        FROM sales_order AS o
        WHERE (e.type LIKE 'order.%' OR e.type LIKE 'backorder.%')
          AND NOT e.data ? 'channel'
          AND e.data ? 'order_id'
          AND o.id::text = e.data->>'order_id'
        """
    )


def downgrade() -> None:
    pass
