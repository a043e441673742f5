"""The console overview's one scan: what the planner needs to know to plan it in parallel

The overview (db/trends.py) reads `order_line` once, grouped by the UTC day a line that waited
was placed and the day its wait ended. Left to itself the planner guesses one group per line
(the days are expressions of near-unique timestamps) and sorts the whole table in one process;
the statistics object below tells it how few pairs of days there are, so that each parallel
worker aggregates its share into a few hundred groups. It costs nothing to write (ANALYZE
fills it), and its expressions must stay exactly those of the statement.

The index finds the waiting lines placed on the day of each age boundary (now - 1, 3, 7, 14
days), which the day groups cannot split. Both of its columns are written once, at placement,
so a fill's update of a line stays HOT (no index sees it change), as before.

Revision ID: 20261208_0009
Revises: 20261207_0008
Create Date: 2026-12-08 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261208_0009"
down_revision: str | None = "20261207_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same expressions as `_PLACED` and `_FILLED` in db/trends.py
# (tests/integration/test_overview.py checks that the planner matches them).
DAY_MARKS = """
CREATE STATISTICS order_line_backorder_days (ndistinct) ON
    (CASE WHEN initial_backordered > 0
          THEN date_bin('1 day', created_at, TIMESTAMPTZ '1970-01-01 00:00:00+00') END),
    (CASE WHEN initial_backordered > 0
          THEN date_bin('1 day', filled_at, TIMESTAMPTZ '1970-01-01 00:00:00+00') END)
FROM order_line
"""


def upgrade() -> None:
    op.create_index(
        "ix_order_line_waited_created_at",
        "order_line",
        ["created_at"],
        postgresql_where=sa.text("initial_backordered > 0"),
    )
    op.execute(DAY_MARKS)
    # Fill the statistics now rather than at the next autovacuum: until then the overview
    # would be planned without them.
    op.execute("ANALYZE order_line")


def downgrade() -> None:
    op.execute("DROP STATISTICS order_line_backorder_days")
    op.drop_index("ix_order_line_waited_created_at", table_name="order_line")
