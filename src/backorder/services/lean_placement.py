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

An order with an `Idempotency-Key` claims it in that transaction, as `api/execute.write` does
(the stored answer replayed, or the key's lock taken), and its answer or refusal is stored
before the commit: two round trips more, for the batch.
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
from psycopg.rows import tuple_row
from psycopg_pool import PoolTimeout

from backorder.db import hot, idempotency, keys, locations, orders, stock
from backorder.db.engine import RETRYABLE, raise_retry_later, sqlstate
from backorder.domain.errors import (
    DomainError,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    RetryLater,
)
from backorder.metrics import ORDER_BATCH_SIZE
from backorder.services import placement
from backorder.services.placement import PlaceOrder

# Where a placed order's answer is stored under its Idempotency-Key (the route's method and path).
METHOD, PATH = "POST", "/v1/orders"


@dataclass(frozen=True, slots=True)
class Admitted:
    """An order its key may place: the command, and the key's idempotency scope."""

    cmd: PlaceOrder
    scope: str


@dataclass(frozen=True, slots=True)
class Keyed:
    """An order sent with an `Idempotency-Key`: its answer (or refusal) is stored in the
    transaction that places it, and a retry replays it, as on the general path."""

    key: str
    fingerprint: str  # the request's, which a replay must match
    # The HTTP layer's bytes for an answer or a refusal: (status, sent, kept under the key).
    render: Callable[[dict[str, Any] | DomainError], tuple[int, bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Stored:
    """An answer made of bytes: a keyed order's, stored with it, or a replay of one."""

    status: int
    payload: bytes
    replayed: bool


# What the caller makes of the key found (None: unknown or revoked), under the SKU locks: the
# order to place, or a refusal raised (401, 429, or `HandOff`).
Admit = Callable[[keys.ApiKeyRow | None], Awaitable[Admitted]]
# Orders that may share a transaction: one key's (None: the master key's) for one set of SKUs.
Group = tuple[str | None, tuple[str, ...]]
Outcome = dict[str, Any] | Stored | BaseException

# Orders one transaction takes at most: a batch holds its SKUs' locks while it is written.
MAX_BATCH = 64


class HandOff(Exception):
    """The general path answers this request; nothing was written."""


class _Redo(Exception):
    """A batch met an `external_ref` already taken: rolled back, its orders go one by one."""


@dataclass(slots=True)
class _Pending:
    admit: Admit
    keyed: Keyed | None
    preferred: str | None  # the order's `preferred_location`, checked in the first round trip
    answer: asyncio.Future[dict[str, Any] | Stored]


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

    def __init__(
        self, pool: hot.Pool, *, attempts: int, ttl_hours: int, max_batch: int = MAX_BATCH
    ) -> None:
        self.pool = pool
        self.attempts = attempts
        self.ttl_hours = ttl_hours
        self.max_batch = max_batch
        self._waiting: dict[Group, list[_Pending]] = {}  # present: a batch of it is running
        self._tasks: set[asyncio.Task[None]] = set()

    async def place(
        self,
        key_hash: str | None,
        skus: list[str],
        admit: Admit,
        *,
        keyed: Keyed | None = None,
        preferred: str | None = None,
    ) -> dict[str, Any] | Stored:
        """Place an order whose lines name `skus`, for the key with `key_hash` (None: the
        master key, which has no row; `admit` is then given None): the answer's body, or for
        a keyed order the bytes stored with it (or replayed). Reruns on deadlock (as
        `engine.run_transaction` does); a busy SKU or an unavailable database is `RetryLater`
        (503)."""
        group = (key_hash, tuple(sorted(set(skus))))
        pending = _Pending(admit, keyed, preferred, asyncio.get_running_loop().create_future())
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
                    outcomes = await _Batch(conn, batch, self.ttl_hours).run(key_hash, list(skus))
            except _Redo:
                for pending in batch:
                    await self._run(group, [pending])
                return
            except psycopg.Error as exc:
                if sqlstate(exc) in RETRYABLE and attempt < self.attempts:
                    await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
                    continue
                hot.check_after(self.pool, exc)
                outcomes = [_mapped(exc)] * len(batch)
            except (OSError, TimeoutError, PoolTimeout) as exc:
                hot.check_after(self.pool, exc)
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


class _Batch:
    """One transaction for a batch of orders, in its round trips (each a pipeline sync):

    1. BEGIN, the key with the SKU lock, and the preferred locations the orders name; each
       order admitted by its key.
    2. Only with Idempotency-Keys: each key claimed (its lock) or its stored answer replayed.
    3. Each order decided in arrival order against the locked products; the writes sent.
    4. Only when an answer must be seen before committing (a reference that may be taken
       under orders decided after it; answers to store under their keys): the writes' rows,
       then the answers stored. Then COMMIT.
    """

    def __init__(
        self, conn: psycopg.AsyncConnection[Any], batch: list[_Pending], ttl_hours: int
    ) -> None:
        self.conn = conn
        self.batch = batch
        self.ttl_hours = ttl_hours
        self.outcomes: list[Outcome | None] = [None] * len(batch)
        self.admitted: dict[int, Admitted] = {}
        self.placed: list[_Placed] = []
        self.lookups: list[tuple[int, PlaceOrder, psycopg.AsyncCursor[Any]]] = []
        self.known: set[str] = set()  # the batch's preferred locations that exist

    async def run(self, key_hash: str | None, skus: list[str]) -> list[Outcome]:
        conn = self.conn
        try:
            async with conn.pipeline() as pipeline:
                await conn.execute(b"BEGIN", prepare=False)
                if key_hash is None:
                    cur = await conn.execute(hot.sql_of(stock.LOCK), {"skus": skus})
                else:
                    cur = await conn.execute(hot.KEY_AND_LOCK, {"hash": key_hash, "skus": skus})
                preferred = sorted({p.preferred for p in self.batch if p.preferred is not None})
                known = None
                if preferred:
                    sql = hot.sql_of(locations.KNOWN)
                    known = await conn.execute(sql, {"codes": preferred})
                rows = await cur.fetchall()
                if known is not None:
                    self.known = {r["code"] for r in await known.fetchall()}
                key = hot.key_of(rows[0]) if key_hash is not None and rows else None
                locked = stock.locked_of(SimpleNamespace(**r) for r in rows)
                for at, pending in enumerate(self.batch):
                    try:
                        self.admitted[at] = await pending.admit(key)
                    except (DomainError, HandOff) as exc:
                        self.outcomes[at] = exc
                await self._claim_keys(pipeline)
                after_ref = await self._decide(locked)
                keyed = any(self._to_store(at) for at in self.admitted)
                if after_ref or keyed:
                    await pipeline.sync()
                    await self._answer(locked, after_ref=after_ref)
                    await self._store()
                await conn.execute(b"COMMIT", prepare=False)
                # Leaving the pipeline sends what is queued and waits for every result.
        except BaseException:
            await _roll_back(conn)
            raise
        if not (after_ref or keyed):
            await self._answer(locked, after_ref=False)
        return [
            o if o is not None else AssertionError("an order without an outcome")
            for o in self.outcomes
        ]

    async def _claim_keys(self, pipeline: psycopg.AsyncPipeline) -> None:
        """Claim each keyed order's Idempotency-Key, as `execute.write` does: its stored
        answer is replayed; a key another request holds is 409 `idempotency_key_in_use`
        (so is a key sent twice in one batch); else its lock is held until the commit."""
        claims = []
        seen = set()
        for at, admitted in self.admitted.items():
            keyed = self.batch[at].keyed
            if keyed is None or self.outcomes[at] is not None:
                continue
            if (admitted.scope, keyed.key) in seen:
                self.outcomes[at] = IdempotencyKeyInUse(
                    "a request with this Idempotency-Key is still running"
                )
                continue
            seen.add((admitted.scope, keyed.key))
            params = idempotency.key_params(admitted.scope, keyed.key, self.ttl_hours)
            claim = self.conn.cursor(row_factory=tuple_row)
            await claim.execute(hot.sql_of(idempotency.FIND_OR_LOCK), params)
            # Again, in a new snapshot: the holder of the key may have committed between
            # the lookup's snapshot and the lock.
            again = self.conn.cursor(row_factory=tuple_row)
            await again.execute(hot.sql_of(idempotency.FIND), params)
            claims.append((at, keyed, claim, again))
        if not claims:
            return
        await pipeline.sync()
        for at, keyed, claim, again in claims:
            row = await claim.fetchone()
            stored = idempotency.stored_of(row) or idempotency.stored_of(await again.fetchone())
            if stored is not None:
                self.outcomes[at] = _replay(stored, keyed)
            elif row is None or not row[5]:
                self.outcomes[at] = IdempotencyKeyInUse(
                    "a request with this Idempotency-Key is still running"
                )

    async def _decide(self, locked: dict[str, stock.LockedProduct]) -> bool:
        """Decide each admitted order in arrival order and send its writes. Whether an order
        was decided after one with an `external_ref`: such an order is written only if the
        reference is free, yet its units count in `locked` for every order decided after it,
        placed or refused."""
        conn = self.conn
        ref_sent = after_ref = False
        for at, admitted in self.admitted.items():
            if self.outcomes[at] is not None:
                continue
            cmd = admitted.cmd
            if cmd.preferred_location is not None and cmd.preferred_location not in self.known:
                # As on the general path: before the stock is looked at.
                self.outcomes[at] = placement.unknown_preferred(cmd.preferred_location)
                continue
            after_ref = after_ref or ref_sent
            try:
                # Refusals raise before the products' counters move.
                plan = placement.plan_order(cmd, locked)
            except DomainError as exc:
                self.outcomes[at] = exc
                if cmd.external_ref is not None:
                    # As on the general path: a retry of a placed order learns that.
                    self.lookups.append((at, cmd, await _order_with_ref(conn, cmd)))
                continue
            written = await conn.execute(hot.sql_of(orders.PLACE_ORDER), plan.params)
            for statement, params in placement.refresh_statements(plan, locked):
                await conn.execute(hot.sql_of(statement), params)
            dated = None
            if plan.waiting_skus:
                dated = await conn.execute(hot.sql_of(orders.WAITING_DATES), {"id": plan.id})
            self.placed.append(_Placed(at, cmd, plan, written, dated))
            ref_sent = ref_sent or cmd.external_ref is not None
        return after_ref

    async def _answer(self, locked: dict[str, stock.LockedProduct], *, after_ref: bool) -> None:
        """Each decided order's outcome, from the rows its statements returned."""
        for at, cmd, found in self.lookups:
            existing = await found.fetchone()
            if existing is not None:
                self.outcomes[at] = placement.ref_taken(cmd, existing["id"])
        for x in self.placed:
            row = await x.written.fetchone()
            if row is None:
                if after_ref:
                    # Orders decided after this one counted units it did not take.
                    raise _Redo
                # The order's reference is taken: nothing was written, and it was decided
                # last. Its order is named; should it have vanished since (deleted by hand),
                # the general path, which holds its locks while it tries again, places it.
                existing = await (await _order_with_ref(self.conn, x.cmd)).fetchone()
                self.outcomes[x.at] = (
                    HandOff() if existing is None else placement.ref_taken(x.cmd, existing["id"])
                )
                continue
            dates = {}
            if x.dated is not None:
                dates = {r["id"]: r["expected_date"] for r in await x.dated.fetchall()}
            self.outcomes[x.at] = placement.answer(x.plan, locked, row["created_at"], dates)

    async def _store(self) -> None:
        """Store each keyed order's answer or refusal under its key, in its transaction. The
        key's lock is held and no live answer was found under it, so none can appear."""
        for at, admitted in self.admitted.items():
            keyed = self.batch[at].keyed
            outcome = self.outcomes[at]
            if keyed is None or not self._to_store(at):
                continue
            assert isinstance(outcome, dict | DomainError)
            status, sent, kept = keyed.render(outcome)
            response = idempotency.StoredResponse(METHOD, PATH, keyed.fingerprint, status, kept)
            params = idempotency.store_params(admitted.scope, keyed.key, response, self.ttl_hours)
            await self.conn.execute(hot.sql_of(idempotency.STORE), params)
            self.outcomes[at] = Stored(status, sent, replayed=False)

    def _to_store(self, at: int) -> bool:
        """Whether the order's outcome is stored under its key: every outcome of a keyed
        order that claimed its key (not a replay, not one left to the general path)."""
        outcome = self.outcomes[at]
        return self.batch[at].keyed is not None and (
            outcome is None
            or isinstance(outcome, dict)
            or (
                isinstance(outcome, DomainError)
                and not isinstance(outcome, IdempotencyKeyInUse | IdempotencyKeyReused)
            )
        )


def _replay(stored: idempotency.StoredResponse, keyed: Keyed) -> Outcome:
    if (stored.method, stored.path, stored.request_hash) != (METHOD, PATH, keyed.fingerprint):
        return IdempotencyKeyReused("this Idempotency-Key was used with a different request")
    return Stored(stored.status_code, stored.body, replayed=True)


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
