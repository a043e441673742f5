"""The deadline watch: orders whose `backorder_deadline` has passed with units still waiting.

Deadlines pass with the clock, not with a request, so something has to look: each pass finds
the orders with a waiting line past its deadline (`db/deadlines.py`, through the partial
index of the queue rows that carry one), oldest deadline first, and expires each in its own
short transaction under its SKUs' locks (`services/expiry.expire_order`).

`expire_order` decides again under the locks, so any number of processes may run this loop
at once (every `serve` worker, `backorder worker`) and each order is acted on once: the
others find nothing waiting. A pass runs at start, so a service that was down over a
deadline catches up at once, then every `BACKORDER_EXPIRY_INTERVAL_S`.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.config import Settings
from backorder.db import deadlines as rows
from backorder.db.engine import is_unavailable, run_read, run_transaction
from backorder.services import expiry
from backorder.workers.watch import watch

log = logging.getLogger("backorder.deadlines")

BATCH = 500  # orders per read; a pass reads on after the last one until none is left


def _database_away(exc: BaseException) -> bool:
    """Whether a failed expiry says the database (or the pool) is away, not the one order."""
    cause = exc.__cause__ or exc
    return isinstance(cause, OSError | TimeoutError | PoolTimeout) or is_unavailable(cause)


async def expire_due(engine: AsyncEngine, stop: asyncio.Event | None = None) -> int:
    """One pass: expire every order now past its deadline with units waiting; returns how
    many this pass expired. With `stop` set, the pass ends after the order at hand (the next
    pass takes up the rest)."""
    expired = 0
    after: rows.DueKey | None = None
    while True:
        due = await run_read(engine, partial(rows.due_orders, limit=BATCH, after=after))
        for _, order_id in due:
            if stop is not None and stop.is_set():
                return expired
            try:
                if await run_transaction(engine, partial(expiry.expire_order, order_id=order_id)):
                    expired += 1
            except Exception as exc:
                # The database away: the pass ends, and the watch pauses and backs off. One
                # order that cannot be expired (its SKU locked past lock_timeout, a bug) must
                # not hold back the others, however many such orders come first: it is
                # skipped, and the next pass tries it again.
                if _database_away(exc):
                    raise
                log.exception(
                    "could not expire an order past its deadline; the next pass tries again",
                    extra={"order_id": str(order_id)},
                )
        if len(due) < BATCH:
            return expired
        after = due[-1]


async def run(engine: AsyncEngine, settings: Settings, stop: asyncio.Event) -> None:
    """Watch until `stop` is set; returns promptly once it is."""
    await watch(
        stop,
        settings.expiry_interval_s,
        lambda: expire_due(engine, stop),
        log=log,
        done="backorder deadlines passed",
        figure="orders_expired",
        failed="backorder deadline pass failed; pausing",
    )
