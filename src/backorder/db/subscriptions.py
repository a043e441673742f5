"""The SQL of back-in-stock subscriptions. `db/stock.py` uses them up: the transition to
available names the waiting ones in its `product.back_in_stock` event."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

SUBSCRIPTION_COLUMNS = "id, sku, customer_id, contact, channel, created_at, notified_at"

_WAITING_SUBSCRIPTION = text(
    "UPDATE stock_subscription SET contact = COALESCE(:contact, contact) "
    "WHERE id = (SELECT id FROM stock_subscription WHERE sku = :sku AND channel = :channel "
    "AND customer_id = :customer_id AND notified_at IS NULL ORDER BY created_at LIMIT 1) "
    f"RETURNING {SUBSCRIPTION_COLUMNS}"
)
_INSERT_SUBSCRIPTION = text(
    "INSERT INTO stock_subscription (id, sku, customer_id, contact, channel) "
    f"VALUES (:id, :sku, :customer_id, :contact, :channel) RETURNING {SUBSCRIPTION_COLUMNS}"
)
_LIST_SUBSCRIPTIONS = text(
    f"SELECT {SUBSCRIPTION_COLUMNS} FROM stock_subscription WHERE sku = :sku "
    "AND (CAST(:channel AS text) IS NULL OR channel = :channel) "
    "AND (CAST(:waiting AS boolean) IS NULL OR (notified_at IS NULL) = :waiting) "
    "AND (CAST(:after_at AS timestamptz) IS NULL "
    "     OR (created_at, id) > (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid))) "
    "ORDER BY created_at, id LIMIT :limit"
)


async def waiting_subscription(
    conn: AsyncConnection, *, sku: str, channel: str, customer_id: str, contact: str | None
) -> Any | None:
    """The customer's subscription still waiting for this SKU, its contact updated if given."""
    params = {"sku": sku, "channel": channel, "customer_id": customer_id, "contact": contact}
    return (await conn.execute(_WAITING_SUBSCRIPTION, params)).one_or_none()


async def insert_subscription(
    conn: AsyncConnection,
    *,
    subscription_id: UUID,
    sku: str,
    channel: str,
    customer_id: str,
    contact: str | None,
) -> Any:
    params = {
        "id": subscription_id,
        "sku": sku,
        "channel": channel,
        "customer_id": customer_id,
        "contact": contact,
    }
    return (await conn.execute(_INSERT_SUBSCRIPTION, params)).one()


async def list_subscriptions(
    conn: AsyncConnection,
    sku: str,
    *,
    channel: str | None,
    waiting: bool | None,
    limit: int,
    after: tuple[datetime, UUID] | None,
) -> list[Any]:
    rows = await conn.execute(
        _LIST_SUBSCRIPTIONS,
        {
            "sku": sku,
            "channel": channel,
            "waiting": waiting,
            "limit": limit,
            "after_at": after[0] if after else None,
            "after_id": after[1] if after else None,
        },
    )
    return list(rows)
