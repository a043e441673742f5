"""Backorder deadlines (API.md, *Wave 2: promises* → *Deadlines*, and the fine print).

An order carries `backorder_deadline`: its own (RFC 3339 with an offset, in the future), or
`created_at` + the smallest `max_backorder_days` of the products it waits for. Each line shows
`at_risk`: it waits and its `expected_date` is null or after the deadline's UTC date. A line
that becomes at risk writes one `backorder.deadline_at_risk` event, at placement too, and
another only after it stopped being at risk. These tests move the dates every way the service
has (the product's date, purchase orders, a queue jump, a restock), on both order paths, and
read the orders, the `at_risk` list filter and the event feed back. The expiry worker (what
happens once a deadline passes) is tested elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from httpx import AsyncClient, Response

from tests.support.api import OPS, assert_problem, error_fields, make_key, make_product, place
from tests.support.dates import days_ahead as ahead
from tests.support.orders import get_order, product, restock

RISK = "backorder.deadline_at_risk"


def noon(days: int) -> str:
    """A deadline at noon UTC, `days` from today."""
    return f"{ahead(days)}T12:00:00Z"


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


def risks(order: dict[str, Any]) -> list[bool]:
    return [line["at_risk"] for line in order["lines"]]


async def risk_events(client: AsyncClient, headers: dict[str, str] = OPS) -> list[dict[str, Any]]:
    r = await client.get("/v1/events", params={"type": RISK, "limit": 200}, headers=headers)
    assert r.status_code == 200, r.text
    return [e["data"] for e in r.json()["data"]]


async def at_risk_ids(client: AsyncClient, value: str, headers: dict[str, str] = OPS) -> list[str]:
    r = await client.get("/v1/orders", params={"at_risk": value, "limit": 200}, headers=headers)
    assert r.status_code == 200, r.text
    return [o["id"] for o in r.json()["data"]]


async def create_po(client: AsyncClient, sku: str, quantity: int, day: str) -> dict[str, Any]:
    body = {"sku": sku, "quantity": quantity, "expected_date": day}
    r = await client.post("/v1/purchase-orders", json=body, headers=OPS)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def move_po(client: AsyncClient, po: dict[str, Any], day: str) -> None:
    r = await client.patch(
        f"/v1/purchase-orders/{po['id']}", json={"expected_date": day}, headers=OPS
    )
    assert r.status_code == 200, r.text


async def put_product(client: AsyncClient, sku: str, **fields: Any) -> Response:
    return await client.put(f"/v1/products/{sku}", json=fields, headers=OPS)


def announced(event: dict[str, Any], order: dict[str, Any], line: int = 0) -> dict[str, Any]:
    """The event the order's line must have written, but for `sku` and `expected_date` (its
    deadline is compared as an instant, then taken as rendered)."""
    assert instant(event["backorder_deadline"]) == instant(order["backorder_deadline"])
    return {
        "order_id": order["id"],
        "line_id": order["lines"][line]["id"],
        "backorder_deadline": event["backorder_deadline"],
        "customer_id": order["customer_id"],
        "channel": order["channel"],
    }


# --- at risk at placement, or not ------------------------------------------------------------


async def test_a_deadline_before_the_restock_date_is_at_risk_from_placement_with_one_event(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=2, expected_restock_date=ahead(30))
    order = await place(client, [("A", 5)], customer_id="c-7", backorder_deadline=noon(10))
    assert instant(order["backorder_deadline"]) == instant(noon(10))
    line = order["lines"][0]
    assert (line["allocated"], line["backordered"], line["expected_date"]) == (2, 3, ahead(30))
    assert line["at_risk"] is True
    assert risks(await get_order(client, order["id"])) == [True]
    [event] = await risk_events(client)
    assert event == announced(event, order) | {"sku": "A", "expected_date": ahead(30)}
    assert event["channel"] == "master" and event["customer_id"] == "c-7"
    # Still at risk when its date moves further out: not announced again.
    assert (await put_product(client, "A", expected_restock_date=ahead(40))).status_code == 200
    line = (await get_order(client, order["id"]))["lines"][0]
    assert (line["expected_date"], line["at_risk"]) == (ahead(40), True)
    assert len(await risk_events(client)) == 1


# The product's date is ahead(10). Each deadline (days ahead, then time and offset), and
# whether that date misses it: compared with the deadline's date in UTC, whatever its offset.
DEADLINES = {
    "on the day, UTC": (10, "T00:00:00Z", False),
    "later": (20, "T12:00:00Z", False),
    "the day before in UTC, sent at +05:00": (10, "T01:00:00+05:00", True),
    "the day itself in UTC, sent at -05:00": (9, "T22:00:00-05:00", False),
    "the last second of the day before": (9, "T23:59:59Z", True),
}


@pytest.mark.parametrize("case", DEADLINES)
async def test_a_line_is_at_risk_when_its_date_is_after_the_deadlines_utc_date(
    client: AsyncClient, case: str
) -> None:
    days, time, at_risk = DEADLINES[case]
    deadline = ahead(days) + time
    await make_product(client, "A", expected_restock_date=ahead(10))
    order = await place(client, [("A", 1)], backorder_deadline=deadline)
    assert instant(order["backorder_deadline"]) == instant(deadline)
    stored = await get_order(client, order["id"])
    assert (risks(order), risks(stored)) == ([at_risk], [at_risk])
    assert len(await risk_events(client)) == int(at_risk)
    # The product's date moves past every one of these deadlines: at risk, announced once.
    assert (await put_product(client, "A", expected_restock_date=ahead(25))).status_code == 200
    assert risks(await get_order(client, order["id"])) == [True]
    [event] = await risk_events(client)
    assert event["expected_date"] == (ahead(25) if not at_risk else ahead(10))


async def test_a_waiting_line_with_no_date_at_all_is_at_risk_and_one_without_deadline_is_not(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    timed = await place(client, [("A", 2)], backorder_deadline=noon(400))
    patient = await place(client, [("A", 2)])
    assert timed["lines"][0]["expected_date"] is None
    assert risks(timed) == [True]
    assert (patient["backorder_deadline"], risks(patient)) == (None, [False])
    [event] = await risk_events(client)
    assert event == announced(event, timed) | {"sku": "A", "expected_date": None}


# --- dates that move after placement -----------------------------------------------------------


async def test_a_purchase_order_in_time_lifts_the_risk_and_losing_it_announces_it_again(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    order = await place(client, [("A", 4)], backorder_deadline=noon(20))
    assert risks(order) == [True]
    assert len(await risk_events(client)) == 1

    po = await create_po(client, "A", 4, ahead(10))  # covers the line before the deadline
    line = (await get_order(client, order["id"]))["lines"][0]
    assert (line["expected_date"], line["at_risk"]) == (ahead(10), False)
    assert len(await risk_events(client)) == 1  # no event for leaving the risk

    await move_po(client, po, ahead(25))  # now after the deadline: at risk again, announced
    assert risks(await get_order(client, order["id"])) == [True]
    await move_po(client, po, ahead(5))
    assert risks(await get_order(client, order["id"])) == [False]

    r = await client.post(f"/v1/purchase-orders/{po['id']}/cancel", headers=OPS)
    assert r.status_code == 200, r.text
    line = (await get_order(client, order["id"]))["lines"][0]
    assert (line["expected_date"], line["at_risk"]) == (None, True)
    events = await risk_events(client)
    assert [e["expected_date"] for e in events] == [None, ahead(25), None]
    for e in events:
        assert e == announced(e, order) | {"sku": "A", "expected_date": e["expected_date"]}


async def test_a_restock_that_fills_the_line_ends_its_risk_without_an_event(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    order = await place(client, [("A", 4)], backorder_deadline=noon(20))
    assert risks(order) == [True]
    await restock(client, "A", 1)  # partly filled: still waiting, still at risk, not re-announced
    line = (await get_order(client, order["id"]))["lines"][0]
    assert (line["allocated"], line["backordered"], line["at_risk"]) == (1, 3, True)
    await restock(client, "A", 3)
    stored = await get_order(client, order["id"])
    line = stored["lines"][0]
    assert (line["allocated"], line["backordered"], line["expected_date"]) == (4, 0, None)
    assert line["at_risk"] is False
    assert stored["backorder_deadline"] == order["backorder_deadline"]  # the deadline stays
    assert len(await risk_events(client)) == 1


async def test_a_higher_priority_order_that_jumps_the_queue_puts_an_older_line_at_risk(
    client: AsyncClient,
) -> None:
    await make_product(client, "P", allocation_strategy="priority")
    await create_po(client, "P", 5, ahead(10))
    older = await place(client, [("P", 5)], priority=1, backorder_deadline=noon(15))
    assert (older["lines"][0]["expected_date"], risks(older)) == (ahead(10), [False])
    assert await risk_events(client) == []
    urgent = await place(client, [("P", 5)], priority=9, backorder_deadline=noon(30))
    assert (urgent["lines"][0]["expected_date"], risks(urgent)) == (ahead(10), [False])
    line = (await get_order(client, older["id"]))["lines"][0]
    assert (line["expected_date"], line["at_risk"]) == (None, True)
    [event] = await risk_events(client)
    assert event == announced(event, older) | {"sku": "P", "expected_date": None}


# --- max_backorder_days ---------------------------------------------------------------------


async def test_the_smallest_max_backorder_days_of_the_waiting_products_sets_the_deadline(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", max_backorder_days=30, expected_restock_date=ahead(3))
    await make_product(client, "B", max_backorder_days=7, expected_restock_date=ahead(30))
    await make_product(client, "C", on_hand=5, max_backorder_days=2)  # served: waits for nothing
    assert (await product(client, "B"))["max_backorder_days"] == 7
    order = await place(client, [("A", 1), ("B", 1), ("C", 1)])
    created = instant(order["created_at"])
    assert instant(order["backorder_deadline"]) - created == timedelta(days=7)
    assert risks(order) == [False, True, False]
    stored = await get_order(client, order["id"])
    assert instant(stored["backorder_deadline"]) == instant(order["backorder_deadline"])
    assert risks(stored) == [False, True, False]
    [event] = await risk_events(client)
    assert event == announced(event, order, line=1) | {"sku": "B", "expected_date": ahead(30)}


async def test_an_order_that_waits_for_nothing_gets_no_deadline_but_keeps_its_own(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=6, max_backorder_days=5)
    served = await place(client, [("A", 5)])
    assert (served["backorder_deadline"], risks(served)) == (None, [False])
    own = await place(client, [("A", 1)], backorder_deadline=noon(3))
    assert instant(own["backorder_deadline"]) == instant(noon(3))
    assert risks(own) == [False]
    waiting = await place(client, [("A", 1)])  # nothing left: this one waits, so it gets one
    waited = instant(waiting["backorder_deadline"]) - instant(waiting["created_at"])
    assert waited == timedelta(days=5)
    assert [e["order_id"] for e in await risk_events(client)] == [waiting["id"]]


@pytest.mark.parametrize("days", [1, 365])
async def test_an_orders_own_deadline_wins_over_max_backorder_days(
    client: AsyncClient, days: int
) -> None:
    await make_product(client, "A", max_backorder_days=30, expected_restock_date=ahead(20))
    order = await place(client, [("A", 1)], backorder_deadline=noon(days))
    assert instant(order["backorder_deadline"]) == instant(noon(days))
    stored = await get_order(client, order["id"])
    assert instant(stored["backorder_deadline"]) == instant(noon(days))
    assert risks(stored) == [days < 20]


async def test_max_backorder_days_is_shown_kept_cleared_and_range_checked(
    client: AsyncClient,
) -> None:
    r = await put_product(client, "A", name="A", max_backorder_days=1)
    assert (r.status_code, r.json()["max_backorder_days"]) == (201, 1)
    r = await put_product(client, "A", max_backorder_days=3650)
    assert (r.status_code, r.json()["max_backorder_days"]) == (200, 3650)
    assert (await put_product(client, "A", name="A2")).json()["max_backorder_days"] == 3650
    for bad in (0, 3651, -1, "7", 7.5, True, [7]):
        r = await put_product(client, "A", max_backorder_days=bad)
        problem = assert_problem(r, 422, "validation_error")
        assert error_fields(problem) == {"max_backorder_days"}, bad
    assert (await product(client, "A"))["max_backorder_days"] == 3650
    r = await put_product(client, "A", max_backorder_days=None)
    assert (r.status_code, r.json()["max_backorder_days"]) == (200, None)
    r = await put_product(client, "B", name="B")
    assert r.json()["max_backorder_days"] is None


# --- refusals, and the two order paths ----------------------------------------------------------


async def post_order(
    client: AsyncClient, body: dict[str, Any], headers: dict[str, str], *, general: bool
) -> Response:
    """On the lean path (plain `application/json`), or on the route's (a `+json` type the lean
    path hands over), as tests/api/test_order_batches.py does."""
    if not general:
        return await client.post("/v1/orders", json=body, headers=headers)
    headers = {**headers, "Content-Type": "application/vnd.backorder+json"}
    return await client.post("/v1/orders", content=orjson.dumps(body), headers=headers)


async def lean_orders(client: AsyncClient) -> float:
    """How many orders the lean path has placed (its batch-size histogram's sum)."""
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    for row in r.text.splitlines():
        if row.startswith("backorder_order_batch_size_sum"):
            return float(row.split()[-1])
    return 0.0


def bad_deadlines() -> list[Any]:
    a_minute_ago = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    return [
        "2020-01-01T00:00:00Z",
        a_minute_ago,
        f"{ahead(10)}T12:00:00",  # no offset
        ahead(10),  # a date alone
        "next tuesday",
        "",
        1_900_000_000,
        f"{ahead(10)}T25:00:00Z",
        # In the future, but past the last instant a date-time can hold (year 9999) in UTC:
        # it was stored, then no order list could be read back.
        "9999-12-31T23:00:00-14:00",
    ]


@pytest.mark.parametrize("general", [False, True], ids=["lean", "general"])
async def test_a_deadline_in_the_past_or_not_rfc_3339_is_refused_by_name(
    client: AsyncClient, general: bool
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "A", on_hand=1)
    for bad in bad_deadlines():
        body = {"customer_id": "c-1", "lines": [{"sku": "A", "quantity": 3}]}
        r = await post_order(client, {**body, "backorder_deadline": bad}, shop, general=general)
        problem = assert_problem(r, 422, "validation_error")
        assert error_fields(problem) == {"backorder_deadline"}, bad
    assert (await client.get("/v1/orders", headers=OPS)).json()["data"] == []
    figures = await product(client, "A")
    assert (figures["allocated"], figures["backordered"]) == (0, 0)


async def test_the_lean_and_the_general_path_set_deadlines_and_risks_alike(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    offset_deadline = f"{ahead(12)}T01:30:00+05:00"  # UTC date ahead(11): before ahead(12)
    seen: dict[str, Any] = {}
    for path in ("lean", "general"):
        m, s = f"M-{path}", f"S-{path}"
        await make_product(
            client, m, on_hand=1, max_backorder_days=14, expected_restock_date=ahead(12)
        )
        await make_product(client, s, on_hand=9)
        before = await lean_orders(client)
        answers = []
        for fields in ({}, {"backorder_deadline": offset_deadline}):
            lines = [{"sku": m, "quantity": 3}, {"sku": s, "quantity": 2}]
            body = {"customer_id": "c-9", "lines": lines, **fields}
            r = await post_order(client, body, shop, general=path == "general")
            assert r.status_code == 201, r.text
            answers.append(r.json())
        assert await lean_orders(client) - before == (2 if path == "lean" else 0), path
        by_days, own = answers
        waited = instant(by_days["backorder_deadline"]) - instant(by_days["created_at"])
        assert waited == timedelta(days=14), path
        assert instant(own["backorder_deadline"]) == instant(offset_deadline), path
        for order in answers:
            stored = await get_order(client, order["id"])
            assert instant(stored["backorder_deadline"]) == instant(order["backorder_deadline"])
            assert risks(stored) == risks(order), path
        [event] = [e for e in await risk_events(client) if e["sku"] == m]
        assert event == announced(event, own) | {"sku": m, "expected_date": ahead(12)}, path
        seen[path] = ([risks(o) for o in answers], own["backorder_deadline"], event["channel"])
    assert seen["lean"][0] == [[False, False], [True, False]]
    assert seen["lean"] == seen["general"]


@pytest.mark.parametrize("general", [False, True], ids=["lean", "general"])
async def test_the_answer_shows_the_deadline_in_utc_as_a_read_does(
    client: AsyncClient, general: bool
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "A")
    sent = f"{ahead(10)}T01:00:00+05:00"
    body = {"customer_id": "c-1", "lines": [{"sku": "A", "quantity": 1}]}
    r = await post_order(client, body | {"backorder_deadline": sent}, shop, general=general)
    assert r.status_code == 201, r.text
    answered = r.json()["backorder_deadline"]
    stored = (await get_order(client, r.json()["id"]))["backorder_deadline"]
    assert instant(stored) == instant(sent)
    # Times are RFC 3339 UTC strings (API.md): not the caller's offset echoed back.
    assert (answered, stored) == (f"{ahead(9)}T20:00:00Z", f"{ahead(9)}T20:00:00Z")


# --- who sees what ------------------------------------------------------------------------------


async def test_a_storefront_reads_the_at_risk_events_of_its_own_orders_only(
    client: AsyncClient,
) -> None:
    shop, other = await make_key(client, "web-shop"), await make_key(client, "app-shop")
    await make_product(client, "A")
    mine = await place(client, [("A", 1)], headers=shop, backorder_deadline=noon(5))
    theirs = await place(client, [("A", 1)], headers=other, backorder_deadline=noon(5))
    ops_own = await place(client, [("A", 1)], backorder_deadline=noon(5))
    everyone = await risk_events(client)
    assert [(e["order_id"], e["channel"]) for e in everyone] == [
        (mine["id"], "web-shop"),
        (theirs["id"], "app-shop"),
        (ops_own["id"], "master"),
    ]
    assert [e["order_id"] for e in await risk_events(client, shop)] == [mine["id"]]
    assert [e["order_id"] for e in await risk_events(client, other)] == [theirs["id"]]
    r = await client.get("/v1/events", params={"type": RISK, "channel": "app-shop"}, headers=shop)
    assert_problem(r, 403, "forbidden")


async def test_a_webhook_endpoint_can_subscribe_to_the_at_risk_event(client: AsyncClient) -> None:
    body = {"url": "https://hooks.example.com/in", "event_types": [RISK]}
    r = await client.post("/v1/webhook-endpoints", json=body, headers=OPS)
    assert r.status_code == 201, r.text
    assert r.json()["event_types"] == [RISK]


# --- GET /v1/orders?at_risk= --------------------------------------------------------------------


async def test_orders_filter_by_at_risk_and_follow_the_lines_as_they_change(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "A", expected_restock_date=ahead(30))
    await make_product(client, "B", on_hand=2)
    risky = await place(client, [("B", 1), ("A", 1)], backorder_deadline=noon(10))
    safe = await place(client, [("A", 1)], backorder_deadline=noon(40))
    patient = await place(client, [("A", 1)])
    served = await place(client, [("B", 1)], backorder_deadline=noon(1))
    storefront = await place(client, [("A", 1)], headers=shop, backorder_deadline=noon(10))
    assert risks(risky) == [False, True] and risks(served) == [False]
    newest_first = [storefront, served, patient, safe, risky]
    assert await at_risk_ids(client, "true") == [storefront["id"], risky["id"]]
    assert await at_risk_ids(client, "false") == [served["id"], patient["id"], safe["id"]]
    assert await at_risk_ids(client, "true", shop) == [storefront["id"]]
    assert await at_risk_ids(client, "false", shop) == []
    # A purchase order in time for every waiting line: nobody is at risk any more.
    await create_po(client, "A", 10, ahead(5))
    assert await at_risk_ids(client, "true") == []
    assert await at_risk_ids(client, "false") == [o["id"] for o in newest_first]
    for bad in ("maybe", "2"):
        r = await client.get("/v1/orders", params={"at_risk": bad}, headers=OPS)
        assert error_fields(assert_problem(r, 422, "validation_error")) == {"at_risk"}, bad
