"""The delivery worker as a storefront and a security review see it: a storefront's endpoint
receives its channel's view only; private addresses are never connected to; one slow or
failing receiver holds no other; outcomes are coarse; a ping is a real signed delivery."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import orjson
import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.config import Settings
from backorder.services import webhook_egress
from backorder.services.webhooks import verify
from tests.support.api import OPS, make_key, make_product, place
from tests.support.webhooks import (
    Receiver,
    Running,
    all_in,
    delivery_rows,
    endpoint,
    listening,
    until,
)

ENDPOINTS = "/v1/webhook-endpoints"


async def endpoint_as(
    client: AsyncClient, headers: dict[str, str], url: str, **fields: Any
) -> dict[str, Any]:
    body = {"url": url, "event_types": ["*"], **fields}
    r = await client.post(ENDPOINTS, json=body, headers=headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [orjson.loads(r.body) for r in receiver.requests]


async def test_a_storefronts_endpoint_receives_only_its_channels_view(
    client: AsyncClient, engine: AsyncEngine, fast: Settings
) -> None:
    shop = await make_key(client, "web-shop")
    pos = await make_key(client, "pos")
    await make_product(client, "A", reorder_point=3)
    async with (
        listening() as to_shop,
        listening() as to_pos,
        listening() as to_ops,
        listening() as ops_shop,
    ):
        ep_shop = await endpoint_as(client, shop, to_shop.url)
        await endpoint_as(client, pos, to_pos.url)
        await endpoint_as(client, OPS, to_ops.url)
        await endpoint_as(client, OPS, ops_shop.url, channel="web-shop")
        mine = await place(client, [("A", 2)], headers=shop, customer_id="c-shop")
        await place(client, [("A", 2)], headers=pos, customer_id="c-pos")
        for headers, who in ((shop, "c-shop-sub"), (pos, "c-pos-sub")):
            sub = {"customer_id": who, "contact": f"{who}@example.com"}
            r = await client.post("/v1/products/A/subscriptions", json=sub, headers=headers)
            assert r.status_code == 201
        await client.post("/v1/products/A/restocks", json={"quantity": 6}, headers=OPS)
        total = (await client.get("/v1/events", params={"limit": 200}, headers=OPS)).json()
        n_all = len(total["data"])
        shop_feed = (await client.get("/v1/events", params={"limit": 200}, headers=shop)).json()
        async with Running(engine, fast):
            await to_ops.wait_for_requests(n_all)
            await to_shop.wait_for_requests(len(shop_feed["data"]))
            await ops_shop.wait_for_requests(len(shop_feed["data"]))
            await until(lambda: every_delivery_succeeded(engine))

    # what the storefront's endpoint received is exactly what its feed shows
    assert sorted(bodies(to_shop), key=lambda b: int(b["id"])) == shop_feed["data"]
    assert sorted(bodies(ops_shop), key=lambda b: int(b["id"])) == shop_feed["data"]
    assert len(bodies(to_ops)) == n_all
    shop_text = b"".join(r.body for r in to_shop.requests)
    assert b"c-shop" in shop_text and mine["id"].encode() in shop_text
    assert b"c-pos" not in shop_text  # no other channel's customer ids or contacts
    assert b"c-shop" not in b"".join(r.body for r in to_pos.requests)
    for got in to_shop.requests:
        assert verify(ep_shop["secret"], got.headers["webhook-signature"], got.body)


async def every_delivery_succeeded(engine: AsyncEngine) -> bool:
    return all(r.status == "succeeded" for r in await delivery_rows(engine))


async def test_a_private_address_is_never_connected_to_when_private_networks_are_refused(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    # Registered while allowed (or resolved public then); refused at delivery all the same.
    await make_product(client, "A")
    ep = await endpoint(client, receiver.url, ["order.created"])
    await place(client, [("A", 1)])
    strict = fast.model_copy(
        update={"webhook_allow_private_networks": False, "webhook_max_attempts": 2}
    )
    async with Running(engine, strict):
        await until(all_in(engine, "failed"))
    (row,) = await delivery_rows(engine)
    assert (row.attempts, row.last_status_code) == (2, None)
    assert row.last_error == "refused: not a public address"
    assert receiver.requests == []

    # with private networks allowed, a retry by hand goes through
    r = await client.post(f"{ENDPOINTS}/{ep['id']}/deliveries/{row.id}/retry", headers=OPS)
    assert r.status_code == 200, r.text
    async with Running(engine, fast):
        await until(all_in(engine, "succeeded"))
    assert len(receiver.requests) == 1


async def test_failed_attempts_are_recorded_in_coarse_words_only(
    client: AsyncClient, engine: AsyncEngine, fast: Settings
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    await make_product(client, "A")
    await endpoint(client, f"http://127.0.0.1:{closed_port}/hooks", ["order.created"])
    await endpoint(client, "http://no-such-host.invalid/hooks", ["order.created"])
    await place(client, [("A", 1)])
    once = fast.model_copy(update={"webhook_max_attempts": 1})
    async with Running(engine, once):
        await until(all_in(engine, "failed", count=2))
    errors = sorted(r.last_error for r in await delivery_rows(engine))
    assert errors == ["connection failed", "host does not resolve"]


async def test_a_url_the_http_client_cannot_read_is_a_failed_attempt_not_a_lost_one(
    client: AsyncClient, engine: AsyncEngine, fast: Settings
) -> None:
    # One the schema lets through (IDNA refuses it only when a request is made), one stored
    # before today's checks: both made httpx raise past `post`, and nothing was recorded.
    await make_product(client, "A")
    await endpoint(client, "http://xn--/hooks", ["order.created"])
    old = await endpoint(client, "http://hooks.example.com/hooks", ["order.created"])
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE webhook_endpoint SET url = 'http://[::1/hooks' WHERE id = :id"),
            {"id": old["id"]},
        )
    await place(client, [("A", 1)])
    twice = fast.model_copy(update={"webhook_max_attempts": 2})
    async with Running(engine, twice, concurrency=1):
        await until(all_in(engine, "failed", count=2))
    rows = await delivery_rows(engine)
    assert [(r.attempts, r.last_status_code, r.last_error) for r in rows] == [
        (2, None, "connection failed"),
        (2, None, "connection failed"),
    ]


async def test_one_slow_receiver_does_not_hold_the_other_endpoints(
    client: AsyncClient, engine: AsyncEngine, fast: Settings
) -> None:
    slow_settings = fast.model_copy(
        update={"webhook_timeout_s": 30.0, "webhook_endpoint_concurrency": 2}
    )
    await make_product(client, "A", on_hand=100)
    async with listening(Receiver(script=["hang"] * 100)) as slow, listening() as quick:
        await endpoint(client, slow.url, ["order.created"])
        ep_quick = await endpoint(client, quick.url, ["order.created"])
        for _ in range(12):
            await place(client, [("A", 1)])
        async with Running(engine, slow_settings, concurrency=4):
            await quick.wait_for_requests(12)  # all of them, while the slow one hangs
            await slow.wait_for_requests(2)
            await asyncio.sleep(0.2)
            assert len(slow.requests) == 2  # its per-endpoint limit: the rest wait their turn
            rows = await delivery_rows(engine)
            done = [r for r in rows if str(r.endpoint_id) == ep_quick["id"]]
            assert len(done) == 12
            slow.release.set()
            await until(all_in(engine, "succeeded", count=24))


async def test_an_endpoint_that_keeps_failing_is_left_alone_until_its_circuit_closes(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    receiver.script = [503] * 5
    await make_product(client, "A", on_hand=100)
    ep = await endpoint(client, receiver.url, ["order.created"])
    for _ in range(8):
        await place(client, [("A", 1)])
    patient = fast.model_copy(update={"webhook_max_attempts": 50, "webhook_poll_interval_s": 0.2})
    async with Running(engine, patient, concurrency=1):
        await receiver.wait_for_requests(5)

        async def opened() -> bool:
            shown = (await client.get(f"{ENDPOINTS}/{ep['id']}", headers=OPS)).json()
            return bool(shown["circuit_open_until"]) and shown["consecutive_failures"] == 5

        await until(opened)
        # open for 2 s (10 polls): nothing else is tried meanwhile
        await asyncio.sleep(1.0)
        assert len(receiver.requests) == 5
        # then one probe; it succeeds, the circuit closes and the rest go out
        await until(all_in(engine, "succeeded", count=8))
    shown = (await client.get(f"{ENDPOINTS}/{ep['id']}", headers=OPS)).json()
    assert (shown["consecutive_failures"], shown["circuit_open_until"]) == (0, None)
    assert sum(r.attempts for r in await delivery_rows(engine)) == 13  # 5 failed, 8 succeeded


async def test_a_ping_is_a_signed_test_delivery_that_writes_nothing(
    client: AsyncClient, engine: AsyncEngine, settings: Settings, receiver: Receiver
) -> None:
    shop = await make_key(client, "web-shop")
    ep = await endpoint_as(client, shop, receiver.url)
    r = await client.post(f"{ENDPOINTS}/{ep['id']}/ping", headers=shop)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["delivered"], answer["status_code"], answer["error"]) == (True, 200, None)
    (got,) = receiver.requests
    body = orjson.loads(got.body)
    assert (body["type"], body["id"], body["data"]) == (
        "webhook.ping",
        answer["ping_id"],
        {"endpoint_id": ep["id"]},
    )
    assert got.headers["webhook-id"] == answer["ping_id"]
    assert verify(ep["secret"], got.headers["webhook-signature"], got.body)
    async with engine.connect() as conn:
        written = await conn.execute(
            text("SELECT (SELECT count(*) FROM event) + (SELECT count(*) FROM webhook_delivery)")
        )
        assert written.scalar_one() == 0

    receiver.script = [200, 503]
    r = await client.post(f"{ENDPOINTS}/{ep['id']}/ping", headers=shop)
    assert (r.json()["delivered"], r.json()["error"]) == (False, "HTTP 503")


async def test_a_delivery_connects_to_the_address_it_vetted_keeping_the_host_name(
    client: AsyncClient,
    engine: AsyncEngine,
    fast: Settings,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked_up: list[str] = []

    async def resolve(host: str, port: int) -> list[webhook_egress.IPAddress]:
        looked_up.append(host)  # one answer, once: a second lookup would find nothing
        if host == "hooks.shop.test" and len(looked_up) == 1:
            return [ipaddress.ip_address("127.0.0.1")]
        raise webhook_egress.UnresolvedHost(host)

    monkeypatch.setattr(webhook_egress, "resolve", resolve)
    await make_product(client, "A")
    await endpoint(client, f"http://hooks.shop.test:{receiver.port}/hooks", ["order.created"])
    await place(client, [("A", 1)])
    async with Running(engine, fast):
        await until(all_in(engine, "succeeded"))
    (got,) = receiver.requests
    assert got.headers["host"] == f"hooks.shop.test:{receiver.port}"
    assert looked_up == ["hooks.shop.test"]


def test_only_public_addresses_pass_the_vetting() -> None:
    public = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808"]
    private = [
        "127.0.0.1", "10.0.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "0.0.0.0", "255.255.255.255", "224.0.0.251", "192.0.2.1",
        "198.18.0.1", "::1", "::", "fe80::1", "fc00::1", "::ffff:10.0.0.1", "ff02::1",
        "64:ff9b::a00:1", "64:ff9b:1::808:808", "2002:7f00:1::", "2001::1", "2001:db8::1",
    ]  # fmt: skip
    assert all(webhook_egress.is_public(ipaddress.ip_address(a)) for a in public)
    assert not any(webhook_egress.is_public(ipaddress.ip_address(a)) for a in private)
