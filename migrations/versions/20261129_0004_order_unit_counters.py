"""orders keep the sums of their lines' units; statuses are computed from them

A fill computed the status of every order it reached from the order's lines, read through
the statement's snapshot. When fills of two SKUs reached one order at once, the second one
waited for the first one's lock on the order but still summed the other line as it was
before the first one committed, and wrote a stale status (an order with every unit
allocated left `partially_backordered`). The order row, which a fill locks and then reads at
its newest committed version, now holds `allocated`, `backordered` and `shipped`: the sums
of its lines, kept by every statement that moves units. Existing orders are counted here.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for name in ("allocated", "backordered", "shipped"):
        op.add_column(
            "sales_order",
            sa.Column(name, sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        )
    op.execute(
        "UPDATE sales_order o SET allocated = s.a, backordered = s.b, shipped = s.s FROM ("
        " SELECT order_id, sum(allocated) AS a, sum(backordered) AS b, sum(shipped) AS s"
        " FROM order_line GROUP BY order_id) s"
        " WHERE o.id = s.order_id"
    )
    op.create_check_constraint(
        op.f("ck_sales_order_units_nonnegative"),
        "sales_order",
        "allocated >= 0 AND backordered >= 0 AND shipped >= 0",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_sales_order_units_nonnegative"), "sales_order", type_="check")
    for name in ("shipped", "backordered", "allocated"):
        op.drop_column("sales_order", name)
