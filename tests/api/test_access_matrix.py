"""The access-control matrix: every route of the app x every kind of caller.

The cells are generated from the app's own route table, and every route must have an entry in
`POLICY` (who may call it, and how to build a valid request for it), so a new route cannot be
forgotten: without a policy its cells fail, and so does `test_every_route_has_a_policy`.

Callers: no key, an unknown key, a revoked key (of channel A), the storefront keys of channels A
and B, and the master (ops) key. Per docs/reference.md ("Keys and roles"):
- no, unknown or revoked key: 401 `unauthorized`;
- a storefront on an ops-only route: 403 `forbidden`;
- a storefront on a route it may use: the route's success status;
- storefront B on channel A's order or webhook endpoint: 404 `not_found`, exactly as for one
  that does not exist;
- ops: the route's success status; `/healthz`, `/readyz`, `/metrics` need no key at all.
A refused request changes nothing (the whole database is fingerprinted around it), every problem
is `application/problem+json` with `request_id` = `X-Request-ID`, and no answer to channel B
names one of channel A's orders, lines or endpoints. Channel B's event feed and webhook
deliveries carry none of channel A's customer ids or contacts either.
"""

from __future__ import annotations

import enum
import itertools
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

import orjson
import pytest
from fastapi.routing import APIRoute
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import BaseRoute

from backorder.api.app import create_app
from backorder.api.schemas.orders import OrderStatusName
from backorder.config import Settings
from tests.conftest import MAIN_LOCATION
from tests.support.api import OPS, bearer
from tests.support.dates import days_ahead

# --- who calls --------------------------------------------------------------------------------

PRINCIPALS = ("none", "unknown", "revoked", "storefront_a", "storefront_b", "ops")
UNAUTHENTICATED = ("none", "unknown", "revoked")
CHANNEL_A, CHANNEL_B = "channel-a", "channel-b"
CUSTOMER = "cust-shared"  # shops on both channels
ORDER_STATUSES = get_args(OrderStatusName)


class Who(enum.Enum):
    PUBLIC = "no key needed"
    OPS_ONLY = "ops only"
    ANY_KEY = "any valid key"
    OWN_CHANNEL = "ops, or the storefront of the order's or endpoint's channel (others: 404)"


# --- the world the cells run in -----------------------------------------------------------------


@dataclass
class World:
    http: AsyncClient
    engine: AsyncEngine
    headers: dict[str, dict[str, str]]
    sku: str  # stock and backorders allowed; channel A's order is on it
    po_sku: str  # purchase orders go here, so receipts touch no order
    order: dict[str, Any]  # channel A's order
    po_id: str
    endpoint_id: str
    subscription_id: str  # channel A's back-in-stock subscription on `sku`
    fingerprint_sql: str
    a_ids: set[str] = field(default_factory=set)  # every order and line id of channel A
    seq: Iterator[int] = field(default_factory=itertools.count)

    def remember_a(self, order: dict[str, Any]) -> None:
        self.a_ids.add(order["id"])
        self.a_ids.update(line["id"] for line in order["lines"])

    async def ok(
        self, method: str, path: str, body: Any = None, expect: int = 201, **kw: Any
    ) -> Any:
        r = await self.http.request(method, path, json=body, headers=kw.pop("headers", OPS))
        assert r.status_code == expect, f"set-up {method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    async def order_of_a(self, quantity: int = 2) -> dict[str, Any]:
        body = {"customer_id": CUSTOMER, "lines": [{"sku": self.sku, "quantity": quantity}]}
        order: dict[str, Any] = await self.ok(
            "POST", "/v1/orders", body, headers=self.headers["storefront_a"]
        )
        self.remember_a(order)
        return order

    async def po(self) -> str:
        body = {"sku": self.po_sku, "quantity": 10, "expected_date": days_ahead(40)}
        po: dict[str, Any] = await self.ok("POST", "/v1/purchase-orders", body)
        return str(po["id"])

    async def endpoint(self) -> str:
        """An endpoint of channel A's storefront (a ping to it finds nobody listening)."""
        body = {"url": "http://127.0.0.1:9/in", "event_types": ["*"]}
        ep: dict[str, Any] = await self.ok(
            "POST", "/v1/webhook-endpoints", body, headers=self.headers["storefront_a"]
        )
        self.a_ids.add(ep["id"])
        return str(ep["id"])

    async def delivery(self, endpoint_id: str) -> str:
        """A pending delivery of the newest event (the worker is off in tests, so none fans out)."""
        async with self.engine.begin() as conn:
            delivery_id = (
                await conn.execute(
                    text(
                        "INSERT INTO webhook_delivery (endpoint_id, event_id) "
                        "SELECT :ep, max(id) FROM event RETURNING id"
                    ),
                    {"ep": uuid.UUID(endpoint_id)},
                )
            ).scalar_one()
        return str(delivery_id)

    async def fingerprint(self) -> dict[str, tuple[int, str]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text(self.fingerprint_sql))).all()
        return {r.tbl: (r.n, r.h) for r in rows}


