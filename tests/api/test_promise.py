"""The promise before ordering: what an order of N would get now and when the rest is expected,
by the rules a real order follows, with nothing written."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.workers.purchase_orders import mark_overdue
from tests.support.api import OPS, assert_problem, make_key, make_product, place
from tests.support.dates import days_ahead as ahead
from tests.support.dates import today


async def promise(
    client: AsyncClient, sku: str, quantity: int, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    r = await client.get(
        f"/v1/products/{sku}/promise", params={"quantity": quantity}, headers=headers or OPS
    )
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def create_po(client: AsyncClient, sku: str, quantity: int, day: str) -> dict[str, Any]:
    body = {"sku": sku, "quantity": quantity, "expected_date": day}
    r = await client.post("/v1/purchase-orders", json=body, headers=OPS)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def figures(
    available_now: int,
    backordered: int,
    expected_date: str | None,
    lines_ahead: int,
    units_ahead: int,
    refused: str | None = None,
) -> dict[str, Any]:
    return {
        "available_now": available_now,
        "backordered": backordered,
        "expected_date": expected_date,
        "lines_ahead": lines_ahead,
        "units_ahead": units_ahead,
        "refused": refused,
    }


def without_echo(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in ("sku", "quantity")}


async def test_what_is_available_is_promised_at_once(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=10)
    answer = await promise(client, "A", 4)
    assert answer == {"sku": "A", "quantity": 4, **figures(4, 0, None, 0, 0)}
    assert without_echo(await promise(client, "A", 10)) == figures(10, 0, None, 0, 0)


async def test_the_rest_waits_behind_the_queue_and_is_dated_by_the_purchase_orders(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=5, expected_restock_date=ahead(300))
    await place(client, [("A", 8)])  # 5 now, 3 wait
    await place(client, [("A", 4)])  # 4 wait
    assert without_echo(await promise(client, "A", 6)) == figures(0, 6, ahead(300), 2, 7)
    await create_po(client, "A", 5, ahead(10))
    await create_po(client, "A", 10, ahead(20))
    # running demand 3 + 4 + 6 = 13: the second PO (running supply 15) brings the last unit
    assert without_echo(await promise(client, "A", 6)) == figures(0, 6, ahead(20), 2, 7)
    assert (await promise(client, "A", 8))["expected_date"] == ahead(20)
    assert (await promise(client, "A", 9))["expected_date"] == ahead(300)  # 16 > 15
    # with some available, the order takes it and only the rest waits (the queue is empty)
    r = await client.post("/v1/products/A/restocks", json={"quantity": 9}, headers=OPS)
    assert r.status_code == 201, r.text
    assert without_echo(await promise(client, "A", 5)) == figures(2, 3, ahead(10), 0, 0)


async def test_without_any_date_the_rest_waits_undated(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=1)
    assert without_echo(await promise(client, "A", 3)) == figures(1, 2, None, 0, 0)


async def test_in_a_priority_queue_a_new_order_waits_behind_every_waiting_line(
    client: AsyncClient,
) -> None:
    await make_product(client, "P", allocation_strategy="priority", expected_restock_date=ahead(90))
    await place(client, [("P", 2)], priority=9)
    await place(client, [("P", 3)], priority=0)
    await create_po(client, "P", 5, ahead(7))
    assert without_echo(await promise(client, "P", 1)) == figures(0, 1, ahead(90), 2, 5)


async def test_an_overdue_purchase_order_promises_nothing(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    await make_product(client, "A", expected_restock_date=ahead(60))
    po = await create_po(client, "A", 10, ahead(5))
    assert (await promise(client, "A", 4))["expected_date"] == ahead(5)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE purchase_order SET expected_date = :d WHERE id = :id"),
            {"d": today() - timedelta(days=1), "id": po["id"]},
        )
    await mark_overdue(engine)
    assert (await promise(client, "A", 4))["expected_date"] == ahead(60)


async def test_an_order_that_would_be_refused_is_promised_nothing_with_the_refusal_code(
    client: AsyncClient,
) -> None:
    await make_product(client, "GONE", on_hand=5, discontinued=True)
    await make_product(client, "NOWAIT", on_hand=3, backorders_allowed=False)
    await make_product(client, "LIMITED", on_hand=1, backorder_limit=4)
    await place(client, [("LIMITED", 3)])  # 1 now, 2 of the 4 wait

    gone = figures(0, 0, None, 0, 0, "discontinued")
    assert without_echo(await promise(client, "GONE", 1)) == gone
    refused = figures(0, 0, None, 0, 0, "insufficient_stock")
    assert without_echo(await promise(client, "NOWAIT", 4)) == refused
    assert without_echo(await promise(client, "NOWAIT", 3)) == figures(3, 0, None, 0, 0)
    over = figures(0, 0, None, 0, 0, "backorder_limit_exceeded")
    assert without_echo(await promise(client, "LIMITED", 3)) == over
    assert without_echo(await promise(client, "LIMITED", 2)) == figures(0, 2, None, 1, 2)


async def test_a_promise_writes_nothing(client: AsyncClient, database_url: str) -> None:
    await make_product(client, "A", on_hand=2, expected_restock_date=ahead(30))
    await place(client, [("A", 5)])
    await create_po(client, "A", 4, ahead(9))

    def snapshot() -> list[Any]:
        plain = database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain) as conn:
            return [
                conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                for table in ("event", "sales_order", "order_line", "backorder_queue")
            ] + [
                conn.execute(
                    "SELECT on_hand, allocated, backordered, incoming, updated_at FROM product"
                ).fetchall(),
                conn.execute("SELECT expected_date FROM order_line").fetchall(),
            ]

    before = snapshot()
    for quantity in (1, 2, 3, 50, 1_000_000):
        await promise(client, "A", quantity)
    assert snapshot() == before


async def test_any_key_may_ask_and_a_storefront_gets_the_same_answer(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=3)
    shop = await make_key(client, "web-shop")
    assert await promise(client, "A", 5, headers=shop) == await promise(client, "A", 5)
    r = await client.get("/v1/products/A/promise", params={"quantity": 5})
    assert_problem(r, 401, "unauthorized")


async def test_an_unknown_sku_is_not_found(client: AsyncClient) -> None:
    r = await client.get("/v1/products/NOPE/promise", params={"quantity": 1}, headers=OPS)
    assert_problem(r, 404, "not_found")


@pytest.mark.parametrize(
    "params",
    [{}, {"quantity": "0"}, {"quantity": "-1"}, {"quantity": "1000001"}, {"quantity": "x"},
     {"quantity": "1.5"}],
)  # fmt: skip
async def test_a_quantity_outside_1_to_a_million_is_a_validation_error(
    client: AsyncClient, params: dict[str, str]
) -> None:
    await make_product(client, "A", on_hand=3)
    r = await client.get("/v1/products/A/promise", params=params, headers=OPS)
    body = assert_problem(r, 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["quantity"]


# --- the promise is what the order then gets ------------------------------------------------------


async def what_the_order_got(
    client: AsyncClient, sku: str, quantity: int
) -> tuple[dict[str, Any], str | None]:
    """Place an order of `quantity` at priority 0, and say what it got, as a promise would."""
    body = {"customer_id": "c-new", "lines": [{"sku": sku, "quantity": quantity}]}
    r = await client.post("/v1/orders", json=body, headers=OPS)
    if r.status_code == 409:
        return figures(0, 0, None, 0, 0, r.json()["code"]), None
    assert r.status_code == 201, r.text
    (line,) = r.json()["lines"]
    if not line["backordered"]:
        return figures(line["allocated"], 0, None, 0, 0), line["id"]
    queue = (
        await client.get("/v1/backorders", params={"sku": sku, "limit": 200}, headers=OPS)
    ).json()["data"]
    mine = next(entry for entry in queue if entry["line_id"] == line["id"])
    ahead_of_it = queue[: mine["position"] - 1]
    return (
        figures(
            line["allocated"],
            line["backordered"],
            line["expected_date"],
            len(ahead_of_it),
            sum(entry["quantity"] for entry in ahead_of_it),
        ),
        line["id"],
    )


def kind_of(answer: dict[str, Any]) -> str:
    if answer["refused"]:
        return str(answer["refused"])
    if not answer["backordered"]:
        return "all now"
    return "waits, dated" if answer["expected_date"] else "waits"


@pytest.mark.parametrize("strategy", ["fifo", "priority"])
async def test_the_promise_for_n_is_what_an_order_of_n_then_gets(
    client: AsyncClient, engine: AsyncEngine, strategy: str
) -> None:
    rnd = random.Random(f"promise-{strategy}")
    sku = "R"
    await make_product(client, sku, allocation_strategy=strategy, on_hand=rnd.randint(0, 10))
    kinds = set()
    for _ in range(80):
        roll = rnd.random()
        if roll < 0.2:
            await create_po(client, sku, rnd.randint(1, 30), ahead(rnd.randint(0, 120)))
        elif roll < 0.35:
            # a restock, at times enough for the whole queue and some to spare
            product = (await client.get(f"/v1/products/{sku}", headers=OPS)).json()
            drain = product["backordered"] if rnd.random() < 0.5 else 0
            r = await client.post(
                f"/v1/products/{sku}/restocks",
                json={"quantity": drain + rnd.randint(1, 20)},
                headers=OPS,
            )
            assert r.status_code == 201, r.text
        elif roll < 0.55:
            product = (await client.get(f"/v1/products/{sku}", headers=OPS)).json()
            settings = {
                "expected_restock_date": rnd.choice([None, ahead(rnd.randint(0, 200))]),
                "backorders_allowed": rnd.random() < 0.8,
                "backorder_limit": rnd.choice([None, product["backordered"] + rnd.randint(0, 9)]),
                "discontinued": rnd.random() < 0.15,
            }
            r = await client.put(f"/v1/products/{sku}", json=settings, headers=OPS)
            assert r.status_code == 200, r.text
        elif roll < 0.7:
            # other customers' orders, at any priority, join the queue
            body = {
                "customer_id": "c-other",
                "priority": rnd.randint(0, 9),
                "lines": [{"sku": sku, "quantity": rnd.randint(1, 6)}],
            }
            await client.post("/v1/orders", json=body, headers=OPS)
        quantity = rnd.randint(1, 15)
        promised = without_echo(await promise(client, sku, quantity))
        got, _ = await what_the_order_got(client, sku, quantity)
        assert promised == got, (quantity, promised, got)
        kinds.add(kind_of(promised))
    # every kind of answer was compared
    assert {"all now", "waits, dated", "discontinued", "insufficient_stock"} <= kinds
