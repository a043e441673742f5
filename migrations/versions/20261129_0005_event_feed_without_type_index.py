"""the event feed without its (type, id) index

Every event went into two indexes: the primary key, where ids arrive in order and each insert
lands on the rightmost leaf, and `(type, id)`, where each insert descends into its type's
group in the middle of the tree and splits pages there. The second index cost more than the
row and the key together (200,000 events: 1.04 s with it, 0.47 s without, on PostgreSQL 15),
and a restock reaching 100,000 waiting lines writes 200,000 events. The feed reads by id: a
`type` filter walks the primary key from the cursor and skips the other types.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 22:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_event_type_id", table_name="event")


def downgrade() -> None:
    op.create_index("ix_event_type_id", "event", ["type", "id"], unique=False)
