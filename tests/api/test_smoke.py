"""The core path end to end: a partial backorder filled by a restock."""

from __future__ import annotations

from httpx import AsyncClient

from tests.support.api import OPS, make_product, place


async def test_partial_backorder_is_filled_by_a_restock(client: AsyncClient) -> None:
    await make_product(client, "TRAIL-42", on_hand=80)
    order = await place(client, [("TRAIL-42", 100)])
    line = order["lines"][0]
    assert (line["allocated"], line["backordered"]) == (80, 20)
    assert order["status"] == "partially_backordered"
    assert order["backorder_type"] == "partial"
    assert order["ready_to_ship"] is True

    r = await client.post("/v1/products/TRAIL-42/restocks", json={"quantity": 50}, headers=OPS)
    assert r.status_code == 201, r.text
    restock = r.json()
    assert restock["allocations"] == [
        {"order_id": order["id"], "line_id": line["id"], "quantity": 20}
    ]
    assert restock["available"] == 30

    again = (await client.get(f"/v1/orders/{order['id']}", headers=OPS)).json()
    assert again["status"] == "allocated"
    assert again["lines"][0]["allocated"] == 100
