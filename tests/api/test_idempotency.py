"""Idempotency-Key on order writes: replay, reuse refusals, scope, and stored refusals."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from httpx import AsyncClient

from tests.support.api import OPS, make_key, make_product
from tests.support.invariants import assert_invariants
from tests.support.orders import restock


@pytest.fixture(autouse=True)
def _invariants_hold_after_each_test(client: AsyncClient, database_url: str) -> Iterator[None]:
    yield
    assert_invariants(database_url)


ORDER = {"customer_id": "c-1", "lines": [{"sku": "P", "quantity": 3}]}


def _with(headers: dict[str, str], key: str, **extra: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key, **extra}


async def _orders(client: AsyncClient) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = (await client.get("/v1/orders", headers=OPS)).json()["data"]
    return data


async def test_the_same_key_and_body_replays_the_first_answer_and_places_one_order(
    client: AsyncClient,
) -> None:
    await make_product(client, "P", on_hand=10)
    first = await client.post("/v1/orders", json=ORDER, headers=_with(OPS, "k-1"))
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    # same JSON, other key order and spacing: the same request
    again = await client.post(
        "/v1/orders",
        content=b'{"lines": [{"quantity": 3, "sku": "P"}],   "customer_id": "c-1"}',
        headers=_with(OPS, "k-1", **{"Content-Type": "application/json"}),
    )
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert len(await _orders(client)) == 1
    p = (await client.get("/v1/products/P", headers=OPS)).json()
    assert p["allocated"] == 3


async def test_the_same_key_with_another_body_is_refused(client: AsyncClient) -> None:
    await make_product(client, "P", on_hand=10)
    r = await client.post("/v1/orders", json=ORDER, headers=_with(OPS, "k-1"))
    assert r.status_code == 201
    other = {**ORDER, "customer_id": "c-2"}
    r = await client.post("/v1/orders", json=other, headers=_with(OPS, "k-1"))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "idempotency_key_reused"
    assert len(await _orders(client)) == 1


async def test_the_same_key_on_another_path_is_refused(client: AsyncClient) -> None:
    await make_product(client, "P", on_hand=10)
    r = await client.post("/v1/orders", json=ORDER, headers=_with(OPS, "k-1"))
    assert r.status_code == 201
    order_id = r.json()["id"]
    r = await client.post(f"/v1/orders/{order_id}/cancel", json=None, headers=_with(OPS, "k-1"))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "idempotency_key_reused"
    got = (await client.get(f"/v1/orders/{order_id}", headers=OPS)).json()
    assert got["status"] == "allocated"


async def test_a_refusal_is_replayed_verbatim_even_after_stock_arrives(
    client: AsyncClient,
) -> None:
    await make_product(client, "P", on_hand=1, backorders_allowed=False)
    first = await client.post(
        "/v1/orders", json=ORDER, headers=_with(OPS, "k-1", **{"X-Request-ID": "req-first"})
    )
    assert first.status_code == 409, first.text
    assert first.json()["code"] == "insufficient_stock"
    assert first.json()["request_id"] == "req-first"
    await restock(client, "P", 10)
    again = await client.post(
        "/v1/orders", json=ORDER, headers=_with(OPS, "k-1", **{"X-Request-ID": "req-second"})
    )
    assert again.status_code == 409
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.content == first.content
    assert again.json()["request_id"] == "req-first"
    assert await _orders(client) == []
    fresh = await client.post("/v1/orders", json=ORDER, headers=_with(OPS, "k-2"))
    assert fresh.status_code == 201


async def test_a_replayed_cancel_does_not_cancel_twice(client: AsyncClient) -> None:
    await make_product(client, "P", on_hand=10)
    order = (await client.post("/v1/orders", json=ORDER, headers=OPS)).json()
    url = f"/v1/orders/{order['id']}/lines/{order['lines'][0]['id']}/cancel"
    first = await client.post(url, json={"quantity": 1}, headers=_with(OPS, "c-1"))
    again = await client.post(url, json={"quantity": 1}, headers=_with(OPS, "c-1"))
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    got = (await client.get(f"/v1/orders/{order['id']}", headers=OPS)).json()
    assert got["lines"][0]["cancelled"] == 1


async def test_keys_are_scoped_per_api_key(client: AsyncClient) -> None:
    await make_product(client, "P", on_hand=10)
    shop = await make_key(client, "shop")
    other = await make_key(client, "other")
    a = await client.post("/v1/orders", json=ORDER, headers=_with(shop, "same"))
    b = await client.post("/v1/orders", json=ORDER, headers=_with(other, "same"))
    c = await client.post("/v1/orders", json=ORDER, headers=_with(OPS, "same"))
    assert a.status_code == b.status_code == c.status_code == 201
    assert "idempotent-replayed" not in b.headers
    assert len({a.json()["id"], b.json()["id"], c.json()["id"]}) == 3
    assert len(await _orders(client)) == 3


async def test_a_key_of_256_characters_is_refused_and_255_is_accepted(
    client: AsyncClient,
) -> None:
    await make_product(client, "P", on_hand=10)
    r = await client.post("/v1/orders", json=ORDER, headers=_with(OPS, "k" * 256))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"
    assert await _orders(client) == []
    r = await client.post("/v1/orders", json=ORDER, headers=_with(OPS, ""))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"
    assert await _orders(client) == []
    r = await client.post("/v1/orders", json=ORDER, headers=_with(OPS, "k" * 255))
    assert r.status_code == 201, r.text
    again = await client.post("/v1/orders", json=ORDER, headers=_with(OPS, "k" * 255))
    assert again.headers["idempotent-replayed"] == "true"


async def test_concurrent_requests_with_one_key_place_one_order(client: AsyncClient) -> None:
    import asyncio

    await make_product(client, "P", on_hand=100)
    answers = await asyncio.gather(
        *(client.post("/v1/orders", json=ORDER, headers=_with(OPS, "race")) for _ in range(4))
    )
    codes = sorted(r.status_code for r in answers)
    assert set(codes) <= {201, 409}, [r.text for r in answers]
    fresh = [r for r in answers if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    assert len(fresh) == 1
    for r in answers:
        if r.status_code == 409:
            assert r.json()["code"] == "idempotency_key_in_use"
        else:
            assert r.json()["id"] == fresh[0].json()["id"]
    assert len(await _orders(client)) == 1
    assert (await client.get("/v1/products/P", headers=OPS)).json()["allocated"] == 3


async def test_a_body_refused_by_validation_is_stored_and_replayed_under_its_key(
    client: AsyncClient,
) -> None:
    await make_product(client, "P", on_hand=10)
    bad = {"customer_id": "c-1", "lines": [{"sku": "P", "quantity": 0}]}
    first = await client.post("/v1/orders", json=bad, headers=_with(OPS, "k-bad"))
    assert first.status_code == 422, first.text
    assert first.json()["code"] == "validation_error"
    assert "idempotent-replayed" not in first.headers
    again = await client.post("/v1/orders", json=bad, headers=_with(OPS, "k-bad"))
    assert again.status_code == 422
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content  # verbatim: the first request's request_id too
    assert again.json()["request_id"] != again.headers["x-request-id"]
    # The key is spent on that body: a corrected body needs a new key.
    fixed = await client.post("/v1/orders", json=ORDER, headers=_with(OPS, "k-bad"))
    assert fixed.status_code == 422, fixed.text
    assert fixed.json()["code"] == "idempotency_key_reused"
    assert await _orders(client) == []


async def test_a_refusal_made_by_the_route_before_the_use_case_is_replayed_too(
    client: AsyncClient,
) -> None:
    await make_product(client, "P", on_hand=10)
    shop = await make_key(client, "web-shop")
    urgent = {**ORDER, "priority": 7}  # storefronts may send 0-4
    first = await client.post("/v1/orders", json=urgent, headers=_with(shop, "k-urgent"))
    assert (first.status_code, first.json()["code"]) == (422, "validation_error"), first.text
    again = await client.post("/v1/orders", json=urgent, headers=_with(shop, "k-urgent"))
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert await _orders(client) == []


async def test_a_refusal_without_a_key_or_on_a_route_without_keys_is_not_stored(
    client: AsyncClient, database_url: str
) -> None:
    bad = {"customer_id": "c-1", "lines": [{"sku": "P", "quantity": 0}]}
    assert (await client.post("/v1/orders", json=bad, headers=OPS)).status_code == 422
    # PUT /v1/products does not honour Idempotency-Key: its refusals are not stored either.
    r = await client.put("/v1/products/P", json={"name": 5}, headers=_with(OPS, "k-put"))
    assert r.status_code == 422
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT count(*) FROM idempotency_key").fetchone()
    assert row is not None and row[0] == 0


def _age_keys(database_url: str, hours: float) -> None:
    """Make every stored key `hours` older (as if that much time had passed)."""
    plain = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(
            "UPDATE idempotency_key SET created_at = created_at - make_interval(secs => %s)",
            (hours * 3600,),
        )


async def test_a_key_replays_until_its_ttl_and_is_free_for_a_new_request_after_it(
    client: AsyncClient, database_url: str
) -> None:
    """BACKORDER_IDEMPOTENCY_TTL_HOURS (48 here): a key replays for that long; after it, the
    same key runs a request afresh, even another body, and then replays that new answer
    (docs/reference.md, "Idempotency")."""
    await make_product(client, "P", on_hand=10)
    first = await client.post("/v1/orders", json=ORDER, headers=_with(OPS, "k-ttl"))
    assert first.status_code == 201, first.text

    _age_keys(database_url, 47)  # an hour before it expires: still the first answer
    again = await client.post("/v1/orders", json=ORDER, headers=_with(OPS, "k-ttl"))
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (201, "true")
    assert again.content == first.content
    other = {**ORDER, "customer_id": "c-2"}
    reused = await client.post("/v1/orders", json=other, headers=_with(OPS, "k-ttl"))
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
    assert len(await _orders(client)) == 1

    _age_keys(database_url, 2)  # 49 hours old: expired
    fresh = await client.post("/v1/orders", json=other, headers=_with(OPS, "k-ttl"))
    assert fresh.status_code == 201, fresh.text
    assert "idempotent-replayed" not in fresh.headers
    assert fresh.json()["id"] != first.json()["id"]
    assert fresh.json()["customer_id"] == "c-2"
    assert len(await _orders(client)) == 2
    # The key now guards the new request: it replays, and the first body is refused.
    replay = await client.post("/v1/orders", json=other, headers=_with(OPS, "k-ttl"))
    assert (replay.status_code, replay.headers.get("idempotent-replayed")) == (201, "true")
    assert replay.content == fresh.content
    old = await client.post("/v1/orders", json=ORDER, headers=_with(OPS, "k-ttl"))
    assert (old.status_code, old.json()["code"]) == (422, "idempotency_key_reused")
    assert len(await _orders(client)) == 2
    p = (await client.get("/v1/products/P", headers=OPS)).json()
    assert p["allocated"] == 6


async def test_an_expired_refusal_is_not_replayed_either(
    client: AsyncClient, database_url: str
) -> None:
    """A stored refusal lives as long as a stored success: after the TTL the request runs
    again and may now succeed."""
    await make_product(client, "N", on_hand=1, backorders_allowed=False)
    body = {"customer_id": "c-1", "lines": [{"sku": "N", "quantity": 3}]}
    refused = await client.post("/v1/orders", json=body, headers=_with(OPS, "k-refused"))
    assert (refused.status_code, refused.json()["code"]) == (409, "insufficient_stock")
    await restock(client, "N", 5)
    _age_keys(database_url, 49)
    placed = await client.post("/v1/orders", json=body, headers=_with(OPS, "k-refused"))
    assert placed.status_code == 201, placed.text
    assert "idempotent-replayed" not in placed.headers
