"""Housekeeping inside each `serve` worker: expired idempotency keys are purged.

An `Idempotency-Key`'s stored answer is kept `BACKORDER_IDEMPOTENCY_TTL_HOURS`; after that it
can never be replayed (a lookup ignores it) and is only weight in the table. Every few minutes
each worker process deletes expired rows in small batches, each batch its own short
transaction (`FOR UPDATE SKIP LOCKED`: processes purging at once take disjoint rows and never
wait on each other, nor on a request storing a key), with a pause between batches so that a
large backlog never competes with requests for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.config import Settings
from backorder.db import idempotency
from backorder.db.engine import run_transaction

log = logging.getLogger("backorder.housekeeping")

INTERVAL_S = 300.0
BATCH = 500
BATCH_PAUSE_S = 0.05
MAX_BATCHES = 200  # per round: a huge backlog is worked off over several rounds


async def purge_expired_keys(engine: AsyncEngine, settings: Settings, stop: asyncio.Event) -> int:
    """One round: delete expired idempotency keys, batch by batch; how many went."""
    total = 0
    for _ in range(MAX_BATCHES):
        if stop.is_set():
            break
        deleted = await run_transaction(
            engine,
            lambda conn: idempotency.purge_expired(conn, settings.idempotency_ttl_hours, BATCH),
            attempts=1,
        )
        total += deleted
        if deleted < BATCH:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=BATCH_PAUSE_S)
    return total


async def run(engine: AsyncEngine, settings: Settings, stop: asyncio.Event) -> None:
    """Purge every `INTERVAL_S` (jittered, so processes started together spread out) until
    `stop` is set; returns promptly once it is. A failed round is logged and retried later."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=INTERVAL_S * random.uniform(0.5, 1.5))
        if stop.is_set():
            return
        try:
            purged = await purge_expired_keys(engine, settings, stop)
        except Exception:  # the loop outlives a database outage
            log.warning("purging expired idempotency keys failed; retrying later", exc_info=True)
            continue
        if purged:
            log.info("purged expired idempotency keys", extra={"purged": purged})
