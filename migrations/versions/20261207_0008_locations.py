"""Locations: stock per SKU and location, a line's units per location, transfers

Every unit that predates locations is at `main`: the migration makes that location, a stock
level per SKU that ever moved (its ledger's sum, with all of the product's allocated units),
puts each line's allocated and shipped units at `main`, and `main` on every ledger row,
purchase order and shipment. The downgrade folds it all back into the product rows, which
already hold the network totals; transfers (whose two ledger rows cancel out per SKU) leave
the ledger.

Revision ID: 20261207_0008
Revises: 20261206_0007
Create Date: 2026-12-07 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261207_0008"
down_revision: str | None = "20261206_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("clock_timestamp()")

# `{location: units}` maps added key by key (null: none); a key whose sum is 0 is dropped,
# and a map left empty is null, so that a line without units has none (the fill counts on
# it). IMMUTABLE and PARALLEL SAFE: plain data in, plain data out.
UNITS_ADD = """
CREATE FUNCTION units_add(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_object_agg(k, s)
    FROM (SELECT k, CAST(sum(CAST(v AS bigint)) AS bigint) AS s
          FROM (SELECT * FROM jsonb_each_text(a) UNION ALL SELECT * FROM jsonb_each_text(b))
               AS x(k, v)
          GROUP BY k) t
    WHERE s <> 0
$$
"""

# The SKU lock and what is read under it, in one round trip: the products are locked in SKU
# order, then read with their stock levels by a second statement of the function, which (the
# function being VOLATILE) takes a snapshot of its own after the locks are held. One
# statement could not: a statement that waited for a lock still reads the other tables
# through the snapshot it started with, so it would miss what the lock holder committed.
LOCK_PRODUCTS = """
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

# A line's units per location as rows, one per location holding any (ops' SQL, reports, the
# invariant checks): its primary location's are the rest of its units.
LINE_ALLOCATION_VIEW = """
CREATE VIEW line_allocation AS
SELECT line_id, sku, location, allocated, shipped FROM (
    SELECT l.id AS line_id, l.sku, p.code AS location,
           l.allocated - COALESCE((SELECT CAST(sum(CAST(v AS bigint)) AS bigint)
                                   FROM jsonb_each_text(l.allocated_at) AS a(k, v)), 0)
               AS allocated,
           l.shipped - COALESCE((SELECT CAST(sum(CAST(v AS bigint)) AS bigint)
                                 FROM jsonb_each_text(l.shipped_at) AS a(k, v)), 0) AS shipped
    FROM order_line l JOIN location p ON p.id = l.location_id
    UNION ALL
    SELECT l.id, l.sku, k.location,
           COALESCE(CAST(l.allocated_at ->> k.location AS bigint), 0),
           COALESCE(CAST(l.shipped_at ->> k.location AS bigint), 0)
    FROM order_line l
    CROSS JOIN LATERAL (SELECT jsonb_object_keys(l.allocated_at)
                        UNION SELECT jsonb_object_keys(l.shipped_at)) AS k(location)
) t
WHERE allocated + shipped > 0
"""


def upgrade() -> None:
    op.create_table(
        "location",
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("id", sa.SmallInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("rank", sa.SmallInteger(), server_default=sa.text("100"), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("rank BETWEEN 0 AND 1000", name=op.f("ck_location_rank_range")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_location")),
        sa.UniqueConstraint("id", name=op.f("uq_location_id")),
    )
    op.execute("INSERT INTO location (code, name, rank, active) VALUES ('main', 'Main', 100, true)")

    op.create_table(
        "stock_level",
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("on_hand", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("allocated", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("on_hand >= 0", name=op.f("ck_stock_level_on_hand_nonnegative")),
        sa.CheckConstraint(
            "allocated >= 0 AND allocated <= on_hand",
            name=op.f("ck_stock_level_allocated_within_on_hand"),
        ),
        sa.ForeignKeyConstraint(
            ["location"], ["location.code"], name=op.f("fk_stock_level_location_location")
        ),
        sa.ForeignKeyConstraint(["sku"], ["product.sku"], name=op.f("fk_stock_level_sku_product")),
        sa.PrimaryKeyConstraint("sku", "location", name=op.f("pk_stock_level")),
    )
    op.create_index(op.f("ix_stock_level_location"), "stock_level", ["location"])
    op.execute(
        """
        INSERT INTO stock_level (sku, location, on_hand, allocated)
        SELECT m.sku, 'main', m.on_hand, p.allocated
        FROM (SELECT sku, sum(quantity) AS on_hand FROM stock_movement GROUP BY sku) m
        JOIN product p ON p.sku = m.sku
        """
    )

    # A line's units per location live on the line (see db/tables.py); `units_add` merges
    # such maps (a sum per key, zero entries dropped), and the view shows them as rows.
    op.add_column(
        "order_line",
        sa.Column("location_id", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("order_line", sa.Column("allocated_at", postgresql.JSONB(astext_type=sa.Text())))
    op.add_column("order_line", sa.Column("shipped_at", postgresql.JSONB(astext_type=sa.Text())))
    # Every line that holds units holds them at `main` (id 1), its primary location.
    op.execute("UPDATE order_line SET location_id = 1 WHERE allocated > 0 OR shipped > 0")
    # Room for a fill to rewrite every line of a page in place (see db/tables.py).
    op.execute("ALTER TABLE order_line SET (fillfactor = 45)")
    op.execute(UNITS_ADD)
    op.execute(LINE_ALLOCATION_VIEW)
    op.execute(LOCK_PRODUCTS)

    op.create_table(
        "transfer",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("from_location", sa.Text(), nullable=False),
        sa.Column("to_location", sa.Text(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_transfer_quantity_positive")),
        sa.CheckConstraint(
            "from_location <> to_location", name=op.f("ck_transfer_distinct_locations")
        ),
        sa.ForeignKeyConstraint(
            ["from_location"], ["location.code"], name=op.f("fk_transfer_from_location_location")
        ),
        sa.ForeignKeyConstraint(
            ["to_location"], ["location.code"], name=op.f("fk_transfer_to_location_location")
        ),
        sa.ForeignKeyConstraint(["sku"], ["product.sku"], name=op.f("fk_transfer_sku_product")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer")),
    )
    op.create_index(op.f("ix_transfer_sku_created_at"), "transfer", ["sku", "created_at"])

    op.add_column("stock_movement", sa.Column("location", sa.Text(), nullable=True))
    op.add_column(
        "stock_movement", sa.Column("transfer_id", postgresql.UUID(as_uuid=True), nullable=True)
    )
    op.execute("UPDATE stock_movement SET location = 'main'")
    op.alter_column("stock_movement", "location", nullable=False)
    op.drop_constraint(op.f("ck_stock_movement_kind"), "stock_movement", type_="check")
    op.create_check_constraint(
        op.f("ck_stock_movement_kind"),
        "stock_movement",
        "kind IN ('restock', 'adjustment', 'shipment', 'receipt', 'transfer')",
    )
    op.create_foreign_key(
        op.f("fk_stock_movement_stock_level"),
        "stock_movement",
        "stock_level",
        ["sku", "location"],
        ["sku", "location"],
    )

    op.add_column(
        "shipment",
        sa.Column("location", sa.Text(), server_default=sa.text("'main'"), nullable=False),
    )
    op.add_column(
        "purchase_order",
        sa.Column("location", sa.Text(), server_default=sa.text("'main'"), nullable=False),
    )
    op.create_foreign_key(
        op.f("fk_purchase_order_location_location"),
        "purchase_order",
        "location",
        ["location"],
        ["code"],
    )

    op.add_column(
        "product",
        sa.Column("unavailable", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_product_unavailable_within"),
        "product",
        "unavailable >= 0 AND allocated + unavailable <= on_hand",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_product_unavailable_within"), "product", type_="check")
    op.drop_column("product", "unavailable")
    op.drop_constraint(
        op.f("fk_purchase_order_location_location"), "purchase_order", type_="foreignkey"
    )
    op.drop_column("purchase_order", "location")
    op.drop_column("shipment", "location")
    op.drop_constraint(op.f("fk_stock_movement_stock_level"), "stock_movement", type_="foreignkey")
    op.execute("DELETE FROM stock_movement WHERE kind = 'transfer'")
    op.drop_constraint(op.f("ck_stock_movement_kind"), "stock_movement", type_="check")
    op.create_check_constraint(
        op.f("ck_stock_movement_kind"),
        "stock_movement",
        "kind IN ('restock', 'adjustment', 'shipment', 'receipt')",
    )
    op.drop_column("stock_movement", "transfer_id")
    op.drop_column("stock_movement", "location")
    op.drop_index(op.f("ix_transfer_sku_created_at"), table_name="transfer")
    op.drop_table("transfer")
    op.execute("DROP FUNCTION lock_products(text[])")
    op.execute("DROP VIEW line_allocation")
    op.execute("DROP FUNCTION units_add(jsonb, jsonb)")
    op.drop_column("order_line", "shipped_at")
    op.drop_column("order_line", "allocated_at")
    op.drop_column("order_line", "location_id")
    op.execute("ALTER TABLE order_line SET (fillfactor = 50)")
    op.drop_index(op.f("ix_stock_level_location"), table_name="stock_level")
    op.drop_table("stock_level")
    op.drop_table("location")
