"""per-product totals for /metrics: units backordered at placement, units filled from the queue

`/metrics` summed `order_line.initial_backordered` over every line and the quantities of every
`order.line_allocated` event at each scrape: work that grows with the whole history (a
100,000-line restock alone writes 100,000 such events) under a two-second scrape budget. The
product row, which every placement and every fill already locks and writes, now keeps both
totals, so a scrape sums one row per product. Existing totals are counted once here.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 19:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for name in ("units_backordered_at_placement", "units_filled_from_queue"):
        op.add_column(
            "product",
            sa.Column(name, sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        )
    op.execute(
        "UPDATE product p SET units_backordered_at_placement = s.units FROM ("
        " SELECT sku, sum(initial_backordered) AS units FROM order_line GROUP BY sku) s"
        " WHERE p.sku = s.sku"
    )
    op.execute(
        "UPDATE product p SET units_filled_from_queue = s.units FROM ("
        " SELECT data->>'sku' AS sku, sum(CAST(data->>'quantity' AS bigint)) AS units"
        " FROM event WHERE type = 'order.line_allocated' GROUP BY 1) s"
        " WHERE p.sku = s.sku"
    )


def downgrade() -> None:
    op.drop_column("product", "units_filled_from_queue")
    op.drop_column("product", "units_backordered_at_placement")
