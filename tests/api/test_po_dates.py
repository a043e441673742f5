"""Purchase-order dates: only from today to five years on, and a PO whose date passes unreceived
turns overdue, stops making promises and says so once."""

from __future__ import annotations

import asyncio
import random
from datetime import date, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.api.app import create_app
from backorder.config import Settings
from backorder.domain.purchasing import latest_expected_date
from backorder.workers.purchase_orders import mark_overdue
from tests.support.api import OPS, assert_problem, make_product, place
from tests.support.dates import days_ahead as ahead
from tests.support.dates import today
from tests.support.invariants import assert_invariants
from tests.support.live import backorder_worker

OVERDUE = "purchase_order.overdue"
DATE_CHANGED = "backorder.expected_date_changed"


async def create_po(
    client: AsyncClient, sku: str, quantity: int, expected_date: str
) -> dict[str, Any]:
    body = {"sku": sku, "quantity": quantity, "expected_date": expected_date}
    r = await client.post("/v1/purchase-orders", json=body, headers=OPS)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def get_po(client: AsyncClient, po: dict[str, Any]) -> dict[str, Any]:
    r = await client.get(f"/v1/purchase-orders/{po['id']}", headers=OPS)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def dates(client: AsyncClient, *orders: dict[str, Any]) -> list[str | None]:
    out = []
    for order in orders:
        got = (await client.get(f"/v1/orders/{order['id']}", headers=OPS)).json()
        out.append(got["lines"][0]["expected_date"])
    return out


async def events(client: AsyncClient, type_: str) -> list[dict[str, Any]]:
    r = await client.get("/v1/events", params={"type": type_, "limit": 200}, headers=OPS)
    assert r.status_code == 200, r.text
    return [e["data"] for e in r.json()["data"]]


async def let_date_pass(engine: AsyncEngine, po: dict[str, Any], days_ago: int = 1) -> None:
    """What the calendar does to a PO: its date is now in the past (the API refuses to set one)."""
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE purchase_order SET expected_date = :d WHERE id = :id"),
            {"d": today() - timedelta(days=days_ago), "id": po["id"]},
        )


# --- which dates a PO may carry ---------------------------------------------------------------


def test_the_latest_date_is_today_five_calendar_years_on() -> None:
    assert latest_expected_date(date(2026, 12, 6)) == date(2031, 12, 6)
    assert latest_expected_date(date(2028, 2, 29)) == date(2033, 2, 28)
    assert latest_expected_date(date(2024, 2, 29)) == date(2029, 2, 28)


def refused_dates() -> list[str]:
    latest = latest_expected_date(today())
    return [
        ahead(-1),
        "2020-01-01",
        "0001-01-01",
        (latest + timedelta(days=1)).isoformat(),
        "9999-12-31",
    ]


