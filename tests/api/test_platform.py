"""The platform under every route: problem+json errors, strict bodies, list parameters,
request ids, the body limit, the probes and the docs. No request, however malformed, gets
a 500, and a refused request writes nothing."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import psycopg
import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.api.app import create_app
from backorder.config import Settings
from backorder.db.engine import head_revision
from tests.support.api import OPS, assert_problem, error_fields, make_product, place


def order_body(**overrides: Any) -> dict[str, Any]:
    return {"customer_id": "c-1", "lines": [{"sku": "SKU-1", "quantity": 1}], **overrides}


def cursor_of(*parts: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode().rstrip("=")


# --- problem+json for what the router refuses ---------------------------------------------


async def test_an_unknown_route_is_a_not_found_problem(client: AsyncClient) -> None:
    body = assert_problem(await client.get("/v1/no-such-thing", headers=OPS), 404, "not_found")
    assert "/v1/no-such-thing" in body["detail"]


async def test_an_unknown_route_needs_no_key_to_be_a_problem(client: AsyncClient) -> None:
    assert_problem(await client.get("/nowhere"), 404, "not_found")


async def test_a_wrong_method_is_a_405_problem(client: AsyncClient) -> None:
    r = await client.delete("/v1/products/SKU-1", headers=OPS)
    assert_problem(r, 405, "method_not_allowed")
    assert r.headers["allow"]


# --- strict bodies ---------------------------------------------------------------------------


async def test_malformed_json_is_a_validation_error_with_errors(client: AsyncClient) -> None:
    r = await client.post(
        "/v1/orders",
        content=b'{"customer_id": "c-1", "lines": [',
        headers={**OPS, "Content-Type": "application/json"},
    )
    body = assert_problem(r, 422, "validation_error")
    assert isinstance(body["errors"], list) and body["errors"]


@pytest.mark.parametrize(
    "content",
    [b"", b"null", b"[]", b'"text"', b"42", b"\xff\xfe\x00", b'{"customer_id": "c-1"'],
    ids=["empty", "null", "array", "string", "number", "not-utf8", "truncated"],
)
async def test_a_body_that_is_not_an_object_is_a_validation_error(
    client: AsyncClient, content: bytes
) -> None:
    r = await client.post(
        "/v1/orders", content=content, headers={**OPS, "Content-Type": "application/json"}
    )
    assert_problem(r, 422, "validation_error")


async def test_a_body_sent_as_plain_text_is_a_validation_error(client: AsyncClient) -> None:
    r = await client.post(
        "/v1/orders",
        content=orjson.dumps(order_body()),
        headers={**OPS, "Content-Type": "text/plain"},
    )
    assert_problem(r, 422, "validation_error")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (order_body(lines=[{"sku": "SKU-1", "quantity": "5"}]), "lines.0.quantity"),
        (order_body(lines=[{"sku": "SKU-1", "quantity": True}]), "lines.0.quantity"),
        (order_body(lines=[{"sku": "SKU-1", "quantity": 1.5}]), "lines.0.quantity"),
        (order_body(lines=[{"sku": "SKU-1", "quantity": 0}]), "lines.0.quantity"),
        (order_body(lines=[{"sku": "SKU-1", "quantity": -1}]), "lines.0.quantity"),
        (order_body(lines=[{"sku": "SKU-1", "quantity": 1_000_001}]), "lines.0.quantity"),
        (order_body(lines=[{"sku": "SKU-1", "quantity": 10**30}]), "lines.0.quantity"),
        (order_body(priority=True), "priority"),
        (order_body(priority="1"), "priority"),
        (order_body(priority=10), "priority"),
        (order_body(customer_id=17), "customer_id"),
        (order_body(customer_id=""), "customer_id"),
        (order_body(customer_id="c\x00-1"), "customer_id"),
        (order_body(customer_id="x" * 256), "customer_id"),
        (order_body(external_ref="x" * 256), "external_ref"),
        (order_body(ship_policy="whenever"), "ship_policy"),
        (order_body(colour="red"), "colour"),
        (order_body(lines=[{"sku": "SKU-1", "quantity": 1, "note": "x"}]), "lines.0.note"),
        (order_body(lines=[{"sku": "SKU/1", "quantity": 1}]), "lines.0.sku"),
        (order_body(lines=[{"sku": "S" * 65, "quantity": 1}]), "lines.0.sku"),
        (order_body(lines=[]), "lines"),
        ({"lines": [{"sku": "SKU-1", "quantity": 1}]}, "customer_id"),
    ],
    ids=[
        "quantity-as-string",
        "quantity-as-bool",
        "quantity-as-float",
        "quantity-zero",
        "quantity-negative",
        "quantity-over-a-million",
        "quantity-huge",
        "priority-as-bool",
        "priority-as-string",
        "priority-ten",
        "customer-id-as-int",
        "customer-id-empty",
        "customer-id-with-nul",
        "customer-id-256-chars",
        "external-ref-256-chars",
        "unknown-ship-policy",
        "unknown-field",
        "unknown-line-field",
        "sku-with-slash",
        "sku-65-chars",
        "no-lines",
        "no-customer-id",
    ],
)
async def test_a_bad_order_body_names_the_bad_field(
    client: AsyncClient, body: dict[str, Any], field: str
) -> None:
    await make_product(client, "SKU-1", on_hand=5)
    r = await client.post("/v1/orders", json=body, headers=OPS)
    problem = assert_problem(r, 422, "validation_error")
    assert field in error_fields(problem), problem["errors"]


async def test_limits_are_inclusive(client: AsyncClient) -> None:
    await make_product(client, "SKU-1")
    order = await place(
        client,
        [("SKU-1", 1_000_000)],
        customer_id="c" * 255,
        external_ref="r" * 255,
    )
    assert order["lines"][0]["backordered"] == 1_000_000
    assert order["customer_id"] == "c" * 255


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/products/SKU-1/restocks", {"quantity": 0}, "quantity"),
        ("/v1/products/SKU-1/restocks", {"quantity": 1_000_001}, "quantity"),
        ("/v1/products/SKU-1/restocks", {"quantity": "5"}, "quantity"),
        ("/v1/products/SKU-1/restocks", {"quantity": 5, "reference": "r\x00"}, "reference"),
        ("/v1/products/SKU-1/restocks", {"quantity": 5, "when": "now"}, "when"),
        ("/v1/products/SKU-1/adjustments", {"delta": True}, "delta"),
        ("/v1/products/SKU-1/adjustments", {"delta": 1, "reason": "x" * 256}, "reason"),
        ("/v1/api-keys", {"name": "web", "role": "admin"}, "role"),
        ("/v1/api-keys", {"name": "web\x00", "role": "ops"}, "name"),
    ],
)
async def test_other_bodies_are_just_as_strict(
    client: AsyncClient, path: str, body: dict[str, Any], field: str
) -> None:
    await make_product(client, "SKU-1", on_hand=5)
    problem = assert_problem(
        await client.post(path, json=body, headers=OPS), 422, "validation_error"
    )
    assert field in error_fields(problem), problem["errors"]


async def test_a_product_body_is_strict(client: AsyncClient) -> None:
    for body, field in [
        ({"name": "x", "backorders_allowed": "yes"}, "backorders_allowed"),
        ({"name": "x", "backorder_limit": -1}, "backorder_limit"),
        ({"name": "x", "allocation_strategy": "lifo"}, "allocation_strategy"),
        ({"name": "x", "expected_restock_date": "next week"}, "expected_restock_date"),
        ({"name": "x", "alternatives": ["ok", "not ok"]}, "alternatives.1"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "x" * 256}, "name"),
    ]:
        r = await client.put("/v1/products/SKU-1", json=body, headers=OPS)
        assert field in error_fields(assert_problem(r, 422, "validation_error")), body


# --- lists -----------------------------------------------------------------------------------

LISTS = [
    "/v1/products",
    "/v1/orders",
    "/v1/backorders",
    "/v1/api-keys",
    "/v1/products/SKU-1/movements",
]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("limit", ["0", "201", "x", "-1", "1.5", ""])
async def test_a_limit_outside_1_to_200_is_a_validation_error(
    client: AsyncClient, path: str, limit: str
) -> None:
    await make_product(client, "SKU-1")
    r = await client.get(path, params={"limit": limit}, headers=OPS)
    assert "limit" in error_fields(assert_problem(r, 422, "validation_error"))


@pytest.mark.parametrize("path", LISTS)
async def test_limits_1_and_200_are_accepted(client: AsyncClient, path: str) -> None:
    await make_product(client, "SKU-1")
    for limit in (1, 200):
        r = await client.get(path, params={"limit": limit}, headers=OPS)
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"data", "next_cursor"}


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "!!!",
        "x" * 513,
        cursor_of("a", "b", "c", "d", "e", "f"),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
    ids=["garbage", "punctuation", "too-long", "wrong-arity", "not-utf8"],
)
async def test_a_bad_cursor_is_a_validation_error(
    client: AsyncClient, path: str, cursor: str
) -> None:
    await make_product(client, "SKU-1")
    r = await client.get(path, params={"cursor": cursor}, headers=OPS)
    assert "cursor" in error_fields(assert_problem(r, 422, "validation_error"))


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        ("/v1/orders", cursor_of("not a time", "not a uuid")),
        ("/v1/orders", cursor_of("2026-01-01T00:00:00+00:00", "not a uuid")),
        ("/v1/api-keys", cursor_of("not a uuid")),
        ("/v1/products/SKU-1/movements", cursor_of("x")),
        ("/v1/backorders", cursor_of("SKU-1", "x", "2026-01-01T00:00:00", "not a uuid")),
    ],
)
async def test_a_cursor_with_bad_parts_is_a_validation_error(
    client: AsyncClient, path: str, cursor: str
) -> None:
    await make_product(client, "SKU-1")
    r = await client.get(path, params={"cursor": cursor}, headers=OPS)
    assert_problem(r, 422, "validation_error")


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        ("/v1/products/SKU-1/movements", cursor_of(str(10**30))),
        ("/v1/products/SKU-1/movements", cursor_of(str(-(10**30)))),
        (
            "/v1/backorders",
            cursor_of("SKU-1", str(10**30), "2026-01-01T00:00:00+00:00", "0" * 32),
        ),
        ("/v1/products", cursor_of("\x00")),
        ("/v1/products", cursor_of({"nested": [1, 2]})),
        ("/v1/backorders", cursor_of("\x00", "1", "2026-01-01T00:00:00+00:00", "0" * 32)),
        ("/v1/orders", cursor_of("9999-12-31T23:59:59+00:00", "0" * 32)),
    ],
    ids=["huge-id", "huge-negative-id", "huge-rank", "nul-sku", "object", "nul-queue", "future"],
)
async def test_a_forged_cursor_is_never_a_server_error(
    client: AsyncClient, path: str, cursor: str
) -> None:
    await make_product(client, "SKU-1")
    r = await client.get(path, params={"cursor": cursor}, headers=OPS)
    assert r.status_code in (200, 422), r.text
    if r.status_code == 422:
        assert_problem(r, 422, "validation_error")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/orders", {"customer_id": "c\x00"}),
        ("/v1/orders", {"sku": "SKU\x00"}),
        ("/v1/products", {"status": "\x00"}),
        ("/v1/products/SKU%001", {}),
        ("/v1/backorders", {"sku": "\x00"}),
    ],
)
async def test_a_nul_in_a_query_or_path_is_a_validation_error(
    client: AsyncClient, path: str, params: dict[str, str]
) -> None:
    r = await client.get(path, params=params, headers=OPS)
    assert_problem(r, 422, "validation_error")


async def test_a_nul_in_an_idempotency_key_is_never_a_server_error(client: AsyncClient) -> None:
    await make_product(client, "SKU-1", on_hand=5)
    r = await client.post(
        "/v1/orders", json=order_body(), headers={**OPS, "Idempotency-Key": "k\x00"}
    )
    assert_problem(r, 422, "validation_error")
    assert (await client.get("/v1/products/SKU-1", headers=OPS)).json()["allocated"] == 0


# --- request ids -------------------------------------------------------------------------------


async def test_every_response_carries_a_request_id(client: AsyncClient) -> None:
    answers = [
        await client.get("/healthz"),
        await client.get("/v1/products", headers=OPS),
        await client.get("/v1/products"),
        await client.get("/v1/nowhere"),
        await client.get("/openapi.json"),
    ]
    ids = [r.headers.get("x-request-id") for r in answers]
    assert all(ids), ids
    assert len(set(ids)) == len(ids)


async def test_the_callers_request_id_is_echoed_and_repeated_in_problems(
    client: AsyncClient,
) -> None:
    ok = await client.get("/v1/products", headers={**OPS, "X-Request-ID": "trace-1.a:b_c"})
    assert ok.headers["x-request-id"] == "trace-1.a:b_c"
    r = await client.get("/v1/products/NOPE", headers={**OPS, "X-Request-ID": "trace-2"})
    body = assert_problem(r, 404, "not_found")
    assert body["request_id"] == "trace-2"
    r = await client.get("/v1/products", headers={"X-Request-ID": "trace-3"})
    assert assert_problem(r, 401, "unauthorized")["request_id"] == "trace-3"
    r = await client.post("/v1/orders", json={}, headers={**OPS, "X-Request-ID": "trace-4"})
    assert assert_problem(r, 422, "validation_error")["request_id"] == "trace-4"


@pytest.mark.parametrize("sent", ["has spaces", "x" * 129, "<script>", "semi;colon"])
async def test_an_unsafe_request_id_is_replaced(client: AsyncClient, sent: str) -> None:
    r = await client.get("/v1/products/NOPE", headers={**OPS, "X-Request-ID": sent})
    got = r.headers["x-request-id"]
    assert got != sent and got
    assert assert_problem(r, 404, "not_found")["request_id"] == got


# --- body limit -------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_a_413_problem(
    client: AsyncClient, settings: Settings
) -> None:
    assert settings.max_body_bytes == 1_000_000
    payload = b"{" + b" " * settings.max_body_bytes + b"}"
    r = await client.post(
        "/v1/orders",
        content=payload,
        headers={**OPS, "Content-Type": "application/json", "X-Request-ID": "big-1"},
    )
    body = assert_problem(r, 413, "payload_too_large")
    assert body["request_id"] == "big-1"


async def test_a_body_at_the_limit_is_read(client: AsyncClient, settings: Settings) -> None:
    payload = b"{" + b" " * (settings.max_body_bytes - 2) + b"}"
    assert len(payload) == settings.max_body_bytes
    r = await client.post(
        "/v1/orders", content=payload, headers={**OPS, "Content-Type": "application/json"}
    )
    assert_problem(r, 422, "validation_error")


async def chunks(payload: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


async def test_a_chunked_body_over_the_limit_is_a_413_problem(
    client: AsyncClient, settings: Settings
) -> None:
    await make_product(client, "SKU-1", on_hand=5)
    payload = orjson.dumps(order_body(external_ref="x")) + b" " * settings.max_body_bytes
    r = await client.post(
        "/v1/orders",
        content=chunks(payload),
        headers={**OPS, "Content-Type": "application/json", "Idempotency-Key": "chunked-1"},
    )
    assert "content-length" not in r.request.headers
    assert_problem(r, 413, "payload_too_large")
    assert (await client.get("/v1/products/SKU-1", headers=OPS)).json()["allocated"] == 0


async def test_a_chunked_body_under_the_limit_is_read(client: AsyncClient) -> None:
    await make_product(client, "SKU-1", on_hand=5)
    r = await client.post(
        "/v1/orders",
        content=chunks(orjson.dumps(order_body()), size=7),
        headers={**OPS, "Content-Type": "application/json"},
    )
    assert "content-length" not in r.request.headers
    assert r.status_code == 201, r.text
    assert r.json()["lines"][0]["allocated"] == 1


# --- probes and docs --------------------------------------------------------------------------


async def test_healthz_answers_without_a_key(client: AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


async def test_readyz_reports_the_migration(client: AsyncClient, database_url: str) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert body["migration"] == head_revision(database_url)


@pytest.mark.parametrize(
    ("path", "names"), [("/docs", "/docs/swagger-ui-init.js"), ("/redoc", "/openapi.json")]
)
async def test_the_docs_are_served(client: AsyncClient, path: str, names: str) -> None:
    r = await client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert names in r.text


async def test_the_schema_offers_the_bearer_scheme(client: AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    schema = r.json()
    schemes = schema["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"].lower() == "bearer" for s in schemes.values())
    place_order = schema["paths"]["/v1/orders"]["post"]
    assert any(set(req) & schemes.keys() for req in place_order["security"])
    assert schema["paths"]["/healthz"]["get"]["security"] == []  # no key, whatever the root says


# --- nothing half-written ---------------------------------------------------------------------


async def snapshot(client: AsyncClient, engine: AsyncEngine) -> dict[str, Any]:
    products = {
        sku: {
            k: v
            for k, v in (await client.get(f"/v1/products/{sku}", headers=OPS)).json().items()
            if k != "updated_at"
        }
        for sku in ("SKU-1", "SKU-2", "GONE")
    }
    async with engine.connect() as conn:
        counts = {
            table: (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in ("stock_movement", "sales_order", "order_line", "event", "shipment")
        }
        ledger = (
            await conn.execute(
                text("SELECT sku, sum(quantity) FROM stock_movement GROUP BY sku ORDER BY sku")
            )
        ).all()
    return {"products": products, "counts": counts, "ledger": [tuple(r) for r in ledger]}


async def test_a_refused_request_writes_nothing(client: AsyncClient, engine: AsyncEngine) -> None:
    await make_product(client, "SKU-1", on_hand=10)
    await make_product(client, "SKU-2", on_hand=3, backorders_allowed=False, backorder_limit=0)
    await make_product(client, "GONE", on_hand=2, discontinued=True)
    order = await place(client, [("SKU-1", 4)])
    before = await snapshot(client, engine)

    refusals: list[tuple[str, str, dict[str, Any], int]] = [
        ("POST", "/v1/products/SKU-1/restocks", {"quantity": 0}, 422),
        ("POST", "/v1/products/SKU-1/restocks", {"quantity": 5, "extra": 1}, 422),
        ("POST", "/v1/products/SKU-1/adjustments", {"delta": -7}, 409),
        ("POST", "/v1/products/SKU-1/adjustments", {"delta": 0}, 422),
        ("POST", "/v1/products/NOPE/restocks", {"quantity": 5}, 404),
        ("POST", "/v1/orders", order_body(lines=[{"sku": "SKU-1", "quantity": 0}]), 422),
        (
            "POST",
            "/v1/orders",
            order_body(lines=[{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-2", "quantity": 4}]),
            409,
        ),
        (
            "POST",
            "/v1/orders",
            order_body(lines=[{"sku": "SKU-1", "quantity": 2}, {"sku": "GONE", "quantity": 1}]),
            409,
        ),
        (
            "POST",
            "/v1/orders",
            order_body(lines=[{"sku": "SKU-1", "quantity": 2}, {"sku": "NOPE", "quantity": 1}]),
            422,
        ),
        (
            "POST",
            "/v1/orders",
            order_body(lines=[{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-1", "quantity": 1}]),
            422,
        ),
        ("POST", "/v1/orders", order_body(customer_id="c\x00"), 422),
        (
            "POST",
            f"/v1/orders/{order['id']}/shipments",
            {"lines": [{"line_id": order["lines"][0]["id"], "quantity": 5}]},
            409,
        ),
        ("PUT", "/v1/products/SKU-1", {"name": "renamed", "backorder_limit": "many"}, 422),
    ]
    for method, path, body, status in refusals:
        r = await client.request(method, path, json=body, headers=OPS)
        assert r.status_code == status, (path, body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")

    r = await client.post(
        "/v1/products/SKU-1/restocks",
        content=b'{"quantity": 5' + b" " * 1_000_000 + b"}",
        headers={**OPS, "Content-Type": "application/json"},
    )
    assert r.status_code == 413

    assert await snapshot(client, engine) == before


async def test_readyz_is_503_on_a_database_the_migrations_have_not_reached(
    server_url: str,
) -> None:
    name = f"backorder_unmigrated_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        base, _, query = server_url.partition("?")
        url = base.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        empty = Settings(
            database_url=f"{url}/{name}" + (f"?{query}" if query else ""),
            master_key="k" * 32,
            webhook_worker=False,
        )
        app = create_app(empty)
        async with app.router.lifespan_context(app):
            transport = ASGITransport(app=app)
            async with AsyncClient(transport=transport, base_url="http://test") as http:
                r = await http.get("/readyz")
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "retry_later"
        assert "Retry-After" in r.headers
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
