"""The per-location invariant checks themselves (`tests/support/invariants.py`): a clean
history with two locations, a line split across both, a shipment from one, a transfer and an
inactive location passes them all; and each hand-made corruption is seen by the checks that
name it, and by no other."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from httpx import AsyncClient

from tests.support.api import OPS
from tests.support.invariants import (
    assert_invariants,
    assert_locations_exercised,
    check_invariants,
)


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


async def _ok(r: Any, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


async def _network(client: AsyncClient) -> None:
    """A: 5 at main, 3 at east (rank 50); an order of 6 takes east's 3 and main's 3, and ships
    east's. B: 4 at main, 2 moved to east, then east closes: an order of 5 takes main's 2 and
    waits for 3 while east's 2 are held back."""
    await _ok(
        await client.put("/v1/locations/east", json={"name": "East", "rank": 50}, headers=OPS)
    )
    for sku in ("A", "B"):
        await _ok(await client.put(f"/v1/products/{sku}", json={"name": sku}, headers=OPS))
    for sku, location, q in (("A", "main", 5), ("A", "east", 3), ("B", "main", 4)):
        await _ok(
            await client.post(
                f"/v1/products/{sku}/restocks",
                json={"quantity": q, "location": location},
                headers=OPS,
            )
        )
    order = await _ok(
        await client.post(
            "/v1/orders",
            json={"customer_id": "c", "lines": [{"sku": "A", "quantity": 6}]},
            headers=OPS,
        )
    )
    line = order["lines"][0]
    assert {a["location"]: a["allocated"] for a in line["allocations"]} == {"east": 3, "main": 3}
    await _ok(
        await client.post(
            f"/v1/orders/{order['id']}/shipments",
            json={"location": "east", "lines": [{"line_id": line["id"], "quantity": 3}]},
            headers=OPS,
        )
    )
    await _ok(
        await client.post(
            "/v1/transfers",
            json={"sku": "B", "from": "main", "to": "east", "quantity": 2},
            headers=OPS,
        )
    )
    await _ok(await client.put("/v1/locations/east", json={"active": False}, headers=OPS), 200)
    await _ok(
        await client.post(
            "/v1/orders",
            json={"customer_id": "c", "lines": [{"sku": "B", "quantity": 5}]},
            headers=OPS,
        )
    )


