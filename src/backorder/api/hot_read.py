"""`GET /v1/products/{sku}` with an API key, answered in pure ASGI on psycopg directly.

A storefront's product page is the service's most frequent request. On the general path it
cost FastAPI's dependency solving, two SQLAlchemy round trips (the key, then the product) and
the routing; here it is one prepared statement (`db/hot.py`) that reads the key and the
product together, and the same steps around the key as `deps.authenticate`: the failed-auth
throttle before it, the 401, `last_used_at` and the rate limit after it. The answer (and every
refusal) is built by the functions the route and the error handlers use, so it is the same
bytes. The FastAPI route stays: it documents the operation and answers every request this
path leaves to it (the master key, a token that cannot be a key, a query string, HEAD).
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from backorder.api import deps
from backorder.api.execute import json_response
from backorder.api.problems import domain_problem, problem_response, retry_headers
from backorder.api.routers import products as product_routes
from backorder.db import hot, keys
from backorder.db.engine import raise_retry_later
from backorder.db.products import view_of
from backorder.domain.errors import DomainError, NotFound

PREFIX = "/v1/products/"
_SKU = re.compile(r"[A-Za-z0-9._-]{1,64}")  # SKU_PATTERN, matched on the path's last segment


def route_of(router: APIRouter, method: str, path: str) -> BaseRoute:
    """The route a lean path stands in for: the metrics count its answers under its template."""
    for route in router.routes:
        if getattr(route, "path", None) == path and method in getattr(route, "methods", ()):
            return route
    raise LookupError(f"{method} {path} is not routed")


def bearer_secret(scope: Scope) -> str | None:
    """The bearer token, parsed as FastAPI's HTTPBearer parses it (first header wins)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, secret = value.decode("latin-1").partition(" ")
            return secret if scheme.lower() == "bearer" and secret else None
    return None


class ProductReadMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = route_of(product_routes.router, "GET", "/v1/products/{sku}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith(PREFIX)
            or scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return
        sku = scope["path"][len(PREFIX) :]
        secret = bearer_secret(scope)
        fastapi_app: FastAPI = scope["app"]
        state = fastapi_app.state
        if (
            not _SKU.fullmatch(sku)
            or secret is None
            or not keys.could_be_key(secret)
            or deps.is_master(state.settings, secret)
        ):
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        request_state: dict[str, Any] = scope.setdefault("state", {})
        try:
            body = await self._read(scope, state, secret, sku)
            response = json_response(body)
        except DomainError as exc:
            problem = domain_problem(exc, request_state.get("request_id"))
            response = problem_response(problem, retry_headers(exc))
        await response(scope, receive, send)

    @staticmethod
    async def _read(scope: Scope, state: Any, secret: str, sku: str) -> dict[str, Any]:
        client = scope.get("client")
        address = client[0] if client else "unknown"
        deps.check_throttle(state, address, secret)
        try:
            found = await hot.key_and_product(state.hot_pool, secret, sku)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            hot.check_after(state.hot_pool, exc)
            raise_retry_later(exc)  # a busy or unavailable database: 503, as on every route
            raise
        principal = await deps.admit_key(state, address, secret, found.key)
        scope["state"]["principal"] = principal
        deps.check_rate(state, principal)
        if found.product is None:
            raise NotFound(f"no product with SKU {sku!r}")
        return view_of(found.product)
