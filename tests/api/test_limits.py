"""Limits and secrets: the per-key rate limit, the cap on lines per order, a lock wait past
`lock_timeout`, strings over their limit on every body, and secrets that never reach the logs,
the database or `.env.example` in plain text."""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.api import ratelimit
from backorder.api.app import create_app
from backorder.config import Settings
from backorder.logging import configure as configure_logging
from tests.support.api import (
    MASTER_KEY,
    OPS,
    assert_problem,
    bearer,
    error_fields,
    make_key,
    make_product,
    place,
)
from tests.support.dates import years_on

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def retry_after(r: Response) -> int:
    value = r.headers["retry-after"]
    assert value.isdigit(), value  # whole seconds
    assert int(value) >= 1
    return int(value)


def build(database_url: str, **settings: Any) -> FastAPI:
    """An app with these settings, on the test database."""
    return create_app(
        Settings(
            database_url=database_url,
            master_key=MASTER_KEY,
            pool_size=2,
            webhook_worker=False,
            **settings,
        )
    )


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        yield http


@asynccontextmanager
async def service(database_url: str, **settings: Any) -> AsyncIterator[AsyncClient]:
    """A client of an app built with these settings."""
    async with running(build(database_url, **settings)) as http:
        yield http


# --- the per-key rate limit -----------------------------------------------------------------


class FakeClock:
    """Stands in for the limiter's monotonic clock, so a test can wait a minute at once."""

    def __init__(self) -> None:
        self.ns = 10**12

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(ratelimit, "monotonic_ns", fake)
    return fake


async def test_the_request_past_a_keys_limit_is_a_429_with_retry_after(
    database_url: str, clean_db: None
) -> None:
    async with service(database_url, rate_limit_per_minute=3) as http:
        for _ in range(3):
            assert (await http.get("/v1/products", headers=OPS)).status_code == 200
        r = await http.get("/v1/products", headers={**OPS, "X-Request-ID": "over-the-limit"})
        body = assert_problem(r, 429, "rate_limited")
        assert r.headers["x-request-id"] == body["request_id"] == "over-the-limit"
        assert 1 <= retry_after(r) <= 60
        # Writes are refused the same way, before anything is written.
        r = await http.put("/v1/products/SKU-1", json={"name": "x"}, headers=OPS)
        assert_problem(r, 429, "rate_limited")
        retry_after(r)


async def test_another_key_is_unaffected_by_a_limited_key(
    database_url: str, clean_db: None
) -> None:
    async with service(database_url, rate_limit_per_minute=3) as http:
        shop = await make_key(http, "web-shop")  # the master key's first request
        for _ in range(2):
            assert (await http.get("/v1/products", headers=OPS)).status_code == 200
        assert_problem(await http.get("/v1/products", headers=OPS), 429, "rate_limited")

        for _ in range(3):
            assert (await http.get("/v1/products", headers=shop)).status_code == 200
        assert_problem(await http.get("/v1/products", headers=shop), 429, "rate_limited")


async def test_a_refused_key_is_served_again_after_retry_after(
    database_url: str, clean_db: None, clock: FakeClock
) -> None:
    async with service(database_url, rate_limit_per_minute=3) as http:
        for _ in range(3):
            assert (await http.get("/v1/products", headers=OPS)).status_code == 200
        refused = await http.get("/v1/products", headers=OPS)
        assert_problem(refused, 429, "rate_limited")
        wait = retry_after(refused)
        assert wait == 20  # 3 a minute: one more every 20 s

        # Refusals spend nothing: a client that keeps trying is not pushed further back.
        for _ in range(5):
            assert retry_after(await http.get("/v1/products", headers=OPS)) == wait
        clock.advance(wait - 1)
        assert retry_after(await http.get("/v1/products", headers=OPS)) == 1

        clock.advance(1)
        assert (await http.get("/v1/products", headers=OPS)).status_code == 200
        assert_problem(await http.get("/v1/products", headers=OPS), 429, "rate_limited")

        clock.advance(60)  # a minute idle refills the whole allowance
        for _ in range(3):
            assert (await http.get("/v1/products", headers=OPS)).status_code == 200
        assert_problem(await http.get("/v1/products", headers=OPS), 429, "rate_limited")


