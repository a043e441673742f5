"""`POST /v1/orders` with an API key, answered in pure ASGI on psycopg directly.

An order is the service's most frequent write. On the general path it cost FastAPI's
dependency solving and six SQLAlchemy round trips; here the body is validated by the route's
own model, and the transaction is two round trips (`services/lean_placement.py`). The same
steps surround the key as in `deps.authenticate` (throttle, 401, `last_used_at`, rate limit),
and the answer and every refusal are built by the functions the route and the error handlers
use, so they are the same bytes.

The FastAPI route stays: it documents the operation and answers every request this path
leaves to it, with the body replayed: a token that cannot be a key, a query string, a body
that is not `application/json` or that the model refuses, an `Idempotency-Key` that cannot be
stored (its length, a NUL), a storefront's priority over 4, and the rare `external_ref` whose
order vanished mid-placement. An order with an `Idempotency-Key` stays here: its answer or
refusal is stored under the key in the transaction that places it, and a retry replays it, in
the bytes and with the header `execute.write` uses.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backorder.api import deps
from backorder.api.execute import dumps, fingerprint, json_response, storable
from backorder.api.hot_read import bearer_secret, route_of
from backorder.api.problems import domain_problem, problem_response, retry_headers
from backorder.api.routers import orders as order_routes
from backorder.api.schemas.orders import OrderIn
from backorder.db import keys
from backorder.domain.errors import DomainError
from backorder.services import lean_placement
from backorder.services.lean_placement import HandOff

PATH = "/v1/orders"


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json"
    return False


def _has_header(scope: Scope, wanted: bytes) -> bool:
    return any(name == wanted for name, _ in scope["headers"])


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body (the body limit is held by the middleware outside); None when the
    client went away."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body read already, then whatever comes next."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _order_in(body: bytes) -> OrderIn | None:
    """The body as the route's model reads it (parsed as JSON, then validated as FastAPI
    does: in Python mode); None when the route should say what is wrong with it."""
    try:
        return OrderIn.model_validate(orjson.loads(body))
    except Exception:
        return None


def _idempotency_key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"idempotency-key":
            key: str = value.decode("latin-1")
            return key
    return None


def _keyed(key: str, raw: bytes, request_id: str | None) -> lean_placement.Keyed:
    """What a keyed order stores: the answer's bytes as `execute.write` makes them."""

    def render(outcome: dict[str, Any] | DomainError) -> tuple[int, bytes, bytes]:
        if isinstance(outcome, DomainError):
            status, body = outcome.status, domain_problem(outcome, request_id)
        else:
            status, body = 201, outcome
        payload = dumps(body)
        return status, payload, storable(status, body, payload, ())

    return lean_placement.Keyed(key, fingerprint(raw), render)


def _stored_response(stored: lean_placement.Stored) -> Response:
    """A keyed order's answer as `execute.write` sends it: its bytes, a replay marked."""
    headers = {"Idempotent-Replayed": "true"} if stored.replayed else None
    media = "application/json" if stored.status < 400 else "application/problem+json"
    return Response(stored.payload, status_code=stored.status, media_type=media, headers=headers)


class OrderPlaceMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = route_of(order_routes.router, "POST", PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != PATH
            or scope["query_string"]
            or not _is_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        secret = bearer_secret(scope)
        fastapi_app: FastAPI = scope["app"]
        state = fastapi_app.state
        if secret is None:
            await self.app(scope, receive, send)
            return
        master = deps.is_master(state.settings, secret)
        idempotency_key = _idempotency_key(scope)
        if (not master and not keys.could_be_key(secret)) or (
            # The route words what is wrong with a key that cannot be stored.
            idempotency_key is not None
            and (not 1 <= len(idempotency_key) <= 255 or "\x00" in idempotency_key)
        ):
            await self.app(scope, receive, send)
            return
        raw = await _read_body(receive)
        if raw is None:
            return  # the client went away before sending its order
        body = _order_in(raw)
        if body is None or len(body.lines) > state.settings.max_order_lines:
            await self.app(scope, _replaying(raw, receive), send)
            return
        request_id = scope.setdefault("state", {}).get("request_id")
        keyed = None if idempotency_key is None else _keyed(idempotency_key, raw, request_id)
        response: Response
        try:
            answer = await self._place(scope, state, secret, master, body, keyed)
        except HandOff:
            await self.app(scope, _replaying(raw, receive), send)
            return
        except DomainError as exc:
            response = problem_response(domain_problem(exc, request_id), retry_headers(exc))
        else:
            if isinstance(answer, lean_placement.Stored):
                response = _stored_response(answer)
            else:
                response = json_response(answer, 201)
        scope["route"] = self.route
        await response(scope, receive, send)

    @staticmethod
    async def _place(
        scope: Scope,
        state: Any,
        secret: str,
        master: bool,
        body: OrderIn,
        keyed: lean_placement.Keyed | None,
    ) -> dict[str, Any] | lean_placement.Stored:
        client = scope.get("client")
        address = client[0] if client else "unknown"
        if not master:
            deps.check_throttle(state, address, secret)

        admitted_key: keys.ApiKeyRow | None = None

        async def admit(key: keys.ApiKeyRow | None) -> lean_placement.Admitted:
            nonlocal admitted_key
            if master:
                principal = deps.MASTER
            else:
                # Under the batch's SKU locks: its use is recorded once they are let go.
                principal = deps.principal_of(state, address, secret, key)
                admitted_key = key
            if not principal.is_ops and body.priority > order_routes.STOREFRONT_MAX_PRIORITY:
                raise HandOff  # the route refuses it (and stores that), its rate counted once
            scope["state"]["principal"] = principal
            deps.check_rate(state, principal)
            return lean_placement.Admitted(
                order_routes.command_of(principal, body), principal.scope
            )

        placer: lean_placement.Placer = state.placer
        key_hash = None if master else keys.hash_key(secret)
        skus = [line.sku for line in body.lines]
        try:
            return await placer.place(
                key_hash, skus, admit, keyed=keyed, preferred=body.preferred_location
            )
        finally:
            if admitted_key is not None:
                await deps.record_use(state, admitted_key)
