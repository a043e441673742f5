"""/v1/webhook-endpoints: registering, reading, changing, rotating and deleting endpoints, their
deliveries, and the signature a receiver checks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import re
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.api.app import create_app
from backorder.config import Settings
from backorder.domain.errors import ValidationFailed
from backorder.services import webhook_egress
from backorder.services import webhooks as service
from backorder.workers import webhooks as worker
from tests.support.api import OPS, make_key, make_product, place

ENDPOINTS = "/v1/webhook-endpoints"


async def create_endpoint(
    client: AsyncClient, event_types: list[str], url: str = "https://hooks.example.com/in"
) -> dict[str, Any]:
    r = await client.post(ENDPOINTS, json={"url": url, "event_types": event_types}, headers=OPS)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def deliveries(client: AsyncClient, endpoint_id: str, **params: Any) -> list[Any]:
    r = await client.get(f"{ENDPOINTS}/{endpoint_id}/deliveries", params=params, headers=OPS)
    assert r.status_code == 200, r.text
    data: list[Any] = r.json()["data"]
    return data


async def run_worker_until(
    engine: AsyncEngine,
    settings: Settings,
    handler: Callable[[httpx.Request], httpx.Response],
    done: Callable[[], Any],
) -> None:
    """Run the delivery worker against an in-process transport until `done()` is true."""
    stop = asyncio.Event()
    fast = settings.model_copy(update={"webhook_poll_interval_s": 0.02})
    task = asyncio.create_task(
        worker.run(engine, fast, stop, transport=httpx.MockTransport(handler))
    )
    try:
        async with asyncio.timeout(15):
            while not await done():  # noqa: ASYNC110 (the condition is in the database)
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


# --- endpoints -----------------------------------------------------------------------------


async def test_an_endpoint_is_registered_with_a_secret_shown_once(client: AsyncClient) -> None:
    r = await client.post(
        ENDPOINTS,
        json={
            "url": "https://shop.example.com/hooks",
            "event_types": ["order.backordered", "order.ready_to_ship", "order.backordered"],
            "description": "web shop",
        },
        headers=OPS,
    )
    assert r.status_code == 201, r.text
    ep = r.json()
    assert ep["secret"].startswith("whsec_") and len(ep["secret"]) > 30
    assert ep["event_types"] == ["order.backordered", "order.ready_to_ship"]
    assert (ep["url"], ep["description"], ep["enabled"]) == (
        "https://shop.example.com/hooks",
        "web shop",
        True,
    )
    got = (await client.get(f"{ENDPOINTS}/{ep['id']}", headers=OPS)).json()
    assert "secret" not in got
    assert got == {k: v for k, v in ep.items() if k != "secret"}
    listed = (await client.get(ENDPOINTS, headers=OPS)).json()
    assert [e["id"] for e in listed["data"]] == [ep["id"]]
    assert listed["next_cursor"] is None
    assert all("secret" not in e for e in listed["data"])


async def test_bad_endpoint_bodies_are_validation_errors(client: AsyncClient) -> None:
    good = {"url": "https://hooks.example.com/in", "event_types": ["order.created"]}
    for bad in (
        {**good, "url": "ftp://hooks.example.com/in"},
        {**good, "url": "hooks.example.com/in"},
        {**good, "url": "https://"},
        {**good, "url": "https://hooks.example.com/" + "x" * 2100},
        {**good, "url": "https://hooks.example.com/a b"},
        {**good, "event_types": []},
        {**good, "event_types": ["order.teleported"]},
        {**good, "event_types": "order.created"},
        {**good, "secret": "mine"},
        {"url": good["url"]},
    ):
        r = await client.post(ENDPOINTS, json=bad, headers=OPS)
        assert (r.status_code, r.json()["code"]) == (422, "validation_error"), bad


MALFORMED_URLS = [
    "http://example.com:99999/",  # a port past 65535
    "http://example.com:65536/hooks",
    "http://example.com:0/",
    "http://example.com:-1/",
    "http://example.com:8o/",
    "http://example.com:/",
    "http://[::1/",  # an unclosed IPv6 bracket
    "http://[::1]:99999/",
    "http://[not-an-ip]/",
    "http://user@/",  # user-info and no host
    "http://user:pass@:8080/",
    "http://:80/",
    "http:///hooks",
    "http://@/",
    "http://exa mple.com/",
]


@pytest.mark.parametrize("url", MALFORMED_URLS)
async def test_a_malformed_url_is_a_validation_error_naming_url_on_create_and_change(
    client: AsyncClient, url: str
) -> None:
    r = await client.post(ENDPOINTS, json={"url": url, "event_types": ["*"]}, headers=OPS)
    assert (r.status_code, r.json()["code"]) == (422, "validation_error"), r.text
    assert [e["field"] for e in r.json()["errors"]] == ["url"]
    ep = await create_endpoint(client, ["*"])
    r = await client.patch(f"{ENDPOINTS}/{ep['id']}", json={"url": url}, headers=OPS)
    assert (r.status_code, r.json()["code"]) == (422, "validation_error"), r.text
    assert [e["field"] for e in r.json()["errors"]] == ["url"]


@pytest.mark.parametrize(
    "url", [*MALFORMED_URLS, "http://a..b/", "http://xn--/", "http://" + "a" * 64 + ".com/"]
)
async def test_vetting_refuses_a_url_it_cannot_read_rather_than_raising(url: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        await webhook_egress.vet_url(url, allow_private=False)
    assert [e["field"] for e in refused.value.extra["errors"]] == ["url"]


async def test_a_storefront_manages_its_own_endpoints_and_no_other_channels(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    pos = await make_key(client, "pos")
    body = {"url": "https://hooks.example.com/in", "event_types": ["*"]}
    r = await client.post(ENDPOINTS, json=body, headers=shop)
    assert r.status_code == 201, r.text
    mine = r.json()
    assert (mine["channel"], mine["owner"]) == ("web-shop", "storefront")
    r = await client.post(ENDPOINTS, json={**body, "channel": "web-shop"}, headers=shop)
    assert r.status_code == 201, r.text
    second = r.json()
    theirs = (await client.post(ENDPOINTS, json=body, headers=pos)).json()
    ops_one = await create_endpoint(client, ["*"])
    for_shop = {**body, "channel": "web-shop"}
    ops_shop = (await client.post(ENDPOINTS, json=for_shop, headers=OPS)).json()
    assert (ops_shop["channel"], ops_shop["owner"]) == ("web-shop", "ops")

    # another channel's name: refused, nothing written
    r = await client.post(ENDPOINTS, json={**body, "channel": "pos"}, headers=shop)
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = await client.patch(f"{ENDPOINTS}/{mine['id']}", json={"channel": "pos"}, headers=shop)
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = await client.patch(f"{ENDPOINTS}/{mine['id']}", json={"channel": None}, headers=OPS)
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")

    # the storefront lists its own only; ops endpoints, even of its channel, are not its own
    listed = (await client.get(ENDPOINTS, headers=shop)).json()["data"]
    assert [e["id"] for e in listed] == [mine["id"], second["id"]]
    everything = (await client.get(ENDPOINTS, headers=OPS)).json()["data"]
    assert {e["id"] for e in everything} == {
        mine["id"],
        second["id"],
        theirs["id"],
        ops_one["id"],
        ops_shop["id"],
    }

    # another channel's endpoint, or an ops one, answers as if it did not exist
    for other in (theirs["id"], ops_one["id"], ops_shop["id"]):
        for method, path, json in (
            ("GET", f"{ENDPOINTS}/{other}", None),
            ("PATCH", f"{ENDPOINTS}/{other}", {"enabled": False}),
            ("DELETE", f"{ENDPOINTS}/{other}", None),
            ("POST", f"{ENDPOINTS}/{other}/rotate-secret", None),
            ("POST", f"{ENDPOINTS}/{other}/ping", None),
            ("GET", f"{ENDPOINTS}/{other}/deliveries", None),
            ("POST", f"{ENDPOINTS}/{other}/deliveries/1/retry", None),
        ):
            r = await client.request(method, path, json=json, headers=shop)
            assert (r.status_code, r.json()["code"]) == (404, "not_found"), (method, path)
    assert (await client.get(f"{ENDPOINTS}/{theirs['id']}", headers=pos)).status_code == 200

    # its own: change, rotate, delete (204)
    r = await client.patch(f"{ENDPOINTS}/{mine['id']}", json={"enabled": False}, headers=shop)
    assert (r.status_code, r.json()["enabled"]) == (200, False)
    r = await client.post(f"{ENDPOINTS}/{mine['id']}/rotate-secret", headers=shop)
    assert r.status_code == 200 and r.json()["secret"] != mine["secret"]
    r = await client.delete(f"{ENDPOINTS}/{mine['id']}", headers=shop)
    assert r.status_code == 204
    assert (await client.get(f"{ENDPOINTS}/{mine['id']}", headers=shop)).status_code == 404


async def test_each_channel_may_have_a_bounded_number_of_endpoints(
    settings: Settings, clean_db: None
) -> None:
    app = create_app(settings.model_copy(update={"webhook_max_endpoints_per_channel": 2}))
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        shop = await make_key(client, "web-shop")
        pos = await make_key(client, "pos")
        body = {"url": "https://hooks.example.com/in", "event_types": ["*"]}
        made = [(await client.post(ENDPOINTS, json=body, headers=shop)).json() for _ in range(2)]
        r = await client.post(ENDPOINTS, json=body, headers=shop)
        assert (r.status_code, r.json()["code"], r.json()["limit"]) == (409, "conflict", 2)
        assert (await client.post(ENDPOINTS, json=body, headers=pos)).status_code == 201
        assert (await client.post(ENDPOINTS, json=body, headers=OPS)).status_code == 201
        await client.delete(f"{ENDPOINTS}/{made[0]['id']}", headers=shop)
        assert (await client.post(ENDPOINTS, json=body, headers=shop)).status_code == 201


async def test_private_and_loopback_webhook_urls_are_refused(
    settings: Settings, clean_db: None
) -> None:
    strict = settings.model_copy(update={"webhook_allow_private_networks": False})
    app = create_app(strict)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        shop = await make_key(client, "web-shop")
        for url in (
            "http://127.0.0.1:8080/hooks",
            "http://localhost/hooks",
            "http://10.1.2.3/hooks",
            "http://192.168.0.10/hooks",
            "http://172.16.5.4/hooks",
            "http://169.254.169.254/latest/meta-data",  # cloud metadata
            "http://100.64.0.1/hooks",  # shared address space (CGNAT)
            "http://0.0.0.0/hooks",
            "http://[::1]/hooks",
            "http://[fe80::1]/hooks",
            "http://[fd00::1]/hooks",
            "http://[::ffff:127.0.0.1]/hooks",
            "http://224.0.0.1/hooks",
            "http://no-such-host.invalid/hooks",
        ):
            body = {"url": url, "event_types": ["*"]}
            r = await client.post(ENDPOINTS, json=body, headers=shop)
            assert (r.status_code, r.json()["code"]) == (422, "validation_error"), url
            assert r.json()["errors"][0]["field"] == "url", r.json()
        assert (await client.get(ENDPOINTS, headers=OPS)).json()["data"] == []
        public = {"url": "https://93.184.216.34/hooks", "event_types": ["*"]}
        ep = await client.post(ENDPOINTS, json=public, headers=shop)
        assert ep.status_code == 201, ep.text
        r = await client.patch(
            f"{ENDPOINTS}/{ep.json()['id']}", json={"url": "http://127.0.0.1/x"}, headers=shop
        )
        assert (r.status_code, r.json()["code"]) == (422, "validation_error")
        got = await client.get(f"{ENDPOINTS}/{ep.json()['id']}", headers=shop)
        assert got.json()["url"] == public["url"]


async def test_an_idempotent_replay_does_not_depend_on_what_dns_says_now(
    settings: Settings, clean_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = {"hooks.shop.test": "93.184.216.34", "new.shop.test": "93.184.216.35"}
    looked_up: list[str] = []

    async def resolve(host: str, port: int) -> list[webhook_egress.IPAddress]:
        looked_up.append(host)
        if host not in answers:
            await asyncio.sleep(1)  # longer than the lookup may take: 503, try again
        return [ipaddress.ip_address(answers[host])]

    monkeypatch.setattr(webhook_egress, "resolve", resolve)
    monkeypatch.setattr(webhook_egress, "RESOLVE_TIMEOUT_S", 0.05)
    strict = settings.model_copy(update={"webhook_allow_private_networks": False})
    app = create_app(strict)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        body = {"url": "https://hooks.shop.test/in", "event_types": ["*"]}
        keyed = {**OPS, "Idempotency-Key": "create-1"}
        first = await client.post(ENDPOINTS, json=body, headers=keyed)
        assert first.status_code == 201, first.text
        patch = {"url": "https://new.shop.test/in"}
        where = f"{ENDPOINTS}/{first.json()['id']}"
        patch_keyed = {**OPS, "Idempotency-Key": "change-1"}
        changed = await client.patch(where, json=patch, headers=patch_keyed)
        assert changed.status_code == 200, changed.text
        assert looked_up == ["hooks.shop.test", "new.shop.test"]

        # the names now resolve to private addresses, or not in time: new requests are refused
        answers.update({"hooks.shop.test": "10.0.0.1", "new.shop.test": "10.0.0.2"})
        refused_key = {**OPS, "Idempotency-Key": "create-2"}
        r = await client.post(ENDPOINTS, json=body, headers=refused_key)
        assert (r.status_code, r.json()["code"]) == (422, "validation_error")
        del answers["hooks.shop.test"], answers["new.shop.test"]
        r = await client.post(ENDPOINTS, json=body, headers=OPS)
        assert r.status_code == 503, r.text
        looked_up.clear()

        # but the retries of what was done replay it, without a lookup
        again = await client.post(ENDPOINTS, json=body, headers=keyed)
        assert (again.status_code, again.headers.get("idempotent-replayed")) == (201, "true")
        assert again.json()["id"] == first.json()["id"]
        again = await client.patch(where, json=patch, headers=patch_keyed)
        assert (again.status_code, again.headers.get("idempotent-replayed")) == (200, "true")
        assert again.json() == changed.json()
        # a refusal is stored under its key like any other answer, and replayed as well
        r = await client.post(ENDPOINTS, json=body, headers=refused_key)
        assert (r.status_code, r.headers.get("idempotent-replayed")) == (422, "true")
        assert looked_up == []


async def test_an_endpoint_changes_rotates_and_deletes(client: AsyncClient) -> None:
    ep = await create_endpoint(client, ["order.created"])
    r = await client.patch(
        f"{ENDPOINTS}/{ep['id']}",
        json={"event_types": ["*"], "enabled": False, "description": "paused"},
        headers=OPS,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["event_types"], r.json()["enabled"], r.json()["description"]) == (
        ["*"],
        False,
        "paused",
    )
    r = await client.patch(f"{ENDPOINTS}/{ep['id']}", json={"description": None}, headers=OPS)
    assert (r.json()["description"], r.json()["url"]) == (None, ep["url"])

    rotated = await client.post(f"{ENDPOINTS}/{ep['id']}/rotate-secret", headers=OPS)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != ep["secret"]

    gone = await client.delete(f"{ENDPOINTS}/{ep['id']}", headers=OPS)
    assert gone.status_code == 204
    assert (await client.get(f"{ENDPOINTS}/{ep['id']}", headers=OPS)).status_code == 404
    assert (await client.delete(f"{ENDPOINTS}/{ep['id']}", headers=OPS)).status_code == 404
    assert (await client.get(ENDPOINTS, headers=OPS)).json()["data"] == []
    r = await client.get(f"{ENDPOINTS}/{ep['id']}/deliveries", headers=OPS)
    assert r.status_code == 404


# --- deliveries ----------------------------------------------------------------------------


async def test_deliveries_are_listed_with_their_attempts_and_outcomes(
    client: AsyncClient, engine: AsyncEngine, settings: Settings
) -> None:
    await make_product(client, "A", on_hand=1)
    ep = await create_endpoint(client, ["order.backordered", "order.created"])
    other = await create_endpoint(client, ["product.low_stock"])
    order = await place(client, [("A", 3)])
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503 if len(calls) == 1 else 204)

    async def done() -> bool:
        rows = await deliveries(client, ep["id"])
        return len(rows) == 2 and {d["status"] for d in rows} == {"succeeded"}

    await run_worker_until(engine, settings, handler, done)
    rows = await deliveries(client, ep["id"])
    assert [d["event_type"] for d in rows] == ["order.backordered", "order.created"]  # newest first
    assert sorted(d["attempts"] for d in rows) == [1, 2]
    assert {d["last_status_code"] for d in rows} == {204}
    assert all(d["delivered_at"] and d["last_error"] is None for d in rows)
    assert await deliveries(client, other["id"]) == []
    bodies = [orjson.loads(c.content) for c in calls]
    assert {b["data"]["order_id"] for b in bodies} == {order["id"]}
    assert len(await deliveries(client, ep["id"], status="succeeded", limit=1)) == 1
    page = await client.get(f"{ENDPOINTS}/{ep['id']}/deliveries?limit=1", headers=OPS)
    rest = await deliveries(client, ep["id"], cursor=page.json()["next_cursor"])
    assert [d["id"] for d in page.json()["data"] + rest] == [d["id"] for d in rows]


async def test_an_attempt_whose_transport_raises_is_recorded_as_a_coarse_failure(
    client: AsyncClient, engine: AsyncEngine, settings: Settings
) -> None:
    await make_product(client, "A")
    ep = await create_endpoint(client, ["order.created"])
    await place(client, [("A", 1)])
    await place(client, [("A", 1)])
    one_try = settings.model_copy(update={"webhook_max_attempts": 1})
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("internal detail: 10.0.0.7 refused")  # not an httpx error
        return httpx.Response(200)

    async def both_done() -> bool:
        rows = await deliveries(client, ep["id"])
        return len(rows) == 2 and all(r["status"] != "pending" for r in rows)

    await run_worker_until(engine, one_try, handler, both_done)
    rows = await deliveries(client, ep["id"])
    outcomes = sorted((r["status"], r["last_status_code"], r["last_error"]) for r in rows)
    assert outcomes == [("failed", None, "connection failed"), ("succeeded", 200, None)]


async def test_a_failed_delivery_can_be_retried_by_hand(
    client: AsyncClient, engine: AsyncEngine, settings: Settings
) -> None:
    await make_product(client, "A")
    ep = await create_endpoint(client, ["order.created"])
    await place(client, [("A", 1)])
    one_try = settings.model_copy(update={"webhook_max_attempts": 1})
    answer = 500

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(answer)

    def status_is(status: str) -> Callable[[], Any]:
        async def check() -> bool:
            rows = await deliveries(client, ep["id"])
            return bool(rows) and rows[0]["status"] == status

        return check

    await run_worker_until(engine, one_try, handler, status_is("failed"))
    (failed,) = await deliveries(client, ep["id"])
    assert (failed["attempts"], failed["last_status_code"], failed["last_error"]) == (
        1,
        500,
        "HTTP 500",
    )
    assert failed["next_attempt_at"] is None  # nothing is due once it failed for good
    answer = 200
    r = await client.post(f"{ENDPOINTS}/{ep['id']}/deliveries/{failed['id']}/retry", headers=OPS)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending"
    await run_worker_until(engine, one_try, handler, status_is("succeeded"))
    (done,) = await deliveries(client, ep["id"])
    assert (done["attempts"], done["last_status_code"]) == (2, 200)
    assert (done["next_attempt_at"], done["manual_retries"]) == (None, 1)
    missing = await client.post(f"{ENDPOINTS}/{ep['id']}/deliveries/999999/retry", headers=OPS)
    assert missing.status_code == 404


async def test_retries_by_hand_are_bounded_per_delivery(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    await make_product(client, "A")
    ep = await create_endpoint(client, ["order.created"])
    await place(client, [("A", 1)])
    async with engine.begin() as conn:  # a failed delivery (the worker is off in tests)
        delivery_id = (
            await conn.execute(
                text(
                    "INSERT INTO webhook_delivery (endpoint_id, event_id, status, attempts, "
                    "next_attempt_at) SELECT :ep, max(id), 'failed', 8, NULL FROM event "
                    "RETURNING id"
                ),
                {"ep": ep["id"]},
            )
        ).scalar_one()
    path = f"{ENDPOINTS}/{ep['id']}/deliveries/{delivery_id}/retry"
    for n in range(1, 6):
        r = await client.post(path, headers=OPS)
        assert (r.status_code, r.json()["manual_retries"]) == (200, n), r.text
        assert r.json()["next_attempt_at"] is not None
    r = await client.post(path, headers=OPS)
    assert (r.status_code, r.json()["code"], r.json()["limit"]) == (409, "conflict", 5)


async def test_deleting_an_endpoint_abandons_its_pending_deliveries(
    client: AsyncClient, engine: AsyncEngine, settings: Settings
) -> None:
    await make_product(client, "A")
    ep = await create_endpoint(client, ["order.created"])
    await place(client, [("A", 1)])

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500)

    async def attempted() -> bool:
        rows = await deliveries(client, ep["id"])
        return bool(rows) and rows[0]["attempts"] >= 1

    await run_worker_until(engine, settings, refuse, attempted)
    assert (await client.delete(f"{ENDPOINTS}/{ep['id']}", headers=OPS)).status_code == 204
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT status, last_error FROM webhook_delivery"))).all()
    assert [(r.status, r.last_error) for r in rows] == [("failed", "endpoint deleted")]


# --- signatures ----------------------------------------------------------------------------


def test_a_signature_verifies_with_the_secret_and_nothing_else() -> None:
    secret = service.new_secret()
    body = b'{"id":"1","type":"order.created"}'
    header = service.sign(secret, body)
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    t = int(header.split(",")[0][2:])
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == f"t={t},v1={expected}"
    assert service.verify(secret, header, body)
    assert not service.verify(secret, header, body.replace(b"1", b"2"))
    assert not service.verify(service.new_secret(), header, body)
    assert not service.verify(secret, header, body, now=time.time() + 3600)
    assert not service.verify(secret, "v1=abc", body)
    assert not service.verify(secret, "garbage", body)


def test_the_documented_receiver_snippet_verifies_real_signatures() -> None:
    """The docstring's snippet is what the README shows receivers: it must work as written."""
    doc = service.__doc__ or ""
    block = doc.split("How a receiver verifies a delivery (Python, standard library only)::")[1]
    code = textwrap.dedent(block.split("\n\n", 1)[1].split("\nVerify against")[0])
    namespace: dict[str, Any] = {}
    exec(compile(code, "snippet", "exec"), namespace)
    verify = namespace["verify"]
    secret = service.new_secret()
    created_at = datetime(2026, 11, 23, 16, 3, 13, tzinfo=UTC)
    body = service.event_body(7, "order.created", created_at, {"order_id": "o-1"})
    header = service.sign(secret, body)
    assert verify(secret, header, body) is True
    assert verify(secret, header, body + b" ") is False
    assert verify("whsec_other", header, body) is False
    assert (
        verify(secret, service.sign(secret, body, timestamp=int(time.time()) - 3600), body) is False
    )
