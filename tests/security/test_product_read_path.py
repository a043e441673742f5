"""`GET /v1/products/{sku}` with an API key takes its own path (pure ASGI, one psycopg
statement for the key and the product): the same answers as the route, the same key rules."""

from __future__ import annotations

from typing import Any

from httpx import Response
from sqlalchemy import event

from tests.security.conftest import Service
from tests.support.api import OPS, assert_problem, bearer, make_key, make_product

A_WELL_FORMED_UNKNOWN_KEY = "bo_" + "y" * 43


def _headers(r: Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in r.headers.multi_items() if k != "x-request-id"]


async def test_a_storefront_read_answers_the_same_bytes_as_the_route(service: Service) -> None:
    async with service(rate_limit_per_minute=0) as (_, http):
        shop = await make_key(http, "web-shop")
        await make_product(http, "ALT-1", on_hand=2)
        await make_product(
            http,
            "SKU-1",
            on_hand=7,
            reorder_point=3,
            backorder_limit=10,
            alternatives=["ALT-1"],
            expected_restock_date="2027-01-15",
        )
        for path in ("/v1/products/SKU-1", "/v1/products/ALT-1"):
            fast, general = await http.get(path, headers=shop), await http.get(path, headers=OPS)
            assert fast.status_code == general.status_code == 200
            assert fast.content == general.content
            assert _headers(fast) == _headers(general)
        fast = await http.get("/v1/products/NOPE", headers=shop)
        general = await http.get("/v1/products/NOPE", headers=OPS)
        assert_problem(fast, 404, "not_found")
        assert {**fast.json(), "request_id": None} == {**general.json(), "request_id": None}
        assert fast.json()["request_id"] == fast.headers["x-request-id"]
        assert _headers(fast) == _headers(general)
        # What the fast path leaves to the route is still answered by it.
        assert_problem(
            await http.get("/v1/products/SKU-1?x=1", headers=shop), 422, "validation_error"
        )
        assert (await http.head("/v1/products/SKU-1", headers=shop)).status_code == 405


async def test_a_storefront_read_runs_no_sqlalchemy_statement(service: Service) -> None:
    statements: list[str] = []
    async with service(rate_limit_per_minute=0) as (app, http):
        shop = await make_key(http, "web-shop")
        await make_product(http, "SKU-1", on_hand=1)
        assert (await http.get("/v1/products/SKU-1", headers=shop)).status_code == 200

        def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        event.listen(app.state.engine.sync_engine, "before_cursor_execute", record)
        for _ in range(3):
            assert (await http.get("/v1/products/SKU-1", headers=shop)).status_code == 200
        event.remove(app.state.engine.sync_engine, "before_cursor_execute", record)
    assert statements == []  # the key's last use was recorded by the first read, once


async def test_a_revoked_key_gets_401_on_its_very_next_read(service: Service) -> None:
    async with service(rate_limit_per_minute=0) as (_, http):
        shop = await make_key(http, "web-shop")
        await make_product(http, "SKU-1", on_hand=1)
        assert (await http.get("/v1/products/SKU-1", headers=shop)).status_code == 200
        keys = (await http.get("/v1/api-keys", headers=OPS)).json()["data"]
        assert next(k for k in keys if k["name"] == "web-shop")["last_used_at"] is not None
        shop_id = next(k["id"] for k in keys if k["name"] == "web-shop")
        assert (await http.delete(f"/v1/api-keys/{shop_id}", headers=OPS)).status_code == 204
        assert_problem(await http.get("/v1/products/SKU-1", headers=shop), 401, "unauthorized")
        assert_problem(await http.get("/v1/products/NOPE", headers=shop), 401, "unauthorized")


async def test_guessed_keys_on_the_read_are_throttled_and_a_working_key_is_not(
    service: Service,
) -> None:
    async with service(auth_failures_per_minute=3) as (_, http):
        shop = await make_key(http, "web-shop")
        await make_product(http, "SKU-1", on_hand=1)
        assert (await http.get("/v1/products/SKU-1", headers=shop)).status_code == 200
        guess = bearer(A_WELL_FORMED_UNKNOWN_KEY)
        for _ in range(3):
            assert_problem(await http.get("/v1/products/SKU-1", headers=guess), 401, "unauthorized")
        throttled = await http.get("/v1/products/SKU-1", headers=guess)
        assert_problem(throttled, 429, "rate_limited")
        assert 1 <= int(throttled.headers["retry-after"]) <= 20
        assert (await http.get("/v1/products/SKU-1", headers=shop)).status_code == 200


async def test_the_read_counts_against_the_keys_rate_limit(service: Service) -> None:
    async with service(rate_limit_per_minute=10, worker_processes=1) as (_, http):
        shop = await make_key(http, "web-shop")
        await make_product(http, "SKU-1", on_hand=1)
        answers = [await http.get("/v1/products/SKU-1", headers=shop) for _ in range(11)]
        assert [r.status_code for r in answers[:10]] == [200] * 10
        assert_problem(answers[10], 429, "rate_limited")
        assert int(answers[10].headers["retry-after"]) >= 1


async def test_a_busy_read_pool_answers_503_never_500(service: Service) -> None:
    async with service(read_pool_size=1, pool_timeout_s=0.3, rate_limit_per_minute=0) as (
        app,
        http,
    ):
        shop = await make_key(http, "web-shop")
        await make_product(http, "SKU-1", on_hand=1)
        async with app.state.hot_pool.connection():  # its one connection busy
            r = await http.get("/v1/products/SKU-1", headers=shop)
            assert_problem(r, 503, "retry_later")
            assert int(r.headers["retry-after"]) >= 1
        assert (await http.get("/v1/products/SKU-1", headers=shop)).status_code == 200
