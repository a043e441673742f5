"""The filters a user reaches for on GET /v1/orders and GET /v1/backorders do filter, page by
page with a stable cursor, and a storefront cannot use `channel` to look into another one."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.support.api import OPS, assert_problem, make_key, make_product, place


async def ids(client: AsyncClient, path: str = "/v1/orders", headers: Any = OPS, **q: Any) -> Any:
    r = await client.get(path, params={"limit": 200, **q}, headers=headers)
    assert r.status_code == 200, r.text
    return [o["id"] for o in r.json()["data"]]


async def test_orders_filter_by_external_ref(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=10)
    wanted = await place(client, [("A", 1)], external_ref="web-1")
    await place(client, [("A", 1)], external_ref="web-2")
    await place(client, [("A", 1)])
    assert await ids(client, external_ref="web-1") == [wanted["id"]]
    assert await ids(client, external_ref="nope") == []


async def test_orders_filter_by_readiness(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=2)
    ready = await place(client, [("A", 2)])
    waiting = await place(client, [("A", 2)])
    held = await place(client, [("A", 1)], ship_policy="complete")
    assert await ids(client, ready_to_ship="true") == [ready["id"]]
    assert await ids(client, ready_to_ship="false") == [held["id"], waiting["id"]]


async def test_orders_filter_by_a_creation_window_inclusive_since_exclusive_until(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=10)
    first = await place(client, [("A", 1)])
    second = await place(client, [("A", 1)])
    third = await place(client, [("A", 1)])
    window = {"created_since": second["created_at"], "created_until": third["created_at"]}
    assert await ids(client, **window) == [second["id"]]
    assert await ids(client, created_since=second["created_at"]) == [third["id"], second["id"]]
    assert await ids(client, created_until=second["created_at"]) == [first["id"]]
    with_offset = second["created_at"].replace("Z", "+00:00")
    assert second["id"] in await ids(client, created_since=with_offset)


async def test_a_creation_bound_that_is_not_rfc_3339_is_refused_by_name(
    client: AsyncClient,
) -> None:
    for bad in ("2026-12-01", "1700000000", "2026-12-01T00:00:00", "yesterday"):
        r = await client.get("/v1/orders", params={"created_since": bad}, headers=OPS)
        body = assert_problem(r, 422, "validation_error")
        assert {e["field"] for e in body["errors"]} == {"created_since"}, bad


async def test_ops_filter_by_channel_and_a_storefront_cannot_name_another(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    other = await make_key(client, "app-shop")
    await make_product(client, "A", on_hand=10)
    mine = await place(client, [("A", 1)], headers=shop)
    theirs = await place(client, [("A", 1)], headers=other)
    by_master = await place(client, [("A", 1)])
    assert await ids(client, channel="web-shop") == [mine["id"]]
    assert await ids(client, channel="app-shop") == [theirs["id"]]
    assert await ids(client, channel="master") == [by_master["id"]]
    assert await ids(client, headers=shop, channel="web-shop") == [mine["id"]]
    r = await client.get("/v1/orders", params={"channel": "app-shop"}, headers=shop)
    assert_problem(r, 403, "forbidden")
    r = await client.get("/v1/orders", params={"channel": "no-such"}, headers=shop)
    assert_problem(r, 403, "forbidden")
    # The same `channel` parameter as the event feed's: no blank, control or over-long name.
    for bad in ("", "x\x00y", "x\x01y", "x" * 256):
        r = await client.get("/v1/orders", params={"channel": bad}, headers=OPS)
        assert_problem(r, 422, "validation_error")


async def test_the_cursor_walks_a_filtered_list_without_gaps_or_repeats(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=6)
    placed = [await place(client, [("A", 1)], ship_policy="complete") for _ in range(6)]
    placed += [await place(client, [("A", 1)]) for _ in range(5)]  # not ready: no stock
    ready = [o["id"] for o in reversed(placed[:6])]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "ready_to_ship": "true"}
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/v1/orders", params=params, headers=OPS)
        assert r.status_code == 200, r.text
        seen += [o["id"] for o in r.json()["data"]]
        if len(seen) == 2:
            # An order arriving mid-walk is newer than the cursor: it never shifts the pages.
            await place(client, [("A", 1)])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ready


async def test_backorders_filter_by_customer_keeping_each_line_s_queue_position(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    await place(client, [("A", 1)], customer_id="c-1")
    mine = await place(client, [("A", 2)], customer_id="c-2")
    await place(client, [("A", 3)], customer_id="c-1")
    r = await client.get("/v1/backorders", params={"customer_id": "c-2"}, headers=OPS)
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    assert [(x["order_id"], x["position"], x["quantity"]) for x in rows] == [(mine["id"], 2, 2)]
    r = await client.get("/v1/backorders", params={"customer_id": "c-1", "limit": 1}, headers=OPS)
    first = r.json()
    assert [x["position"] for x in first["data"]] == [1]
    r = await client.get(
        "/v1/backorders",
        params={"customer_id": "c-1", "limit": 1, "cursor": first["next_cursor"]},
        headers=OPS,
    )
    assert [x["position"] for x in r.json()["data"]] == [3]
    assert r.json()["next_cursor"] is None
