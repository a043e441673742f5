"""The migration making `external_ref` unique per channel: it refuses, naming them, to run over
orders that already share a reference (which one is real is the operator's call), and runs
once they are told apart; its downgrade drops the rule."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from alembic import command

from backorder.db.engine import alembic_config

REVISION = "20261206_h1"


def _order(conn: psycopg.Connection, channel: str, ref: str | None) -> None:
    conn.execute(
        "INSERT INTO sales_order (id, channel, customer_id, external_ref, status, created_at) "
        "VALUES (%s, %s, 'c', %s, 'allocated', now())",
        (uuid.uuid4(), channel, ref),
    )


def test_orders_sharing_a_reference_stop_the_upgrade_until_told_apart(scratch_url: str) -> None:
    config = alembic_config(scratch_url.replace("postgresql://", "postgresql+psycopg://", 1))
    command.upgrade(config, "0005")
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        _order(conn, "web", "r-1")
        _order(conn, "web", "r-1")
        _order(conn, "app", "r-1")  # another channel: no clash
        _order(conn, "web", None)
        _order(conn, "web", None)
    with pytest.raises(RuntimeError, match=r"web/r-1 \(2 orders\)"):
        command.upgrade(config, REVISION)
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE sales_order SET external_ref = 'r-1-b' WHERE id = (SELECT id FROM "
            "sales_order WHERE channel = 'web' AND external_ref = 'r-1' LIMIT 1)"
        )
    command.upgrade(config, REVISION)
    with (
        psycopg.connect(scratch_url, autocommit=True) as conn,
        pytest.raises(psycopg.errors.UniqueViolation),
    ):
        _order(conn, "web", "r-1")
    command.downgrade(config, "0005")
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        _order(conn, "web", "r-1")
