"""external_ref unique per channel

An integrator's second line of defence after the idempotency key: an order placed twice with
the same `external_ref` in one channel is refused (409 naming the first). The index is on
(external_ref, channel), not (channel, external_ref): uniqueness is the same, and an ops
lookup by `external_ref` alone (`GET /v1/orders?external_ref=`) can use it too. Partial:
orders without a reference are many and need no entry.

Orders that already share a reference in a channel are not resolved here: which one is the
real one is a business decision, and rewriting a customer's reference would lose it. The
upgrade stops with the duplicates named, to be fixed (e.g. by suffixing the newer references)
before running it again.

Revision ID: 20261206_h1
Revises: h7_0006
Create Date: 2026-12-06 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261206_h1"
down_revision: str | None = "h7_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_sales_order_external_ref_channel"


def upgrade() -> None:
    duplicates = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT channel, external_ref, count(*) AS n FROM sales_order "
                "WHERE external_ref IS NOT NULL GROUP BY channel, external_ref "
                "HAVING count(*) > 1 ORDER BY channel, external_ref LIMIT 20"
            )
        )
        .all()
    )
    if duplicates:
        named = "; ".join(f"{r.channel}/{r.external_ref} ({r.n} orders)" for r in duplicates)
        raise RuntimeError(
            "cannot make external_ref unique per channel: orders share a reference "
            f"(first 20: {named}). Give all but one of each a different external_ref, then "
            "upgrade again."
        )
    op.create_index(
        INDEX,
        "sales_order",
        ["external_ref", "channel"],
        unique=True,
        postgresql_where=sa.text("external_ref IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="sales_order")
