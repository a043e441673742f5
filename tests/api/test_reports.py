"""The backorder report and replenishment, from a known data set with exact figures.

Orders are placed through the API (so the figures come from the real placement, fill and
cancel paths), then their timestamps are moved to known instants so that windows, ages and
times to fill are exact.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import OPS, make_key, make_product, place
from tests.support.dates import years_on

REPORT = "/v1/reports/backorders"
REPLENISHMENT = "/v1/replenishment"


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def move_order(engine: AsyncEngine, order: dict[str, Any], created_at: datetime) -> None:
    """Place the order (and its lines, which copy the time for the queue) at `created_at`."""
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE sales_order SET created_at = :t WHERE id = :id"),
            {"t": created_at, "id": order["id"]},
        )
        await conn.execute(
            text("UPDATE order_line SET created_at = :t WHERE order_id = :id"),
            {"t": created_at, "id": order["id"]},
        )


async def move_fill(engine: AsyncEngine, order: dict[str, Any], filled_at: datetime) -> None:
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                "UPDATE order_line SET filled_at = :t "
                "WHERE order_id = :id AND filled_at IS NOT NULL"
            ),
            {"t": filled_at, "id": order["id"]},
        )
        assert result.rowcount == 1


async def report(client: AsyncClient, **params: str) -> dict[str, Any]:
    r = await client.get(REPORT, params=params, headers=OPS)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture
async def orders(client: AsyncClient, engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    """Six orders on 1-6 January 2026 at midnight UTC:

    | order | lines        | at placement                       | afterwards                     |
    |-------|--------------|------------------------------------|--------------------------------|
    | o1    | Ax4          | 4 allocated                        |                                |
    | o2    | Ax10         | 6 allocated, 4 waiting (partial)   | still waiting: 4 A             |
    | o3    | Bx3          | 3 waiting (full)                   | filled by a restock, 6 h later |
    | o4    | Ax2, Cx5     | A 2 waiting, C 5 allocated         | cancelled: frees 5 C           |
    | o5    | Bx2          | 2 waiting                          | 1 filled, still waiting: 1 B   |
    | o6    | Cx1          | 1 waiting                          | filled by o4's cancel, 36 h    |

    27 units ordered, 15 allocated at placement; 5 orders had a backordered unit.
    """
    await make_product(client, "A", on_hand=10)
    await make_product(client, "B")
    await make_product(client, "C", on_hand=5)
    o1 = await place(client, [("A", 4)])
    o2 = await place(client, [("A", 10)])
    o3 = await place(client, [("B", 3)])
    o4 = await place(client, [("A", 2), ("C", 5)])
    o5 = await place(client, [("B", 2)])
    o6 = await place(client, [("C", 1)])
    assert [line["backordered"] for line in o4["lines"]] == [2, 0]
    assert o6["lines"][0]["backordered"] == 1

    r = await client.post("/v1/products/B/restocks", json={"quantity": 4}, headers=OPS)
    assert r.status_code == 201, r.text
    assert [a["quantity"] for a in r.json()["allocations"]] == [3, 1]
    r = await client.post(f"/v1/orders/{o4['id']}/cancel", headers=OPS)
    assert r.status_code == 200, r.text

    placed = {"o1": o1, "o2": o2, "o3": o3, "o4": o4, "o5": o5, "o6": o6}
    for day, order in enumerate(placed.values(), start=1):
        await move_order(engine, order, at(day))
    await move_fill(engine, o3, at(3, 6))
    await move_fill(engine, o6, at(7, 12))
    return placed


async def test_the_report_over_all_time(
    client: AsyncClient, orders: dict[str, dict[str, Any]]
) -> None:
    body = await report(client)
    as_of = parse(body.pop("as_of"))
    avg_age = body.pop("avg_open_backorder_age_hours")
    assert body == {
        "since": None,
        "until": None,
        "orders": 6,
        "backordered_orders": 5,
        "backorder_rate": 5 / 6,
        "open_backorder_lines": 2,
        "open_backorder_units": 5,
        "oldest_open_backorder_at": "2026-01-02T00:00:00Z",
        "avg_time_to_fill_hours": 21.0,  # (6 h + 36 h) / 2
        "fill_rate": 15 / 27,
        "top_skus": [
            {"sku": "A", "open_units": 4, "lines": 1},
            {"sku": "B", "open_units": 1, "lines": 1},
        ],
    }
    expected_age = ((as_of - at(2)) + (as_of - at(5))) / 2 / timedelta(hours=1)
    assert avg_age == pytest.approx(expected_age, abs=1e-6)


async def test_the_report_over_a_window_counts_the_orders_placed_in_it(
    client: AsyncClient, orders: dict[str, dict[str, Any]]
) -> None:
    body = await report(client, since=iso(at(3)), until=iso(at(6)))  # o3, o4, o5
    as_of = parse(body.pop("as_of"))
    avg_age = body.pop("avg_open_backorder_age_hours")
    assert body == {
        "since": "2026-01-03T00:00:00Z",
        "until": "2026-01-06T00:00:00Z",
        "orders": 3,
        "backordered_orders": 3,
        "backorder_rate": 1.0,
        "open_backorder_lines": 1,
        "open_backorder_units": 1,
        "oldest_open_backorder_at": "2026-01-05T00:00:00Z",
        "avg_time_to_fill_hours": 6.0,
        "fill_rate": 5 / 12,
        "top_skus": [{"sku": "B", "open_units": 1, "lines": 1}],
    }
    assert avg_age == pytest.approx((as_of - at(5)) / timedelta(hours=1), abs=1e-6)


async def test_since_is_inclusive_and_until_exclusive(
    client: AsyncClient, orders: dict[str, dict[str, Any]]
) -> None:
    assert (await report(client, since=iso(at(2))))["orders"] == 5
    assert (await report(client, until=iso(at(2))))["orders"] == 1
    assert (await report(client, since=iso(at(2)), until=iso(at(2))))["orders"] == 0


async def test_an_offset_is_honoured(
    client: AsyncClient, orders: dict[str, dict[str, Any]]
) -> None:
    body = await report(client, since="2026-01-05T02:00:00+02:00")  # = 5 January, 00:00Z
    assert body["orders"] == 2
    assert parse(body["since"]) == at(5)


async def test_a_window_of_orders_that_never_waited(
    client: AsyncClient, orders: dict[str, dict[str, Any]]
) -> None:
    body = await report(client, until=iso(at(2)))  # o1 only
    assert body["orders"] == 1
    assert body["backordered_orders"] == 0
    assert body["backorder_rate"] == 0.0
    assert body["fill_rate"] == 1.0
    assert body["open_backorder_lines"] == body["open_backorder_units"] == 0
    assert body["oldest_open_backorder_at"] is None
    assert body["avg_open_backorder_age_hours"] is None
    assert body["avg_time_to_fill_hours"] is None
    assert body["top_skus"] == []


async def test_a_later_window_sees_only_its_orders_fills(
    client: AsyncClient, orders: dict[str, dict[str, Any]]
) -> None:
    body = await report(client, since=iso(at(5)))  # o5 (still waiting for 1), o6 (filled)
    assert (body["orders"], body["backordered_orders"]) == (2, 2)
    assert body["fill_rate"] == 0.0
    assert body["avg_time_to_fill_hours"] == 36.0
    assert body["top_skus"] == [{"sku": "B", "open_units": 1, "lines": 1}]


async def test_an_empty_window_has_zero_rates(client: AsyncClient) -> None:
    body = await report(client, since="2030-01-01T00:00:00Z")
    assert body["orders"] == body["backordered_orders"] == 0
    assert body["backorder_rate"] == body["fill_rate"] == 0.0
    assert body["top_skus"] == []


async def test_top_skus_are_ten_by_open_units_then_by_sku(client: AsyncClient) -> None:
    waiting = {f"S-{n:02}": units for n, units in enumerate([3, 5, 5, 1, 7, 2, 5, 4, 6, 2, 1, 8])}
    for sku, units in waiting.items():
        await make_product(client, sku)
        await place(client, [(sku, units)])
    await place(client, [("S-00", 2)])  # a second line on S-00: 5 units, ties with S-01
    waiting["S-00"] += 2
    body = await report(client)
    expected = sorted(waiting.items(), key=lambda item: (-item[1], item[0]))[:10]
    assert [(t["sku"], t["open_units"]) for t in body["top_skus"]] == expected
    assert {t["sku"]: t["lines"] for t in body["top_skus"]}["S-00"] == 2


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"since": "2026-01-01"},
        {"since": "2026-01-01T00:00:00"},  # no offset
        {"since": "1767225600"},  # Unix seconds
        {"until": "2026-13-01T00:00:00Z"},
        {"until": "2026-01-01T25:00:00Z"},
        {"until": "2026-01-01T00:00:00+24:00"},
        {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    ],
    ids=["word", "date", "naive", "unix", "month-13", "hour-25", "offset-24h", "since-after-until"],
)
async def test_a_bad_window_is_a_validation_error(
    client: AsyncClient, params: dict[str, str]
) -> None:
    r = await client.get(REPORT, params=params, headers=OPS)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "validation_error"
    # Each error names a parameter that was sent, and there is at least one.
    named = {e["field"] for e in body["errors"]}
    assert named and named <= set(params), body


async def test_reports_are_for_ops_only(client: AsyncClient) -> None:
    shop = await make_key(client, "shop")
    for path in (REPORT, REPLENISHMENT):
        assert (await client.get(path, headers=shop)).status_code == 403
        assert (await client.get(path)).status_code == 401


# --- replenishment ----------------------------------------------------------------------------


async def replenishment(client: AsyncClient, **params: str) -> dict[str, Any]:
    r = await client.get(REPLENISHMENT, params=params, headers=OPS)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def by_sku(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["sku"]: row for row in rows}


@pytest.fixture
async def catalog(client: AsyncClient, engine: AsyncEngine) -> None:
    """Seven products, with the demand of the trailing 30 days noted for each."""
    # P1: 32 ordered, 30 waiting. ceil(32/30 x 10) + 5 = 16; 30 + 16 = 46 to order.
    await make_product(client, "P1", on_hand=2, lead_time_days=10, safety_stock=5)
    await place(client, [("P1", 32)])
    # P2: its own reorder point (10) wins over lead time; 45 available: nothing to order.
    await make_product(client, "P2", on_hand=50, reorder_point=10, lead_time_days=100)
    await place(client, [("P2", 5)])
    # P3: no settings; 3 waiting, 2 incoming on a purchase order: 1 to order.
    await make_product(client, "P3")
    await place(client, [("P3", 3)])
    r = await client.post(
        "/v1/purchase-orders",
        json={"sku": "P3", "quantity": 2, "expected_date": years_on("2030-01-01")},
        headers=OPS,
    )
    assert r.status_code == 201, r.text
    # P4: 20 ordered over 30 days with a 15-day lead time: exactly 10, not 11 from rounding.
    await make_product(client, "P4", on_hand=20, lead_time_days=15)
    await place(client, [("P4", 20)])
    # P5: 60 ordered 40 days ago (outside 30 days, inside 60) and 3 today.
    await make_product(client, "P5", on_hand=100, lead_time_days=30, safety_stock=10)
    old = await place(client, [("P5", 60)])
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    await move_order(engine, old, today - timedelta(days=40))
    await place(client, [("P5", 3)])
    # P6: 4 ordered then cancelled: still demand (ceil(4/30 x 30) = 4 to order).
    await make_product(client, "P6", lead_time_days=30)
    cancelled = await place(client, [("P6", 4)])
    r = await client.post(f"/v1/orders/{cancelled['id']}/cancel", headers=OPS)
    assert r.status_code == 200, r.text
    # P7: 3 waiting, then discontinued: never to be bought again, so not listed at all.
    await make_product(client, "P7")
    await place(client, [("P7", 3)])
    r = await client.put("/v1/products/P7", json={"discontinued": True}, headers=OPS)
    assert r.status_code == 200, r.text


async def test_replenishment_rows_follow_the_rule(client: AsyncClient, catalog: None) -> None:
    body = await replenishment(client)
    assert body["next_cursor"] is None
    rows = by_sku(body["data"])
    assert list(rows) == ["P1", "P2", "P3", "P4", "P5", "P6"]
    assert rows["P1"] == {
        "sku": "P1",
        "available": 0,
        "backordered": 30,
        "incoming": 0,
        "daily_demand": 32 / 30,
        "lead_time_days": 10,
        "safety_stock": 5,
        "reorder_point": 16,
        "reorder_point_source": "computed",
        "suggested_order_quantity": 46,
        "discontinued": False,
    }
    p2 = rows["P2"]
    assert (p2["available"], p2["daily_demand"], p2["reorder_point"]) == (45, 5 / 30, 10)
    assert (p2["reorder_point_source"], p2["suggested_order_quantity"]) == ("product", 0)
    p3 = rows["P3"]
    assert (p3["backordered"], p3["incoming"], p3["lead_time_days"], p3["safety_stock"]) == (
        3, 2, 0, 0,
    )  # fmt: skip
    assert (p3["reorder_point"], p3["suggested_order_quantity"]) == (0, 1)
    assert (rows["P4"]["reorder_point"], rows["P4"]["suggested_order_quantity"]) == (10, 10)
    p5 = rows["P5"]
    assert (p5["available"], p5["daily_demand"], p5["reorder_point"]) == (37, 0.1, 13)
    assert p5["suggested_order_quantity"] == 0
    p6 = rows["P6"]
    assert (p6["backordered"], p6["daily_demand"], p6["reorder_point"]) == (0, 4 / 30, 4)
    assert p6["suggested_order_quantity"] == 4
    assert not any(row["discontinued"] for row in rows.values())


async def test_replenishment_leaves_discontinued_products_out(
    client: AsyncClient, catalog: None
) -> None:
    """P7 has 3 units waiting, which would suggest buying 3, but it is discontinued."""
    for params in ({}, {"needs_order": "true"}, {"limit": "1"}):
        skus, cursor = [], None
        while True:
            page = await replenishment(client, **params, **({"cursor": cursor} if cursor else {}))
            skus += [row["sku"] for row in page["data"]]
            if not (cursor := page["next_cursor"]):
                break
        assert "P7" not in skus, params


async def test_the_demand_window_is_the_trailing_days(client: AsyncClient, catalog: None) -> None:
    p5 = by_sku((await replenishment(client, days="60"))["data"])["P5"]
    assert p5["daily_demand"] == 63 / 60
    assert p5["reorder_point"] == 32 + 10  # ceil(63/60 x 30) + 10
    assert p5["suggested_order_quantity"] == 42 - 37
    p1 = by_sku((await replenishment(client, days="1"))["data"])["P1"]
    assert p1["daily_demand"] == 32.0  # today counts
    assert p1["reorder_point"] == 320 + 5


async def test_needs_order_keeps_rows_with_a_suggestion_and_pages_by_sku(
    client: AsyncClient, catalog: None
) -> None:
    body = await replenishment(client, needs_order="true")
    assert [row["sku"] for row in body["data"]] == ["P1", "P3", "P4", "P6"]
    first = await replenishment(client, needs_order="true", limit="2")
    assert [row["sku"] for row in first["data"]] == ["P1", "P3"]
    assert first["next_cursor"]
    second = await replenishment(client, needs_order="true", limit="2", cursor=first["next_cursor"])
    assert [row["sku"] for row in second["data"]] == ["P4", "P6"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [{"days": "0"}, {"days": "366"}, {"days": "x"}, {"limit": "0"}, {"cursor": "nope"}],
)
async def test_bad_replenishment_parameters_are_validation_errors(
    client: AsyncClient, params: dict[str, str]
) -> None:
    r = await client.get(REPLENISHMENT, params=params, headers=OPS)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"