@dataclass(frozen=True)
class Call:
    """How one cell calls its route: path parameters, body, query."""

    params: dict[str, str] = field(default_factory=dict)
    body: Any = None
    query: dict[str, Any] | None = None
    watch_order: str | None = None  # channel A's order the call aims at


Build = Callable[[World], Awaitable[Call]]


@dataclass(frozen=True)
class Policy:
    who: Who
    status: int  # the success status for whoever may call it
    build: Build


def fixed(params: Callable[[World], dict[str, str]] | None = None, body: Any = None) -> Build:
    """A call on the world's shared resources (for reads)."""

    async def build(w: World) -> Call:
        return Call(params(w) if params else {}, body)

    return build


async def shared_order(w: World) -> Call:
    return Call({"order_id": w.order["id"]}, watch_order=w.order["id"])


async def fresh_order_cancel(w: World) -> Call:
    order = await w.order_of_a()
    return Call({"order_id": order["id"]}, watch_order=order["id"])


async def fresh_line_cancel(w: World) -> Call:
    order = await w.order_of_a()
    params = {"order_id": order["id"], "line_id": order["lines"][0]["id"]}
    return Call(params, {"quantity": 1}, watch_order=order["id"])


async def fresh_order_priority(w: World) -> Call:
    order = await w.order_of_a()
    return Call({"order_id": order["id"]}, {"priority": 7}, watch_order=order["id"])


async def fresh_shipment(w: World) -> Call:
    order = await w.order_of_a()
    body = {"lines": [{"line_id": order["lines"][0]["id"], "quantity": 1}]}
    return Call({"order_id": order["id"]}, body, watch_order=order["id"])


async def place_order(w: World) -> Call:
    body = {"customer_id": f"cust-{next(w.seq)}", "lines": [{"sku": w.sku, "quantity": 1}]}
    return Call({}, body)


async def new_product(w: World) -> Call:
    return Call({"sku": f"NEW-{next(w.seq)}"}, {"name": "A new product"})


async def subscribe(w: World) -> Call:
    body = {"customer_id": f"sub-{next(w.seq)}", "contact": "someone@example.com"}
    return Call({"sku": w.sku}, body)


async def po_body(w: World) -> Call:
    return Call({}, {"sku": w.po_sku, "quantity": 10, "expected_date": days_ahead(40)})


async def fresh_po(w: World) -> Call:
    return Call({"po_id": await w.po()})


async def fresh_po_date(w: World) -> Call:
    return Call({"po_id": await w.po()}, {"expected_date": days_ahead(50)})


async def fresh_po_receipt(w: World) -> Call:
    return Call({"po_id": await w.po()}, {"quantity": 1})


async def fresh_endpoint(w: World) -> Call:
    return Call({"endpoint_id": await w.endpoint()})


async def fresh_endpoint_pause(w: World) -> Call:
    return Call({"endpoint_id": await w.endpoint()}, {"enabled": False})


async def fresh_delivery(w: World) -> Call:
    endpoint_id = await w.endpoint()
    return Call({"endpoint_id": endpoint_id, "delivery_id": await w.delivery(endpoint_id)})


