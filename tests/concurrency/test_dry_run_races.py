"""`?dry_run=true` racing real calls on a real server: only the real ones leave a trace."""

from __future__ import annotations

import asyncio

from httpx import AsyncClient

from tests.concurrency.test_hot_sku import client
from tests.support.api import OPS, make_product, place
from tests.support.invariants import assert_invariants
from tests.support.locations import events, movements
from tests.support.orders import product

DRY = {"dry_run": "true"}


async def test_dry_runs_racing_real_restocks_leave_only_the_real_ones(
    live_url: str, database_url: str
) -> None:
    """Dry runs and real restocks of one SKU at once, over HTTP on a real server with two
    workers: a dry run's rollback, or its state leaking into a concurrent real call, would show
    in the figures, the ledger, the events or the queue's order."""
    async with client(live_url) as http:
        await _race(http, database_url)


async def _race(client: AsyncClient, database_url: str) -> None:
    await make_product(client, "HOT")
    queue = [await place(client, [("HOT", 1)], customer_id=f"c-{n}") for n in range(40)]
    allocated_before = len(await events(client, "order.line_allocated"))
    path, body = "/v1/products/HOT/restocks", {"quantity": 1}
    dry_flags = [n % 3 != 2 for n in range(30)]  # 20 dry runs, 10 real calls, interleaved
    answers = await asyncio.gather(
        *(
            client.post(path, json=body, params=DRY if dry else None, headers=OPS)
            for dry in dry_flags
        )
    )
    dry_answers = [r for r, dry in zip(answers, dry_flags, strict=True) if dry]
    real_answers = [r for r, dry in zip(answers, dry_flags, strict=True) if not dry]
    for r in dry_answers:
        assert r.status_code == 200, r.text
        assert r.json()["dry_run"] is True and r.json()["id"] is None
        assert sum(a["quantity"] for a in r.json()["allocations"]) == 1
    assert all(r.status_code == 201 for r in real_answers), [r.text for r in real_answers]

    p = await product(client, "HOT")
    assert (p["on_hand"], p["allocated"], p["backordered"]) == (10, 10, 30)
    ledger = await movements(client, "HOT")
    assert [m["quantity"] for m in ledger] == [1] * 10
    filled = {a["order_id"] for r in real_answers for a in r.json()["allocations"]}
    assert filled == {o["id"] for o in queue[:10]}  # the queue's head, in order
    allocated = await events(client, "order.line_allocated")
    assert len(allocated) - allocated_before == 10
    assert {e["data"]["order_id"] for e in allocated} == filled
    assert_invariants(database_url)
