"""Schemathesis against the service's own `/openapi.json`, with an ops key and a storefront key.

Every default check must pass on every operation: no 5xx, documented status codes and content
types, response bodies and headers that match their schemas, schema-valid requests accepted,
invalid ones refused, and authentication really enforced where the schema declares it
(`ignored_auth` probes each operation without a key and with a wrong one).

The schema is the document the app serves at `/openapi.json`, read at import so that pytest
collects one test per operation and key. Requests go in process (Schemathesis' ASGI client,
which also runs the app's lifespan) to an app on the session's migrated database, seeded with a
little real data; positive cases aim at it, so that they reach real handlers, not only 404s.
Generation is derandomised with a fixed seed: `make test` runs the same cases every time; CI
runs a second pass with a random seed (BACKORDER_SCHEMATHESIS_SEED=random, printed).
"""

from __future__ import annotations

import copy
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi
from schemathesis.schemas import BaseSchema
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Receive, Scope, Send

from backorder.api.app import create_app
from backorder.config import Settings
from backorder.db import keys
from backorder.db import webhook_queue as webhook_rows
from backorder.db.engine import run_transaction
from tests.conftest import truncate_all
from tests.support.api import MASTER_KEY
from tests.support.dates import days_ahead

# BACKORDER_SCHEMATHESIS_SEED=random (CI's second pass) draws fresh cases, with the seed printed
# so that a failure is replayed with BACKORDER_SCHEMATHESIS_SEED=<seed>; unset: the fixed seed.
_CHOSEN_SEED = os.environ.get("BACKORDER_SCHEMATHESIS_SEED", "")
RANDOM_RUN = bool(_CHOSEN_SEED)
SEED = secrets.randbelow(2**31) if _CHOSEN_SEED == "random" else int(_CHOSEN_SEED or "20261201")
if RANDOM_RUN:
    print(f"SCHEMATHESIS-SEED {SEED} (replay: BACKORDER_SCHEMATHESIS_SEED={SEED})", flush=True)
# Fuzzed cases per operation and mode, on top of the schema's examples and the coverage phase's
# boundary cases; raise it for a deeper run (BACKORDER_SCHEMATHESIS_EXAMPLES=200).
MAX_EXAMPLES = int(os.environ.get("BACKORDER_SCHEMATHESIS_EXAMPLES", "10"))
OPS = {"Authorization": f"Bearer {MASTER_KEY}"}
SKUS = ("TRAIL-41", "TRAIL-42", "TRAIL-43", "TRAIL-44")  # the seeded products


class AppUnderTest:
    """The ASGI app Schemathesis calls. The real one can exist only once the session's database
    does, so the schemas (read at import, for collection) point at this stand-in and the `api`
    fixture plugs the app in. Checks that send requests of their own reach it too."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "the `api` fixture plugs the app in"
        await self.app(scope, receive, send)


def client(app: Any) -> asgi.ASGIClient:
    """Schemathesis' in-process client of `app` (a `requests` session); entering it runs the
    app's startup, once per process."""
    return asgi.get_client(app)