async def throwaway_key(w: World) -> Call:
    created: dict[str, Any] = await w.ok(
        "POST", "/v1/api-keys", {"name": "throwaway", "role": "storefront"}
    )
    return Call({"key_id": created["id"]})


async def new_location(w: World) -> Call:
    return Call({"code": f"LOC-{next(w.seq)}"}, {"name": "A new location"})


async def fresh_transfer(w: World) -> Call:
    """One unit of the PO SKU (no order waits for it) from `main` to a new location."""
    code = f"TO-{next(w.seq)}"
    await w.ok("PUT", f"/v1/locations/{code}", {"name": code})
    await w.ok("POST", f"/v1/products/{w.po_sku}/restocks", {"quantity": 1})
    return Call({}, {"sku": w.po_sku, "from": "main", "to": code, "quantity": 1})


def main_location(w: World) -> dict[str, str]:
    return {"code": "main"}


def sku(w: World) -> dict[str, str]:
    return {"sku": w.sku}


async def promise(w: World) -> Call:
    return Call(sku(w), query={"quantity": 3})


# (method, path template) -> who may call it, its success status, and a valid request.
POLICY: dict[tuple[str, str], Policy] = {
    # orders
    ("POST", "/v1/orders"): Policy(Who.ANY_KEY, 201, place_order),
    ("GET", "/v1/orders"): Policy(Who.ANY_KEY, 200, fixed()),
    ("GET", "/v1/orders/{order_id}"): Policy(Who.OWN_CHANNEL, 200, shared_order),
    ("POST", "/v1/orders/{order_id}/cancel"): Policy(Who.OWN_CHANNEL, 200, fresh_order_cancel),
    ("POST", "/v1/orders/{order_id}/lines/{line_id}/cancel"): Policy(
        Who.OWN_CHANNEL, 200, fresh_line_cancel
    ),
    ("PATCH", "/v1/orders/{order_id}"): Policy(Who.OPS_ONLY, 200, fresh_order_priority),
    ("POST", "/v1/orders/{order_id}/shipments"): Policy(Who.OPS_ONLY, 201, fresh_shipment),
    ("GET", "/v1/backorders"): Policy(Who.OPS_ONLY, 200, fixed()),
    # products and stock
    ("PUT", "/v1/products/{sku}"): Policy(Who.OPS_ONLY, 201, new_product),
    ("GET", "/v1/products/{sku}"): Policy(Who.ANY_KEY, 200, fixed(sku)),
    ("GET", "/v1/products"): Policy(Who.ANY_KEY, 200, fixed()),
    ("GET", "/v1/products/{sku}/alternatives"): Policy(Who.ANY_KEY, 200, fixed(sku)),
    ("GET", "/v1/products/{sku}/promise"): Policy(Who.ANY_KEY, 200, promise),
    ("POST", "/v1/products/{sku}/restocks"): Policy(
        Who.OPS_ONLY, 201, fixed(sku, {"quantity": 5, "reference": "PO-cell"})
    ),
    ("POST", "/v1/products/{sku}/adjustments"): Policy(
        Who.OPS_ONLY, 201, fixed(sku, {"delta": -1, "reason": "cycle count"})
    ),
    ("GET", "/v1/products/{sku}/movements"): Policy(Who.OPS_ONLY, 200, fixed(sku)),
    ("POST", "/v1/products/{sku}/subscriptions"): Policy(Who.ANY_KEY, 201, subscribe),
    ("GET", "/v1/products/{sku}/subscriptions"): Policy(Who.ANY_KEY, 200, fixed(sku)),
    # purchase orders
    ("POST", "/v1/purchase-orders"): Policy(Who.OPS_ONLY, 201, po_body),
    ("GET", "/v1/purchase-orders"): Policy(Who.OPS_ONLY, 200, fixed()),
    ("GET", "/v1/purchase-orders/{po_id}"): Policy(
        Who.OPS_ONLY, 200, fixed(lambda w: {"po_id": w.po_id})
    ),
    ("PATCH", "/v1/purchase-orders/{po_id}"): Policy(Who.OPS_ONLY, 200, fresh_po_date),
    ("POST", "/v1/purchase-orders/{po_id}/cancel"): Policy(Who.OPS_ONLY, 200, fresh_po),
    ("POST", "/v1/purchase-orders/{po_id}/receive"): Policy(Who.OPS_ONLY, 201, fresh_po_receipt),
    # locations
    ("PUT", "/v1/locations/{code}"): Policy(Who.OPS_ONLY, 201, new_location),
    ("GET", "/v1/locations"): Policy(Who.ANY_KEY, 200, fixed()),
    ("GET", "/v1/locations/{code}"): Policy(Who.ANY_KEY, 200, fixed(main_location)),
    ("GET", "/v1/locations/{code}/pick-list"): Policy(Who.OPS_ONLY, 200, fixed(main_location)),
    ("POST", "/v1/transfers"): Policy(Who.OPS_ONLY, 201, fresh_transfer),
    # events and webhooks
    ("GET", "/v1/events"): Policy(Who.ANY_KEY, 200, fixed()),
    ("POST", "/v1/webhook-endpoints"): Policy(
        Who.ANY_KEY,
        201,
        fixed(body={"url": "https://hooks.example.com/in", "event_types": ["order.created"]}),
    ),
    ("GET", "/v1/webhook-endpoints"): Policy(Who.ANY_KEY, 200, fixed()),
    ("GET", "/v1/webhook-endpoints/{endpoint_id}"): Policy(
        Who.OWN_CHANNEL, 200, fixed(lambda w: {"endpoint_id": w.endpoint_id})
    ),
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"): Policy(
        Who.OWN_CHANNEL, 200, fresh_endpoint_pause
    ),
    ("DELETE", "/v1/webhook-endpoints/{endpoint_id}"): Policy(Who.OWN_CHANNEL, 204, fresh_endpoint),
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): Policy(
        Who.OWN_CHANNEL, 200, fresh_endpoint
    ),
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/ping"): Policy(
        Who.OWN_CHANNEL, 200, fresh_endpoint
    ),
    ("GET", "/v1/webhook-endpoints/{endpoint_id}/deliveries"): Policy(
        Who.OWN_CHANNEL, 200, fixed(lambda w: {"endpoint_id": w.endpoint_id})
    ),
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry"): Policy(
        Who.OWN_CHANNEL, 200, fresh_delivery
    ),
    # reports
    ("GET", "/v1/reports/backorders"): Policy(Who.OPS_ONLY, 200, fixed()),
    ("GET", "/v1/replenishment"): Policy(Who.OPS_ONLY, 200, fixed()),
    # API keys
    ("POST", "/v1/api-keys"): Policy(
        Who.OPS_ONLY, 201, fixed(body={"name": "throwaway", "role": "storefront"})
    ),
    ("GET", "/v1/api-keys"): Policy(Who.OPS_ONLY, 200, fixed()),
    ("DELETE", "/v1/api-keys/{key_id}"): Policy(Who.OPS_ONLY, 204, throwaway_key),
    # operations
    ("GET", "/healthz"): Policy(Who.PUBLIC, 200, fixed()),
    ("HEAD", "/healthz"): Policy(Who.PUBLIC, 200, fixed()),
    ("GET", "/readyz"): Policy(Who.PUBLIC, 200, fixed()),
    ("HEAD", "/readyz"): Policy(Who.PUBLIC, 200, fixed()),
    ("GET", "/metrics"): Policy(Who.PUBLIC, 200, fixed()),
}
PUBLIC_ROUTES = {
    ("GET", "/healthz"),
    ("HEAD", "/healthz"),
    ("GET", "/readyz"),
    ("HEAD", "/readyz"),
    ("GET", "/metrics"),
}


