"""The overdue watch: purchase orders whose expected date has passed with units unreceived.

Dates pass with the clock, not with a request, so something has to look: each pass finds the
SKUs with an open PO past its date (UTC) not yet marked, and for each, in its own short
transaction under the SKU lock, marks those POs overdue, writes one `purchase_order.overdue`
per PO and dates the waiting lines again without them (`services/purchasing.mark_overdue`).

The mark is a claim (`UPDATE … WHERE overdue_at IS NULL … RETURNING`): any number of API
processes may run this loop at once and each PO is announced exactly once. A pass runs at
start, so a service that was down over midnight catches up at once, then every
`BACKORDER_OVERDUE_INTERVAL_S`.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.config import Settings
from backorder.db import purchasing as rows
from backorder.db.engine import run_read, run_transaction
from backorder.services import purchasing
from backorder.workers.watch import watch

log = logging.getLogger("backorder.purchase_orders")

BATCH = 500  # SKUs per read; a pass reads again until none is left


async def mark_overdue(engine: AsyncEngine, stop: asyncio.Event | None = None) -> int:
    """One pass: mark every PO now past its date; returns how many this pass marked. With
    `stop` set, the pass ends after the SKU at hand (the next pass takes up the rest)."""
    marked = 0
    while True:
        skus = await run_read(engine, lambda conn: rows.skus_past_due(conn, BATCH))
        for sku in skus:
            if stop is not None and stop.is_set():
                return marked
            marked += await run_transaction(engine, partial(purchasing.mark_overdue, sku=sku))
        if len(skus) < BATCH:
            return marked


async def run(engine: AsyncEngine, settings: Settings, stop: asyncio.Event) -> None:
    """Watch until `stop` is set; returns promptly once it is."""
    await watch(
        stop,
        settings.overdue_interval_s,
        lambda: mark_overdue(engine, stop),
        log=log,
        done="purchase orders turned overdue",
        figure="marked",
        failed="overdue purchase-order pass failed; pausing",
    )
