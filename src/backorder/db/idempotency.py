"""Idempotency keys, stored in the transaction of the effect they guard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class StoredResponse:
    method: str
    path: str
    request_hash: str
    status_code: int
    body: bytes


_FIND = (
    "SELECT method, path, request_hash, status_code, response_body "
    "FROM idempotency_key WHERE scope = :scope AND key = :key "
    "AND created_at > clock_timestamp() - make_interval(hours => :ttl)"
)


FIND = text(_FIND)
# The stored answer, else the key's lock tried (`locked`): see `find_or_lock`.
FIND_OR_LOCK = text(
    f"SELECT s.*, CASE WHEN s.method IS NULL "
    f"THEN pg_try_advisory_xact_lock(hashtextextended(:k, 7)) END AS locked "
    f"FROM (SELECT 1) one LEFT JOIN LATERAL ({_FIND}) s ON true"
)


def key_params(scope: str, key: str, ttl_hours: int) -> dict[str, Any]:
    """The parameters of `FIND` and `FIND_OR_LOCK`."""
    return {"scope": scope, "key": key, "ttl": ttl_hours, "k": f"{scope}\x1f{key}"}


def stored_of(row: Any) -> StoredResponse | None:
    """A row of `FIND` or `FIND_OR_LOCK` (by position) as the stored answer, if it holds one."""
    return None if row is None or row[0] is None else StoredResponse(*row[:5])


async def find_or_lock(
    conn: AsyncConnection, scope: str, key: str, ttl_hours: int
) -> tuple[StoredResponse | None, bool]:
    """The stored answer for the key, if there is one; else whether this transaction now
    holds the key's lock (False while another request holds it). One round trip: a finished
    request's retries replay without taking the lock, so simultaneous retries all replay."""
    row = (await conn.execute(FIND_OR_LOCK, key_params(scope, key, ttl_hours))).one()
    stored = stored_of(row)
    if stored is not None:
        return stored, False
    return None, bool(row.locked)


async def find(
    conn: AsyncConnection, scope: str, key: str, ttl_hours: int
) -> StoredResponse | None:
    return stored_of((await conn.execute(FIND, key_params(scope, key, ttl_hours))).one_or_none())


STORE = text(
    "INSERT INTO idempotency_key (scope, key, method, path, request_hash, status_code, "
    "response_body) VALUES (:scope, :key, :method, :path, :hash, :status, :body) "
    "ON CONFLICT (scope, key) DO UPDATE SET method = EXCLUDED.method, "
    "path = EXCLUDED.path, request_hash = EXCLUDED.request_hash, "
    "status_code = EXCLUDED.status_code, response_body = EXCLUDED.response_body, "
    "created_at = clock_timestamp() "
    "WHERE idempotency_key.created_at <= clock_timestamp() - make_interval(hours => :ttl) "
    "RETURNING id"
)


def store_params(scope: str, key: str, response: StoredResponse, ttl_hours: int) -> dict[str, Any]:
    """The parameters of `STORE`."""
    return {
        "scope": scope,
        "key": key,
        "method": response.method,
        "path": response.path,
        "hash": response.request_hash,
        "status": response.status_code,
        "body": response.body,
        "ttl": ttl_hours,
    }


async def store(
    conn: AsyncConnection, scope: str, key: str, response: StoredResponse, ttl_hours: int
) -> bool:
    """Keep the answer; False if a live answer for the key appeared meanwhile (the caller must
    then roll back its effect). An expired row is replaced: the key is free after its TTL."""
    result = await conn.execute(STORE, store_params(scope, key, response, ttl_hours))
    return result.one_or_none() is not None


async def purge_expired(conn: AsyncConnection, ttl_hours: int, batch: int) -> int:
    """Delete up to `batch` expired keys (oldest first, by the `created_at` index); rows
    another process is purging are skipped, so several purgers never wait on each other."""
    result = await conn.execute(
        text(
            "DELETE FROM idempotency_key WHERE id IN (SELECT id FROM idempotency_key "
            "WHERE created_at < clock_timestamp() - make_interval(hours => :ttl) "
            "ORDER BY created_at LIMIT :batch FOR UPDATE SKIP LOCKED)"
        ),
        {"ttl": ttl_hours, "batch": batch},
    )
    return result.rowcount