def expected(policy: Policy, principal: str) -> tuple[int, str | None]:
    """(status, problem code) for this caller on a route with this policy."""
    if policy.who is Who.PUBLIC:
        return policy.status, None
    if principal in UNAUTHENTICATED:
        return 401, "unauthorized"
    if principal == "ops" or policy.who is Who.ANY_KEY:
        return policy.status, None
    if policy.who is Who.OPS_ONLY:
        return 403, "forbidden"
    # OWN_CHANNEL: every such route aims at channel A's order or endpoint
    return (policy.status, None) if principal == "storefront_a" else (404, "not_found")


# --- the app's route table ------------------------------------------------------------------


def api_routes(routes: Sequence[BaseRoute]) -> set[tuple[str, str]]:
    """(method, path template) of every APIRoute, through included routers."""
    try:  # FastAPI >= 0.16x keeps included routers as wrappers in `app.routes`
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI: app.routes is flat
        flat = [(r.path, r.methods) for r in routes if isinstance(r, APIRoute)]
    else:
        flat = [
            (str(rc.path), rc.methods)
            for rc in iter_route_contexts(routes)
            if isinstance(rc.original_route, APIRoute)
        ]
    return {(method, path) for path, methods in flat for method in methods or ()}


def app_routes(settings: Settings) -> set[tuple[str, str]]:
    """The API's routes. The console's (`/console…`) take no API key but a signed session
    cookie of an ops key, and CSRF tokens on their forms: their matrix (no session, a
    storefront key, a revoked key, a forged form) is tests/api/test_console.py's."""
    return {
        (m, p) for m, p in api_routes(create_app(settings).routes) if not p.startswith("/console")
    }


