"""`Accept: text/csv` on the backorder queue, replenishment, orders and pick lists: every page
as one CSV, equal row for row to walking the JSON pages."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from httpx import AsyncClient

from tests.support.api import OPS, assert_problem, make_product, place

CSV_OPS = {**OPS, "Accept": "text/csv"}


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


async def every_json_item(client: AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 3, **({"cursor": cursor} if cursor else {})}
        r = await client.get(path, params=query, headers=OPS)
        assert r.status_code == 200, r.text
        items += r.json()["data"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


async def csv_rows(client: AsyncClient, path: str, **params: Any) -> list[list[str]]:
    r = await client.get(path, params=params, headers=CSV_OPS)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(r.text)))


async def some_backorders(client: AsyncClient) -> None:
    await make_product(client, "CSV-A", on_hand=5)
    await make_product(client, "CSV-B", allocation_strategy="priority", lead_time_days=7)
    for i in range(8):
        await place(
            client,
            [("CSV-A", 2 + i), ("CSV-B", 1 + i % 3)],
            customer_id=f'c-{i}, "quoted"',
            priority=i % 4,
            external_ref=f"ref-{i}" if i % 2 else None,
        )


async def test_the_queue_as_csv_equals_its_json_pages_row_for_row(client: AsyncClient) -> None:
    await some_backorders(client)
    items = await every_json_item(client, "/v1/backorders")
    rows = await csv_rows(client, "/v1/backorders")
    header = rows[0]
    assert header == ["order_id", "line_id", "sku", "customer_id", "quantity", "priority",
                      "created_at", "position", "expected_date"]  # fmt: skip
    assert len(items) == 14  # CSV-A: 5 units serve the first two orders whole
    assert rows[1:] == [[cell(item[c]) for c in header] for item in items]


async def test_a_filtered_queue_as_csv_keeps_the_filter(client: AsyncClient) -> None:
    await some_backorders(client)
    items = await every_json_item(client, "/v1/backorders", sku="CSV-B")
    rows = await csv_rows(client, "/v1/backorders", sku="CSV-B")
    assert [r[1] for r in rows[1:]] == [i["line_id"] for i in items]
    assert {r[2] for r in rows[1:]} == {"CSV-B"}


async def test_replenishment_as_csv_equals_its_json_pages(client: AsyncClient) -> None:
    await some_backorders(client)
    for i in range(5):
        await make_product(client, f"CSV-R{i}", reorder_point=i)
    items = await every_json_item(client, "/v1/replenishment")
    rows = await csv_rows(client, "/v1/replenishment")
    assert len(items) == 7
    assert rows[1:] == [[cell(item[c]) for c in rows[0]] for item in items]
    assert "suggested_order_quantity" in rows[0]


async def test_orders_as_csv_are_one_row_per_line_equal_to_the_json_pages(
    client: AsyncClient,
) -> None:
    await some_backorders(client)
    orders = await every_json_item(client, "/v1/orders")
    rows = await csv_rows(client, "/v1/orders")
    header = rows[0]
    expected = []
    for o in orders:
        for line in o["lines"]:
            flat = {k: v for k, v in o.items() if k != "lines"}
            flat.update(order_id=o["id"], order_status=o["status"])
            flat.update({k: v for k, v in line.items() if k not in ("id", "status")})
            flat.update(line_id=line["id"], line_status=line["status"])
            expected.append([cell(flat[c]) for c in header])
    assert len(expected) == 16
    assert rows[1:] == expected
    assert 'c-0, "quoted"' in {r[header.index("customer_id")] for r in rows[1:]}


async def test_an_empty_list_is_a_header_row_alone(client: AsyncClient) -> None:
    rows = await csv_rows(client, "/v1/backorders")
    assert len(rows) == 1 and rows[0][0] == "order_id"


async def test_json_stays_the_answer_unless_csv_is_preferred(client: AsyncClient) -> None:
    await some_backorders(client)
    for accept in ("application/json", "*/*", "application/json, text/csv;q=0.5", ""):
        r = await client.get("/v1/backorders", headers={**OPS, "Accept": accept})
        assert r.headers["content-type"] == "application/json", accept
        assert len(r.json()["data"]) == 14
    r = await client.get("/v1/orders", headers={**OPS, "Accept": "text/csv, */*;q=0.1"})
    assert r.headers["content-type"].startswith("text/csv")


async def test_a_bad_cursor_is_a_problem_not_a_broken_csv(client: AsyncClient) -> None:
    r = await client.get("/v1/orders", params={"cursor": "nonsense"}, headers=CSV_OPS)
    assert_problem(r, 422, "validation_error")


async def test_a_storefront_gets_its_own_orders_only_as_csv(client: AsyncClient) -> None:
    from tests.support.api import make_key

    await some_backorders(client)
    shop = await make_key(client, "csv-shop")
    await make_product(client, "CSV-S", on_hand=3)
    mine = await place(client, [("CSV-S", 1)], headers=shop)
    r = await client.get("/v1/orders", headers={**shop, "Accept": "text/csv"})
    rows = list(csv.reader(io.StringIO(r.text)))
    assert [row[0] for row in rows[1:]] == [mine["id"]]
    r = await client.get("/v1/backorders", headers={**shop, "Accept": "text/csv"})
    assert_problem(r, 403, "forbidden")


async def test_the_schema_declares_the_csv_answers(client: AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/v1/backorders",
        "/v1/replenishment",
        "/v1/orders",
        "/v1/locations/{code}/pick-list",
    ):
        content = paths[path]["get"]["responses"]["200"]["content"]
        assert set(content) == {"application/json", "text/csv"}, path


async def test_a_pick_list_as_csv_equals_its_json_pages_row_for_row(client: AsyncClient) -> None:
    await some_backorders(client)
    await make_product(client, "CSV-C", on_hand=40)
    for i in range(7):
        await place(client, [("CSV-C", 1 + i)], customer_id=f"c-{i}", priority=i % 3)
    items = await every_json_item(client, "/v1/locations/main/pick-list")
    rows = await csv_rows(client, "/v1/locations/main/pick-list")
    header = rows[0]
    assert header == ["order_id", "line_id", "sku", "customer_id", "quantity", "priority",
                      "created_at"]  # fmt: skip
    assert len(items) >= 9  # CSV-C's seven orders and CSV-A's two served whole, at least
    assert rows[1:] == [[cell(item[c]) for c in header] for item in items]
    r = await client.get("/v1/locations/nowhere/pick-list", headers=CSV_OPS)
    assert_problem(r, 404, "not_found")
