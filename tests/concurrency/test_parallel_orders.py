"""Real parallel HTTP requests at a real `backorder serve --workers 2`, then the invariants."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import truncate_all
from tests.support.api import OPS
from tests.support.checks import count, violations
from tests.support.server import live_server

CLIENTS = 64


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    with live_server(database_url) as base:
        yield base


@pytest.fixture
def fresh(database_url: str) -> Iterator[None]:
    truncate_all(database_url)
    yield
    truncate_all(database_url)


async def _setup(http: httpx.AsyncClient, sku: str, on_hand: int, **settings: Any) -> None:
    r = await http.put(f"/v1/products/{sku}", json={"name": sku, **settings}, headers=OPS)
    assert r.status_code == 201, r.text
    if on_hand:
        r = await http.post(f"/v1/products/{sku}/restocks", json={"quantity": on_hand}, headers=OPS)
        assert r.status_code == 201, r.text


def _client(base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base, timeout=30, limits=httpx.Limits(max_connections=CLIENTS)
    )


async def _fire(
    http: httpx.AsyncClient, calls: list[tuple[str, str, dict[str, Any]]]
) -> list[httpx.Response]:
    sem = asyncio.Semaphore(CLIENTS)

    async def one(method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        async with sem:
            return await http.request(method, path, json=body, headers=OPS)

    return list(await asyncio.gather(*(one(*c) for c in calls)))


async def test_last_units_are_never_sold_twice(server: str, fresh: None, database_url: str) -> None:
    async with _client(server) as http:
        await _setup(http, "HOT", 50, backorders_allowed=False)
        body = {"customer_id": "c", "lines": [{"sku": "HOT", "quantity": 1}]}
        answers = await _fire(http, [("POST", "/v1/orders", body)] * (CLIENTS * 3))
    statuses = Counter(r.status_code for r in answers)
    assert statuses == {201: 50, 409: CLIENTS * 3 - 50}, statuses
    assert all(r.json()["code"] == "insufficient_stock" for r in answers if r.status_code == 409)
    assert count(database_url, "SELECT count(*) FROM sales_order") == 50
    assert count(database_url, "SELECT allocated FROM product WHERE sku = 'HOT'") == 50
    assert violations(database_url) == {}


async def test_hot_sku_with_backorders_and_a_restock_midway(
    server: str, fresh: None, database_url: str
) -> None:
    async with _client(server) as http:
        await _setup(http, "HOT", 40)
        body = {"customer_id": "c", "lines": [{"sku": "HOT", "quantity": 1}]}
        calls = [("POST", "/v1/orders", body)] * (CLIENTS * 2)
        calls.insert(len(calls) // 2, ("POST", "/v1/products/HOT/restocks", {"quantity": 30}))
        answers = await _fire(http, calls)
    assert all(r.status_code == 201 for r in answers), Counter(r.status_code for r in answers)
    ids = [r.json()["id"] for r in answers if "customer_id" in r.json()]
    assert len(ids) == len(set(ids)) == CLIENTS * 2
    assert count(database_url, "SELECT count(*) FROM sales_order") == CLIENTS * 2
    assert count(database_url, "SELECT allocated FROM product WHERE sku = 'HOT'") == 70
    assert count(database_url, "SELECT backordered FROM product WHERE sku = 'HOT'") == (
        CLIENTS * 2 - 70
    )
    assert violations(database_url) == {}


async def test_storm_of_orders_restocks_and_cancels_keeps_every_invariant(
    server: str, fresh: None, database_url: str
) -> None:
    rng = random.Random(7)
    skus = ["S1", "S2", "S3", "S4", "S5"]
    async with _client(server) as http:
        for n, sku in enumerate(skus):
            strategy = "priority" if n % 2 else "fifo"
            await _setup(http, sku, 5, allocation_strategy=strategy)
        calls: list[tuple[str, str, dict[str, Any]]] = []
        for _ in range(150):
            pair = rng.sample(skus, 2)  # random line order: the server locks in sorted order
            calls.append(
                (
                    "POST",
                    "/v1/orders",
                    {
                        "customer_id": "c",
                        "priority": rng.randint(0, 9),
                        "lines": [{"sku": s, "quantity": rng.randint(1, 4)} for s in pair],
                    },
                )
            )
        for _ in range(20):
            calls.append(
                (
                    "POST",
                    f"/v1/products/{rng.choice(skus)}/restocks",
                    {"quantity": rng.randint(1, 10)},
                )
            )
        rng.shuffle(calls)
        answers = await _fire(http, calls)
        assert all(r.status_code == 201 for r in answers), Counter(r.status_code for r in answers)
        orders = [r.json()["id"] for r in answers if "customer_id" in r.json()]
        cancels = [("POST", f"/v1/orders/{oid}/cancel", {}) for oid in rng.sample(orders, 40)]
        more = [("POST", f"/v1/products/{s}/restocks", {"quantity": 7}) for s in skus]
        answers = await _fire(http, cancels + more)
        assert all(r.status_code in (200, 201) for r in answers), [
            r.text for r in answers if r.status_code >= 300
        ]
    assert count(database_url, "SELECT count(*) FROM sales_order") == 150
    assert violations(database_url) == {}
