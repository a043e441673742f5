"""A secret shown once is never kept for a replay, and expired idempotency keys do not stay."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest
from httpx import AsyncClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.config import Settings
from backorder.workers import housekeeping
from tests.conftest import _plain
from tests.security.conftest import Service
from tests.support.api import OPS


def stored_answers(database_url: str) -> list[bytes]:
    with psycopg.connect(_plain(database_url)) as conn:
        return [bytes(r[0]) for r in conn.execute("SELECT response_body FROM idempotency_key")]


def assert_never_stored(database_url: str, secret: str) -> None:
    rows = stored_answers(database_url)
    assert rows, "nothing was stored under the Idempotency-Key"
    for body in rows:
        assert secret.encode() not in body
        assert secret[-16:].encode() not in body  # not even in part


async def test_an_api_keys_secret_is_never_stored_in_a_replay(
    client: AsyncClient, database_url: str
) -> None:
    headers = {**OPS, "Idempotency-Key": "make-key-1"}
    body = {"name": "web-shop", "role": "storefront"}
    first = await client.post("/v1/api-keys", json=body, headers=headers)
    assert first.status_code == 201, first.text
    secret = first.json()["key"]
    assert secret.startswith("bo_")
    assert_never_stored(database_url, secret)

    replay = await client.post("/v1/api-keys", json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]  # the same key, not a second one
    assert secret not in replay.text
    assert "redacted" in replay.json()["key"]
    listed = (await client.get("/v1/api-keys", headers=OPS)).json()["data"]
    assert len(listed) == 1


@pytest.mark.parametrize("step", ["create", "rotate"])
async def test_a_webhook_signing_secret_is_never_stored_in_a_replay(
    client: AsyncClient, database_url: str, step: str
) -> None:
    body = {"url": "https://hooks.example.com/in", "event_types": ["*"]}
    created = await client.post(
        "/v1/webhook-endpoints",
        json=body,
        headers={**OPS, "Idempotency-Key": "hook-1"} if step == "create" else OPS,
    )
    assert created.status_code == 201, created.text
    secret, path = created.json()["secret"], "/v1/webhook-endpoints"
    if step == "rotate":
        path = f"/v1/webhook-endpoints/{created.json()['id']}/rotate-secret"
        rotated = await client.post(path, headers={**OPS, "Idempotency-Key": "rotate-1"})
        assert rotated.status_code == 200, rotated.text
        secret = rotated.json()["secret"]
    assert secret.startswith("whsec_")
    assert_never_stored(database_url, secret)

    key = "hook-1" if step == "create" else "rotate-1"
    replay = await client.post(
        path, json=body if step == "create" else None, headers={**OPS, "Idempotency-Key": key}
    )
    assert replay.headers["idempotent-replayed"] == "true"
    assert secret not in replay.text


def add_keys(database_url: str, *, expired: int, fresh: int) -> None:
    with psycopg.connect(_plain(database_url), autocommit=True) as conn:
        for count, age in ((expired, "49 hours"), (fresh, "1 hour")):
            conn.execute(
                "INSERT INTO idempotency_key (scope, key, method, path, request_hash, "
                "status_code, response_body, created_at) "
                "SELECT 'master', %s || n, 'POST', '/v1/orders', 'h', 201, '\\x7b7d', "
                "clock_timestamp() - %s::interval FROM generate_series(1, %s) n",
                (age, age, count),
            )


def key_count(database_url: str) -> int:
    with psycopg.connect(_plain(database_url)) as conn:
        row = conn.execute("SELECT count(*) FROM idempotency_key").fetchone()
        assert row is not None
        return int(row[0])


async def test_expired_idempotency_keys_are_purged_in_small_batches(
    engine: AsyncEngine, settings: Settings, database_url: str, clean_db: None
) -> None:
    add_keys(database_url, expired=1200, fresh=3)
    deletes: list[int] = []

    def count(conn: object, cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("DELETE FROM idempotency_key"):
            deletes.append(1)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        purged = await housekeeping.purge_expired_keys(engine, settings, asyncio.Event())
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert purged == 1200
    assert key_count(database_url) == 3  # live keys stay
    assert len(deletes) == 3  # 500 + 500 + 200: short transactions, never one big one


async def test_every_serve_process_purges_expired_keys_in_the_background(
    service: Service, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(housekeeping, "INTERVAL_S", 0.05)
    add_keys(database_url, expired=20, fresh=1)
    async with service():
        deadline = time.monotonic() + 15
        while key_count(database_url) > 1:
            assert time.monotonic() < deadline, "the expired keys were never purged"
            await asyncio.sleep(0.05)  # polling the table the background task empties
    assert key_count(database_url) == 1
