"""the backorder queue as a narrow table of its own; room for HOT updates

The queue was the order lines with `backordered > 0`, read through two partial indexes. A
column in an index predicate is an indexed column, so every fill of a line (which lowers
`backordered`) was a non-HOT update that added an entry to each of the line's indexes: a
restock filling 100,000 lines spent most of its time there. The queue's keys now live in
`backorder_queue` (a row per waiting line, deleted when the line's last unit is allocated or
cancelled), and `order_line` and `sales_order` keep free space on their pages so that fills,
shipments and status changes update their rows in place. `sales_order.status` loses its
index for the same reason (listing by status walks the newest-first index instead).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "backorder_queue",
        sa.Column("line_id", sa.UUID(), nullable=False),
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["line_id"], ["order_line.id"], name=op.f("fk_backorder_queue_line_id_order_line")
        ),
        sa.PrimaryKeyConstraint("line_id", name=op.f("pk_backorder_queue")),
    )
    op.execute(
        "INSERT INTO backorder_queue (line_id, sku, priority, created_at) "
        "SELECT id, sku, priority, created_at FROM order_line WHERE backordered > 0"
    )
    op.create_index("ix_backorder_queue_fifo", "backorder_queue", ["sku", "created_at", "line_id"])
    op.create_index(
        "ix_backorder_queue_priority",
        "backorder_queue",
        ["sku", sa.literal_column("priority DESC"), "created_at", "line_id"],
    )
    op.drop_index("ix_order_line_fifo_queue", table_name="order_line")
    op.drop_index("ix_order_line_priority_queue", table_name="order_line")
    op.drop_column("order_line", "priority")
    op.drop_index("ix_sales_order_status", table_name="sales_order")
    op.execute("ALTER TABLE order_line SET (fillfactor = 50)")
    op.execute("ALTER TABLE sales_order SET (fillfactor = 50)")


def downgrade() -> None:
    op.execute("ALTER TABLE sales_order RESET (fillfactor)")
    op.execute("ALTER TABLE order_line RESET (fillfactor)")
    op.create_index("ix_sales_order_status", "sales_order", ["status"])
    op.add_column(
        "order_line",
        sa.Column("priority", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.execute(
        "UPDATE order_line l SET priority = o.priority FROM sales_order o WHERE o.id = l.order_id"
    )
    op.alter_column("order_line", "priority", server_default=None)
    op.create_index(
        "ix_order_line_priority_queue",
        "order_line",
        ["sku", sa.literal_column("priority DESC"), "created_at", "id"],
        postgresql_where=sa.text("backordered > 0"),
    )
    op.create_index(
        "ix_order_line_fifo_queue",
        "order_line",
        ["sku", "created_at", "id"],
        postgresql_where=sa.text("backordered > 0"),
    )
    op.drop_index("ix_backorder_queue_priority", table_name="backorder_queue")
    op.drop_index("ix_backorder_queue_fifo", table_name="backorder_queue")
    op.drop_table("backorder_queue")
