"""The rules that make clients generated from `/openapi.json` work unedited, held on EVERY
operation of the served document, so that a route added later is held to them too.

Each rule is stated from the contract (API.md) or from how the service answers (which
operations refuse a storefront key is asked of the service), not from how `api/openapi.py`
builds the document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from httpx import AsyncClient

from tests.support.api import OPS, make_key

METHODS = {"get", "put", "post", "patch", "delete", "head", "options"}
PROBLEM = {"$ref": "#/components/schemas/Problem"}
# API.md, "Idempotency": the POSTs that create or move stock or orders.
HONOURS_KEY_BY_CONTRACT = {
    ("post", "/v1/orders"),
    ("post", "/v1/products/{sku}/restocks"),
    ("post", "/v1/products/{sku}/adjustments"),
    ("post", "/v1/orders/{order_id}/shipments"),
    ("post", "/v1/orders/{order_id}/cancel"),
    ("post", "/v1/orders/{order_id}/lines/{line_id}/cancel"),
    ("post", "/v1/purchase-orders"),
    ("post", "/v1/purchase-orders/{po_id}/receive"),
}
# The ids clients were generated with: they are module and method names, so they never change.
# New operations are held to the pattern; these to their names.
STABLE_IDS = {
    ("post", "/v1/orders"): "place_order",
    ("get", "/v1/orders"): "list_orders",
    ("get", "/v1/orders/{order_id}"): "get_order",
    ("patch", "/v1/orders/{order_id}"): "patch_order",
    ("post", "/v1/orders/{order_id}/cancel"): "cancel_order",
    ("post", "/v1/orders/{order_id}/lines/{line_id}/cancel"): "cancel_line",
    ("post", "/v1/orders/{order_id}/shipments"): "ship_order",
    ("get", "/v1/backorders"): "list_backorders",
    ("put", "/v1/products/{sku}"): "put_product",
    ("get", "/v1/products/{sku}"): "get_product",
    ("get", "/v1/products"): "list_products",
    ("get", "/v1/products/{sku}/alternatives"): "list_alternatives",
    ("post", "/v1/products/{sku}/restocks"): "restock",
    ("post", "/v1/products/{sku}/adjustments"): "adjust_stock",
    ("get", "/v1/products/{sku}/movements"): "list_movements",
    ("post", "/v1/products/{sku}/subscriptions"): "subscribe",
    ("get", "/v1/products/{sku}/subscriptions"): "list_subscriptions",
    ("post", "/v1/purchase-orders"): "create_purchase_order",
    ("get", "/v1/purchase-orders"): "list_purchase_orders",
    ("get", "/v1/purchase-orders/{po_id}"): "get_purchase_order",
    ("patch", "/v1/purchase-orders/{po_id}"): "patch_purchase_order",
    ("post", "/v1/purchase-orders/{po_id}/cancel"): "cancel_purchase_order",
    ("post", "/v1/purchase-orders/{po_id}/receive"): "receive_purchase_order",
    ("get", "/v1/events"): "list_events",
    ("post", "/v1/webhook-endpoints"): "create_webhook_endpoint",
    ("get", "/v1/webhook-endpoints"): "list_webhook_endpoints",
    ("get", "/v1/webhook-endpoints/{endpoint_id}"): "get_webhook_endpoint",
    ("patch", "/v1/webhook-endpoints/{endpoint_id}"): "patch_webhook_endpoint",
    ("delete", "/v1/webhook-endpoints/{endpoint_id}"): "delete_webhook_endpoint",
    ("post", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): "rotate_webhook_secret",
    ("get", "/v1/webhook-endpoints/{endpoint_id}/deliveries"): "list_deliveries",
    ("post", "/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry"): (
        "retry_delivery"
    ),
    ("get", "/v1/reports/backorders"): "get_backorder_report",
    ("get", "/v1/replenishment"): "get_replenishment",
    ("post", "/v1/api-keys"): "create_api_key",
    ("get", "/v1/api-keys"): "list_api_keys",
    ("delete", "/v1/api-keys/{key_id}"): "revoke_api_key",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/metrics"): "get_metrics",
}
OPERATION_ID = re.compile(r"^[a-z][a-z0-9_]{2,39}$")

Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture
async def schema(client: AsyncClient) -> dict[str, Any]:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


def operations(schema: dict[str, Any]) -> Iterator[Operation]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def deref(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        kind, name = node["$ref"].split("/")[-2:]
        node = schema["components"][kind][name]
    return node


def parameters(schema: dict[str, Any], op: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in (deref(schema, p) for p in op.get("parameters", []))}


def statuses(op: dict[str, Any]) -> set[int]:
    return {int(s) for s in op["responses"] if s.isdigit()}


def keyed(schema: dict[str, Any], op: dict[str, Any]) -> bool:
    return bool(op.get("security", schema.get("security")))


SOME_ID = "00000000-0000-4000-8000-000000000001"  # a valid UUID, SKU and code alike


async def refused_to_a_storefront(client: AsyncClient, schema: dict[str, Any]) -> set[str]:
    """The operations that answer a storefront key 403, asked of the service itself: the role
    is checked before anything else is looked at, so a made-up id and no body do."""
    storefront = await make_key(client, "rules-shop")
    refused = set()
    for method, path, op in operations(schema):
        if keyed(schema, op):
            url = re.sub(r"\{[^}]+\}", SOME_ID, path)
            r = await client.request(method.upper(), url, headers=storefront)
            if r.status_code == 403:
                refused.add(f"{method} {path}")
    return refused


async def test_every_error_response_is_the_one_problem_schema(schema: dict[str, Any]) -> None:
    wrong = []
    for method, path, op in operations(schema):
        for status, response in op["responses"].items():
            if int(status) >= 400:
                content = response.get("content", {})
                media = content.get("application/problem+json", {})
                if set(content) != {"application/problem+json"} or media.get("schema") != PROBLEM:
                    wrong.append(f"{method.upper()} {path} {status}")
    assert wrong == []
    inline_copies = [
        name
        for name, component in schema["components"]["schemas"].items()
        if name != "Problem"
        and {"code", "detail", "status"} <= component.get("properties", {}).keys()
    ]
    assert inline_copies == []


async def test_the_problem_types_409_lines_and_422_errors(schema: dict[str, Any]) -> None:
    problem = schema["components"]["schemas"]["Problem"]
    props = problem["properties"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code", "request_id"}
    line = deref(schema, props["lines"]["items"])
    assert {"sku", "requested", "available"} <= line["properties"].keys()
    assert line["properties"]["requested"]["type"] == "integer"
    error = deref(schema, props["errors"]["items"])
    assert {"loc", "msg"} <= set(error["required"])
    assert props["order_id"] == {**props["order_id"], "type": "string"}  # optional, not null


async def test_every_operation_documents_every_status_it_can_answer(
    schema: dict[str, Any], client: AsyncClient
) -> None:
    """401, 429 and 503 behind a key (the key is looked up, then rate limited); 403 where a
    storefront key is refused; 404 for a resource named in the path (a PUT creates it); 422
    for parameters or a body; 413 for a body; 409 and 422 where an Idempotency-Key is honoured
    (`idempotency_key_in_use`, `idempotency_key_reused`)."""
    needs_ops = await refused_to_a_storefront(client, schema)
    assert "post /v1/products/{sku}/restocks" in needs_ops
    missing = []
    for method, path, op in operations(schema):
        expected: set[int] = set()
        if keyed(schema, op):
            expected |= {401, 422, 429, 503}
        if f"{method} {path}" in needs_ops:
            expected.add(403)
        if "{" in path and method != "put":
            expected.add(404)
        if op.get("parameters"):
            expected.add(422)
        if "requestBody" in op:
            expected |= {413, 422}
        if "Idempotency-Key" in parameters(schema, op):
            expected |= {409, 422}
        if expected - statuses(op):
            missing.append(f"{method.upper()} {path}: {sorted(expected - statuses(op))}")
    assert missing == []


async def test_idempotency_key_is_declared_where_it_is_honoured(schema: dict[str, Any]) -> None:
    declared = set()
    for method, path, op in operations(schema):
        header = parameters(schema, op).get("Idempotency-Key")
        if header is None:
            continue
        declared.add((method, path))
        assert header["in"] == "header"
        assert header["required"] is False
        assert header["schema"] == {"type": "string", "minLength": 1, "maxLength": 255}
        assert op.get("x-honours-idempotency-key") is True, f"{method} {path}: not marked"
    marked = {(m, p) for m, p, op in operations(schema) if op.get("x-honours-idempotency-key")}
    assert declared == marked
    assert declared >= HONOURS_KEY_BY_CONTRACT


async def test_a_dry_run_is_a_boolean_query_parameter(schema: dict[str, Any]) -> None:
    for _, _, op in operations(schema):
        dry_run = parameters(schema, op).get("dry_run")
        if dry_run is not None:
            assert (dry_run["in"], dry_run.get("required", False)) == ("query", False)
            assert dry_run["schema"]["type"] == "boolean"


async def test_no_parameter_is_said_to_take_null(schema: dict[str, Any]) -> None:
    """A query, path or header parameter is sent or left out; `X | null` would make generators
    name its type `..._type_0` and offer a null they cannot send."""
    nullable = [
        f"{method.upper()} {path} {name}"
        for method, path, op in operations(schema)
        for name, parameter in parameters(schema, op).items()
        if "null" in str(parameter.get("schema", {}))
    ]
    assert nullable == []


async def test_every_response_declares_the_headers_it_carries(schema: dict[str, Any]) -> None:
    wrong = []
    for method, path, op in operations(schema):
        honours_key = "Idempotency-Key" in parameters(schema, op)
        for status, response in op["responses"].items():
            headers = {name: deref(schema, h) for name, h in response.get("headers", {}).items()}
            expected = {"X-Request-ID"}
            if int(status) in (429, 503):
                expected.add("Retry-After")
            if honours_key and int(status) < 500:
                expected.add("Idempotent-Replayed")
            if set(headers) != expected:
                wrong.append(f"{method.upper()} {path} {status}: {sorted(headers)}")
            elif not headers["X-Request-ID"].get("required"):
                wrong.append(f"{method.upper()} {path} {status}: X-Request-ID not required")
    assert wrong == []


async def test_the_headers_declared_are_the_headers_sent(client: AsyncClient) -> None:
    r = await client.put("/v1/products/HDR-1", json={"name": "Headers"}, headers=OPS)
    assert r.status_code == 201 and r.headers["x-request-id"]
    order = {"customer_id": "c-1", "lines": [{"sku": "HDR-1", "quantity": 1}]}
    keyed_ops = {**OPS, "Idempotency-Key": "hdr-1"}
    first = await client.post("/v1/orders", json=order, headers=keyed_ops)
    again = await client.post("/v1/orders", json=order, headers=keyed_ops)
    assert "idempotent-replayed" not in first.headers
    assert (again.status_code, again.headers["idempotent-replayed"]) == (201, "true")
    problem = await client.get("/v1/orders/not-a-uuid", headers=OPS)
    assert problem.headers["content-type"] == "application/problem+json"
    assert problem.json()["request_id"] == problem.headers["x-request-id"]


async def test_a_keyed_delete_answers_its_own_status_and_says_when_it_replays(
    client: AsyncClient,
) -> None:
    """A DELETE honours Idempotency-Key like any write: an unknown key is a 404 (stored and
    replayed as such), and a replay of the 204 carries `Idempotent-Replayed`, as declared."""
    unknown = "/v1/api-keys/00000000-0000-4000-8000-000000000009"
    for _ in range(2):
        r = await client.delete(unknown, headers={**OPS, "Idempotency-Key": "del-unknown"})
        assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert r.headers["idempotent-replayed"] == "true"
    made = await client.post("/v1/api-keys", json={"name": "gone", "role": "ops"}, headers=OPS)
    url = f"/v1/api-keys/{made.json()['id']}"
    first = await client.delete(url, headers={**OPS, "Idempotency-Key": "del-1"})
    again = await client.delete(url, headers={**OPS, "Idempotency-Key": "del-1"})
    assert (first.status_code, first.content, "idempotent-replayed" in first.headers) == (
        204,
        b"",
        False,
    )
    assert (again.status_code, again.content, again.headers["idempotent-replayed"]) == (
        204,
        b"",
        "true",
    )


async def test_operation_ids_are_short_snake_case_unique_and_stable(
    schema: dict[str, Any],
) -> None:
    ids = {(m, p): op["operationId"] for m, p, op in operations(schema)}
    assert len(set(ids.values())) == len(ids)
    assert [i for i in ids.values() if not OPERATION_ID.match(i)] == []
    assert {k: ids.get(k) for k in STABLE_IDS} == STABLE_IDS


def request_schemas(schema: dict[str, Any], node: Any, seen: dict[str, Any]) -> None:
    """Every component a request body uses, nested ones included, into `seen`."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen[ref] = deref(schema, node)
            request_schemas(schema, seen[ref], seen)
        for value in node.values():
            request_schemas(schema, value, seen)
    elif isinstance(node, list):
        for value in node:
            request_schemas(schema, value, seen)