# Collection needs the route table before any fixture runs; building the app opens no
# connection, so any URL does. `test_every_route_has_a_policy` re-checks with the real settings.
COLLECTED = app_routes(
    Settings(database_url="postgresql://collect@127.0.0.1:1/collect", master_key="collect" * 8)
)
CELLS = [
    (method, path, principal)
    for method, path in sorted(COLLECTED | POLICY.keys(), key=lambda mp: (mp[1], mp[0]))
    for principal in PRINCIPALS
]
MISSING_POLICY = "{} {} has no access policy: add it to POLICY in tests/api/test_access_matrix.py"


def test_every_route_has_a_policy(settings: Settings) -> None:
    routes = app_routes(settings)
    assert {"/v1/orders", "/v1/products/{sku}"} <= {p for _, p in routes}, (
        f"the route table could not be read: {sorted(routes)}"
    )
    missing = sorted(routes - POLICY.keys(), key=lambda mp: (mp[1], mp[0]))
    assert not missing, "\n".join(MISSING_POLICY.format(m, p) for m, p in missing)
    stale = sorted(POLICY.keys() - routes, key=lambda mp: (mp[1], mp[0]))
    assert not stale, f"POLICY names routes the app does not have: {stale}"
    v1 = {(m, p) for m, p in routes if p.startswith("/v1/")}
    assert routes - v1 == PUBLIC_ROUTES, "outside /v1 there should be only the probes"
    assert {mp for mp, pol in POLICY.items() if pol.who is Who.PUBLIC} == PUBLIC_ROUTES, (
        "only /healthz, /readyz and /metrics may need no key"
    )


# --- fixtures ----------------------------------------------------------------------------------


async def _truncate(engine: AsyncEngine, tables: list[str]) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        await conn.execute(text(MAIN_LOCATION))


