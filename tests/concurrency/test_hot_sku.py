"""One hot SKU, 64 parallel clients, a real server with two worker processes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.api import OPS
from tests.support.figures import SoakFigures, soak_size
from tests.support.invariants import assert_invariants, check_invariants
from tests.support.queue_order import check_queue_order

CLIENTS = 64
ORDERS = 192
STOCK = 50


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def client(base_url: str) -> httpx.AsyncClient:
    # Idle connections expire before uvicorn's 5 s keep-alive timeout closes them, so that a
    # request never goes out on a socket the server is closing (a ReadError, not a bug).
    limits = httpx.Limits(
        max_connections=CLIENTS, max_keepalive_connections=CLIENTS, keepalive_expiry=2.0
    )
    return httpx.AsyncClient(base_url=base_url, headers=OPS, timeout=30.0, limits=limits)


async def bounded(calls: list[Callable[[], Awaitable[httpx.Response]]]) -> list[httpx.Response]:
    gate = asyncio.Semaphore(CLIENTS)

    async def run(call: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
        async with gate:
            return await call()

    return await asyncio.gather(*(run(c) for c in calls))


async def setup_product(http: httpx.AsyncClient, sku: str, stock: int, **fields: Any) -> None:
    r = await http.put(f"/v1/products/{sku}", json={"name": sku, **fields})
    assert r.status_code == 201, r.text
    if stock:
        r = await http.post(f"/v1/products/{sku}/restocks", json={"quantity": stock})
        assert r.status_code == 201, r.text


def order_call(
    http: httpx.AsyncClient, sku: str, n: int
) -> Callable[[], Awaitable[httpx.Response]]:
    body = {"customer_id": f"c-{n}", "lines": [{"sku": sku, "quantity": 1}]}
    return lambda: http.post("/v1/orders", json=body)


def no_5xx(responses: list[httpx.Response]) -> None:
    bad = [(r.status_code, r.text[:300]) for r in responses if r.status_code >= 500]
    assert not bad, bad


def order_rows(database_url: str) -> set[str]:
    with psycopg.connect(_plain(database_url)) as conn:
        return {str(r[0]) for r in conn.execute("SELECT id FROM sales_order").fetchall()}


@pytest.mark.parametrize(
    ("orders", "stock"),
    [(ORDERS, STOCK), pytest.param(3000, 700, marks=pytest.mark.slow)],
    ids=["ci", "soak"],
)
async def test_hot_sku_without_backorders_never_oversells(
    live_url: str, database_url: str, orders: int, stock: int, soak: bool
) -> None:
    """Exactly `stock` of the orders succeed, whatever the interleaving: a count that a lost
    update or a double allocation would change (the schema's CHECK would only catch the
    overselling itself)."""
    if soak:
        orders, stock = soak_size(orders, least=ORDERS), soak_size(stock, least=STOCK)
    figures = SoakFigures(f"test_hot_sku[orders={orders},stock={stock}]")
    async with client(live_url) as http:
        await setup_product(http, "HOT", stock, backorders_allowed=False)
        responses = await bounded([order_call(http, "HOT", n) for n in range(orders)])
        codes = Counter(r.status_code for r in responses)
        product = (await http.get("/v1/products/HOT")).json()
    ids = {r.json()["id"] for r in responses if r.status_code == 201}
    figures.requests = len(responses)
    figures.status_5xx = sum(r.status_code >= 500 for r in responses)
    figures.lost_writes = len(ids - order_rows(database_url))
    figures.duplicated_writes = len(order_rows(database_url) - ids)
    figures.add_invariants(check_invariants(database_url))
    figures.extra["successes"] = f"{codes[201]}/{stock}"
    figures.print()
    no_5xx(responses)
    assert codes == {201: stock, 409: orders - stock}, codes
    refusals = Counter(r.json()["code"] for r in responses if r.status_code == 409)
    assert refusals == {"insufficient_stock": orders - stock}, refusals
    for r in responses:
        if r.status_code == 201:
            line = r.json()["lines"][0]
            assert (line["allocated"], line["backordered"]) == (1, 0), r.text
    assert (product["on_hand"], product["allocated"], product["available"]) == (stock, stock, 0)
    assert product["backordered"] == 0
    assert product["status"] == "out_of_stock"
    assert ids == order_rows(database_url)
    checked = assert_invariants(database_url)
    assert checked["orders"] == stock


async def test_hot_sku_with_backorders_and_a_concurrent_restock(
    live_url: str, database_url: str
) -> None:
    restock = 30
    async with client(live_url) as http:
        await setup_product(http, "HOT", STOCK)
        calls = [order_call(http, "HOT", n) for n in range(ORDERS)]
        # The restock lands among the orders: it is queued in the middle of the gather.
        calls.insert(
            ORDERS // 2,
            lambda: http.post(
                "/v1/products/HOT/restocks", json={"quantity": restock, "reference": "mid"}
            ),
        )
        responses = await bounded(calls)
        no_5xx(responses)
        assert Counter(r.status_code for r in responses) == {201: ORDERS + 1}
        restock_answer = responses[ORDERS // 2].json()
        assert restock_answer["quantity"] == restock
        filled_by_restock = sum(a["quantity"] for a in restock_answer["allocations"])
        orders = [r.json() for i, r in enumerate(responses) if i != ORDERS // 2]
        at_placement = sum(o["lines"][0]["allocated"] for o in orders)
        # Every unit went somewhere exactly once: at placement or by the restock's fill.
        assert at_placement + filled_by_restock == STOCK + restock
        product = (await http.get("/v1/products/HOT")).json()
        total = STOCK + restock
        assert product["on_hand"] == total
        assert product["allocated"] == total
        assert product["available"] == 0
        assert product["backordered"] == ORDERS - total
        queue: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"sku": "HOT", "limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = (await http.get("/v1/backorders", params=params)).json()
            queue += page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sum(q["quantity"] for q in queue) == ORDERS - total
        assert [q["position"] for q in queue] == list(range(1, len(queue) + 1))
    ids = [o["id"] for o in orders]
    assert len(set(ids)) == len(ids) == ORDERS
    assert set(ids) == order_rows(database_url)
    assert_invariants(database_url)
    # Whether the restock found anyone waiting depends on when it ran: order only, no guard.
    replay = check_queue_order(database_url)
    assert not replay.mismatches, replay.mismatches
