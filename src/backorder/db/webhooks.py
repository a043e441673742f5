"""The SQL of webhook endpoints and of their deliveries as the API shows them. The worker's
side (fan-out, claims, outcomes) is in `db/webhook_queue.py`; the feed in `db/feed.py`.

Every read and change takes an `owner`: a storefront's channel sees and changes only the
endpoints it registered (another's answer as if they did not exist); None (ops) sees all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# A previous secret past its expiry, or a circuit that has closed again, is shown as null.
ENDPOINT_COLUMNS = (
    "id, url, event_types, description, enabled, created_at, channel, owner_channel, "
    "CASE WHEN previous_secret_expires_at > clock_timestamp() "
    "THEN previous_secret_expires_at END AS previous_secret_expires_at, "
    "consecutive_failures, "
    "CASE WHEN circuit_open_until > clock_timestamp() THEN circuit_open_until END "
    "AS circuit_open_until"
)
_OWNED = "deleted_at IS NULL AND (CAST(:owner AS text) IS NULL OR owner_channel = :owner)"

# Two-key advisory locks live apart from idempotency's one-key ones; 8 names this use.
_LOCK_OWNER = text("SELECT pg_advisory_xact_lock(8, hashtext(COALESCE(CAST(:owner AS text), '')))")
_COUNT_OWNED = text(
    "SELECT count(*) FROM webhook_endpoint WHERE deleted_at IS NULL "
    "AND owner_channel IS NOT DISTINCT FROM CAST(:owner AS text)"
)
_INSERT_ENDPOINT = text(
    "INSERT INTO webhook_endpoint "
    "(id, url, event_types, secret, description, channel, owner_channel) "
    "VALUES (:id, :url, :event_types, :secret, :description, :channel, :owner) "
    f"RETURNING {ENDPOINT_COLUMNS}"
)
_GET_ENDPOINT = text(f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint WHERE id = :id AND {_OWNED}")
_GET_SECRETS = text(
    "SELECT url, secret, CASE WHEN previous_secret_expires_at > clock_timestamp() "
    "THEN previous_secret END AS previous_secret "
    f"FROM webhook_endpoint WHERE id = :id AND {_OWNED}"
)
_LIST_ENDPOINTS = text(
    f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint WHERE {_OWNED} "
    "AND (CAST(:after_at AS timestamptz) IS NULL "
    "     OR (created_at, id) > (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid))) "
    "ORDER BY created_at, id LIMIT :limit"
)
_UPDATE_ENDPOINT = text(
    "UPDATE webhook_endpoint SET url = COALESCE(CAST(:url AS text), url), "
    "event_types = COALESCE(CAST(:event_types AS text[]), event_types), "
    "description = CASE WHEN CAST(:set_description AS boolean) "
    "THEN CAST(:description AS text) ELSE description END, "
    "channel = CASE WHEN CAST(:set_channel AS boolean) "
    "THEN CAST(:channel AS text) ELSE channel END, "
    "enabled = COALESCE(CAST(:enabled AS boolean), enabled) "
    f"WHERE id = :id AND {_OWNED} RETURNING {ENDPOINT_COLUMNS}"
)
# With an overlap the outgoing secret keeps signing (beside the new one) until it expires;
# without one it stops at once. `secret` on the right is the value before this UPDATE.
_ROTATE = text(
    "UPDATE webhook_endpoint SET "
    "previous_secret = CASE WHEN :overlap > 0 THEN secret END, "
    "previous_secret_expires_at = CASE WHEN :overlap > 0 "
    "THEN clock_timestamp() + make_interval(secs => :overlap) END, "
    "secret = :secret "
    f"WHERE id = :id AND {_OWNED} RETURNING {ENDPOINT_COLUMNS}"
)
_DELETE_ENDPOINT = text(
    "UPDATE webhook_endpoint SET deleted_at = clock_timestamp(), enabled = false "
    f"WHERE id = :id AND {_OWNED} RETURNING id"
)
_ABANDON_PENDING = text(
    "UPDATE webhook_delivery SET status = 'failed', last_error = 'endpoint deleted', "
    "next_attempt_at = NULL WHERE endpoint_id = :id AND status = 'pending'"
)


async def count_owned(conn: AsyncConnection, owner: str | None) -> int:
    """Live endpoints of this owner, counted under a lock that holds until commit (so two
    registrations at once cannot both pass the cap)."""
    await conn.execute(_LOCK_OWNER, {"owner": owner})
    return int((await conn.execute(_COUNT_OWNED, {"owner": owner})).scalar_one())


async def insert_endpoint(
    conn: AsyncConnection,
    *,
    endpoint_id: UUID,
    url: str,
    event_types: list[str],
    secret: str,
    description: str | None,
    channel: str | None,
    owner: str | None,
) -> Any:
    params = {
        "id": endpoint_id,
        "url": url,
        "event_types": event_types,
        "secret": secret,
        "description": description,
        "channel": channel,
        "owner": owner,
    }
    return (await conn.execute(_INSERT_ENDPOINT, params)).one()


async def get_endpoint(conn: AsyncConnection, endpoint_id: UUID, owner: str | None) -> Any | None:
    params = {"id": endpoint_id, "owner": owner}
    return (await conn.execute(_GET_ENDPOINT, params)).one_or_none()


async def get_secrets(conn: AsyncConnection, endpoint_id: UUID, owner: str | None) -> Any | None:
    """`url`, `secret` and the `previous_secret` still in its overlap (or null)."""
    params = {"id": endpoint_id, "owner": owner}
    return (await conn.execute(_GET_SECRETS, params)).one_or_none()


async def list_endpoints(
    conn: AsyncConnection, *, owner: str | None, limit: int, after: tuple[datetime, UUID] | None
) -> list[Any]:
    rows = await conn.execute(
        _LIST_ENDPOINTS,
        {
            "owner": owner,
            "limit": limit,
            "after_at": after[0] if after else None,
            "after_id": after[1] if after else None,
        },
    )
    return list(rows)


async def update_endpoint(
    conn: AsyncConnection, endpoint_id: UUID, owner: str | None, changes: dict[str, Any]
) -> Any | None:
    """Change the fields named in `changes` (`description: None` clears it, `channel: None`
    makes an ops endpoint receive every channel)."""
    params = {
        "id": endpoint_id,
        "owner": owner,
        "url": changes.get("url"),
        "event_types": changes.get("event_types"),
        "enabled": changes.get("enabled"),
        "set_description": "description" in changes,
        "description": changes.get("description"),
        "set_channel": "channel" in changes,
        "channel": changes.get("channel"),
    }
    return (await conn.execute(_UPDATE_ENDPOINT, params)).one_or_none()


async def rotate_secret(
    conn: AsyncConnection, endpoint_id: UUID, owner: str | None, secret: str, overlap_s: int
) -> Any | None:
    params = {"id": endpoint_id, "owner": owner, "secret": secret, "overlap": overlap_s}
    return (await conn.execute(_ROTATE, params)).one_or_none()


async def delete_endpoint(conn: AsyncConnection, endpoint_id: UUID, owner: str | None) -> bool:
    """Soft delete (deliveries keep their history); pending deliveries are abandoned."""
    params = {"id": endpoint_id, "owner": owner}
    gone = (await conn.execute(_DELETE_ENDPOINT, params)).one_or_none()
    if gone is None:
        return False
    await conn.execute(_ABANDON_PENDING, {"id": endpoint_id})
    return True


# --- Deliveries ----------------------------------------------------------------------------

DELIVERY_COLUMNS = (
    "d.id, d.endpoint_id, d.event_id, e.type AS event_type, d.status, d.attempts, "
    "d.next_attempt_at, d.last_attempt_at, d.last_status_code, d.last_error, d.delivered_at, "
    "d.created_at, d.manual_retries"
)

_LIST_DELIVERIES = text(
    f"SELECT {DELIVERY_COLUMNS} FROM webhook_delivery d JOIN event e ON e.id = d.event_id "
    "WHERE d.endpoint_id = :endpoint_id "
    "AND (CAST(:status AS text) IS NULL OR d.status = :status) "
    "AND (CAST(:before AS bigint) IS NULL OR d.event_id < :before) "
    "ORDER BY d.event_id DESC LIMIT :limit"
)
_RETRY = text(
    "WITH d AS (UPDATE webhook_delivery SET status = 'pending', "
    "next_attempt_at = clock_timestamp(), manual_retries = manual_retries + 1 "
    "WHERE id = :id AND endpoint_id = :endpoint_id AND status <> 'succeeded' "
    "AND manual_retries < :max_retries RETURNING *) "
    f"SELECT {DELIVERY_COLUMNS} FROM d JOIN event e ON e.id = d.event_id"
)
_GET_DELIVERY = text(
    f"SELECT {DELIVERY_COLUMNS} FROM webhook_delivery d JOIN event e ON e.id = d.event_id "
    "WHERE d.id = :id AND d.endpoint_id = :endpoint_id"
)


async def list_deliveries(
    conn: AsyncConnection,
    endpoint_id: UUID,
    *,
    status: str | None,
    limit: int,
    before_event: int | None,
) -> list[Any]:
    """Newest event first (the order of the endpoint's unique (endpoint, event) index)."""
    rows = await conn.execute(
        _LIST_DELIVERIES,
        {"endpoint_id": endpoint_id, "status": status, "limit": limit, "before": before_event},
    )
    return list(rows)


async def get_delivery(conn: AsyncConnection, endpoint_id: UUID, delivery_id: int) -> Any | None:
    params = {"id": delivery_id, "endpoint_id": endpoint_id}
    return (await conn.execute(_GET_DELIVERY, params)).one_or_none()


async def retry_delivery(
    conn: AsyncConnection, endpoint_id: UUID, delivery_id: int, max_retries: int
) -> Any | None:
    """Make a pending or failed delivery due now (one more attempt past the limit), if it
    has been retried by hand fewer than `max_retries` times."""
    params = {"id": delivery_id, "endpoint_id": endpoint_id, "max_retries": max_retries}
    return (await conn.execute(_RETRY, params)).one_or_none()
