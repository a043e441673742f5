"""api_key.last_used_at: when a key was last seen, to the minute

Written at most once a minute per key and process (an in-process memo decides when a
request touches it, and the UPDATE's own condition keeps several processes from writing it
twice in one minute), never once per request: the key check stays a read.

Revision ID: 0006_h6
Revises: 20261206_h2
Create Date: 2026-12-06 09:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_h6"
down_revision: str | None = "20261206_h2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_key", sa.Column("last_used_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("api_key", "last_used_at")