async def test_a_rate_limit_of_zero_turns_the_limit_off(database_url: str, clean_db: None) -> None:
    async with service(database_url, rate_limit_per_minute=0) as http:
        for _ in range(30):
            r = await http.get("/v1/products", headers=OPS)
            assert r.status_code == 200, r.text
            assert "retry-after" not in r.headers


async def test_an_unauthenticated_request_is_a_401_and_never_a_429(
    database_url: str, clean_db: None
) -> None:
    async with service(database_url, rate_limit_per_minute=1) as http:
        assert (await http.get("/v1/products", headers=OPS)).status_code == 200
        assert_problem(await http.get("/v1/products", headers=OPS), 429, "rate_limited")
        for headers in [{}, bearer("bo_not-a-real-key-at-all"), bearer(MASTER_KEY + "x")]:
            for _ in range(3):
                r = await http.get("/v1/products", headers=headers)
                assert_problem(r, 401, "unauthorized")
                assert "retry-after" not in r.headers
        # The probes need no key and are never limited.
        for _ in range(3):
            assert (await http.get("/healthz")).status_code == 200


async def test_each_worker_process_enforces_its_share_of_the_limit(
    database_url: str, clean_db: None
) -> None:
    async with service(database_url, rate_limit_per_minute=10, worker_processes=4) as http:
        for _ in range(3):  # ceil(10 / 4)
            assert (await http.get("/v1/products", headers=OPS)).status_code == 200
        assert_problem(await http.get("/v1/products", headers=OPS), 429, "rate_limited")


# --- lines per order ------------------------------------------------------------------------


def many_lines(count: int, quantity: int = 1) -> list[dict[str, Any]]:
    return [{"sku": f"L-{n:05d}", "quantity": quantity} for n in range(count)]


def add_products(database_url: str, count: int) -> None:
    """Products L-00000... straight into the table: making hundreds through the API is slow."""
    plain = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO product (sku, name) "
            "SELECT 'L-' || lpad(n::text, 5, '0'), 'Line ' || n FROM generate_series(0, %s) n",
            (count - 1,),
        )


async def order_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM sales_order"))).scalar_one())


async def test_an_order_at_the_default_cap_of_500_lines_is_placed(
    client: AsyncClient, database_url: str
) -> None:
    add_products(database_url, 500)
    order = await place(client, [(line["sku"], 1) for line in many_lines(500)])
    assert len(order["lines"]) == 500


