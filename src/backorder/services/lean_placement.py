"""Placing an order on psycopg directly, its statements sent in a pipeline: two round trips.

The general path (`placement.place_order` through SQLAlchemy, behind FastAPI's dependencies)
makes six: the key, BEGIN, the SKU lock, the write, the dates, COMMIT. Here:

1. BEGIN and one statement that checks the key and, for a valid key only, locks the SKUs and
   reads them with their stock levels (`hot.KEY_AND_LOCK`): a revoked key is refused by the
   very next request, with nothing cached.
2. The order's one write, its promise dates (when a line waits) and COMMIT, sent together.

Between them, in Python, the same decisions as the general path (`placement.plan_order`), on
the same SQL (`hot.sql_of` renders the general path's statements). What is rare is left to the
general path (`HandOff`), with nothing written: the request is answered there as if this path
did not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import PoolTimeout

from backorder.db import hot, keys, orders, stock
from backorder.db.engine import RETRYABLE, raise_retry_later, sqlstate
from backorder.domain.errors import DomainError
from backorder.services import placement
from backorder.services.placement import PlaceOrder

# What the caller makes of the key found (None: unknown or revoked), under the SKU locks: the
# command to place, or a refusal raised (401, 429, or `HandOff`).
Admit = Callable[[keys.ApiKeyRow | None], Awaitable[PlaceOrder]]


class HandOff(Exception):
    """The general path answers this request; nothing was written."""


async def place_order(
    pool: hot.Pool, key_hash: str | None, skus: list[str], admit: Admit, *, attempts: int
) -> dict[str, Any]:
    """Place an order whose lines name `skus`, for the key with `key_hash` (None: the master
    key, which has no row; `admit` is then given None): the answer's body. Reruns on deadlock
    (as `engine.run_transaction` does); a busy SKU or an unavailable database is `RetryLater`
    (503)."""
    for attempt in range(1, attempts + 1):
        try:
            async with pool.connection() as conn:
                return await _place(conn, key_hash, sorted(set(skus)), admit)
        except psycopg.Error as exc:
            if sqlstate(exc) in RETRYABLE and attempt < attempts:
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
                continue
            raise_retry_later(exc)
            raise
        except (OSError, TimeoutError, PoolTimeout) as exc:
            raise_retry_later(exc)
            raise
    raise AssertionError("unreachable")


async def _place(
    conn: psycopg.AsyncConnection[Any], key_hash: str | None, skus: list[str], admit: Admit
) -> dict[str, Any]:
    try:
        async with conn.pipeline() as pipeline:
            await conn.execute(b"BEGIN", prepare=False)
            if key_hash is None:
                cur = await conn.execute(hot.sql_of(stock.LOCK), {"skus": skus})
                rows = await cur.fetchall()
                cmd = await admit(None)
            else:
                cur = await conn.execute(hot.KEY_AND_LOCK, {"hash": key_hash, "skus": skus})
                rows = await cur.fetchall()
                cmd = await admit(hot.key_of(rows[0]) if rows else None)
            locked = stock.locked_of(SimpleNamespace(**r) for r in rows)
            try:
                plan = placement.plan_order(cmd, locked)
            except DomainError:
                # As on the general path: a retry of a placed order learns that it was placed.
                if cmd.external_ref is not None:
                    existing = await _order_with_ref(conn, cmd)
                    if existing is not None:
                        raise placement.ref_taken(cmd, existing) from None
                raise
            written = await conn.execute(hot.sql_of(orders.PLACE_ORDER), plan.params)
            for statement, params in placement.refresh_statements(plan, locked):
                await conn.execute(hot.sql_of(statement), params)
            dated = None
            if plan.waiting_skus:
                dated = await conn.execute(hot.sql_of(orders.WAITING_DATES), {"id": plan.id})
            await conn.execute(b"COMMIT", prepare=False)
            await pipeline.sync()
            row = await written.fetchone()
            dates = {}
            if dated is not None:
                dates = {r["id"]: r["expected_date"] for r in await dated.fetchall()}
    except BaseException:
        await _roll_back(conn)
        raise
    if row is None:
        # The channel used this `external_ref` already: nothing was written. Its order is
        # named; should it have vanished since (deleted by hand), the general path, which
        # holds its locks while it tries again, places the order.
        existing = await _order_with_ref(conn, cmd)
        if existing is None:
            raise HandOff
        raise placement.ref_taken(cmd, existing)
    return placement.answer(plan, locked, row["created_at"], dates)


async def _order_with_ref(conn: psycopg.AsyncConnection[Any], cmd: PlaceOrder) -> Any:
    cur = await conn.execute(
        hot.sql_of(orders.ORDER_WITH_REF), {"ref": cmd.external_ref, "channel": cmd.channel}
    )
    found = await cur.fetchone()
    return None if found is None else found["id"]


async def _roll_back(conn: psycopg.AsyncConnection[Any]) -> None:
    """End the transaction a refusal or an error left open (its locks go with it)."""
    if conn.closed or conn.info.transaction_status == TransactionStatus.IDLE:
        return
    with contextlib.suppress(psycopg.Error):  # a broken connection: the pool discards it
        await conn.execute(b"ROLLBACK", prepare=False)
