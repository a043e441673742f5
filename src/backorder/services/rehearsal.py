"""`?dry_run=true`: a call's real work, in a transaction that is then rolled back.

The work is the use case itself, not a model of it: what a dry run answers is what the call
would do now, refusals included, and nothing of it stays (no ledger row, no event, no counter,
no idempotency key). Beside the call's own answer it says what would move for everyone else
(`db/dry_runs.py`): the orders whose status, `ready_to_ship` or units change, and the waiting
lines whose promise date changes.

The locations the call names and then its SKUs are locked before the lines are copied, in the
one order every writer takes them (`db/locations.py`), so nothing commits between the copy and
the work: the difference is the call's alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backorder.db import dry_runs, locations, orders, purchasing, stock
from backorder.db.engine import run_transaction


@dataclass(frozen=True)
class DryRun:
    """What a call touches, to rehearse it: the SKU it stocks, the order it names, or the
    purchase order it receives, and the locations it names; `creates`, its answer's fields
    that name a record it would create (null in a dry run: nothing is created)."""

    sku: str | None = None
    order_id: UUID | None = None
    purchase_order_id: UUID | None = None
    locations: tuple[str, ...] = ()
    creates: tuple[str, ...] = ()

    async def lock(self, conn: AsyncConnection) -> list[str]:
        """Lock what the call will lock, in the order it will: its locations (`FOR SHARE`),
        then its SKUs; the SKUs. Whatever does not exist is left to the work to refuse."""
        places, skus = set(self.locations), []
        if self.sku is not None:
            skus = [self.sku]
        elif self.order_id is not None:
            skus = await orders.order_skus(conn, self.order_id)
        elif self.purchase_order_id is not None:
            found = await purchasing.sku_of(conn, self.purchase_order_id)
            if found is not None:
                skus, places = [found.sku], {found.location}
        for code in sorted(places):
            await locations.get(conn, code, lock="share")
        await stock.lock_products(conn, skus)
        return skus


class _RolledBack(Exception):
    """Carries the dry run's answer out of the transaction, which it rolls back."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__("dry run")
        self.answer = answer


async def rehearse(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[Any]],
    dry_run: DryRun,
    *,
    channel: str | None,
    attempts: int,
) -> dict[str, Any]:
    """The answer `work` would give now, with `dry_run`, `orders` and `expected_dates`; a
    refusal raises as the real call's does. `channel`: a storefront's, whose answer names no
    other channel's orders."""

    async def run(conn: AsyncConnection) -> None:
        skus = await dry_run.lock(conn)
        named = [dry_run.order_id] if dry_run.order_id is not None else []
        await dry_runs.snapshot(conn, skus, named)
        answer = dict(await work(conn))
        for field in dry_run.creates:
            answer[field] = None
        answer["dry_run"] = True
        answer |= await dry_runs.changes(conn, channel)
        raise _RolledBack(answer)

    try:
        await run_transaction(engine, run, attempts=attempts)
    except _RolledBack as done:
        return done.answer
    raise AssertionError("a dry run always rolls back")
