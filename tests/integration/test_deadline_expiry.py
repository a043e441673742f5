"""Backorder deadlines that pass: what still waits is cancelled by the service on its own,
once, with one `order.backorder_expired` naming the lines and units.

Orders are placed over the API with a deadline ahead (one in the past is 422), then their
deadline is moved into the past in SQL, as the clock would; a pass of the watch
(`workers/deadlines.expire_due`) or the watch inside a real `serve` does the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.api.app import create_app
from backorder.config import Settings
from backorder.db.engine import make_engine, run_transaction
from backorder.services import expiry
from backorder.services.expiry import expire_order
from backorder.workers.deadlines import expire_due
from tests.support.api import OPS, make_key, make_product, place
from tests.support.invariants import assert_invariants
from tests.support.live import backorder_worker, killable_server
from tests.support.orders import get_order, restock

pytestmark = pytest.mark.usefixtures("clean_db")

EXPIRED = "order.backorder_expired"
# The bounded wait for a watch running in another process (it looks every 0.2 s here).
WATCH_TIMEOUT_S = 30.0


@pytest.fixture
async def client(settings: Settings, clean_db: None) -> AsyncIterator[AsyncClient]:
    """The API in-process, without a deadline watch of its own: only the pass a test runs
    (or the server it starts) expires anything."""
    app = create_app(settings.model_copy(update={"expiry_worker": False}))
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


def ahead() -> str:
    """A deadline the API accepts: a day from now."""
    return (datetime.now(UTC) + timedelta(days=1)).isoformat()


async def pass_deadline(engine: AsyncEngine, *orders: dict[str, Any]) -> None:
    """Let the orders' deadlines pass: a second ago, on the order and its queue rows."""
    async with engine.begin() as conn:
        for order in orders:
            await conn.execute(
                text(
                    "WITH o AS (UPDATE sales_order "
                    "SET backorder_deadline = now() - interval '1 second' "
                    "WHERE id = :id RETURNING backorder_deadline) "
                    "UPDATE backorder_queue SET deadline = (SELECT backorder_deadline FROM o) "
                    "WHERE line_id IN (SELECT id FROM order_line WHERE order_id = :id)"
                ),
                {"id": order["id"]},
            )


async def feed(client: AsyncClient, after: str = "0") -> list[dict[str, Any]]:
    r = await client.get("/v1/events", params={"after": after, "limit": 200}, headers=OPS)
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def mark(client: AsyncClient) -> str:
    data = await feed(client)
    return str(data[-1]["id"]) if data else "0"


def of_type(events: list[dict[str, Any]], *types: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e["type"], e["data"]) for e in events if e["type"] in types]


