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

Orders that arrive for the same SKUs with the same key while one is being placed share the
next transaction (`Placer`): a flash sale's orders are decided one after the other, in arrival
order, under one lock and written with one commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import PoolTimeout

from backorder.db import hot, keys, orders, stock
from backorder.db.engine import RETRYABLE, raise_retry_later, sqlstate
from backorder.domain.errors import DomainError, RetryLater
from backorder.metrics import ORDER_BATCH_SIZE
from backorder.services import placement
from backorder.services.placement import PlaceOrder

# What the caller makes of the key found (None: unknown or revoked), under the SKU locks: the
# command to place, or a refusal raised (401, 429, or `HandOff`).
Admit = Callable[[keys.ApiKeyRow | None], Awaitable[PlaceOrder]]
# Orders that may share a transaction: one key's (None: the master key's) for one set of SKUs.
Group = tuple[str | None, tuple[str, ...]]
Outcome = dict[str, Any] | BaseException

# Orders one transaction takes at most: a batch holds its SKUs' locks while it is written.
MAX_BATCH = 64


class HandOff(Exception):
    """The general path answers this request; nothing was written."""


class _Redo(Exception):
    """A batch met an `external_ref` already taken: rolled back, its orders go one by one."""


@dataclass(slots=True)
class _Pending:
    admit: Admit
    answer: asyncio.Future[dict[str, Any]]


@dataclass(slots=True)
class _Placed:
    """An order decided in a batch, its statements sent."""

    at: int  # its place in the batch
    cmd: PlaceOrder
    plan: placement.PlannedOrder
    written: psycopg.AsyncCursor[Any]
    dated: psycopg.AsyncCursor[Any] | None


