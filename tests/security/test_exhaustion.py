"""Exhausting the service answers 503 or 429 with Retry-After, never 500; guessing keys costs
the attacker more than the database."""

from __future__ import annotations

from typing import Any

from httpx import ASGITransport, AsyncClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.security.conftest import Service
from tests.support.api import OPS, assert_problem, bearer, make_key

A_WELL_FORMED_UNKNOWN_KEY = "bo_" + "x" * 43


async def test_a_busy_pool_answers_503_never_500(service: Service) -> None:
    settings = {"pool_size": 1, "order_pool_size": 1, "max_overflow": 0, "pool_timeout_s": 0.3}
    async with service(**settings) as (app, http):
        engine: AsyncEngine = app.state.engine
        # Every pooled connection busy (one here), the order placement's own pool's too.
        async with engine.connect() as held, app.state.order_pool.connection():
            await held.exec_driver_sql("SELECT 1")
            order = {"customer_id": "c-1", "lines": [{"sku": "SKU-1", "quantity": 1}]}
            for method, path, body, headers in (
                ("GET", "/v1/products", None, OPS),
                ("POST", "/v1/orders", order, {**OPS, "Idempotency-Key": "busy-1"}),
                ("GET", "/v1/products", None, bearer(A_WELL_FORMED_UNKNOWN_KEY)),
            ):
                r = await http.request(method, path, json=body, headers=headers)
                assert_problem(r, 503, "retry_later")
                assert int(r.headers["retry-after"]) >= 1
        # Free again: the same requests are served.
        assert (await http.get("/v1/products", headers=OPS)).status_code == 200


async def test_a_bearer_token_that_cannot_be_a_key_is_refused_without_touching_the_database(
    service: Service,
) -> None:
    statements: list[str] = []
    async with service() as (app, http):

        def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        event.listen(app.state.engine.sync_engine, "before_cursor_execute", record)
        for token in (
            "bo_short",
            "sk_live_" + "x" * 43,
            "bo_" + "x" * 44,
            "bo_" + "x" * 42 + "!",
            "x" * 5000,
        ):
            r = await http.get("/v1/products", headers=bearer(token))
            assert_problem(r, 401, "unauthorized")
        event.remove(app.state.engine.sync_engine, "before_cursor_execute", record)
    assert statements == []


async def test_a_suite_run_with_the_rate_limits_off_gets_401_for_every_unknown_key(
    service: Service,
) -> None:
    # Integration suites send many unknown keys from one address on purpose and run with
    # BACKORDER_RATE_LIMIT_PER_MINUTE=0: that lifts the failed-authentication throttle too.
    async with service(auth_failures_per_minute=5, rate_limit_per_minute=0) as (_, http):
        for _ in range(20):
            r = await http.get("/v1/products", headers=bearer(A_WELL_FORMED_UNKNOWN_KEY))
            assert_problem(r, 401, "unauthorized")


async def test_failed_authentication_is_throttled_per_client_address(service: Service) -> None:
    statements: list[str] = []
    async with service(auth_failures_per_minute=5) as (app, http):
        for _ in range(5):
            r = await http.get("/v1/products", headers=bearer(A_WELL_FORMED_UNKNOWN_KEY))
            assert_problem(r, 401, "unauthorized")

        def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        event.listen(app.state.engine.sync_engine, "before_cursor_execute", record)
        r = await http.get("/v1/products", headers=bearer(A_WELL_FORMED_UNKNOWN_KEY))
        event.remove(app.state.engine.sync_engine, "before_cursor_execute", record)
        assert_problem(r, 429, "rate_limited")
        assert 1 <= int(r.headers["retry-after"]) <= 12  # one more attempt every 12 s
        assert statements == [], "a throttled guess still cost a lookup"
        # The master key is compared in memory and never throttled.
        assert (await http.get("/v1/products", headers=OPS)).status_code == 200

        # Another address is judged on its own failures.
        transport = ASGITransport(app=app, client=("10.0.0.9", 5))
        async with AsyncClient(transport=transport, base_url="http://test") as other:
            r = await other.get("/v1/products", headers=bearer(A_WELL_FORMED_UNKNOWN_KEY))
            assert_problem(r, 401, "unauthorized")


async def test_a_guesser_behind_the_same_address_does_not_lock_out_a_working_key(
    service: Service,
) -> None:
    # Storefronts behind one NAT or TLS proxy share an address with whoever guesses keys.
    async with service(auth_failures_per_minute=3) as (_, http):
        shop = await make_key(http, "web-shop")
        assert (await http.get("/v1/products", headers=shop)).status_code == 200
        for _ in range(3):
            r = await http.get("/v1/products", headers=bearer(A_WELL_FORMED_UNKNOWN_KEY))
            assert_problem(r, 401, "unauthorized")
        guess = await http.get("/v1/products", headers=bearer(A_WELL_FORMED_UNKNOWN_KEY))
        assert_problem(guess, 429, "rate_limited")  # the guesser is throttled
        assert (await http.get("/v1/products", headers=shop)).status_code == 200
        # A key that worked is still looked up: revoked, it gets its 401 at once.
        keys = (await http.get("/v1/api-keys", headers=OPS)).json()["data"]
        shop_id = next(k["id"] for k in keys if k["name"] == "web-shop")
        assert (await http.delete(f"/v1/api-keys/{shop_id}", headers=OPS)).status_code == 204
        assert_problem(await http.get("/v1/products", headers=shop), 401, "unauthorized")
