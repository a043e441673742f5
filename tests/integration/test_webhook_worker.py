"""The delivery worker against a real HTTP receiver on 127.0.0.1: retries with backoff,
signatures, timeouts, leases after a crash, a prompt stop, and several workers at once."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.config import Settings
from backorder.db import webhook_queue as queue
from backorder.services.webhooks import verify
from backorder.workers import webhooks as worker
from tests.support.api import OPS, make_product, place
from tests.support.webhooks import Receiver, Running, all_in, delivery_rows, endpoint, until


async def test_a_delivery_that_fails_twice_is_retried_and_then_succeeds(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    receiver.script = [500, 503]
    await make_product(client, "A")
    ep = await endpoint(client, receiver.url, ["order.backordered"])
    order = await place(client, [("A", 2)])
    async with Running(engine, fast):
        await until(all_in(engine, "succeeded"))
    (row,) = await delivery_rows(engine)
    assert (row.attempts, row.last_status_code, row.last_error) == (3, 200, None)
    assert len(receiver.requests) == 3

    event = (
        await client.get("/v1/events", params={"type": "order.backordered"}, headers=OPS)
    ).json()["data"][0]
    for got in receiver.requests:
        assert got.headers["content-type"] == "application/json"
        assert got.headers["webhook-id"] == event["id"]
        assert orjson.loads(got.body) == event
        assert verify(ep["secret"], got.headers["webhook-signature"], got.body)
    assert orjson.loads(receiver.requests[0].body)["data"]["order_id"] == order["id"]

    # what a receiver must refuse: a changed body, or the signature of another secret
    last = receiver.requests[-1]
    tampered = last.body.replace(b'"backordered":2', b'"backordered":1')
    assert tampered != last.body
    assert not verify(ep["secret"], last.headers["webhook-signature"], tampered)
    assert not verify("whsec_someone-else", last.headers["webhook-signature"], last.body)

    r = await client.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries", headers=OPS)
    (shown,) = r.json()["data"]
    assert (shown["status"], shown["attempts"], shown["last_status_code"]) == ("succeeded", 3, 200)


async def test_a_delivery_gives_up_after_the_last_attempt(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    receiver.script = [500] * 10
    await make_product(client, "A")
    await endpoint(client, receiver.url, ["order.created"])
    await place(client, [("A", 1)])
    two = fast.model_copy(update={"webhook_max_attempts": 2})
    async with Running(engine, two):
        await until(all_in(engine, "failed"))
    (row,) = await delivery_rows(engine)
    assert (row.attempts, row.last_status_code, row.last_error) == (2, 500, "HTTP 500")
    assert len(receiver.requests) == 2


async def test_a_receiver_that_does_not_answer_in_time_is_retried(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    receiver.script = ["hang"]
    await make_product(client, "A")
    await endpoint(client, receiver.url, ["order.created"])
    await place(client, [("A", 1)])
    quick = fast.model_copy(update={"webhook_timeout_s": 0.3})
    async with Running(engine, quick):
        await until(all_in(engine, "succeeded"))
    (row,) = await delivery_rows(engine)
    assert row.attempts == 2
    assert len(receiver.requests) == 2


async def test_a_worker_that_dies_mid_delivery_leaves_it_to_the_next_after_the_lease(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    receiver.script = ["hang"]
    await make_product(client, "A")
    await endpoint(client, receiver.url, ["order.created"])
    await place(client, [("A", 1)])
    slow = fast.model_copy(update={"webhook_timeout_s": 30.0})
    first = asyncio.create_task(worker.run(engine, slow, asyncio.Event(), lease_s=1.0))
    await receiver.wait_for_requests(1)
    first.cancel()  # a crash: no chance to hand the claim back
    with contextlib.suppress(asyncio.CancelledError):
        await first
    (row,) = await delivery_rows(engine)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at > row.now  # leased

    async with Running(engine, fast, lease_s=1.0):
        await until(all_in(engine, "succeeded"))
    (row,) = await delivery_rows(engine)
    assert row.attempts == 2
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(row.event_id)] * 2


async def test_a_stopped_worker_stops_at_once_and_hands_its_claims_back(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    receiver.script = ["hang"]
    await make_product(client, "A")
    await endpoint(client, receiver.url, ["order.created"])
    await place(client, [("A", 1)])
    slow = fast.model_copy(update={"webhook_timeout_s": 30.0})
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(engine, slow, stop, lease_s=600.0))
    await receiver.wait_for_requests(1)
    stop.set()
    await asyncio.wait_for(task, 2)  # promptly, though the POST would wait 30 s
    (row,) = await delivery_rows(engine)
    assert row.status == "pending"
    assert row.next_attempt_at <= row.now  # due again now, not in 600 s
    assert row.last_error == "interrupted: the worker stopped"

    async with Running(engine, fast, lease_s=600.0):
        await until(all_in(engine, "succeeded"))


async def test_a_delivery_whose_outcomes_never_arrive_fails_for_good_after_the_last_attempt(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    # Each request outlives its lease, so no outcome is ever recorded: only the count taken
    # at the claim can end it.
    receiver.script = ["hang"] * 20
    await make_product(client, "A")
    await endpoint(client, receiver.url, ["order.created"])
    await place(client, [("A", 1)])
    lost = fast.model_copy(
        update={
            "webhook_timeout_s": 30.0,
            "webhook_max_attempts": 2,
            "webhook_endpoint_concurrency": 8,
        }
    )
    async with Running(engine, lost, lease_s=0.2):
        await until(all_in(engine, "failed"))
        await asyncio.sleep(0.6)  # three more leases' time: it is not claimed again
        (row,) = await delivery_rows(engine)
        assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 2, None)
        assert row.last_error == queue.SPENT_ERROR
        assert len(receiver.requests) == 2


async def test_a_last_attempt_interrupted_by_a_stop_is_made_again_after_a_restart(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    receiver.script = ["hang"]
    await make_product(client, "A")
    await endpoint(client, receiver.url, ["order.created"])
    await place(client, [("A", 1)])
    once = fast.model_copy(update={"webhook_timeout_s": 30.0, "webhook_max_attempts": 1})
    async with Running(engine, once, lease_s=600.0):
        await receiver.wait_for_requests(1)
    (row,) = await delivery_rows(engine)
    assert (row.status, row.attempts) == ("pending", 0)  # the handed-back claim is undone

    async with Running(engine, once, lease_s=600.0):
        await until(all_in(engine, "succeeded"))
    (row,) = await delivery_rows(engine)
    assert row.attempts == 1
    assert len(receiver.requests) == 2


async def test_several_workers_deliver_each_event_to_each_endpoint_once(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    await make_product(client, "A", on_hand=100)
    ep_all = await endpoint(client, receiver.url, ["*"])
    ep_created = await endpoint(client, receiver.url + "?only=created", ["order.created"])
    for _ in range(15):
        await place(client, [("A", 1)])  # order.created + order.ready_to_ship each
    async with Running(engine, fast, concurrency=3), Running(engine, fast, concurrency=3):
        await until(all_in(engine, "succeeded", count=30 + 15))
    rows = await delivery_rows(engine)
    per_endpoint = {
        ep_all["id"]: sum(1 for r in rows if str(r.endpoint_id) == ep_all["id"]),
        ep_created["id"]: sum(1 for r in rows if str(r.endpoint_id) == ep_created["id"]),
    }
    assert per_endpoint == {ep_all["id"]: 30, ep_created["id"]: 15}
    assert all(r.attempts == 1 for r in rows)
    assert len(receiver.requests) == 45  # nothing twice


async def test_an_endpoint_receives_only_events_from_after_it_was_registered(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    await make_product(client, "A")
    await place(client, [("A", 1)])
    await endpoint(client, receiver.url, ["order.created"])
    later = await place(client, [("A", 1)])
    async with Running(engine, fast):
        await until(all_in(engine, "succeeded"))
    assert [orjson.loads(r.body)["data"]["order_id"] for r in receiver.requests] == [later["id"]]


async def test_a_paused_endpoint_keeps_its_deliveries_until_enabled(
    client: AsyncClient, engine: AsyncEngine, fast: Settings, receiver: Receiver
) -> None:
    await make_product(client, "A")
    ep = await endpoint(client, receiver.url, ["order.created"])
    await place(client, [("A", 1)])
    r = await client.patch(
        f"/v1/webhook-endpoints/{ep['id']}", json={"enabled": False}, headers=OPS
    )
    assert r.status_code == 200
    await place(client, [("A", 1)])
    async with Running(engine, fast):
        await until(all_in(engine, "pending", count=2))
        await asyncio.sleep(0.3)  # several polls: still nothing is sent
        assert receiver.requests == []
        await client.patch(f"/v1/webhook-endpoints/{ep['id']}", json={"enabled": True}, headers=OPS)
        await until(all_in(engine, "succeeded", count=2))
    assert len(receiver.requests) == 2
