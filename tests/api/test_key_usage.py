"""`last_used_at` on API keys: shown in the key list, written at most once a minute per key,
never once per request (the key check stays a read)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from backorder.api.app import create_app
from backorder.api.deps import KeyUsage
from backorder.config import Settings
from backorder.db.keys import ApiKeyRow
from tests.support.api import OPS, bearer

Row = tuple[Any, datetime | None]  # (xmin: the row version, last_used_at)


@pytest.fixture
async def served(settings: Settings, clean_db: None) -> AsyncIterator[tuple[FastAPI, AsyncClient]]:
    app = create_app(settings)
    transport = ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        yield app, http


async def new_key(http: AsyncClient) -> dict[str, Any]:
    body = {"name": "web-shop", "role": "storefront"}
    r = await http.post("/v1/api-keys", json=body, headers=OPS)
    assert r.status_code == 201, r.text
    key: dict[str, Any] = r.json()
    return key


def key_row(database_url: str, key_id: str) -> Row:
    """The row's version (`xmin` changes with every write of it) and its `last_used_at`."""
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        row = conn.execute(
            "SELECT xmin::text, last_used_at FROM api_key WHERE id = %s", (key_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def move_last_use_back(database_url: str, key_id: str, minutes: int) -> None:
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        conn.execute(
            "UPDATE api_key SET last_used_at = now() - make_interval(mins => %s) WHERE id = %s",
            (minutes, key_id),
        )


async def listed(http: AsyncClient, key_id: str) -> dict[str, Any]:
    r = await http.get("/v1/api-keys", headers=OPS)
    assert r.status_code == 200, r.text
    (item,) = [k for k in r.json()["data"] if k["id"] == key_id]
    return item


async def test_the_key_list_shows_when_each_key_was_last_used(
    served: tuple[FastAPI, AsyncClient],
) -> None:
    _, http = served
    key = await new_key(http)
    assert key["last_used_at"] is None
    assert (await listed(http, key["id"]))["last_used_at"] is None

    before = datetime.now(UTC)
    assert (await http.get("/v1/products", headers=bearer(key["key"]))).status_code == 200
    used = datetime.fromisoformat((await listed(http, key["id"]))["last_used_at"])
    assert before - timedelta(seconds=5) <= used <= datetime.now(UTC) + timedelta(seconds=5)


async def test_a_key_in_use_is_written_once_not_once_per_request(
    served: tuple[FastAPI, AsyncClient], database_url: str
) -> None:
    _, http = served
    key = await new_key(http)
    assert (await http.get("/v1/products", headers=bearer(key["key"]))).status_code == 200
    first = key_row(database_url, key["id"])
    assert first[1] is not None
    for _ in range(20):
        assert (await http.get("/v1/products", headers=bearer(key["key"]))).status_code == 200
    assert key_row(database_url, key["id"]) == first


async def test_a_process_touches_a_key_at_most_once_a_minute(
    served: tuple[FastAPI, AsyncClient], database_url: str
) -> None:
    _, http = served
    key = await new_key(http)
    assert (await http.get("/v1/products", headers=bearer(key["key"]))).status_code == 200
    move_last_use_back(database_url, key["id"], minutes=5)
    stale = key_row(database_url, key["id"])
    # The row is stale, but this process touched the key seconds ago: no write.
    assert (await http.get("/v1/products", headers=bearer(key["key"]))).status_code == 200
    assert key_row(database_url, key["id"]) == stale


async def test_a_key_another_process_touched_this_minute_is_not_written_again(
    served: tuple[FastAPI, AsyncClient], database_url: str
) -> None:
    app, http = served
    key = await new_key(http)
    assert (await http.get("/v1/products", headers=bearer(key["key"]))).status_code == 200
    touched = key_row(database_url, key["id"])
    app.state.key_usage = KeyUsage()  # as a fresh process would start, knowing nothing
    assert (await http.get("/v1/products", headers=bearer(key["key"]))).status_code == 200
    assert key_row(database_url, key["id"]) == touched


async def test_a_key_last_used_over_a_minute_ago_is_touched_again(
    served: tuple[FastAPI, AsyncClient], database_url: str
) -> None:
    app, http = served
    key = await new_key(http)
    assert (await http.get("/v1/products", headers=bearer(key["key"]))).status_code == 200
    move_last_use_back(database_url, key["id"], minutes=2)
    app.state.key_usage = KeyUsage()  # this process's minute has passed too
    assert (await http.get("/v1/products", headers=bearer(key["key"]))).status_code == 200
    _, used = key_row(database_url, key["id"])
    assert used is not None
    assert used > datetime.now(UTC) - timedelta(seconds=30)


def test_the_memo_lets_a_key_through_once_per_interval() -> None:
    """The in-process memo, not the database, is what keeps the touch rare: between two
    touches of a key the key check issues no UPDATE at all."""
    row = ApiKeyRow(
        id=uuid4(),
        name="web-shop",
        role="storefront",
        prefix="bo_x",
        created_at=datetime.now(UTC),
        revoked_at=None,
        last_used_at=None,
    )
    usage = KeyUsage(interval_s=60)
    assert usage.due(row) is True
    assert [usage.due(row) for _ in range(100)] == [False] * 100
    assert KeyUsage(interval_s=0).due(row) is True


async def test_an_order_on_the_lean_path_records_its_keys_use(
    served: tuple[FastAPI, AsyncClient], database_url: str
) -> None:
    _, http = served
    key = await new_key(http)
    r = await http.put("/v1/products/USED-1", json={"name": "Used"}, headers=OPS)
    assert r.status_code == 201, r.text
    order = {"customer_id": "c-1", "lines": [{"sku": "USED-1", "quantity": 1}]}
    r = await http.post("/v1/orders", json=order, headers=bearer(key["key"]))
    assert r.status_code == 201, r.text
    assert key_row(database_url, key["id"])[1] is not None
    first = key_row(database_url, key["id"])
    # Written once: concurrent orders of the key (batched under one lock) write it no more.
    answers = await asyncio.gather(
        *(http.post("/v1/orders", json=order, headers=bearer(key["key"])) for _ in range(10))
    )
    assert [a.status_code for a in answers] == [201] * 10
    assert key_row(database_url, key["id"]) == first
