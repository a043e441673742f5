"""Reports and replenishment computed from a known data set."""

from __future__ import annotations

from httpx import AsyncClient

from tests.support.api import OPS, make_key, make_product, place


async def test_backorder_report_counts_orders_units_and_open_lines(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=10)
    await make_product(client, "B")
    await place(client, [("A", 4)])  # all allocated
    await place(client, [("A", 10)])  # 6 allocated, 4 backordered
    await place(client, [("B", 3)])  # 3 backordered
    r = await client.get("/v1/reports/backorders", headers=OPS)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["orders"] == 3
    assert report["backordered_orders"] == 2
    assert abs(report["backorder_rate"] - 2 / 3) < 1e-4
    assert report["open_backorder_lines"] == 2
    assert report["open_backorder_units"] == 7
    assert abs(report["fill_rate"] - 10 / 17) < 1e-4
    assert report["top_skus"] == [
        {"sku": "A", "open_units": 4, "lines": 1},
        {"sku": "B", "open_units": 3, "lines": 1},
    ]
    assert report["avg_time_to_fill_hours"] is None
    await client.post("/v1/products/B/restocks", json={"quantity": 3}, headers=OPS)
    report = (await client.get("/v1/reports/backorders", headers=OPS)).json()
    assert report["open_backorder_units"] == 4
    assert report["avg_time_to_fill_hours"] is not None
    empty = await client.get(
        "/v1/reports/backorders", params={"until": "2000-01-01T00:00:00Z"}, headers=OPS
    )
    assert empty.json()["orders"] == 0 and empty.json()["backorder_rate"] == 0.0
    shop = await make_key(client, "shop")
    assert (await client.get("/v1/reports/backorders", headers=shop)).status_code == 403


async def test_replenishment_suggests_covering_backorders_and_the_reorder_point(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=2, lead_time_days=10, safety_stock=5)
    await make_product(client, "B", on_hand=50, reorder_point=10)
    await place(client, [("A", 32)])  # 2 allocated, 30 backordered; demand 32/30 a day
    rows = (await client.get("/v1/replenishment", headers=OPS)).json()["data"]
    by_sku = {row["sku"]: row for row in rows}
    a = by_sku["A"]
    assert abs(a["daily_demand"] - 32 / 30) < 1e-3
    assert a["reorder_point"] == 11 + 5  # ceil(1.0667 * 10) + 5
    assert a["suggested_order_quantity"] == 30 + 16 - 0 - 0
    assert by_sku["B"]["suggested_order_quantity"] == 0
    needs = (
        await client.get("/v1/replenishment", params={"needs_order": "true"}, headers=OPS)
    ).json()["data"]
    assert [row["sku"] for row in needs] == ["A"]