class Placer:
    """Places orders in short transactions of their own, two round trips each; orders of one
    key for the same SKUs that arrive while such a transaction runs wait for it to end, then
    share the next one (group commit): one lock, one pipeline of writes and one commit for
    the batch, each order still decided, answered and refused on its own, in arrival order.
    A flash sale's orders thus queue in the worker instead of for the row lock, and the lock
    is held once per batch instead of once per order."""

    def __init__(self, pool: hot.Pool, *, attempts: int, max_batch: int = MAX_BATCH) -> None:
        self.pool = pool
        self.attempts = attempts
        self.max_batch = max_batch
        self._waiting: dict[Group, list[_Pending]] = {}  # present: a batch of it is running
        self._tasks: set[asyncio.Task[None]] = set()

    async def place(self, key_hash: str | None, skus: list[str], admit: Admit) -> dict[str, Any]:
        """Place an order whose lines name `skus`, for the key with `key_hash` (None: the
        master key, which has no row; `admit` is then given None): the answer's body. Reruns
        on deadlock (as `engine.run_transaction` does); a busy SKU or an unavailable database
        is `RetryLater` (503)."""
        group = (key_hash, tuple(sorted(set(skus))))
        pending = _Pending(admit, asyncio.get_running_loop().create_future())
        queue = self._waiting.get(group)
        if queue is not None:
            queue.append(pending)
        else:
            self._waiting[group] = [pending]
            # A task of its own: the batch does not hang on the request that started it.
            task = asyncio.create_task(self._drain(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await pending.answer

    async def _drain(self, group: Group) -> None:
        queue = self._waiting[group]
        try:
            while queue:
                batch = queue[: self.max_batch]
                del queue[: len(batch)]
                await self._run(group, batch)
        finally:
            del self._waiting[group]
            for pending in queue:  # only if cancelled (shutdown): nothing was done for them
                _settle(pending, RetryLater("the service is stopping; retry", retry_after=1))

    async def _run(self, group: Group, batch: list[_Pending]) -> None:
        key_hash, skus = group
        for attempt in range(1, self.attempts + 1):
            try:
                async with self.pool.connection() as conn:
                    outcomes = await _transaction(conn, key_hash, list(skus), batch)
            except _Redo:
                for pending in batch:
                    await self._run(group, [pending])
                return
            except psycopg.Error as exc:
                if sqlstate(exc) in RETRYABLE and attempt < self.attempts:
                    await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
                    continue
                outcomes = [_mapped(exc)] * len(batch)
            except (OSError, TimeoutError, PoolTimeout) as exc:
                outcomes = [_mapped(exc)] * len(batch)
            except BaseException as exc:
                for pending in batch:
                    _settle(pending, exc)
                raise
            ORDER_BATCH_SIZE.observe(len(batch))
            for pending, outcome in zip(batch, outcomes, strict=True):
                _settle(pending, outcome)
            return


def _settle(pending: _Pending, outcome: Outcome) -> None:
    if pending.answer.done():
        return
    if isinstance(outcome, BaseException):
        pending.answer.set_exception(outcome)
    else:
        pending.answer.set_result(outcome)


def _mapped(exc: BaseException) -> BaseException:
    """What a request answers for a database error: `RetryLater` (503) where it is one."""
    try:
        raise_retry_later(exc)
    except RetryLater as later:
        return later
    return exc


async def _transaction(
    conn: psycopg.AsyncConnection[Any], key_hash: str | None, skus: list[str], batch: list[_Pending]
) -> list[Outcome]:
    """One transaction for the batch: BEGIN and the key with the SKU lock (one round trip),
    then each order decided in arrival order against the locked products, every write sent
    with COMMIT (a second round trip). The outcomes, in the batch's order."""
    outcomes: list[Outcome | None] = [None] * len(batch)
    placed: list[_Placed] = []
    lookups: list[tuple[int, PlaceOrder, psycopg.AsyncCursor[Any]]] = []
    try:
        async with conn.pipeline() as pipeline:
            await conn.execute(b"BEGIN", prepare=False)
            if key_hash is None:
                cur = await conn.execute(hot.sql_of(stock.LOCK), {"skus": skus})
            else:
                cur = await conn.execute(hot.KEY_AND_LOCK, {"hash": key_hash, "skus": skus})
            rows = await cur.fetchall()
            key = hot.key_of(rows[0]) if key_hash is not None and rows else None
            locked = stock.locked_of(SimpleNamespace(**r) for r in rows)
            # An order with an `external_ref` is written only if the reference is free, yet
            # its units count in `locked` for every order decided after it, placed or refused.
            ref_sent = False  # such an order's write is among those sent
            after_ref = False  # and another order was decided after it
            for at, pending in enumerate(batch):
                try:
                    cmd = await pending.admit(key)
                except (DomainError, HandOff) as exc:
                    outcomes[at] = exc
                    continue
                after_ref = after_ref or ref_sent
                try:
                    # Refusals raise before the products' counters move.
                    plan = placement.plan_order(cmd, locked)
                except DomainError as exc:
                    outcomes[at] = exc
                    if cmd.external_ref is not None:
                        # As on the general path: a retry of a placed order learns that.
                        lookups.append((at, cmd, await _order_with_ref(conn, cmd)))
                    continue
                written = await conn.execute(hot.sql_of(orders.PLACE_ORDER), plan.params)
                for statement, params in placement.refresh_statements(plan, locked):
                    await conn.execute(hot.sql_of(statement), params)
                dated = None
                if plan.waiting_skus:
                    dated = await conn.execute(hot.sql_of(orders.WAITING_DATES), {"id": plan.id})
                placed.append(_Placed(at, cmd, plan, written, dated))
                ref_sent = ref_sent or cmd.external_ref is not None
            if after_ref:
                # An order whose reference is taken writes nothing, yet the orders decided
                # after it counted its units (a refusal too: it saw less stock than there
                # is): look before committing (one more round trip).
                await pipeline.sync()
                for x in placed:
                    if x.cmd.external_ref is not None and await x.written.fetchone() is None:
                        raise _Redo
                    await x.written.scroll(0, mode="absolute")
            await conn.execute(b"COMMIT", prepare=False)
            # Leaving the pipeline sends everything and waits for every result: one round trip.
    except BaseException:
        await _roll_back(conn)
        raise
    for at, cmd, found in lookups:
        existing = await found.fetchone()
        if existing is not None:
            outcomes[at] = placement.ref_taken(cmd, existing["id"])
    for x in placed:
        row = await x.written.fetchone()
        dates = {}
        if x.dated is not None:
            dates = {r["id"]: r["expected_date"] for r in await x.dated.fetchall()}
        if row is not None:
            outcomes[x.at] = placement.answer(x.plan, locked, row["created_at"], dates)
            continue
        # The order's reference is taken: nothing was written, and no order was decided
        # after it in this batch (that is `_Redo`). Its order is named; should it have
        # vanished since (deleted by hand), the general path, which holds its locks while it
        # tries again, places the order.
        existing = await (await _order_with_ref(conn, x.cmd)).fetchone()
        outcomes[x.at] = (
            HandOff() if existing is None else placement.ref_taken(x.cmd, existing["id"])
        )
    return [o if o is not None else AssertionError("an order without an outcome") for o in outcomes]


async def _order_with_ref(
    conn: psycopg.AsyncConnection[Any], cmd: PlaceOrder
) -> psycopg.AsyncCursor[Any]:
    """The lookup of the channel's order with the command's `external_ref`, sent (in a
    pipeline, its row comes with the next sync)."""
    return await conn.execute(
        hot.sql_of(orders.ORDER_WITH_REF), {"ref": cmd.external_ref, "channel": cmd.channel}
    )


async def _roll_back(conn: psycopg.AsyncConnection[Any]) -> None:
    """End the transaction a refusal or an error left open (its locks go with it)."""
    if conn.closed or conn.info.transaction_status == TransactionStatus.IDLE:
        return
    with contextlib.suppress(psycopg.Error):  # a broken connection: the pool discards it
        await conn.execute(b"ROLLBACK", prepare=False)