def served_schema() -> dict[str, Any]:
    """`GET /openapi.json` of an app that is never started: the document needs no database."""
    app = create_app(Settings(database_url="postgresql://schema-only@127.0.0.1:1/none"))
    response = client(app).get("/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


CONFIG_DATA: dict[str, Any] = {
    "seed": SEED,
    "generation": {
        "max-examples": MAX_EXAMPLES,
        "deterministic": not RANDOM_RUN,
        "database": "none",
    },
    # How fast cases are drawn says nothing about the API; on a loaded CI box it must not fail
    # the run.
    "suppress-health-check": ["too_slow"],
}
DOCUMENT = served_schema()
UNDER_TEST = AppUnderTest()
# Schemathesis builds its coverage cases, with their keys, when pytest collects the tests, before
# any fixture runs: so the storefront's key is fixed. The `api` fixture has the service issue it.
STOREFRONT_KEY = "bo_schemathesis-storefront-key-0123456789abcde"  # a key's shape


def schema_for(key: str) -> BaseSchema:
    """The served schema, its cases sent to the app under test with `key` (except the negative
    cases whose very point is a missing or malformed `Authorization`: they must get a 401)."""
    config = copy.deepcopy(CONFIG_DATA)
    (scheme,) = DOCUMENT["components"]["securitySchemes"]  # `Authorization: Bearer <key>`
    config["auth"] = {"openapi": {scheme: {"bearer": key}}}
    loaded = schemathesis.openapi.from_dict(
        copy.deepcopy(DOCUMENT), config=SchemathesisConfig.from_dict(config)
    )
    loaded.app = UNDER_TEST
    return loaded


ops_schema = schema_for(MASTER_KEY)
storefront_schema = schema_for(STOREFRONT_KEY)


@dataclass
class Seeded:
    """What positive cases aim at, by role: real path parameters and list cursors."""

    path: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> name -> value
    # role -> (method, path template) -> name -> value, for the calls that end a resource
    ends: dict[str, dict[tuple[str, str], dict[str, str]]] = field(default_factory=dict)
    lines: dict[str, list[str]] = field(default_factory=dict)  # order id -> its line ids
    cursors: dict[str, str] = field(default_factory=dict)  # list path -> a `next_cursor`


def _ok(response: Any, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def seed(http: asgi.ASGIClient) -> Seeded:
    """At least two of everything a list shows (so that each list has a next page): locations,
    products in stock and not, a ledger, orders of two channels that wait in the queue,
    purchase orders, subscriptions, webhook endpoints (registered first: they get the events
    that follow) and API keys, the storefront's among them. A call that ends a resource (a
    cancel, a delete) gets one of its own, so that the calls after it still find theirs."""
    endpoints = []
    for url in ("http://127.0.0.1:9/hook", "http://127.0.0.1:9/other", "http://127.0.0.1:9/gone"):
        body: dict[str, Any] = {"url": url, "event_types": ["*"]}
        endpoints.append(_ok(http.post("/v1/webhook-endpoints", json=body, headers=OPS))["id"])
    for code, rank in (("leeds", 10), ("york", 200)):  # `main` is the third
        _ok(http.put(f"/v1/locations/{code}", json={"name": code, "rank": rank}, headers=OPS))
    for sku, stock in zip(SKUS, (5, 100, 0, 0), strict=True):
        _ok(http.put(f"/v1/products/{sku}", json={"name": f"Trail {sku}"}, headers=OPS))
        if stock:
            _ok(http.post(f"/v1/products/{sku}/restocks", json={"quantity": stock}, headers=OPS))
    for sku in SKUS:  # alternatives name other existing products only
        body = {"alternatives": [a for a in ("TRAIL-41", "TRAIL-42") if a != sku]}
        _ok(http.put(f"/v1/products/{sku}", json=body, headers=OPS), 200)
    _ok(http.post("/v1/products/TRAIL-42/adjustments", json={"delta": -1}, headers=OPS))
    pos = []
    for day in (days_ahead(30), days_ahead(45)):
        body = {"sku": "TRAIL-43", "quantity": 5, "expected_date": day}
        pos.append(_ok(http.post("/v1/purchase-orders", json=body, headers=OPS))["id"])
    spare = _ok(http.post("/v1/api-keys", json={"name": "back-office", "role": "ops"}, headers=OPS))
    body = {"name": "web-shop", "role": "storefront"}
    with pytest.MonkeyPatch.context() as patch:  # the service issues the key the cases carry
        patch.setattr(keys, "new_secret", lambda: STOREFRONT_KEY)
        assert _ok(http.post("/v1/api-keys", json=body, headers=OPS))["key"] == STOREFRONT_KEY
    seeded = Seeded()
    lines = [{"sku": "TRAIL-42", "quantity": 3}, {"sku": "TRAIL-43", "quantity": 4}]
    for customer, role, key in (("c-1", "ops", MASTER_KEY), ("c-2", "storefront", STOREFRONT_KEY)):
        headers = {"Authorization": f"Bearer {key}"}
        orders = []
        for _ in range(2):  # the second is the one to cancel
            body = {"customer_id": customer, "lines": lines}
            order = _ok(http.post("/v1/orders", json=body, headers=headers))
            seeded.lines[order["id"]] = [line["id"] for line in order["lines"]]
            orders.append(order["id"])
        body = {"customer_id": customer, "contact": f"{customer}@example.com"}
        _ok(http.post("/v1/products/TRAIL-42/subscriptions", json=body, headers=headers))
        seeded.path[role] = {
            "sku": "TRAIL-42",
            "order_id": orders[0],
            "line_id": seeded.lines[orders[0]][0],
            "po_id": pos[0],
            "endpoint_id": endpoints[0],
            "key_id": spare["id"],  # never the key a test runs with
            "code": "main",  # where the seeded stock and its allocated lines are
        }
        seeded.ends[role] = {
            ("POST", "/v1/orders/{order_id}/cancel"): {"order_id": orders[1]},
            # the waiting line: the allocated one is the shipments'
            ("POST", "/v1/orders/{order_id}/lines/{line_id}/cancel"): {
                "line_id": seeded.lines[orders[0]][1]
            },
            ("POST", "/v1/purchase-orders/{po_id}/cancel"): {"po_id": pos[1]},
            ("DELETE", "/v1/webhook-endpoints/{endpoint_id}"): {"endpoint_id": endpoints[2]},
        }
    return seeded


@pytest.fixture(scope="module")
def api(settings: Settings, database_url: str) -> Iterator[Seeded]:
    """The app under test, on a freshly seeded database."""
    truncate_all(database_url)
    # Thousands of cases on one key, hundreds of them with bad credentials on purpose: the
    # fuzzer is load, not an attacker, so neither limit applies (tests/security tests them).
    UNDER_TEST.app = create_app(
        settings.model_copy(update={"rate_limit_per_minute": 0, "auth_failures_per_minute": 0})
    )
    try:
        with client(UNDER_TEST) as http:  # runs the app's startup: its engine
            assert _ok(http.get("/openapi.json"), 200) == DOCUMENT, "not the schema collected"
            yield seed(http)
    finally:
        asgi.shutdown_lifespans()  # the app's shutdown: disposes of its engine
        UNDER_TEST.app = None
        truncate_all(database_url)


@pytest.fixture(scope="module")
async def deliveries(api: Seeded, engine: AsyncEngine) -> AsyncIterator[None]:
    """What the webhook worker (off in tests) would do first: the seeded events become
    deliveries to the endpoints, so that the delivery calls have something to show."""
    await run_transaction(engine, lambda conn: webhook_rows.ensure_cursor(conn, "schemathesis"))
    await run_transaction(engine, lambda conn: webhook_rows.fan_out(conn, "schemathesis", 1000))
    yield


@pytest.fixture(scope="module")
def real(api: Seeded, deliveries: None) -> Seeded:
    """The seeded ids, with a delivery's and a real `next_cursor` of every list.

    A cursor is an opaque token the service issues: no schema can say which strings are
    valid, and the service rightly refuses made-up ones (422). So a positive case sends one it
    issued, as it sends the id of a seeded resource; negative cases keep theirs."""
    ops = api.path["ops"]
    with client(UNDER_TEST) as http:
        url = f"/v1/webhook-endpoints/{ops['endpoint_id']}/deliveries"
        delivery = _ok(http.get(url, headers=OPS), 200)["data"][0]["id"]
        for role in api.path.values():
            role["delivery_id"] = delivery
        for path, item in DOCUMENT["paths"].items():
            parameters = item.get("get", {}).get("parameters", [])
            if any(p["name"] == "cursor" and p["in"] == "query" for p in parameters):
                page = _ok(http.get(path.format(**ops), params={"limit": 1}, headers=OPS), 200)
                assert page["next_cursor"], f"seed more rows: {path} has a single page"
                api.cursors[path] = page["next_cursor"]
    return api


def instant(value: object) -> datetime | None:
    """A query's RFC 3339 date-time, or None."""
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def as_a_client_would(case: Case[Any], real: Seeded, role: str) -> None:
    """Aim a positive case at the seeded data, and make it follow the contract's rules that no
    JSON Schema can state (each in docs/reference.md), so that it tests what a valid request
    gets rather than the refusal the contract demands. Negative cases are sent as generated.

    * Path parameters name seeded resources (a `PUT` of a product keeps its generated SKU: it
      creates one, as long as it has a `name`; one without updates a seeded product). A call
      that ends a resource aims at one seeded for it.
    * `cursor`: only one the service issued (any other is a 422).
    * SKUs named in a body must exist (else 422 `unknown_sku`), one order line per SKU (else
      422): the lines name distinct seeded SKUs (as many lines as there are). A shipment's
      lines name distinct lines of the order (else 422).
    * `alternatives` name other existing products (else 422): other seeded SKUs.
    * A purchase order's `expected_date` runs from today to five years on (else 422).
    * An order's `backorder_deadline` is in the future (else 422).
    * Locations named in a body exist (else 422 `unknown_location`): `main`, where the seeded
      stock is, and a transfer goes from `main` to `leeds` (the same on both ends is 422). A
      `PUT` of a location keeps its generated code: it makes a new one (one without a
      `name` updates a seeded location).
    * A storefront may send `priority` 0-4 only (else 422).
    * A report window does not end before it starts (`since` <= `until`, else 422).
    * An `Idempotency-Key` is new for each request (a key sent before with another body is
      422 `idempotency_key_reused`).
    """
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    method, path = case.method.upper(), case.operation.path
    body = case.body if isinstance(case.body, dict) else {}
    values = {**real.path[role], **real.ends[role].get((method, path), {})}
    for name in list(case.path_parameters or {}):
        if name in values and (method, name) not in {("PUT", "sku"), ("PUT", "code")}:
            case.path_parameters[name] = values[name]
    if (method, path) == ("PUT", "/v1/locations/{code}") and "name" not in body:
        case.path_parameters["code"] = "york"  # one without a name updates a seeded one
    if (method, path) == ("PUT", "/v1/products/{sku}"):
        if "name" not in body:
            case.path_parameters["sku"] = SKUS[-1]
        if isinstance(body.get("alternatives"), list):
            others = [s for s in SKUS if s != case.path_parameters["sku"]]
            body["alternatives"] = others[: len(body["alternatives"])]
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    query = case.query or {}
    if "cursor" in query:
        query["cursor"] = real.cursors[path]
    since, until = instant(query.get("since")), instant(query.get("until"))
    if since is not None and until is not None and since > until:
        query["since"], query["until"] = query["until"], query["since"]
    lines: Any = body.get("lines")
    if not isinstance(lines, list) or not all(isinstance(line, dict) for line in lines):
        lines = None
    if (method, path) == ("POST", "/v1/orders"):
        if lines is not None:
            body["lines"] = [{**line, "sku": sku} for line, sku in zip(lines, SKUS, strict=False)]
        priority = body.get("priority")
        if role == "storefront" and isinstance(priority, int | float):
            body["priority"] = priority % 5
    elif (method, path) == ("POST", "/v1/orders/{order_id}/shipments") and lines is not None:
        ids = real.lines.get(case.path_parameters["order_id"], [])
        body["lines"] = [{**line, "line_id": i} for line, i in zip(lines, ids, strict=False)]
    elif (method, path) == ("POST", "/v1/purchase-orders") and "sku" in body:
        body["sku"] = SKUS[0]
    if path.startswith("/v1/purchase-orders") and isinstance(body.get("expected_date"), str):
        body["expected_date"] = days_ahead(30)
    if isinstance(body.get("backorder_deadline"), str):
        body["backorder_deadline"] = f"{days_ahead(30)}T00:00:00Z"
    for name, code in (("location", "main"), ("preferred_location", "main"), ("from", "main")):
        if isinstance(body.get(name), str):
            body[name] = code
    if (method, path) == ("POST", "/v1/transfers"):
        if isinstance(body.get("to"), str):
            body["to"] = "leeds"
        if isinstance(body.get("sku"), str):
            body["sku"] = SKUS[0]


def with_fractions(value: Any) -> Any:
    """`value` with every float made 2.5."""
    if isinstance(value, float):
        return 2.5
    if isinstance(value, dict):
        return {name: with_fractions(item) for name, item in value.items()}
    if isinstance(value, list):
        return [with_fractions(item) for item in value]
    return value


WHOLE_NUMBERS = [
    ("POST", "/v1/products/{sku}/restocks", {"quantity": 2.0}, 201),
    ("POST", "/v1/products/{sku}/adjustments", {"delta": -1.0}, 201),
    ("PUT", "/v1/products/{sku}", {"lead_time_days": 7.0, "reorder_point": 3.0}, 200),
    (
        "POST",
        "/v1/purchase-orders",
        {"sku": "TRAIL-41", "quantity": 5.0, "expected_date": days_ahead(30)},
        201,
    ),
    (
        "POST",
        "/v1/orders",
        {"customer_id": "c-9", "lines": [{"sku": "TRAIL-42", "quantity": 1.0}]},
        201,
    ),
    (
        "POST",
        "/v1/orders",
        {"customer_id": "c-9", "priority": 2.0, "lines": [{"sku": "TRAIL-42", "quantity": 1}]},
        201,
    ),
    ("PATCH", "/v1/orders/{order_id}", {"priority": 2.0}, 200),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), WHOLE_NUMBERS)
def test_a_whole_number_may_be_written_as_a_float(
    api: Seeded, method: str, path: str, body: dict[str, Any], status: int
) -> None:
    """JSON has one kind of number: the schema's `integer` takes 2.0 as 2, so must the service
    (found by Schemathesis). A fraction stays refused."""
    url = path.format(**api.path["ops"])
    with client(UNDER_TEST) as http:
        assert _ok(http.request(method, url, json=body, headers=OPS), status)
        r = http.request(method, url, json=with_fractions(body), headers=OPS)
        assert r.status_code == 422, r.text


def send(case: Case[Any], real: Seeded, role: str) -> None:
    """Send the case with the role's key and run every default check on the answer."""
    as_a_client_would(case, real, role)
    response = case.call_and_validate()
    if case.meta is not None and case.meta.generation.mode.is_positive:
        # Positive cases carry a valid key; were it lost, they would all pass on a 401.
        assert response.status_code != 401, f"{role} key not sent: {response.text}"


@ops_schema.parametrize()
def test_the_api_keeps_its_schema_for_an_ops_key(case: Case[Any], real: Seeded) -> None:
    send(case, real, "ops")


@storefront_schema.parametrize()
def test_the_api_keeps_its_schema_for_a_storefront_key(case: Case[Any], real: Seeded) -> None:
    send(case, real, "storefront")