def defaults_in(node: Any, at: str) -> Iterator[str]:
    if isinstance(node, dict):
        if "default" in node:
            yield at
        for key, value in node.items():
            if key not in ("examples", "example"):
                yield from defaults_in(value, f"{at}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from defaults_in(value, f"{at}/{i}")


async def test_request_bodies_carry_no_defaults(schema: dict[str, Any]) -> None:
    """A generator sends a field's default when the caller leaves the field out: through a
    merge PUT that would reset it, and openapi-typescript makes such fields required. So no
    request body has one (the description says what the server does instead)."""
    bodies: dict[str, Any] = {}
    for method, path, op in operations(schema):
        if "requestBody" in op:
            request_schemas(schema, op["requestBody"], bodies)
            bodies[f"{method} {path}"] = op["requestBody"]
    assert "#/components/schemas/ProductIn" in bodies
    assert [at for ref, node in bodies.items() for at in defaults_in(node, ref)] == []
    product = schema["components"]["schemas"]["ProductIn"]["properties"]
    for field, default in (
        ("backorders_allowed", "`true`"),
        ("allocation_strategy", "`fifo`"),
        ("discontinued", "`false`"),
    ):
        assert f"on create: {default}" in product[field]["description"]
        assert "keeps its value" in product[field]["description"]


async def test_schema_names_are_plain(schema: dict[str, Any]) -> None:
    names = schema["components"]["schemas"]
    assert [n for n in names if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", n)] == []
    pages = [
        n for n, s in names.items() if {"data", "next_cursor"} <= s.get("properties", {}).keys()
    ]
    assert "OrderPage" in pages and all(n.endswith("Page") for n in pages)


async def test_the_document_names_servers_security_license_and_contact(
    schema: dict[str, Any],
) -> None:
    assert [s["url"] for s in schema["servers"]] == ["/"]
    (scheme,) = schema["components"]["securitySchemes"]
    assert schema["security"] == [{scheme: []}]
    assert {
        p: schema["paths"][p]["get"]["security"] for p in ("/healthz", "/readyz", "/metrics")
    } == {
        "/healthz": [],
        "/readyz": [],
        "/metrics": [],
    }
    assert schema["info"]["license"]["name"] and schema["info"]["license"]["url"]
    assert schema["info"]["contact"]["url"]


async def test_every_reference_resolves_and_every_component_is_used(
    schema: dict[str, Any],
) -> None:
    refs: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    for ref in refs:
        deref(schema, {"$ref": ref})  # a KeyError names a dangling one
    defined = {
        f"#/components/{kind}/{name}"
        for kind, entries in schema["components"].items()
        if kind != "securitySchemes"
        for name in entries
    }
    assert defined - refs == set()