@pytest.fixture(scope="module")
async def world(settings: Settings, engine: AsyncEngine) -> AsyncIterator[World]:
    """One clean database for the whole matrix, with channel A's resources in it."""
    async with engine.connect() as conn:
        tables = [
            f'"{name}"'
            for name in (
                await conn.execute(
                    text(
                        "SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' "
                        "AND table_name <> 'alembic_version' ORDER BY table_name"
                    )
                )
            ).scalars()
        ]
    fingerprint_sql = " UNION ALL ".join(
        f"SELECT '{t}' AS tbl, count(*) AS n, "
        f"coalesce(md5(string_agg(md5(x::text), ',' ORDER BY md5(x::text))), '') AS h "
        f"FROM {t} x"
        for t in tables
    )
    await _truncate(engine, tables)
    # Every cell registers endpoints of its own: lift the cap per channel.
    app = create_app(settings.model_copy(update={"webhook_max_endpoints_per_channel": 1000}))
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://test") as http:
            headers: dict[str, dict[str, str]] = {
                "none": {},
                "unknown": bearer("bo_" + secrets.token_urlsafe(32)),
                "ops": OPS,
            }
            for principal, name in [
                ("storefront_a", CHANNEL_A),
                ("storefront_b", CHANNEL_B),
                ("revoked", CHANNEL_A),  # revoked, though its channel's orders exist
            ]:
                r = await http.post(
                    "/v1/api-keys", json={"name": name, "role": "storefront"}, headers=OPS
                )
                assert r.status_code == 201, r.text
                headers[principal] = bearer(r.json()["key"])
                if principal == "revoked":
                    r = await http.delete(f"/v1/api-keys/{r.json()['id']}", headers=OPS)
                    assert r.status_code == 204, r.text

            w = World(
                http=http,
                engine=engine,
                headers=headers,
                sku="ACM-1",
                po_sku="ACM-PO",
                order={},
                po_id="",
                endpoint_id="",
                subscription_id="",
                fingerprint_sql=fingerprint_sql,
            )
            for product in (w.sku, w.po_sku):
                await w.ok("PUT", f"/v1/products/{product}", {"name": product})
            await w.ok("POST", f"/v1/products/{w.sku}/restocks", {"quantity": 5000})
            w.endpoint_id = await w.endpoint()
            w.order = await w.order_of_a()
            body = {"customer_id": CUSTOMER, "lines": [{"sku": w.sku, "quantity": 1}]}
            await w.ok("POST", "/v1/orders", body, headers=headers["storefront_b"])
            w.po_id = await w.po()
            await w.delivery(w.endpoint_id)
            sub = await w.ok(
                "POST",
                f"/v1/products/{w.sku}/subscriptions",
                {"customer_id": CUSTOMER, "contact": "a@example.com"},
                headers=headers["storefront_a"],
            )
            w.subscription_id = sub["id"]
            yield w
    await _truncate(engine, tables)


# --- checks ------------------------------------------------------------------------------------


def check_problem(r: Response, status: int, code: str) -> None:
    assert r.status_code == status, f"expected {status} {code}, got {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert (body["status"], body["code"]) == (status, code), body
    assert body["request_id"] == r.headers["x-request-id"], (body, r.headers)


def check_success(r: Response, status: int) -> None:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    assert not r.headers.get("content-type", "").startswith("application/problem+json")