async def test_a_purchase_order_dated_in_the_past_or_too_far_ahead_is_refused(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    for day in refused_dates():
        body = {"sku": "A", "quantity": 5, "expected_date": day}
        r = await client.post("/v1/purchase-orders", json=body, headers=OPS)
        problem = assert_problem(r, 422, "validation_error")
        assert [e["field"] for e in problem["errors"]] == ["expected_date"], day
    assert (await client.get("/v1/purchase-orders", headers=OPS)).json()["data"] == []
    assert (await client.get("/v1/products/A", headers=OPS)).json()["incoming"] == 0


async def test_today_and_today_five_years_on_are_accepted(client: AsyncClient) -> None:
    await make_product(client, "A")
    latest = latest_expected_date(today()).isoformat()
    for day in (today().isoformat(), latest):
        assert (await create_po(client, "A", 5, day))["expected_date"] == day


async def test_a_purchase_order_cannot_be_moved_into_the_past_or_too_far_ahead(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    await place(client, [("A", 3)])
    po = await create_po(client, "A", 5, ahead(10))
    before = await events(client, DATE_CHANGED)
    for day in refused_dates():
        r = await client.patch(
            f"/v1/purchase-orders/{po['id']}", json={"expected_date": day}, headers=OPS
        )
        assert_problem(r, 422, "validation_error")
    assert (await get_po(client, po))["expected_date"] == ahead(10)
    assert await events(client, DATE_CHANGED) == before


# --- overdue ----------------------------------------------------------------------------------


async def test_a_po_past_its_date_turns_overdue_and_stops_driving_promise_dates(
    client: AsyncClient, engine: AsyncEngine, database_url: str
) -> None:
    await make_product(client, "A", expected_restock_date=ahead(300))
    first = await place(client, [("A", 3)])
    second = await place(client, [("A", 4)])
    early = await create_po(client, "A", 3, ahead(10))
    late = await create_po(client, "A", 4, ahead(20))
    assert await dates(client, first, second) == [ahead(10), ahead(20)]
    assert early["overdue"] is False
    seen = len(await events(client, DATE_CHANGED))

    await let_date_pass(engine, early)
    assert await mark_overdue(engine) == 1

    po = await get_po(client, early)
    assert (po["status"], po["overdue"], po["remaining"]) == ("open", True, 3)
    assert (await get_po(client, late))["overdue"] is False
    # the late PO now covers the first 4 units; the rest falls to the product's date
    assert await dates(client, first, second) == [ahead(20), ahead(300)]
    moved = [(e["order_id"], e["from"], e["to"]) for e in await events(client, DATE_CHANGED)]
    moved = moved[seen:]
    assert moved == [(first["id"], ahead(10), ahead(20)), (second["id"], ahead(20), ahead(300))]
    assert await events(client, OVERDUE) == [
        {
            "purchase_order_id": early["id"],
            "sku": "A",
            "expected_date": ahead(-1),
            "quantity": 3,
            "received": 0,
            "remaining": 3,
            "reference": None,
        }
    ]
    # still expected physically: it stays in `incoming`, so replenishment does not buy it twice
    assert (await client.get("/v1/products/A", headers=OPS)).json()["incoming"] == 7
    # a new order is dated without it too
    third = await place(client, [("A", 1)])
    assert third["lines"][0]["expected_date"] == ahead(300)
    assert_invariants(database_url)


async def test_the_overdue_event_is_written_once_however_many_passes_race(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    pos = []
    for sku in ("A", "B", "C"):
        await make_product(client, sku)
        await place(client, [(sku, 2)])
        pos.append(await create_po(client, sku, 1, ahead(5)))
        pos.append(await create_po(client, sku, 1, ahead(6)))
    for po in pos:
        await let_date_pass(engine, po)
    marked = await asyncio.gather(*(mark_overdue(engine) for _ in range(4)))
    assert sum(marked) == len(pos)
    assert await mark_overdue(engine) == 0
    announced = [e["purchase_order_id"] for e in await events(client, OVERDUE)]
    assert sorted(announced) == sorted(po["id"] for po in pos)


async def test_a_po_past_its_date_but_fully_received_or_cancelled_is_not_overdue(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    await make_product(client, "A")
    received = await create_po(client, "A", 2, ahead(3))
    cancelled = await create_po(client, "A", 2, ahead(3))
    r = await client.post(
        f"/v1/purchase-orders/{received['id']}/receive", json={"quantity": 2}, headers=OPS
    )
    assert r.status_code == 201, r.text
    r = await client.post(f"/v1/purchase-orders/{cancelled['id']}/cancel", headers=OPS)
    assert r.status_code == 200, r.text
    for po in (received, cancelled):
        await let_date_pass(engine, po)
    assert await mark_overdue(engine) == 0
    assert [(await get_po(client, po))["overdue"] for po in (received, cancelled)] == [False, False]
    assert await events(client, OVERDUE) == []


async def test_a_po_due_today_is_not_overdue_yet(client: AsyncClient, engine: AsyncEngine) -> None:
    await make_product(client, "A")
    await place(client, [("A", 1)])
    po = await create_po(client, "A", 1, ahead(0))
    assert await mark_overdue(engine) == 0
    assert (await get_po(client, po))["overdue"] is False


async def test_a_new_date_makes_an_overdue_po_drive_dates_again_and_it_can_turn_overdue_again(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    await make_product(client, "A", expected_restock_date=ahead(300))
    order = await place(client, [("A", 2)])
    po = await create_po(client, "A", 5, ahead(10))
    await let_date_pass(engine, po)
    await mark_overdue(engine)
    assert await dates(client, order) == [ahead(300)]

    r = await client.patch(
        f"/v1/purchase-orders/{po['id']}", json={"expected_date": ahead(30)}, headers=OPS
    )
    assert r.status_code == 200, r.text
    assert r.json()["overdue"] is False
    assert await dates(client, order) == [ahead(30)]

    await let_date_pass(engine, po, days_ago=2)
    assert await mark_overdue(engine) == 1
    assert [e["expected_date"] for e in await events(client, OVERDUE)] == [ahead(-1), ahead(-2)]
    assert await dates(client, order) == [ahead(300)]


async def test_a_partly_received_overdue_po_stays_overdue_until_it_closes(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    await make_product(client, "A")
    await place(client, [("A", 5)])
    po = await create_po(client, "A", 4, ahead(10))
    await let_date_pass(engine, po)
    await mark_overdue(engine)
    r = await client.post(
        f"/v1/purchase-orders/{po['id']}/receive", json={"quantity": 1}, headers=OPS
    )
    assert r.status_code == 201, r.text
    assert (r.json()["purchase_order"]["overdue"], r.json()["purchase_order"]["remaining"]) == (
        True,
        3,
    )
    r = await client.post(
        f"/v1/purchase-orders/{po['id']}/receive", json={"quantity": 3}, headers=OPS
    )
    assert (r.json()["purchase_order"]["status"], r.json()["purchase_order"]["overdue"]) == (
        "closed",
        False,
    )
    assert len(await events(client, OVERDUE)) == 1


async def test_the_service_watches_for_overdue_purchase_orders_on_its_own(
    client: AsyncClient, engine: AsyncEngine, settings: Settings
) -> None:
    """The loop runs in the app's lifespan: started with a PO already past its date, the app
    marks it without being asked."""
    await make_product(client, "A")
    await place(client, [("A", 1)])
    po = await create_po(client, "A", 1, ahead(4))
    await let_date_pass(engine, po)
    app = create_app(settings.model_copy(update={"overdue_interval_s": 0.05}))
    async with app.router.lifespan_context(app):
        for _ in range(200):  # bounded: 10 s at most
            if (await get_po(client, po))["overdue"]:
                break
            await asyncio.sleep(0.05)
    assert (await get_po(client, po))["overdue"] is True
    assert len(await events(client, OVERDUE)) == 1


async def test_backorder_worker_watches_for_overdue_purchase_orders_without_the_api(
    client: AsyncClient, engine: AsyncEngine, database_url: str
) -> None:
    """A deployment that runs `serve` with the watch off and `backorder worker` beside it."""
    await make_product(client, "A")
    await place(client, [("A", 1)])
    po = await create_po(client, "A", 1, ahead(4))
    await let_date_pass(engine, po)
    async with backorder_worker(database_url, OVERDUE_INTERVAL_S="0.1"):
        for _ in range(300):  # bounded: 30 s at most
            if (await get_po(client, po))["overdue"]:
                break
            await asyncio.sleep(0.1)
    assert (await get_po(client, po))["overdue"] is True
    assert len(await events(client, OVERDUE)) == 1


# --- the rule, through random changes -----------------------------------------------------------


def model_dates(queue: list[dict[str, Any]], pos: list[dict[str, Any]], fallback: str) -> list[Any]:
    """Running demand against the running supply of the open POs that are not overdue."""
    supply, running = [], 0
    driving = [p for p in pos if not p["overdue"]]
    for po in sorted(driving, key=lambda p: (p["expected_date"], p["created_at"], p["id"])):
        running += po["remaining"]
        supply.append((running, po["expected_date"]))
    out, demand = [], 0
    for line in queue:
        demand += line["quantity"]
        out.append(next((d for cum, d in supply if cum >= demand), fallback))
    return out


@pytest.mark.parametrize("strategy", ["fifo", "priority"])
async def test_promise_dates_leave_overdue_pos_out_through_random_changes(
    client: AsyncClient, engine: AsyncEngine, database_url: str, strategy: str
) -> None:
    rnd = random.Random(20261206)
    fallback = ahead(400)
    await make_product(client, "R", allocation_strategy=strategy, expected_restock_date=fallback)
    pos: list[dict[str, Any]] = []
    for _ in range(40):
        roll = rnd.random()
        if roll < 0.4:
            await place(client, [("R", rnd.randint(1, 6))], priority=rnd.randint(0, 9))
        elif roll < 0.6:
            pos.append(await create_po(client, "R", rnd.randint(1, 8), ahead(rnd.randint(0, 90))))
        elif roll < 0.75 and pos:
            await let_date_pass(engine, rnd.choice(pos), days_ago=rnd.randint(1, 5))
            await mark_overdue(engine)
        elif roll < 0.85 and pos:
            r = await client.patch(
                f"/v1/purchase-orders/{rnd.choice(pos)['id']}",
                json={"expected_date": ahead(rnd.randint(0, 90))},
                headers=OPS,
            )
            assert r.status_code in (200, 409), r.text
        elif pos:
            await client.post(
                f"/v1/purchase-orders/{rnd.choice(pos)['id']}/receive",
                json={"quantity": rnd.randint(1, 3)},
                headers=OPS,
            )
        queue = (
            await client.get("/v1/backorders", params={"sku": "R", "limit": 200}, headers=OPS)
        ).json()["data"]
        params = {"sku": "R", "status": "open", "limit": 200}
        open_pos = (await client.get("/v1/purchase-orders", params=params, headers=OPS)).json()[
            "data"
        ]
        assert [line["expected_date"] for line in queue] == model_dates(queue, open_pos, fallback)
        product = (await client.get("/v1/products/R", headers=OPS)).json()
        assert product["incoming"] == sum(p["remaining"] for p in open_pos)
    assert_invariants(database_url)


async def test_ops_list_the_overdue_purchase_orders_to_chase(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    await make_product(client, "A")
    late, on_time, closed = [await create_po(client, "A", 2, ahead(3)) for _ in range(3)]
    r = await client.post(
        f"/v1/purchase-orders/{closed['id']}/receive", json={"quantity": 2}, headers=OPS
    )
    assert r.status_code == 201, r.text
    for po in (late, closed):
        await let_date_pass(engine, po)
    await mark_overdue(engine)

    async def listed(**params: str) -> list[str]:
        r = await client.get("/v1/purchase-orders", params=params, headers=OPS)
        assert r.status_code == 200, r.text
        return [po["id"] for po in r.json()["data"]]

    assert await listed(overdue="true") == [late["id"]]
    assert await listed(overdue="false") == [on_time["id"], closed["id"]]
    assert await listed(overdue="true", status="closed") == []
    r = await client.get("/v1/purchase-orders", params={"overdue": "maybe"}, headers=OPS)
    assert_problem(r, 422, "validation_error")
