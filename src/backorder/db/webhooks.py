"""The SQL of the outbox's readers: the public feed, webhook endpoints, the fan-out of events
to deliveries, and delivery claims (leases) and outcomes.

**Reading the outbox safely.** Event ids come from a sequence, and transactions commit in
any order: a reader that sees event 11 may not yet see event 10, which commits a moment
later. A reader that then moves past 11 would never see 10. So readers only take events up
to a *horizon*: the start of the oldest transaction still running in this database (or now,
if none runs). An event still to commit belongs to a running transaction T; every event with
a higher id was created after T started, so after the horizon, and is held back too. Readers
therefore take the prefix of events, in id order, created before the horizon, and stop at the
first one that is not. A long transaction holds the feed back; it never loses an event.
(This relies on `pg_stat_activity` showing the transactions of the service's own database
role, as it does with `track_activities` on, PostgreSQL's default.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Statement order matters (see `horizon`): the clock first, then the running transactions,
# then (in a later statement, with a later snapshot) the events.
_NOW = text("SELECT clock_timestamp()")
_OLDEST_RUNNING = text(
    "SELECT min(xact_start) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND xact_start IS NOT NULL"
)


async def horizon(conn: AsyncConnection) -> datetime:
    """Events created before this instant can all be read now: none is still to commit below
    them. Call it before reading the events, in a transaction that has not yet looked at
    `pg_stat_activity` (PostgreSQL keeps that view's snapshot for the whole transaction)."""
    now: datetime = (await conn.execute(_NOW)).scalar_one()
    oldest: datetime | None = (await conn.execute(_OLDEST_RUNNING)).scalar_one()
    return now if oldest is None or oldest > now else oldest


def settled(rows: Sequence[Any], before: datetime) -> list[Any]:
    """The rows (in id order) up to the first one created at or after the horizon."""
    out = []
    for row in rows:
        if row.created_at >= before:
            break
        out.append(row)
    return out


# --- The feed ------------------------------------------------------------------------------

_FEED = text(
    "SELECT id, type, created_at, data FROM event WHERE id > :after "
    "AND (CAST(:type AS text) IS NULL OR type = :type) "
    "AND (CAST(:prefix AS text) IS NULL OR starts_with(type, :prefix)) "
    "ORDER BY id LIMIT :limit"
)


async def read_feed(
    conn: AsyncConnection, *, after: int, type_: str | None, prefix: str | None, limit: int
) -> tuple[list[Any], bool]:
    """Up to `limit` settled events after `after`, oldest first, and whether more settled
    ones follow (events held back by the horizon come in a later read)."""
    before = await horizon(conn)
    rows = (
        await conn.execute(
            _FEED,
            {"after": after, "type": type_, "prefix": prefix, "limit": limit + 1},
        )
    ).all()
    ready = settled(rows, before)
    return ready[:limit], len(ready) > limit


# --- Endpoints -----------------------------------------------------------------------------

ENDPOINT_COLUMNS = "id, url, event_types, description, enabled, created_at"

_INSERT_ENDPOINT = text(
    "INSERT INTO webhook_endpoint (id, url, event_types, secret, description) "
    f"VALUES (:id, :url, :event_types, :secret, :description) RETURNING {ENDPOINT_COLUMNS}"
)
_GET_ENDPOINT = text(
    f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint WHERE id = :id AND deleted_at IS NULL"
)
_LIST_ENDPOINTS = text(
    f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint WHERE deleted_at IS NULL "
    "AND (CAST(:after_at AS timestamptz) IS NULL "
    "     OR (created_at, id) > (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid))) "
    "ORDER BY created_at, id LIMIT :limit"
)
_UPDATE_ENDPOINT = text(
    "UPDATE webhook_endpoint SET url = COALESCE(CAST(:url AS text), url), "
    "event_types = COALESCE(CAST(:event_types AS text[]), event_types), "
    "description = CASE WHEN CAST(:set_description AS boolean) "
    "THEN CAST(:description AS text) ELSE description END, "
    "enabled = COALESCE(CAST(:enabled AS boolean), enabled) "
    f"WHERE id = :id AND deleted_at IS NULL RETURNING {ENDPOINT_COLUMNS}"
)
_ROTATE = text(
    "UPDATE webhook_endpoint SET secret = :secret WHERE id = :id AND deleted_at IS NULL "
    f"RETURNING {ENDPOINT_COLUMNS}"
)
_DELETE_ENDPOINT = text(
    "UPDATE webhook_endpoint SET deleted_at = clock_timestamp(), enabled = false "
    "WHERE id = :id AND deleted_at IS NULL RETURNING id"
)
_ABANDON_PENDING = text(
    "UPDATE webhook_delivery SET status = 'failed', last_error = 'endpoint deleted' "
    "WHERE endpoint_id = :id AND status = 'pending'"
)


async def insert_endpoint(
    conn: AsyncConnection,
    *,
    endpoint_id: UUID,
    url: str,
    event_types: list[str],
    secret: str,
    description: str | None,
) -> Any:
    params = {
        "id": endpoint_id,
        "url": url,
        "event_types": event_types,
        "secret": secret,
        "description": description,
    }
    return (await conn.execute(_INSERT_ENDPOINT, params)).one()


async def get_endpoint(conn: AsyncConnection, endpoint_id: UUID) -> Any | None:
    return (await conn.execute(_GET_ENDPOINT, {"id": endpoint_id})).one_or_none()


async def list_endpoints(
    conn: AsyncConnection, *, limit: int, after: tuple[datetime, UUID] | None
) -> list[Any]:
    rows = await conn.execute(
        _LIST_ENDPOINTS,
        {
            "limit": limit,
            "after_at": after[0] if after else None,
            "after_id": after[1] if after else None,
        },
    )
    return list(rows)


async def update_endpoint(
    conn: AsyncConnection, endpoint_id: UUID, changes: dict[str, Any]
) -> Any | None:
    """Change the fields named in `changes` (`description: None` clears it)."""
    params = {
        "id": endpoint_id,
        "url": changes.get("url"),
        "event_types": changes.get("event_types"),
        "enabled": changes.get("enabled"),
        "set_description": "description" in changes,
        "description": changes.get("description"),
    }
    return (await conn.execute(_UPDATE_ENDPOINT, params)).one_or_none()


async def rotate_secret(conn: AsyncConnection, endpoint_id: UUID, secret: str) -> Any | None:
    return (await conn.execute(_ROTATE, {"id": endpoint_id, "secret": secret})).one_or_none()


async def delete_endpoint(conn: AsyncConnection, endpoint_id: UUID) -> bool:
    """Soft delete (deliveries keep their history); pending deliveries are abandoned."""
    gone = (await conn.execute(_DELETE_ENDPOINT, {"id": endpoint_id})).one_or_none()
    if gone is None:
        return False
    await conn.execute(_ABANDON_PENDING, {"id": endpoint_id})
    return True


# --- Deliveries ----------------------------------------------------------------------------

DELIVERY_COLUMNS = (
    "d.id, d.endpoint_id, d.event_id, e.type AS event_type, d.status, d.attempts, "
    "d.next_attempt_at, d.last_attempt_at, d.last_status_code, d.last_error, d.delivered_at, "
    "d.created_at"
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
    "next_attempt_at = clock_timestamp() "
    "WHERE id = :id AND endpoint_id = :endpoint_id AND status <> 'succeeded' RETURNING *) "
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


async def retry_delivery(conn: AsyncConnection, endpoint_id: UUID, delivery_id: int) -> Any | None:
    """Make a pending or failed delivery due now (one more attempt past the limit)."""
    params = {"id": delivery_id, "endpoint_id": endpoint_id}
    return (await conn.execute(_RETRY, params)).one_or_none()


# --- The worker: fan-out, claims, outcomes -------------------------------------------------

_ENSURE_CURSOR = text(
    "INSERT INTO worker_cursor (name) VALUES (:name) ON CONFLICT (name) DO NOTHING"
)
# SKIP LOCKED: if another worker is fanning out right now, this one has nothing to do.
_LOCK_CURSOR = text(
    "SELECT last_event_id FROM worker_cursor WHERE name = :name FOR UPDATE SKIP LOCKED"
)
_EVENTS_AFTER = text(
    "SELECT id, type, created_at FROM event WHERE id > :after ORDER BY id LIMIT :limit"
)
# An endpoint receives the events created since it was registered, of the types it asked for;
# a paused (disabled) one too: its deliveries wait until it is enabled again.
_FAN_OUT = text(
    "INSERT INTO webhook_delivery (endpoint_id, event_id) "
    "SELECT w.id, e.id FROM event e JOIN webhook_endpoint w "
    "ON w.deleted_at IS NULL AND e.created_at >= w.created_at "
    "AND (e.type = ANY(w.event_types) OR '*' = ANY(w.event_types)) "
    "WHERE e.id > :after AND e.id <= :upto "
    "ORDER BY e.id, w.id ON CONFLICT (endpoint_id, event_id) DO NOTHING"
)
_ADVANCE = text("UPDATE worker_cursor SET last_event_id = :upto WHERE name = :name")


async def ensure_cursor(conn: AsyncConnection, name: str) -> None:
    await conn.execute(_ENSURE_CURSOR, {"name": name})


async def fan_out(conn: AsyncConnection, name: str, batch: int) -> int:
    """Turn the next settled events into deliveries and move the cursor past them, in the
    caller's transaction. Returns how many events it consumed (0: caught up, or another
    worker holds the cursor)."""
    after = (await conn.execute(_LOCK_CURSOR, {"name": name})).scalar_one_or_none()
    if after is None:
        return 0
    before = await horizon(conn)
    rows = settled(
        (await conn.execute(_EVENTS_AFTER, {"after": after, "limit": batch})).all(), before
    )
    if not rows:
        return 0
    upto = rows[-1].id
    await conn.execute(_FAN_OUT, {"after": after, "upto": upto})
    await conn.execute(_ADVANCE, {"name": name, "upto": upto})
    return len(rows)


# A claim is a lease: the delivery stays `pending` but is not due again until the lease ends,
# so a worker that dies mid-delivery only delays it. The attempt is counted at the claim,
# which bounds the attempts even for a payload that kills its worker.
_CLAIM = text(
    """
WITH due AS (
    SELECT d.id FROM webhook_delivery d
    JOIN webhook_endpoint w ON w.id = d.endpoint_id AND w.enabled AND w.deleted_at IS NULL
    WHERE d.status = 'pending' AND d.next_attempt_at <= clock_timestamp()
    ORDER BY d.next_attempt_at, d.id
    LIMIT :limit
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_delivery d
SET attempts = d.attempts + 1, last_attempt_at = clock_timestamp(),
    next_attempt_at = clock_timestamp() + make_interval(secs => :lease)
FROM due, event e, webhook_endpoint w
WHERE d.id = due.id AND e.id = d.event_id AND w.id = d.endpoint_id
RETURNING d.id, d.attempts, d.event_id, e.type, e.created_at, e.data, w.url, w.secret
"""
)
# Outcomes only apply to the claim they answer: a worker whose lease ran out (and whose
# delivery another worker took) must not overwrite the newer attempt.
_SUCCEEDED = text(
    "UPDATE webhook_delivery SET status = 'succeeded', delivered_at = clock_timestamp(), "
    "last_status_code = :code, last_error = NULL "
    "WHERE id = :id AND attempts = :attempts AND status = 'pending'"
)
_FAILED = text(
    "UPDATE webhook_delivery SET "
    "status = CASE WHEN attempts >= :max_attempts THEN 'failed' ELSE 'pending' END, "
    "next_attempt_at = clock_timestamp() + make_interval(secs => :delay), "
    "last_status_code = :code, last_error = :error "
    "WHERE id = :id AND attempts = :attempts AND status = 'pending'"
)
_RELEASE = text(
    "UPDATE webhook_delivery d SET next_attempt_at = clock_timestamp(), last_error = :error "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS integer[])) AS c(id, attempts) "
    "WHERE d.id = c.id AND d.attempts = c.attempts AND d.status = 'pending'"
)


async def claim_due(conn: AsyncConnection, limit: int, lease_s: float) -> list[Any]:
    return list(await conn.execute(_CLAIM, {"limit": limit, "lease": lease_s}))


async def record_success(conn: AsyncConnection, delivery_id: int, attempts: int, code: int) -> None:
    await conn.execute(_SUCCEEDED, {"id": delivery_id, "attempts": attempts, "code": code})


async def record_failure(
    conn: AsyncConnection,
    delivery_id: int,
    attempts: int,
    *,
    code: int | None,
    error: str,
    delay_s: float,
    max_attempts: int,
) -> None:
    await conn.execute(
        _FAILED,
        {
            "id": delivery_id,
            "attempts": attempts,
            "code": code,
            "error": error,
            "delay": delay_s,
            "max_attempts": max_attempts,
        },
    )


async def release(conn: AsyncConnection, claims: list[tuple[int, int]], error: str) -> None:
    """Hand interrupted claims `(delivery id, attempts)` back now rather than at lease end."""
    if claims:
        await conn.execute(
            _RELEASE,
            {"ids": [c[0] for c in claims], "attempts": [c[1] for c in claims], "error": error},
        )