def swap(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        for old, new in mapping.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {k: swap(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [swap(v, mapping) for v in value]
    return value


def as_if_absent(r: Response, ids: dict[str, str]) -> tuple[int, str, Any]:
    """The answer with the ids it was asked about replaced by placeholders, and no request_id."""
    body = orjson.loads(swap(r.text, ids)) if r.content else None
    if isinstance(body, dict):
        body.pop("request_id", None)
    return r.status_code, r.headers.get("content-type", ""), body


def assert_no_a_ids(w: World, r: Response, asked: str) -> None:
    """An answer to channel B names none of channel A's orders or lines (except the ones it was
    asked about, in the URL or body: those are checked to answer as if they did not exist)."""
    leaked = sorted(i for i in w.a_ids if i in r.text and i not in asked)
    assert not leaked, f"channel B was shown channel A's ids {leaked}: {r.text}"


# --- the matrix --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "principal"), CELLS, ids=[f"{m} {p}-{who}" for m, p, who in CELLS]
)
async def test_access(world: World, method: str, path: str, principal: str) -> None:
    w = world
    if (method, path) not in POLICY:
        pytest.fail(MISSING_POLICY.format(method, path))
    if (method, path) not in COLLECTED:
        pytest.fail(f"POLICY names {method} {path}, which the app does not have: remove it")
    policy = POLICY[(method, path)]
    status, code = expected(policy, principal)

    call = await policy.build(w)
    placeholders = set(re.findall(r"{(\w+)}", path))
    assert placeholders == call.params.keys(), f"the policy fills {sorted(call.params)}"
    url = path.format(**call.params)
    headers = w.headers[principal]
    refused = code is not None
    before = await w.fingerprint() if refused else None
    watched = (
        (await w.http.get(f"/v1/orders/{call.watch_order}", headers=OPS)).json()
        if call.watch_order and refused
        else None
    )

    r = await w.http.request(method, url, json=call.body, params=call.query, headers=headers)

    if code is None:
        check_success(r, status)
        if method == "POST" and path == "/v1/orders" and principal == "storefront_a":
            w.remember_a(r.json())
    else:
        check_problem(r, status, code)
        after = await w.fingerprint()
        changed = sorted(t for t in after if after[t] != (before or {}).get(t))
        assert not changed, f"a refused {method} {url} changed the tables {changed}"
        if watched is not None:
            again = await w.http.get(f"/v1/orders/{call.watch_order}", headers=OPS)
            assert again.json() == watched, "a refused request changed channel A's order"

    if principal == "storefront_b":
        asked = url + (orjson.dumps(call.body).decode() if call.body is not None else "")
        assert_no_a_ids(w, r, asked)
        if "order_id" in call.params or "endpoint_id" in call.params:
            # ... and channel A's order (or endpoint) answers exactly as one that does not exist.
            ghosts = {i: str(uuid.uuid4()) for i in w.a_ids if i in asked}
            placeholders_of = {i: f"<id{n}>" for n, i in enumerate(ghosts)}
            ghost = await w.http.request(
                method,
                swap(url, ghosts),
                json=swap(call.body, ghosts),
                params=call.query,
                headers=headers,
            )
            ghost_ids = {g: placeholders_of[i] for i, g in ghosts.items()}
            assert as_if_absent(r, placeholders_of) == as_if_absent(ghost, ghost_ids), (
                f"channel A's order answers channel B unlike a missing one: {r.text} vs "
                f"{ghost.text}"
            )


# --- channel B never sees channel A's orders -------------------------------------------------


async def order_ids(w: World, principal: str, **query: Any) -> tuple[list[str], list[Response]]:
    """Every order id the caller lists with these filters, walking every page."""
    ids: list[str] = []
    pages: list[Response] = []
    params: dict[str, Any] = {"limit": 200, **query}
    while True:
        r = await w.http.get("/v1/orders", params=params, headers=w.headers[principal])
        assert r.status_code == 200, r.text
        pages.append(r)
        ids += [o["id"] for o in r.json()["data"]]
        if r.json()["next_cursor"] is None:
            return ids, pages
        params = {**params, "cursor": r.json()["next_cursor"]}


async def test_channel_b_never_lists_channel_a_orders(world: World) -> None:
    w = world
    a, b = w.headers["storefront_a"], w.headers["storefront_b"]
    # channel A's orders in every state (and one of B's, for the filters to find)
    await w.ok("PUT", "/v1/products/ACM-BO", {"name": "Out of stock"})
    cancelled = await w.order_of_a()
    await w.ok("POST", f"/v1/orders/{cancelled['id']}/cancel", None, 200, headers=a)
    shipping = await w.order_of_a()
    ship = {"lines": [{"line_id": shipping["lines"][0]["id"], "quantity": 1}]}
    await w.ok("POST", f"/v1/orders/{shipping['id']}/shipments", ship)
    for lines in ([("ACM-BO", 3)], [("ACM-1", 1), ("ACM-BO", 2)]):
        body = {"customer_id": CUSTOMER, "lines": [{"sku": s, "quantity": q} for s, q in lines]}
        w.remember_a(await w.ok("POST", "/v1/orders", body, headers=a))
        await w.ok("POST", "/v1/orders", body, headers=b)
    mine, _ = await order_ids(w, "storefront_a")
    assert w.order["id"] in mine
    everything, _ = await order_ids(w, "ops")
    assert set(mine) <= set(everything)
    a_orders = set(mine) | {i for i in w.a_ids if i in everything}

    queries: list[dict[str, Any]] = [
        {},
        {"customer_id": CUSTOMER},
        {"sku": w.sku},
        {"sku": "ACM-BO"},
        *({"status": s} for s in ORDER_STATUSES),
        {"customer_id": CUSTOMER, "sku": w.sku, "status": "allocated"},
        {"customer_id": CUSTOMER, "sku": "ACM-BO", "status": "backordered"},
        {"limit": 1},
    ]
    for query in queries:
        theirs, pages = await order_ids(w, "storefront_a", **query)
        seen, pages = await order_ids(w, "storefront_b", **query)
        assert not set(seen) & a_orders, f"B listed A's orders with {query}"
        for page in pages:
            assert_no_a_ids(w, page, "")
            assert all(o["channel"] == CHANNEL_B for o in page.json()["data"]), query
        if query.get("customer_id") or query.get("sku"):
            assert theirs and seen, f"the filter {query} should find orders of both channels"
    # ... and channel A's list names none of B's
    theirs_b, _ = await order_ids(w, "storefront_b")
    assert theirs_b and not set(theirs_b) & set((await order_ids(w, "storefront_a"))[0])
    # paging B one by one never strays into A's orders either
    one_by_one, _ = await order_ids(w, "storefront_b", limit=1)
    assert sorted(one_by_one) == sorted((await order_ids(w, "storefront_b"))[0])
    assert len(one_by_one) >= 3


async def test_channel_b_never_sees_channel_a_subscriptions(world: World) -> None:
    w = world
    path = f"/v1/products/{w.sku}/subscriptions"
    r = await w.http.get(path, headers=w.headers["storefront_b"])
    assert r.status_code == 200, r.text
    assert w.subscription_id not in r.text
    assert all(s["channel"] == CHANNEL_B for s in r.json()["data"])
    r = await w.http.get(path, headers=w.headers["storefront_a"])
    assert w.subscription_id in {s["id"] for s in r.json()["data"]}


async def feed_of(w: World, principal: str) -> str:
    """The caller's whole event feed, every page, as text."""
    pages: list[str] = []
    params: dict[str, Any] = {"limit": 200}
    while True:
        r = await w.http.get("/v1/events", params=params, headers=w.headers[principal])
        assert r.status_code == 200, r.text
        pages.append(r.text)
        if r.json()["next_cursor"] is None:
            return "\n".join(pages)
        params = {**params, "cursor": r.json()["next_cursor"]}


async def test_channel_b_never_reads_channel_a_customers_in_its_feed(world: World) -> None:
    w = world
    a, b = w.headers["storefront_a"], w.headers["storefront_b"]
    await w.ok("PUT", "/v1/products/ACM-FEED", {"name": "Sold out", "reorder_point": 5})
    secrets_of_a = ["cust-a-only", "sub-a-only", "a-only@example.com"]
    own_of_b = ["cust-b-only", "sub-b-only", "b-only@example.com"]
    for headers, (customer, subscriber, contact) in ((a, secrets_of_a), (b, own_of_b)):
        body = {"customer_id": customer, "lines": [{"sku": "ACM-FEED", "quantity": 2}]}
        order = await w.ok("POST", "/v1/orders", body, headers=headers)
        if headers is a:
            w.remember_a(order)
        sub = {"customer_id": subscriber, "contact": contact}
        await w.ok("POST", "/v1/products/ACM-FEED/subscriptions", sub, headers=headers)
    # fills both orders, then back in stock (naming both subscribers) and low
    await w.ok("POST", "/v1/products/ACM-FEED/restocks", {"quantity": 7})
    await w.ok("POST", f"/v1/orders/{order['id']}/cancel", None, 200, headers=b)

    ops_view = await feed_of(w, "ops")
    a_view = await feed_of(w, "storefront_a")
    b_view = await feed_of(w, "storefront_b")
    for text_ in secrets_of_a + own_of_b:
        assert text_ in ops_view  # the events do carry them: the check below is not vacuous
    for text_ in secrets_of_a:
        assert text_ in a_view and text_ not in b_view, text_
    for text_ in own_of_b:
        assert text_ in b_view and text_ not in a_view, text_
    leaked = sorted(i for i in w.a_ids if i in b_view)
    assert not leaked, f"channel B's feed names channel A's orders or lines {leaked}"
