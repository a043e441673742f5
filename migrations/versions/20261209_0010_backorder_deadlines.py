"""Backorder deadlines: how long a customer waits, which waiting lines are at risk, expiry

- `product.max_backorder_days` (1-3650, or null): an order that comes to wait for the product
  and has no deadline of its own gets `created_at` + the smallest such number of days.
- `sales_order.backorder_deadline`: until when the customer waits for backordered units.
- `backorder_queue.deadline` (the order's, copied onto each of its waiting lines when they
  join the queue) and `at_risk`, the line's state as last announced: a promise-date refresh
  compares the two and writes `backorder.deadline_at_risk` when a line becomes at risk.
  Queue rows are written once and deleted when the wait ends; `at_risk` is in no index, so
  the refresh's update of it stays HOT.
- Two partial indexes on the queue, on the rows with a deadline only: by SKU (the refresh's
  check finds a SKU's lines with a deadline without walking its queue) and by deadline (the
  expiry worker finds what is due).
- `lock_products` also returns `max_backorder_days` (placement reads it under the lock).

Revision ID: 20261209_0010
Revises: 20261208_0009
Create Date: 2026-12-09 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261209_0010"
down_revision: str | None = "20261208_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOCK_PRODUCTS = """
CREATE FUNCTION lock_products(skus text[])
RETURNS TABLE (sku text, backorders_allowed boolean, backorder_limit integer,
               allocation_strategy text, discontinued boolean, expected_restock_date date,
               reorder_point integer, on_hand bigint, allocated bigint, backordered bigint,
               incoming bigint, stock_state text, unavailable bigint, levels json,
               max_backorder_days integer)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM product p WHERE p.sku = ANY(skus) ORDER BY p.sku FOR UPDATE;
    RETURN QUERY
    SELECT p.sku, p.backorders_allowed, p.backorder_limit, p.allocation_strategy,
           p.discontinued, p.expected_restock_date, p.reorder_point, p.on_hand, p.allocated,
           p.backordered, p.incoming, p.stock_state, p.unavailable,
           (SELECT json_agg(json_build_array(s.location, l.rank, l.active, s.on_hand,
                                             s.allocated, l.id) ORDER BY l.rank, s.location)
            FROM stock_level s JOIN location l ON l.code = s.location
            WHERE s.sku = p.sku),
           p.max_backorder_days
    FROM product p WHERE p.sku = ANY(skus) ORDER BY p.sku;
END
$$
"""

# The function as migration 20261207_0008 made it, for the downgrade.
OLD_LOCK_PRODUCTS = """
CREATE FUNCTION lock_products(skus text[])
RETURNS TABLE (sku text, backorders_allowed boolean, backorder_limit integer,
               allocation_strategy text, discontinued boolean, expected_restock_date date,
               reorder_point integer, on_hand bigint, allocated bigint, backordered bigint,
               incoming bigint, stock_state text, unavailable bigint, levels json)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM product p WHERE p.sku = ANY(skus) ORDER BY p.sku FOR UPDATE;
    RETURN QUERY
    SELECT p.sku, p.backorders_allowed, p.backorder_limit, p.allocation_strategy,
           p.discontinued, p.expected_restock_date, p.reorder_point, p.on_hand, p.allocated,
           p.backordered, p.incoming, p.stock_state, p.unavailable,
           (SELECT json_agg(json_build_array(s.location, l.rank, l.active, s.on_hand,
                                             s.allocated, l.id) ORDER BY l.rank, s.location)
            FROM stock_level s JOIN location l ON l.code = s.location
            WHERE s.sku = p.sku)
    FROM product p WHERE p.sku = ANY(skus) ORDER BY p.sku;
END
$$
"""


def upgrade() -> None:
    op.add_column("product", sa.Column("max_backorder_days", sa.Integer()))
    op.create_check_constraint(
        op.f("ck_product_max_backorder_days_range"),
        "product",
        "max_backorder_days BETWEEN 1 AND 3650",
    )
    op.add_column("sales_order", sa.Column("backorder_deadline", sa.DateTime(timezone=True)))
    op.add_column("backorder_queue", sa.Column("deadline", sa.DateTime(timezone=True)))
    op.add_column(
        "backorder_queue",
        sa.Column("at_risk", sa.Boolean(), nullable=False, server_default=sa.text("false")),
    )
    op.create_index(
        "ix_backorder_queue_sku_with_deadline",
        "backorder_queue",
        ["sku"],
        postgresql_where=sa.text("deadline IS NOT NULL"),
    )
    op.create_index(
        "ix_backorder_queue_deadline",
        "backorder_queue",
        ["deadline"],
        postgresql_where=sa.text("deadline IS NOT NULL"),
    )
    op.execute("DROP FUNCTION lock_products(text[])")
    op.execute(LOCK_PRODUCTS)


def downgrade() -> None:
    op.execute("DROP FUNCTION lock_products(text[])")
    op.execute(OLD_LOCK_PRODUCTS)
    op.drop_index("ix_backorder_queue_deadline", table_name="backorder_queue")
    op.drop_index("ix_backorder_queue_sku_with_deadline", table_name="backorder_queue")
    op.drop_column("backorder_queue", "at_risk")
    op.drop_column("backorder_queue", "deadline")
    op.drop_column("sales_order", "backorder_deadline")
    op.drop_constraint(op.f("ck_product_max_backorder_days_range"), "product", type_="check")
    op.drop_column("product", "max_backorder_days")
