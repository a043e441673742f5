"""The delivery worker's SQL: the fan-out of events to deliveries, claims (leases) that are
fair between endpoints, outcomes, and each endpoint's circuit breaker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db.feed import data_in_view, horizon, in_view, settled

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
# An endpoint receives the events created since it was registered, of the types it asked for,
# in its channel's view (see `db/feed.py`); a paused (disabled) one too: its deliveries wait
# until it is enabled again.
_FAN_OUT = text(
    "INSERT INTO webhook_delivery (endpoint_id, event_id) "
    "SELECT w.id, e.id FROM event e JOIN webhook_endpoint w "
    "ON w.deleted_at IS NULL AND e.created_at >= w.created_at "
    "AND (e.type = ANY(w.event_types) OR '*' = ANY(w.event_types)) "
    f"AND {in_view('e', 'w.channel')} "
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
# so a worker that dies mid-delivery only delays it. The attempt is counted at the claim, and
# a delivery whose attempts are spent (`max_attempts`, plus one per retry by hand) is not
# claimed again but failed for good: an attempt whose outcome never arrives (its worker died,
# or its request outlived the lease) must not make it due forever.
#
# Fairness: each live endpoint offers at most its free room (the per-endpoint limit less what
# this worker already has in flight there), read through its own index range, so a backlog
# at one slow endpoint can neither fill the claim nor hide the others' due deliveries. An
# endpoint whose circuit is open offers nothing; once the circuit's time is up it is
# half-open and offers one delivery, a probe.
_CLAIM = text(
    f"""
WITH room AS (
    SELECT w.id,
           CASE WHEN w.consecutive_failures >= :threshold THEN 1 ELSE :per_endpoint END
           - COALESCE(f.busy, 0) AS free
    FROM webhook_endpoint w
    LEFT JOIN unnest(CAST(:busy_ids AS uuid[]), CAST(:busy_counts AS integer[])) AS f(id, busy)
         ON f.id = w.id
    WHERE w.enabled AND w.deleted_at IS NULL
      AND (w.circuit_open_until IS NULL OR w.circuit_open_until <= clock_timestamp())
), due AS (
    SELECT x.id, x.spent FROM room CROSS JOIN LATERAL (
        SELECT d.id, d.next_attempt_at,
               d.attempts >= :max_attempts + d.manual_retries AS spent
        FROM webhook_delivery d
        WHERE d.endpoint_id = room.id AND d.status = 'pending'
          AND d.next_attempt_at <= clock_timestamp()
        ORDER BY d.next_attempt_at, d.id
        LIMIT GREATEST(room.free, 0)
        FOR UPDATE OF d SKIP LOCKED
    ) x
    ORDER BY x.next_attempt_at, x.id
    LIMIT :limit
), taken AS (
    UPDATE webhook_delivery d
    SET attempts = d.attempts + CASE WHEN due.spent THEN 0 ELSE 1 END,
        status = CASE WHEN due.spent THEN 'failed' ELSE d.status END,
        last_attempt_at = CASE WHEN due.spent THEN d.last_attempt_at ELSE clock_timestamp() END,
        next_attempt_at = CASE WHEN due.spent THEN NULL
                          ELSE clock_timestamp() + make_interval(secs => :lease) END,
        last_error = CASE WHEN due.spent THEN :spent_error ELSE d.last_error END
    FROM due, event e, webhook_endpoint w
    WHERE d.id = due.id AND e.id = d.event_id AND w.id = d.endpoint_id
    RETURNING due.spent, d.id, d.endpoint_id, d.attempts, d.event_id, e.type, e.created_at,
              {data_in_view("e", "w.channel")} AS data, w.url, w.secret,
              CASE WHEN w.previous_secret_expires_at > clock_timestamp()
                   THEN w.previous_secret END AS previous_secret
)
SELECT id, endpoint_id, attempts, event_id, type, created_at, data, url, secret,
       previous_secret
