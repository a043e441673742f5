"""The FastAPI application: routers, error mapping, middleware, OpenAPI as an ops manual."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from backorder import __version__, console
from backorder.api import docs_ui, problems
from backorder.api.deps import KeyUsage
from backorder.api.docs import restore_example_nulls
from backorder.api.hot_order import OrderPlaceMiddleware
from backorder.api.hot_read import ProductReadMiddleware
from backorder.api.middleware import (
    BodyLimitMiddleware,
    ResponseHeadersMiddleware,
)
from backorder.api.openapi import build_document, operation_id
from backorder.api.ratelimit import FailedAuthThrottle, RateLimiter
from backorder.api.routers import (
    backorders,
    events,
    keys,
    locations,
    metrics,
    ops,
    orders,
    products,
    purchase_orders,
    reports,
    subscriptions,
    webhooks,
)
from backorder.api.schemas.orders import admit_line_cap
from backorder.config import Settings
from backorder.db import hot
from backorder.db.engine import head_revision, make_engine
from backorder.logging import configure as configure_logging
from backorder.metrics import MetricsMiddleware
from backorder.services import lean_placement
from backorder.workers import deadlines as deadline_watch
from backorder.workers import housekeeping
from backorder.workers import purchase_orders as overdue_watch
from backorder.workers import webhooks as webhook_worker

DESCRIPTION = """
Order management with first-class backorder handling.

* **Products and stock**: live figures (`on_hand`, `allocated`, `available`, `backordered`,
  `incoming`) and a stock ledger.
* **Orders**: each line takes what is available now; the rest waits in the SKU's
  **backorder queue** (FIFO or priority). Partial backorders ship what is there; full ones
  wait for everything.
* **Restocks** fill the queue, head first, in the same transaction.

Authenticate with **Authorize** and an API key (`Bearer` scheme). Errors are
`application/problem+json` with a stable `code`. `POST`s that move stock or orders honour an
`Idempotency-Key` header. Each key is rate limited: past its limit, requests get 429
`rate_limited` with `Retry-After` (seconds).
"""

TAGS = [
    {"name": "Orders", "description": "Place, read, cancel, ship and reprioritise orders."},
    {"name": "Backorder queue", "description": "Who waits for what, in fill order."},
    {"name": "Products and stock", "description": "Catalog, live figures, restocks, ledger."},
    {"name": "Purchase orders", "description": "Inbound supply; drives promise dates."},
    {
        "name": "Locations",
        "description": "Warehouses, stores and 3PL sites: stock per location, transfers, "
        "pick lists. One backorder queue per SKU across them all.",
    },
    {"name": "Events", "description": "The append-only event feed (outbox)."},
    {"name": "Webhooks", "description": "Signed deliveries of events to your endpoints."},
    {"name": "Reports", "description": "Backorder figures and replenishment suggestions."},
    {"name": "API keys", "description": "Keys for storefronts (one channel each) and ops."},
    {"name": "Operations", "description": "Health, readiness and metrics."},
]


# No license file ships with the service: the schema says so rather than name one it lacks.
LICENSE = {"name": "Proprietary", "url": "https://backorder.dev/license"}
CONTACT = {"name": "backorder maintainers", "url": "https://backorder.dev/support"}


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = make_engine(settings)
        app.state.hot_pool = hot.make_pool(settings)
        await app.state.hot_pool.open(wait=False)
        app.state.order_pool = hot.make_pool(
            settings, size=settings.order_pool_size, name="backorder-orders"
        )
        await app.state.order_pool.open(wait=False)
        app.state.placer = lean_placement.Placer(
            app.state.order_pool,
            attempts=settings.transaction_attempts,
            ttl_hours=settings.idempotency_ttl_hours,
        )
        stop = asyncio.Event()
        worker = watch = expiry = None
        if settings.webhook_worker:
            worker = asyncio.create_task(webhook_worker.run(app.state.engine, settings, stop))
        if settings.overdue_worker:
            watch = asyncio.create_task(overdue_watch.run(app.state.engine, settings, stop))
        if settings.expiry_worker:
            expiry = asyncio.create_task(deadline_watch.run(app.state.engine, settings, stop))
        keeper = asyncio.create_task(housekeeping.run(app.state.engine, settings, stop))
        # What the start made (the app, its routes and schemas, SQLAlchemy's tables) lives as
        # long as the process: moved out of the collector's reach, a full collection scans
        # only what requests made since, instead of pausing every request for all of it.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                await asyncio.wait_for(worker, timeout=settings.webhook_timeout_s + 5)
            if watch is not None:
                # A pass stops after the SKU at hand, in its own short transaction.
                await asyncio.wait_for(watch, timeout=30)
            if expiry is not None:
                # A pass stops after the order at hand, in its own short transaction.
                await asyncio.wait_for(expiry, timeout=30)
            keeper.cancel()  # a purge cut short is rolled back and simply redone later
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            await app.state.order_pool.close()
            await app.state.hot_pool.close()
            await app.state.engine.dispose()

    app = FastAPI(
        title="backorder",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load from a CDN: docs_ui serves local copies
        redoc_url=None,
        generate_unique_id_function=operation_id,
        contact=CONTACT,
        license_info=LICENSE,
    )
    app.state.settings = settings
    app.state.head_revision = head_revision(settings.require_database_url())
    app.state.key_usage = KeyUsage()
    app.state.rate_limiter = (
        RateLimiter(
            settings.rate_limit_per_minute, settings.worker_processes, settings.rate_limit_burst_s
        )
        if settings.rate_limit_per_minute
        else None
    )
    app.state.auth_throttle = (
        FailedAuthThrottle(settings.auth_failures_per_minute)
        # BACKORDER_RATE_LIMIT_PER_MINUTE=0 is how load tests and integration suites run: they
        # send many unknown keys from one address on purpose, so it lifts both limits.
        if settings.auth_failures_per_minute and settings.rate_limit_per_minute
        else None
    )
    problems.install(app)
    docs_ui.install(app)
    for module in (
        orders, backorders, products, subscriptions, purchase_orders, events, webhooks,
        reports, keys, ops, metrics, locations,
    ):  # fmt: skip
        app.include_router(module.router)
    app.include_router(locations.transfers)
    console.install(app, settings)
    _amend_openapi(app, settings.max_order_lines)
    admit_line_cap(settings.max_order_lines)
    # Innermost: they answer inside the headers, the body limit and the metrics.
    app.add_middleware(ProductReadMiddleware)
    app.add_middleware(OrderPlaceMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ResponseHeadersMiddleware)
    app.add_middleware(MetricsMiddleware)  # outermost: times and counts every answer
    return app


def _amend_openapi(app: FastAPI, line_cap: int) -> None:
    """What FastAPI's document cannot say by itself: what clients generated from it need
    (`docs.amend_document`), the nulls of examples it drops, and this deployment's cap on
    `lines` where the schemas state the default one."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        # FastAPI caches its build as app.openapi_schema: amended in place.
        schema = build_document(app, build)
        restore_example_nulls(schema)  # FastAPI drops the nulls of examples when encoding
        for name in ("OrderIn", "ShipmentIn"):
            model = schema.get("components", {}).get("schemas", {}).get(name, {})
            if "lines" in model.get("properties", {}):
                model["properties"]["lines"]["maxItems"] = line_cap
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and worker processes: settings from the environment."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
