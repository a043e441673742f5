"""`external_ref` is unique per channel: the integrator's second line of defence after the
idempotency key. The second order is refused with the first one's id, reserving nothing, and
two orders racing with one reference cannot both be written."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
from httpx import AsyncClient

from tests.support.api import OPS, assert_problem, make_key, make_product, place


def order_body(sku: str, quantity: int, ref: str) -> dict[str, Any]:
    lines = [{"sku": sku, "quantity": quantity}]
    return {"customer_id": "c-1", "external_ref": ref, "lines": lines}


async def event_count(client: AsyncClient) -> int:
    r = await client.get("/v1/events", params={"limit": 200}, headers=OPS)
    return len(r.json()["data"])


async def test_a_second_order_with_the_same_reference_is_409_naming_the_first(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "A", on_hand=5)
    first = await place(client, [("A", 2)], headers=shop, external_ref="web-1")
    before = (await client.get("/v1/products/A", headers=OPS)).json()
    events = await event_count(client)
    r = await client.post("/v1/orders", json=order_body("A", 3, "web-1"), headers=shop)
    body = assert_problem(r, 409, "conflict")
    assert body["order_id"] == first["id"]
    assert "web-1" in body["detail"]
    # Nothing reserved, nothing announced, no second order.
    assert (await client.get("/v1/products/A", headers=OPS)).json() == before
    assert await event_count(client) == events
    listed = await client.get("/v1/orders", params={"external_ref": "web-1"}, headers=OPS)
    assert [o["id"] for o in listed.json()["data"]] == [first["id"]]


async def test_the_same_reference_in_another_channel_is_another_order(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    app = await make_key(client, "app-shop")
    await make_product(client, "A", on_hand=5)
    one = await place(client, [("A", 1)], headers=shop, external_ref="r-1")
    two = await place(client, [("A", 1)], headers=app, external_ref="r-1")
    three = await place(client, [("A", 1)], external_ref="r-1")
    assert len({one["id"], two["id"], three["id"]}) == 3
    # Orders without a reference never collide.
    await place(client, [("A", 1)], headers=shop)
    await place(client, [("A", 1)], headers=shop)


async def test_an_idempotent_replay_of_the_first_order_is_still_a_replay(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=5)
    headers = {**OPS, "Idempotency-Key": "k-1"}
    first = await client.post("/v1/orders", json=order_body("A", 2, "web-1"), headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/orders", json=order_body("A", 2, "web-1"), headers=headers)
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    other = await client.post(
        "/v1/orders", json=order_body("A", 2, "web-1"), headers={**OPS, "Idempotency-Key": "k-2"}
    )
    assert assert_problem(other, 409, "conflict")["order_id"] == first.json()["id"]


async def test_a_reused_reference_is_named_even_when_stock_would_refuse_the_order(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=1, backorders_allowed=False)
    first = await place(client, [("A", 1)], external_ref="web-1")
    r = await client.post("/v1/orders", json=order_body("A", 1, "web-1"), headers=OPS)
    assert assert_problem(r, 409, "conflict")["order_id"] == first["id"]
    r = await client.post("/v1/orders", json=order_body("A", 1, "web-2"), headers=OPS)
    assert_problem(r, 409, "insufficient_stock")


async def test_racing_orders_with_one_reference_write_exactly_one(client: AsyncClient) -> None:
    skus = [f"S{i}" for i in range(8)]
    for sku in skus:  # one SKU each: no product lock serialises them, only the reference
        await make_product(client, sku, on_hand=5)
    answers = await asyncio.gather(
        *(client.post("/v1/orders", json=order_body(s, 1, "race-1"), headers=OPS) for s in skus)
    )
    won = [r for r in answers if r.status_code == 201]
    lost = [r for r in answers if r.status_code != 201]
    assert len(won) == 1, [r.text for r in answers]
    for r in lost:
        assert assert_problem(r, 409, "conflict")["order_id"] == won[0].json()["id"]
    products = (await client.get("/v1/products", params={"limit": 200}, headers=OPS)).json()
    assert sum(p["allocated"] for p in products["data"]) == 1


async def _hold_reference(database_url: str, ref: str) -> tuple[psycopg.AsyncConnection, str]:
    """An uncommitted order of the master channel with `ref`, in a transaction left open."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    conn = await psycopg.AsyncConnection.connect(url)
    order_id = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO sales_order (id, channel, customer_id, external_ref, status, created_at) "
        "VALUES (%s, 'master', 'c-0', %s, 'allocated', now())",
        (order_id, ref),
    )
    return conn, order_id


async def test_an_order_waits_for_a_twin_in_flight_and_loses_when_it_commits(
    client: AsyncClient, database_url: str
) -> None:
    await make_product(client, "A", on_hand=5)
    held, twin_id = await _hold_reference(database_url, "race-2")
    try:
        pending = asyncio.ensure_future(
            client.post("/v1/orders", json=order_body("A", 1, "race-2"), headers=OPS)
        )
        await asyncio.sleep(0.3)
        assert not pending.done()  # blocked on the twin's index entry
        await held.commit()
        r = await asyncio.wait_for(pending, 10)
    finally:
        await held.close()
    assert assert_problem(r, 409, "conflict")["order_id"] == twin_id
    assert (await client.get("/v1/products/A", headers=OPS)).json()["allocated"] == 0


async def test_an_order_waits_for_a_twin_in_flight_and_wins_when_it_rolls_back(
    client: AsyncClient, database_url: str
) -> None:
    await make_product(client, "A", on_hand=5)
    held, _ = await _hold_reference(database_url, "race-3")
    try:
        pending = asyncio.ensure_future(
            client.post("/v1/orders", json=order_body("A", 1, "race-3"), headers=OPS)
        )
        await asyncio.sleep(0.3)
        await held.rollback()
        r = await asyncio.wait_for(pending, 10)
    finally:
        await held.close()
    assert r.status_code == 201, r.text
    assert r.json()["external_ref"] == "race-3"


async def test_an_order_whose_reference_frees_up_mid_placement_is_placed_not_refused(
    client: AsyncClient, database_url: str
) -> None:
    """The write finds the reference taken, but the order holding it is deleted before the
    lookup that would name it (an operator's DELETE, here a trigger at the end of the write):
    the reference is free again, so the order is placed, not refused with a 409 naming none."""
    await make_product(client, "A", on_hand=5)
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
        twin_id = uuid.uuid4()
        await db.execute(
            "INSERT INTO sales_order (id, channel, customer_id, external_ref, status, "
            "created_at) VALUES (%s, 'master', 'c-0', 'vanishing', 'allocated', now())",
            (twin_id,),
        )
        await db.execute(
            "CREATE FUNCTION test_vanish_twin() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"DELETE FROM sales_order WHERE id = '{twin_id}'; RETURN NULL; END $$"
        )
        await db.execute(
            "CREATE TRIGGER test_vanish_twin AFTER INSERT ON sales_order "
            "FOR EACH STATEMENT EXECUTE FUNCTION test_vanish_twin()"
        )
        try:
            r = await client.post("/v1/orders", json=order_body("A", 1, "vanishing"), headers=OPS)
        finally:
            await db.execute("DROP TRIGGER test_vanish_twin ON sales_order")
            await db.execute("DROP FUNCTION test_vanish_twin()")
    assert r.status_code == 201, r.text
    assert r.json()["external_ref"] == "vanishing"
    assert (await client.get("/v1/products/A", headers=OPS)).json()["allocated"] == 1
