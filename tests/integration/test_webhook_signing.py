"""Retries and secrets: the backoff schedule (bounds, doubling, cap, jitter) as the worker
applies it, and rotation, with and without an overlap, for every later attempt, retries of
older events included."""

from __future__ import annotations

import random
import statistics

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.config import Settings
from backorder.services.webhooks import verify
from backorder.workers.webhooks import Backoff
from tests.support.api import OPS, make_product, place
from tests.support.webhooks import Receiver, Running, all_in, delivery_rows, endpoint, until

ENDPOINTS = "/v1/webhook-endpoints"


# --- the backoff schedule ------------------------------------------------------------------


@pytest.mark.parametrize("attempts", range(1, 12))
def test_each_retry_waits_between_half_and_all_of_a_doubling_capped_delay(attempts: int) -> None:
    backoff = Backoff(base_s=5.0, cap_s=300.0)
    full = min(300.0, 5.0 * 2 ** (attempts - 1))
    delays = [backoff.delay(attempts) for _ in range(300)]
    assert all(full / 2 <= d <= full for d in delays), (attempts, min(delays), max(delays))
    # jitter: spread over the band, not one value (nor only its ends)
    assert len({round(d, 6) for d in delays}) > 250
    assert statistics.pstdev(delays) > full / 20
    assert abs(statistics.fmean(delays) - 0.75 * full) < 0.05 * full


def test_the_delay_doubles_with_each_attempt_until_the_cap() -> None:
    random.seed(7)
    backoff = Backoff(base_s=2.0, cap_s=60.0)
    ceilings = [max(backoff.delay(n) for _ in range(400)) for n in range(1, 9)]
    # each band's top is the full delay: 2, 4, 8, 16, 32, then the cap
    for got, want in zip(ceilings, [2, 4, 8, 16, 32, 60, 60, 60], strict=True):
        assert want * 0.97 <= got <= want
    assert backoff.delay(1000) <= 60.0  # no overflow far past the cap


def test_the_default_schedule_starts_at_ten_polls() -> None:
    settings = Settings(webhook_poll_interval_s=0.5)
    assert Backoff.for_settings(settings).base_s == 5.0
    assert Backoff.for_settings(settings).cap_s == 3600.0


async def test_the_worker_waits_the_backoff_before_each_retry(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    receiver.script = [503] * 3
    await make_product(client, "A")
    await endpoint(client, receiver.url, ["order.created"])
    await place(client, [("A", 1)])
    backoff = Backoff(base_s=2.0)
    async with Running(engine, fast, backoff=backoff):
        await receiver.wait_for_requests(1)

        async def failed_once() -> bool:
            (row,) = await delivery_rows(engine)
            return row.last_error == "HTTP 503"

        await until(failed_once)
        async with engine.connect() as conn:
            wait = (
                await conn.execute(
                    text(
                        "SELECT extract(epoch FROM next_attempt_at - last_attempt_at) "
                        "FROM webhook_delivery"
                    )
                )
            ).scalar_one()
        assert 1.0 <= float(wait) <= 2.5  # between half and all of 2 s (and the call's time)
        assert len(receiver.requests) == 1  # nothing before the delay


# --- rotation ------------------------------------------------------------------------------


async def expire_overlap(engine: AsyncEngine) -> None:
    """The overlap's end, without waiting for it."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE webhook_endpoint SET previous_secret_expires_at = clock_timestamp() "
                "WHERE previous_secret IS NOT NULL"
            )
        )


async def test_after_a_rotation_every_delivery_verifies_with_the_new_secret_only(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    receiver.script = [503, 503]  # the older event fails before the rotation...
    await make_product(client, "A")
    ep = await endpoint(client, receiver.url, ["order.created"])
    await place(client, [("A", 1)])
    async with Running(engine, fast, backoff=Backoff(base_s=0.5)):
        await receiver.wait_for_requests(1)
    old = ep["secret"]
    assert verify(old, receiver.requests[0].headers["webhook-signature"], receiver.requests[0].body)

    r = await client.post(
        f"{ENDPOINTS}/{ep['id']}/rotate-secret", json={"overlap_seconds": 3600}, headers=OPS
    )
    assert r.status_code == 200, r.text
    new = r.json()["secret"]
    assert r.json()["previous_secret_expires_at"] is not None
    await expire_overlap(engine)
    shown = (await client.get(f"{ENDPOINTS}/{ep['id']}", headers=OPS)).json()
    assert shown["previous_secret_expires_at"] is None

    await place(client, [("A", 1)])  # ...and a newer one after it
    async with Running(engine, fast, backoff=Backoff(base_s=0.2)):
        await until(all_in(engine, "succeeded", count=2))
    after = receiver.requests[1:]
    assert len(after) >= 3  # the older event's retries and the newer event
    assert {r.headers["webhook-id"] for r in after} == {
        str(row.event_id) for row in await delivery_rows(engine)
    }
    for got in after:
        signature = got.headers["webhook-signature"]
        assert signature.count("v1=") == 1
        assert verify(new, signature, got.body)
        assert not verify(old, signature, got.body)


async def test_during_an_overlap_both_secrets_sign_every_delivery(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    await make_product(client, "A")
    ep = await endpoint(client, receiver.url, ["order.created"])
    r = await client.post(
        f"{ENDPOINTS}/{ep['id']}/rotate-secret", json={"overlap_seconds": 600}, headers=OPS
    )
    new = r.json()["secret"]
    await place(client, [("A", 1)])
    async with Running(engine, fast):
        await until(all_in(engine, "succeeded"))
    (got,) = receiver.requests
    signature = got.headers["webhook-signature"]
    t, first, second = signature.split(",")
    assert t.startswith("t=") and first.startswith("v1=") and second.startswith("v1=")
    assert verify(new, signature, got.body) and verify(ep["secret"], signature, got.body)
    assert not verify("whsec_someone-else", signature, got.body)
    # the new secret's signature comes first, as Stripe orders them
    assert verify(new, f"{t},{first}", got.body)
    assert verify(ep["secret"], f"{t},{second}", got.body)


async def test_a_rotation_without_an_overlap_stops_the_old_secret_at_once(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    await make_product(client, "A")
    ep = await endpoint(client, receiver.url, ["order.created"])
    await place(client, [("A", 1)])
    r = await client.post(f"{ENDPOINTS}/{ep['id']}/rotate-secret", headers=OPS)
    assert r.json()["previous_secret_expires_at"] is None
    async with Running(engine, fast):
        await until(all_in(engine, "succeeded"))
    (got,) = receiver.requests
    assert verify(r.json()["secret"], got.headers["webhook-signature"], got.body)
    assert not verify(ep["secret"], got.headers["webhook-signature"], got.body)


async def test_bad_rotation_bodies_are_validation_errors(client: AsyncClient) -> None:
    ep = await endpoint(client, "https://hooks.example.com/in", ["*"])
    for bad in ({"overlap_seconds": -1}, {"overlap_seconds": 7 * 86400 + 1},
                {"overlap_seconds": "60"}, {"overlap_seconds": 1.5}, {"other": 1},
                {"overlap_seconds": True}):  # fmt: skip
        r = await client.post(f"{ENDPOINTS}/{ep['id']}/rotate-secret", json=bad, headers=OPS)
        assert (r.status_code, r.json()["code"]) == (422, "validation_error"), bad