FROM taken WHERE NOT spent
"""
)
SPENT_ERROR = "no outcome from the last attempt; attempts exhausted"
# Outcomes only apply to the claim they answer: a worker whose lease ran out (and whose
# delivery another worker took) must not overwrite the newer attempt. A success closes the
# endpoint's circuit (a write only when it was not already closed).
_SUCCEEDED = text(
    "WITH d AS (UPDATE webhook_delivery SET status = 'succeeded', "
    "delivered_at = clock_timestamp(), next_attempt_at = NULL, "
    "last_status_code = :code, last_error = NULL "
    "WHERE id = :id AND attempts = :attempts AND status = 'pending' RETURNING endpoint_id) "
    "UPDATE webhook_endpoint w SET consecutive_failures = 0, circuit_open_until = NULL "
    "FROM d WHERE w.id = d.endpoint_id "
    "AND (w.consecutive_failures <> 0 OR w.circuit_open_until IS NOT NULL)"
)
# A failure counts against the endpoint; from `threshold` failures in a row its circuit
# opens, for longer each time (doubling, capped) until a delivery succeeds.
_FAILED = text(
    "WITH d AS (UPDATE webhook_delivery SET "
    "status = CASE WHEN attempts >= :max_attempts THEN 'failed' ELSE 'pending' END, "
    "next_attempt_at = CASE WHEN attempts >= :max_attempts THEN NULL "
    "ELSE clock_timestamp() + make_interval(secs => :delay) END, "
    "last_status_code = :code, last_error = :error "
    "WHERE id = :id AND attempts = :attempts AND status = 'pending' RETURNING endpoint_id) "
    "UPDATE webhook_endpoint w SET consecutive_failures = w.consecutive_failures + 1, "
    "circuit_open_until = CASE WHEN w.consecutive_failures + 1 >= :threshold "
    "THEN clock_timestamp() + make_interval(secs => LEAST(CAST(:open_cap AS float8), "
    "CAST(:open_base AS float8) * power(2, w.consecutive_failures + 1 - :threshold))) "
    "ELSE w.circuit_open_until END "
    "FROM d WHERE w.id = d.endpoint_id"
)
# A claim handed back on a stop is undone, its attempt uncounted: the worker chose not to
# wait for the outcome, and a last attempt interrupted so must not find its attempts spent.
_RELEASE = text(
    "UPDATE webhook_delivery d SET next_attempt_at = clock_timestamp(), last_error = :error, "
    "attempts = d.attempts - 1 "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS integer[])) AS c(id, attempts) "
    "WHERE d.id = c.id AND d.attempts = c.attempts AND d.status = 'pending'"
)


async def claim_due(
    conn: AsyncConnection,
    *,
    limit: int,
    lease_s: float,
    per_endpoint: int,
    busy: Mapping[UUID, int],
    threshold: int,
    max_attempts: int,
) -> list[Any]:
    """Up to `limit` due deliveries, at most `per_endpoint` in flight per endpoint counting
    `busy` (what the caller already has in flight, by endpoint). Due ones whose attempts are
    spent are failed instead (and not returned)."""
    params = {
        "max_attempts": max_attempts,
        "spent_error": SPENT_ERROR,
        "limit": limit,
        "lease": lease_s,
        "per_endpoint": per_endpoint,
        "busy_ids": list(busy),
        "busy_counts": list(busy.values()),
        "threshold": threshold,
    }
    return list(await conn.execute(_CLAIM, params))


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
    threshold: int,
    open_base_s: float,
    open_cap_s: float,
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
            "threshold": threshold,
            "open_base": open_base_s,
            "open_cap": open_cap_s,
        },
    )


async def release(conn: AsyncConnection, claims: list[tuple[int, int]], error: str) -> None:
    """Hand interrupted claims `(delivery id, attempts)` back now rather than at lease end."""
    if claims:
        await conn.execute(
            _RELEASE,
            {"ids": [c[0] for c in claims], "attempts": [c[1] for c in claims], "error": error},
        )