def line_units(order: dict[str, Any]) -> list[tuple[str, int, int, int]]:
    """Each line's (sku, allocated, backordered, cancelled)."""
    return [(x["sku"], x["allocated"], x["backordered"], x["cancelled"]) for x in order["lines"]]


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def waiting_lines(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM backorder_queue"))).scalar_one())


async def test_a_partial_order_past_its_deadline_loses_its_backordered_units_and_keeps_its_allocated_ones(  # noqa: E501
    client: AsyncClient, engine: AsyncEngine, database_url: str
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "A", on_hand=2)
    await make_product(client, "B")
    order = await place(
        client, [("A", 5), ("B", 1)], headers=shop, customer_id="c-7", backorder_deadline=ahead()
    )
    a, b = order["lines"]
    await pass_deadline(engine, order)
    at = await mark(client)

    assert await expire_due(engine) == 1

    after = await get_order(client, order["id"])
    assert line_units(after) == [("A", 2, 0, 3), ("B", 0, 0, 1)]
    assert (after["status"], after["ready_to_ship"]) == ("allocated", True)
    assert [x["at_risk"] for x in after["lines"]] == [False, False]
    events = of_type(await feed(client, at), EXPIRED, "order.line_cancelled", "order.cancelled")
    assert [t for t, _ in events] == [EXPIRED, "order.line_cancelled", "order.line_cancelled"]
    expired = events[0][1]
    assert instant(expired.pop("backorder_deadline")) == instant(after["backorder_deadline"])
    assert expired == {
        "order_id": order["id"],
        "customer_id": "c-7",
        "channel": "web-shop",
        "ship_policy": "partial",
        "lines": [
            {"line_id": a["id"], "sku": "A", "quantity": 3},
            {"line_id": b["id"], "sku": "B", "quantity": 1},
        ],
    }
    assert [d for _, d in events[1:]] == [
        {
            "order_id": order["id"],
            "line_id": line["id"],
            "sku": line["sku"],
            "quantity": quantity,
            "reason": "deadline",
            "note": None,
            "channel": "web-shop",
        }
        for line, quantity in ((a, 3), (b, 1))
    ]
    assert await waiting_lines(engine) == 0
    assert_invariants(database_url)


async def test_a_partial_order_with_nothing_allocated_becomes_cancelled(
    client: AsyncClient, engine: AsyncEngine, database_url: str
) -> None:
    await make_product(client, "A")
    order = await place(client, [("A", 4)], backorder_deadline=ahead())
    await pass_deadline(engine, order)
    at = await mark(client)

    assert await expire_due(engine) == 1

    assert (await get_order(client, order["id"]))["status"] == "cancelled"
    events = of_type(await feed(client, at), EXPIRED, "order.line_cancelled", "order.cancelled")
    assert [t for t, _ in events] == [EXPIRED, "order.line_cancelled", "order.cancelled"]
    line = {"line_id": order["lines"][0]["id"], "sku": "A", "quantity": 4}
    assert events[2][1] == {
        "order_id": order["id"],
        "channel": "master",
        "reason": None,
        "lines": [line],
    }
    assert_invariants(database_url)


async def test_a_complete_order_past_its_deadline_is_cancelled_whole_and_its_allocated_units_fill_the_next_waiting_orders(  # noqa: E501
    client: AsyncClient, engine: AsyncEngine, database_url: str
) -> None:
    await make_product(client, "A", on_hand=3)
    await make_product(client, "B")
    late = await place(
        client, [("A", 5), ("B", 1)], ship_policy="complete", backorder_deadline=ahead()
    )
    assert line_units(late) == [("A", 3, 2, 0), ("B", 0, 1, 0)]
    # Two orders that wait for A behind it, in queue order.
    first = await place(client, [("A", 2)], customer_id="c-2")
    second = await place(client, [("A", 4)], customer_id="c-3")
    await pass_deadline(engine, late)
    at = await mark(client)

    assert await expire_due(engine) == 1

    after = await get_order(client, late["id"])
    assert line_units(after) == [("A", 0, 0, 5), ("B", 0, 0, 1)]
    assert after["status"] == "cancelled"
    # Its 3 allocated units went to the queue in the same transaction: 2, then the rest.
    assert line_units(await get_order(client, first["id"])) == [("A", 2, 0, 0)]
    assert line_units(await get_order(client, second["id"])) == [("A", 1, 3, 0)]
    events = await feed(client, at)
    cancels = of_type(events, EXPIRED, "order.line_cancelled", "order.cancelled")
    assert [t for t, _ in cancels] == [
        EXPIRED,
        "order.line_cancelled",
        "order.line_cancelled",
        "order.cancelled",
    ]
    a, b = late["lines"]
    assert cancels[0][1]["ship_policy"] == "complete"
    assert cancels[0][1]["lines"] == [
        {"line_id": a["id"], "sku": "A", "quantity": 5},
        {"line_id": b["id"], "sku": "B", "quantity": 1},
    ]
    assert [(d["line_id"], d["quantity"], d["reason"]) for _, d in cancels[1:3]] == [
        (a["id"], 5, "deadline"),
        (b["id"], 1, "deadline"),
    ]
    # The cause reads first: the expiry, its cancellations, then what the freed units did.
    types = [e["type"] for e in events]
    assert types.index("order.cancelled") < types.index("order.line_allocated")
    allocated = of_type(events, "order.line_allocated")
    assert [(d["order_id"], d["quantity"]) for _, d in allocated] == [
        (first["id"], 2),
        (second["id"], 1),
    ]
    assert await waiting_lines(engine) == 1  # the second order's A, still waiting
    assert_invariants(database_url)


async def test_an_order_whose_waiting_units_were_filled_before_its_deadline_is_left_alone(
    client: AsyncClient, engine: AsyncEngine, database_url: str
) -> None:
    await make_product(client, "A")
    order = await place(client, [("A", 3)], backorder_deadline=ahead())
    await restock(client, "A", 3)
    await pass_deadline(engine, order)
    at = await mark(client)

    assert await expire_due(engine) == 0
    assert not await run_transaction(engine, lambda c: expire_order(c, UUID(order["id"])))

    assert line_units(await get_order(client, order["id"])) == [("A", 3, 0, 0)]
    assert await feed(client, at) == []
    assert_invariants(database_url)


async def test_orders_whose_deadline_is_ahead_or_absent_are_left_alone(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    await make_product(client, "A")
    ahead_order = await place(client, [("A", 1)], backorder_deadline=ahead())
    no_deadline = await place(client, [("A", 1)])
    at = await mark(client)

    assert await expire_due(engine) == 0
    for order in (ahead_order, no_deadline):
        assert not await run_transaction(engine, lambda c, o=order: expire_order(c, UUID(o["id"])))
        assert line_units(await get_order(client, order["id"])) == [("A", 0, 1, 0)]
    assert await feed(client, at) == []


async def test_passes_at_once_expire_each_order_once(
    client: AsyncClient, engine: AsyncEngine, settings: Settings, database_url: str
) -> None:
    """Three passes on two engines (as two processes would) race over the same due orders,
    among them complete orders whose freed units reach other due orders; then another pass
    finds nothing left."""
    await make_product(client, "A", on_hand=11)
    orders = [
        await place(
            client,
            [("A", 2)],
            customer_id=f"c-{n}",
            ship_policy="complete" if n % 2 else "partial",
            backorder_deadline=ahead(),
        )
        for n in range(12)
    ]
    await pass_deadline(engine, *orders)
    at = await mark(client)
    other = make_engine(settings)
    try:
        done = await asyncio.gather(expire_due(engine), expire_due(other), expire_due(other))
    finally:
        await other.dispose()

    expired_now = sum(1 for o in orders if o["lines"][0]["backordered"])
    # 5 were allocated whole at placement; the 6th (complete) holds 1 unit and waits for 1.
    assert sum(done) == expired_now == 7
    assert await expire_due(engine) == 0
    events = await feed(client, at)
    expired = [d["order_id"] for _, d in of_type(events, EXPIRED)]
    assert sorted(expired) == sorted(o["id"] for o in orders if o["lines"][0]["backordered"])
    assert len(of_type(events, "order.line_cancelled")) == expired_now
    assert await waiting_lines(engine) == 0
    assert_invariants(database_url)


async def test_the_watch_inside_serve_expires_an_order_on_its_own(
    engine: AsyncEngine, database_url: str
) -> None:
    """Both workers of a real `serve` watch (every 0.2 s here): the order expires once."""
    env = {"BACKORDER_EXPIRY_WORKER": "true", "BACKORDER_EXPIRY_INTERVAL_S": "0.2"}
    with killable_server(database_url, workers=2, env=env) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as http:
            await make_product(http, "A", on_hand=1)
            order = await place(http, [("A", 3)], backorder_deadline=ahead())
            await pass_deadline(engine, order)
            got = await wait_for_expiry(http, order["id"])
            assert line_units(got) == [("A", 1, 0, 2)]
            assert len(of_type(await feed(http), EXPIRED)) == 1
    assert_invariants(database_url)


async def test_backorder_worker_expires_orders_without_the_api(
    client: AsyncClient, engine: AsyncEngine, database_url: str
) -> None:
    """A deployment that runs `serve` with the watch off and `backorder worker` beside it."""
    await make_product(client, "A")
    order = await place(client, [("A", 2)], backorder_deadline=ahead())
    await pass_deadline(engine, order)
    async with backorder_worker(database_url, EXPIRY_INTERVAL_S="0.1"):
        got = await wait_for_expiry(client, order["id"])
    assert got["status"] == "cancelled"
    assert len(of_type(await feed(client), EXPIRED)) == 1


async def wait_for_expiry(http: AsyncClient, order_id: str) -> dict[str, Any]:
    """Poll the order until nothing of it waits; fail past `WATCH_TIMEOUT_S`."""
    deadline = time.monotonic() + WATCH_TIMEOUT_S
    while True:
        got = await get_order(http, order_id)
        if got["backordered"] == 0:
            return got
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.1)


async def test_orders_that_cannot_be_expired_do_not_hold_back_the_ones_behind_them(
    client: AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The six oldest due orders fail (as a bug in one order would); the pass skips them and
    expires the two behind them; the next pass, once they can be, expires them too."""
    await make_product(client, "A")
    orders = [await place(client, [("A", 1)], backorder_deadline=ahead()) for _ in range(8)]
    for order in orders:  # deadlines a second apart, oldest first: the pass's order
        await pass_deadline(engine, order)
    failing = {UUID(o["id"]) for o in orders[:6]}
    real = expiry.expire_order

    async def broken_for_some(conn: Any, order_id: UUID) -> bool:
        if order_id in failing:
            raise RuntimeError("an order that cannot be expired")
        return await real(conn, order_id)

    monkeypatch.setattr(expiry, "expire_order", broken_for_some)
    assert await expire_due(engine) == 2
    assert [(await get_order(client, o["id"]))["status"] for o in orders[6:]] == ["cancelled"] * 2
    monkeypatch.setattr(expiry, "expire_order", real)
    assert await expire_due(engine) == 6