# (what is broken, the SQL that breaks it, the SQL that mends it, the checks that must see it)
CORRUPTIONS = [
    (
        "a level's on_hand off its ledger",
        "UPDATE stock_level SET on_hand = on_hand + 1 WHERE sku = 'A' AND location = 'main'",
        "UPDATE stock_level SET on_hand = on_hand - 1 WHERE sku = 'A' AND location = 'main'",
        {"level_on_hand_not_ledger", "product_not_level_sums"},
    ),
    (
        "the product's on_hand off its levels",
        "UPDATE product SET on_hand = on_hand + 1 WHERE sku = 'A'",
        "UPDATE product SET on_hand = on_hand - 1 WHERE sku = 'A'",
        {"product_not_level_sums", "on_hand_not_ledger"},
    ),
    (
        "units held back at an inactive location forgotten",
        "UPDATE product SET unavailable = 0 WHERE sku = 'B'",
        "UPDATE product SET unavailable = 2 WHERE sku = 'B'",
        {"unavailable_not_inactive_levels", "idle_stock_while_waiting"},
    ),
    (
        "a line's map naming its own primary location",
        "UPDATE order_line l SET allocated_at = jsonb_build_object(p.code, 1) FROM location p "
        "WHERE p.id = l.location_id AND l.id = (SELECT min(id::text)::uuid FROM order_line "
        "WHERE allocated >= 1 AND allocated_at IS NULL)",
        "UPDATE order_line l SET allocated_at = NULL FROM location p "
        "WHERE p.id = l.location_id AND l.allocated_at = jsonb_build_object(p.code, 1)",
        {"line_units_malformed"},
    ),
    (
        "a level's allocated off its lines",
        "UPDATE stock_level SET allocated = allocated + 1 WHERE sku = 'B' AND location = 'east'",
        "UPDATE stock_level SET allocated = allocated - 1 WHERE sku = 'B' AND location = 'east'",
        {"level_allocated_not_lines", "product_not_level_sums", "unavailable_not_inactive_levels"},
    ),
    (
        "a line holding units at main that names no primary location",
        "UPDATE order_line SET location_id = 0 WHERE id = (SELECT min(id::text)::uuid "
        "FROM order_line WHERE location_id = 1 AND allocated >= 1 AND allocated_at IS NULL)",
        "UPDATE order_line SET location_id = 1 WHERE location_id = 0 "
        "AND (allocated > 0 OR shipped > 0)",
        {"line_units_malformed", "line_not_allocations", "level_allocated_not_lines"},
    ),
    (
        "a line's unit moved to where its SKU has no stock level",
        "UPDATE order_line SET allocated_at = jsonb_build_object('nowhere', 1) "
        "WHERE id = (SELECT min(id::text)::uuid FROM order_line "
        "WHERE allocated >= 1 AND allocated_at IS NULL)",
        "UPDATE order_line SET allocated_at = NULL "
        "WHERE allocated_at = jsonb_build_object('nowhere', 1)",
        {"orphan_line_allocation", "level_allocated_not_lines"},
    ),
    (
        "a shipment's ledger rows at another location",
        "UPDATE stock_movement SET location = 'main' WHERE kind = 'shipment'",
        "UPDATE stock_movement SET location = 'east' WHERE kind = 'shipment'",
        {
            "shipment_not_at_its_location",
            "shipped_not_ledger_at_location",
            "level_on_hand_not_ledger",
        },
    ),
    (
        "half a transfer",
        "UPDATE stock_movement SET quantity = quantity + 1 WHERE kind = 'transfer' "
        "AND quantity > 0",
        "UPDATE stock_movement SET quantity = quantity - 1 WHERE kind = 'transfer' "
        "AND quantity > 0",
        {"transfer_not_its_ledger_rows", "level_on_hand_not_ledger", "on_hand_not_ledger"},
    ),
    (
        "a transfer row that lost its transfer",
        "UPDATE stock_movement SET reason = transfer_id::text, transfer_id = NULL "
        "WHERE kind = 'transfer' AND quantity < 0",
        "UPDATE stock_movement SET transfer_id = reason::uuid, reason = NULL "
        "WHERE kind = 'transfer' AND quantity < 0",
        {"transfer_not_its_ledger_rows", "transfer_row_without_transfer"},
    ),
    (
        "a location active with units idle beside a waiting line",
        "UPDATE location SET active = true WHERE code = 'east'",
        "UPDATE location SET active = false WHERE code = 'east'",
        {"idle_stock_at_active_location", "unavailable_not_inactive_levels"},
    ),
]


@pytest.mark.usefixtures("clean_db")
async def test_the_location_checks_see_each_corruption_and_only_it(
    client: AsyncClient, database_url: str
) -> None:
    await _network(client)
    figures = assert_invariants(database_url)
    assert_locations_exercised(
        figures,
        locations=2,
        inactive_locations=1,
        stocked_locations=2,
        lines_at_two_locations=1,
        transfers=1,
    )
    seen = set()
    with psycopg.connect(_plain(database_url), autocommit=True) as conn:
        for what, corrupt, mend, expected in CORRUPTIONS:
            conn.execute(corrupt)
            v = check_invariants(database_url)["violations"]
            conn.execute(mend)
            assert {k for k, n in v.items() if n} == expected, what
            seen |= expected
            assert_invariants(database_url)  # mended
    from tests.support.invariants import LOCATION_CHECKS, SCHEMA_ENFORCED

    assert seen >= LOCATION_CHECKS - SCHEMA_ENFORCED  # every location check shown to bite