async def test_an_order_over_the_line_cap_is_a_validation_error_naming_lines(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    r = await client.post(
        "/v1/orders", json={"customer_id": "c-1", "lines": many_lines(501)}, headers=OPS
    )
    body = assert_problem(r, 422, "validation_error")
    assert error_fields(body) == {"lines"}
    assert "500" in body["errors"][0]["msg"]
    assert await order_count(engine) == 0


async def test_a_lower_configured_line_cap_is_honoured(
    database_url: str, clean_db: None, engine: AsyncEngine
) -> None:
    async with service(database_url, max_order_lines=3) as http:
        for n in range(4):
            await make_product(http, f"L-{n:05d}", on_hand=5)
        order = await place(http, [(line["sku"], 1) for line in many_lines(3)])

        r = await http.post(
            "/v1/orders", json={"customer_id": "c-1", "lines": many_lines(4)}, headers=OPS
        )
        assert error_fields(assert_problem(r, 422, "validation_error")) == {"lines"}
        assert await order_count(engine) == 1

        # A shipment is held to the same cap.
        too_many = [{"line_id": str(uuid.uuid4()), "quantity": 1} for _ in range(4)]
        r = await http.post(
            f"/v1/orders/{order['id']}/shipments", json={"lines": too_many}, headers=OPS
        )
        assert error_fields(assert_problem(r, 422, "validation_error")) == {"lines"}


async def test_a_higher_configured_line_cap_lifts_the_default(
    database_url: str, clean_db: None
) -> None:
    add_products(database_url, 501)
    async with service(database_url, max_order_lines=501) as http:
        order = await place(http, [(line["sku"], 1) for line in many_lines(501)])
        assert len(order["lines"]) == 501


async def test_the_schema_shows_the_configured_line_cap(
    client: AsyncClient, database_url: str
) -> None:
    def line_caps(schema: dict[str, Any]) -> dict[str, int]:
        models = schema["components"]["schemas"]
        return {
            name: model["properties"]["lines"].get("maxItems")
            for name, model in models.items()
            if name in ("OrderIn", "ShipmentIn")
        }

    default = (await client.get("/openapi.json")).json()
    assert line_caps(default) == {"OrderIn": 500, "ShipmentIn": 500}
    async with service(database_url, max_order_lines=3) as http:
        assert line_caps((await http.get("/openapi.json")).json()) == {
            "OrderIn": 3,
            "ShipmentIn": 3,
        }


# --- strings over their limit ---------------------------------------------------------------

LONG = "x" * 256
SOME_ID = "00000000-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/products/SKU-1/restocks", {"quantity": 5, "reference": LONG}, "reference"),
        ("POST", "/v1/products/SKU-1/adjustments", {"delta": 1, "reference": LONG}, "reference"),
        ("POST", "/v1/api-keys", {"name": LONG, "role": "ops"}, "name"),
        ("POST", f"/v1/orders/{SOME_ID}/cancel", {"reason": LONG}, "reason"),
        ("POST", f"/v1/orders/{SOME_ID}/lines/{SOME_ID}/cancel", {"reason": LONG}, "reason"),
        ("POST", "/v1/products/SKU-1/subscriptions", {"customer_id": LONG}, "customer_id"),
        (
            "POST",
            "/v1/products/SKU-1/subscriptions",
            {"customer_id": "c-1", "contact": LONG},
            "contact",
        ),
        (
            "POST",
            "/v1/purchase-orders",
            {
                "sku": "SKU-1",
                "quantity": 5,
                "expected_date": years_on("2030-01-01"),
                "reference": LONG,
            },
            "reference",
        ),
        (
            "POST",
            "/v1/webhook-endpoints",
            {"url": "https://hooks.example.com/x", "event_types": ["*"], "description": LONG},
            "description",
        ),
        ("PATCH", f"/v1/webhook-endpoints/{SOME_ID}", {"description": LONG}, "description"),
    ],
    ids=[
        "restock-reference",
        "adjustment-reference",
        "api-key-name",
        "order-cancel-reason",
        "line-cancel-reason",
        "subscription-customer-id",
        "subscription-contact",
        "purchase-order-reference",
        "webhook-description",
        "webhook-patch-description",
    ],
)
async def test_a_string_over_255_characters_is_refused_on_every_body(
    client: AsyncClient, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    await make_product(client, "SKU-1", on_hand=5)
    r = await client.request(method, path, json=body, headers=OPS)
    assert field in error_fields(assert_problem(r, 422, "validation_error")), r.text


# --- a lock wait past lock_timeout ----------------------------------------------------------


async def snapshot(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        counts = {
            table: (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in ("sales_order", "order_line", "stock_movement", "event", "idempotency_key")
        }
        product = (
            await conn.execute(
                text("SELECT on_hand, allocated, backordered FROM product WHERE sku = 'HOT'")
            )
        ).one()
    return {"counts": counts, "product": tuple(product)}


async def test_a_lock_wait_past_lock_timeout_is_a_503_retry_later_that_writes_nothing(
    database_url: str, clean_db: None, engine: AsyncEngine
) -> None:
    order = {"customer_id": "c-1", "lines": [{"sku": "HOT", "quantity": 2}]}
    headers = {**OPS, "Idempotency-Key": "order-while-locked"}
    async with service(database_url, lock_timeout_ms=100) as http:
        await make_product(http, "HOT", on_hand=5)
        before = await snapshot(engine)

        holder = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"))
        try:
            holder.execute("SELECT sku FROM product WHERE sku = 'HOT' FOR UPDATE")
            r = await http.post("/v1/orders", json=order, headers=headers)
            assert_problem(r, 503, "retry_later")
            retry_after(r)
            assert await snapshot(engine) == before
        finally:
            holder.rollback()
            holder.close()

        # The 503 stored nothing under the Idempotency-Key: the retry runs afresh.
        r = await http.post("/v1/orders", json=order, headers=headers)
        assert r.status_code == 201, r.text
        assert "idempotent-replayed" not in r.headers
        assert r.json()["allocated"] == 2


# --- secrets ---------------------------------------------------------------------------------


@pytest.fixture(params=["json", "text"])
def service_log(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """Everything the service logs, at DEBUG, through its own handler and formatter."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    uvicorn = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved_uvicorn = [(lg, list(lg.handlers), lg.propagate) for lg in uvicorn]
    out = io.StringIO()
    configure_logging("DEBUG", request.param, stream=out)
    try:
        yield out
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for lg, handlers, propagate in saved_uvicorn:
            lg.handlers[:] = handlers
            lg.propagate = propagate


async def test_secrets_are_never_logged(client: AsyncClient, service_log: io.StringIO) -> None:
    body = {"name": "w", "role": "storefront"}
    created = await client.post("/v1/api-keys", json=body, headers=OPS)
    assert created.status_code == 201, created.text
    api_key = created.json()["key"]
    assert (await client.get("/v1/products", headers=bearer(api_key))).status_code == 200
    assert (await client.get("/v1/backorders", headers=bearer(api_key))).status_code == 403
    assert (await client.get("/v1/products", headers=bearer(api_key + "x"))).status_code == 401
    assert (await client.get("/v1/products", headers=OPS)).status_code == 200

    endpoint = await client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://hooks.example.com/x", "event_types": ["*"]},
        headers=OPS,
    )
    assert endpoint.status_code == 201, endpoint.text
    rotated = await client.post(
        f"/v1/webhook-endpoints/{endpoint.json()['id']}/rotate-secret", headers=OPS
    )
    assert rotated.status_code in (200, 201), rotated.text

    logged = service_log.getvalue()
    assert "/v1/api-keys" in logged and "/v1/webhook-endpoints" in logged  # it was captured
    secrets = [api_key, MASTER_KEY, endpoint.json()["secret"], rotated.json()["secret"]]
    for secret in secrets:
        assert secret not in logged
        assert secret[-12:] not in logged  # not even in part


async def test_the_database_never_receives_a_plaintext_api_key(
    database_url: str, clean_db: None
) -> None:
    sent: list[str] = []
    app = build(database_url)
    async with running(app) as http:
        engine: AsyncEngine = app.state.engine

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
            sent.append(f"{statement} {params!r}")

        created = await http.post("/v1/api-keys", json={"name": "w", "role": "ops"}, headers=OPS)
        secret = created.json()["key"]
        assert (await http.get("/v1/products", headers=bearer(secret))).status_code == 200
        assert (await http.get("/v1/products", headers=bearer(secret[:-1]))).status_code == 401
        event.remove(engine.sync_engine, "before_cursor_execute", record)

        async with engine.connect() as conn:
            stored = (await conn.execute(text("SELECT key_hash FROM api_key"))).scalar_one()

    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert stored == digest  # stored as its SHA-256, looked up by it
    assert any(digest in s for s in sent)
    assert not any(secret in s or secret[3:] in s for s in sent)


async def test_the_master_key_is_compared_in_constant_time(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert (await client.get("/v1/products", headers=OPS)).status_code == 200
    near_miss = MASTER_KEY[:-1] + "X"
    assert (await client.get("/v1/products", headers=bearer(near_miss))).status_code == 401
    assert (MASTER_KEY.encode(), MASTER_KEY.encode()) in compared
    assert (near_miss.encode(), MASTER_KEY.encode()) in compared


SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|DATABASE_URL")
PLACEHOLDER = re.compile(r"change-me|replace|example|placeholder|<[^>]+>", re.IGNORECASE)
RANDOM_LOOKING = re.compile(r"(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{16,}")


def test_env_example_holds_no_real_secret() -> None:
    settings = []
    for raw in ENV_EXAMPLE.read_text().splitlines():
        line = raw.strip()
        if not line:
            continue
        assignment = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if assignment is None:
            assert line.startswith("#"), f"not a comment or a setting: {raw!r}"
            continue
        name, value = assignment.groups()
        settings.append(name)
        # Every setting is optional: none is set by copying the file.
        assert line.startswith("#"), f"{name} is set, not commented out"
        assert not re.search(r"\bbo_|\bwhsec_", value), name
        if SECRET_NAME.search(name):
            secret_part = value.split("@")[0] if name == "DATABASE_URL" else value
            assert PLACEHOLDER.search(secret_part), f"{name}={value!r} is not a placeholder"
            assert not RANDOM_LOOKING.search(secret_part.replace("-", " ")), name
    assert {"BACKORDER_MASTER_KEY", "DATABASE_URL", "BACKORDER_RATE_LIMIT_PER_MINUTE"} <= set(
        settings
    )
