"""purchase orders remember when they turned overdue

`overdue_at` is set once, by the statement that claims a purchase order whose expected date has
passed with units unreceived (workers/purchase_orders.py): that claim is what makes the
`purchase_order.overdue` event fire once, whatever the number of processes. An overdue PO no
longer drives promise dates; a new expected date clears it. The partial index holds only the
open POs not yet overdue, by date, so each pass of the worker reads the due ones directly.

Revision ID: h7_0006
Revises: 0005
Create Date: 2026-12-06 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "h7_0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "purchase_order", sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_purchase_order_due",
        "purchase_order",
        ["expected_date"],
        unique=False,
        postgresql_where=sa.text("status = 'open' AND overdue_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_purchase_order_due", table_name="purchase_order")
    op.drop_column("purchase_order", "overdue_at")
