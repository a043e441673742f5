"""The rules the app's `openapi()` applies to the whole document, so that a client generated
from it works unedited: one `Problem` schema behind every error status an operation can answer,
the headers each answer carries, `Idempotency-Key` where it is honoured, request bodies without
defaults, short stable operation ids, plain schema names, `servers` and `security`.

Each rule is detected from the routes (their key dependencies, the
`x-honours-idempotency-key` mark of `execute.HONOURS_IDEMPOTENCY_KEY`, their path, parameters
and body), so a new route complies without any work of its own; `tests/api/test_openapi.py`
walks every operation to hold them to it."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from backorder.api.deps import authenticate, require_ops
from backorder.api.docs import DESCRIPTIONS, PROBLEM_JSON, PROBLEM_REF, SCHEMAS, Problem

# Operation ids become generated clients' method and module names: short, stable, snake_case.
# A route's function name, except where it would read poorly out of its router's context
# (keyed by method and path, which the contract pins, so a renamed function keeps its id).
OPERATION_IDS = {
    ("POST", "/v1/orders/{order_id}/shipments"): "ship_order",
    ("GET", "/v1/products/{sku}/alternatives"): "list_alternatives",
    ("POST", "/v1/products/{sku}/adjustments"): "adjust_stock",
    ("GET", "/v1/products/{sku}/movements"): "list_movements",
    ("POST", "/v1/purchase-orders"): "create_purchase_order",
    ("GET", "/v1/purchase-orders"): "list_purchase_orders",
    ("GET", "/v1/purchase-orders/{po_id}"): "get_purchase_order",
    ("PATCH", "/v1/purchase-orders/{po_id}"): "patch_purchase_order",
    ("POST", "/v1/purchase-orders/{po_id}/cancel"): "cancel_purchase_order",
    ("POST", "/v1/purchase-orders/{po_id}/receive"): "receive_purchase_order",
    ("POST", "/v1/webhook-endpoints"): "create_webhook_endpoint",
    ("GET", "/v1/webhook-endpoints"): "list_webhook_endpoints",
    ("GET", "/v1/webhook-endpoints/{endpoint_id}"): "get_webhook_endpoint",
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"): "patch_webhook_endpoint",
    ("DELETE", "/v1/webhook-endpoints/{endpoint_id}"): "delete_webhook_endpoint",
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): "rotate_webhook_secret",
    ("GET", "/v1/reports/backorders"): "get_backorder_report",
    ("GET", "/v1/replenishment"): "get_replenishment",
    ("POST", "/v1/api-keys"): "create_api_key",
    ("GET", "/v1/api-keys"): "list_api_keys",
    ("DELETE", "/v1/api-keys/{key_id}"): "revoke_api_key",
    ("GET", "/metrics"): "get_metrics",
}


def operation_id(route: APIRoute) -> str:
    """FastAPI's `generate_unique_id_function`: `place_order`, not `place_order_v1_orders_post`.
    A route with several methods gets one id here; `amend_document` suffixes the others."""
    for method in sorted(route.methods or ()):
        if (name := OPERATION_IDS.get((method, route.path_format))) is not None:
            return name
    return route.name


_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id: the caller's `X-Request-ID` if it sent a sane one "
        "(1-128 of `A-Z a-z 0-9 . _ : -`), else a new one. Problem bodies repeat it as "
        "`request_id`; quote it when reporting a problem.",
        "required": True,
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before sending the request again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the "
        "same `Idempotency-Key` (nothing was done again); absent otherwise.",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
_PARAMETERS: dict[str, dict[str, Any]] = {
    "Idempotency-Key": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Makes a retry safe: the first answer to a key (any status below 500) is "
        "kept at least 24 h, scoped to the API key, the method and the path, and replayed to "
        "the same request with `Idempotent-Replayed: true`; nothing happens twice. The same "
        "key with another request is 422 `idempotency_key_reused`; while the first is still "
        "running, 409 `idempotency_key_in_use`. Use a new key (e.g. a UUID) per operation.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    },
    "dry_run": {
        "name": "dry_run",
        "in": "query",
        "required": False,
        "description": "`true`: answer 200 with what the call would do now, and write nothing.",
        "schema": {"type": "boolean", "default": False},
    },
}
# `openapi_extra` of a route that takes `?dry_run=true` without declaring the parameter itself.
TAKES_DRY_RUN_KEY = "x-dry-run"
TAKES_DRY_RUN: dict[str, Any] = {TAKES_DRY_RUN_KEY: True}
_HONOURS_KEY = "x-honours-idempotency-key"  # execute.HONOURS_IDEMPOTENCY_KEY


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name.replace('-', '')}"}


def _api_routes(app: FastAPI) -> list[Any]:
    """The app's API routes in the document, as FastAPI walks them (routers included with a
    context of their own in newer FastAPI, plain `APIRoute`s in older ones)."""
    contexts = getattr(routing, "iter_route_contexts", None)
    routes = (
        [c for c in contexts(app.routes) if isinstance(c.original_route, APIRoute)]
        if contexts is not None
        else [r for r in app.routes if isinstance(r, APIRoute)]
    )
    return [r for r in routes if r.include_in_schema]


def _calls(dependant: Dependant) -> set[Any]:
    found: set[Any] = set()
    for sub in dependant.dependencies:
        found.add(sub.call)
        found |= _calls(sub)
    return found


def _statuses(route: Any, method: str, operation: dict[str, Any]) -> set[int]:
    """Every error status the operation can answer: the route's own, and the ones its key, path,
    parameters, body and Idempotency-Key bring."""
    calls = _calls(route.dependant)
    found = {int(s) for s in operation.get("responses", {}) if s.isdigit() and int(s) >= 400}
    if authenticate in calls:
        found |= {401, 422, 429, 503}
    if require_ops in calls:
        found.add(403)
    if "{" in route.path_format and method != "put":  # a PUT creates what it does not find
        found.add(404)
    if operation.get("parameters"):
        found.add(422)
    if "requestBody" in operation:
        found |= {413, 422}
    if operation.get(_HONOURS_KEY):
        found |= {409, 422}
    return found


def _error_response(status: int, honours_key: bool, old: dict[str, Any]) -> dict[str, Any]:
    description = old.get("description") or DESCRIPTIONS.get(status, "See `code`.")
    if honours_key and status == 409 and "idempotency_key_in_use" not in description:
        description += " `idempotency_key_in_use`: the first request with this key still runs."
    if honours_key and status == 422 and "idempotency_key_reused" not in description:
        description += " `idempotency_key_reused`: the key was used for another request."
    medium: dict[str, Any] = {"schema": PROBLEM_REF}
    for old_medium in old.get("content", {}).values():  # keep a route's own error examples
        medium |= {k: v for k, v in old_medium.items() if k in ("example", "examples")}
    return {"description": description, "content": {PROBLEM_JSON: medium}}


def _headers(status: int, honours_key: bool) -> dict[str, Any]:
    headers = {"X-Request-ID": _ref("headers", "X-Request-ID")}
    if status in (429, 503):
        headers["Retry-After"] = _ref("headers", "Retry-After")
    if honours_key and status < 500:
        headers["Idempotent-Replayed"] = _ref("headers", "Idempotent-Replayed")
    return headers


def _not_null(schema: dict[str, Any]) -> None:
    """A parameter is sent or left out, never null: `X | None` is just X (and generators name
    it X, not `status_type_0`)."""
    branches = schema.get("anyOf", [])
    kept = [b for b in branches if b.get("type") != "null"]
    if len(kept) == 1 and len(branches) == 2:
        del schema["anyOf"]
        schema.update(kept[0])
        if schema.get("default", ...) is None:
            del schema["default"]


def _without_defaults(component: dict[str, Any], method: str) -> None:
    """A request body's fields say what the server does when they are left out, in words:
    a `default` makes generators send it (a merge `PUT` would then reset the field) and
    openapi-typescript make the field required."""
    for prop in component.get("properties", {}).values():
        if "default" not in prop:
            continue
        default = prop.pop("default")
        if default is None:
            continue
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        shown = f"`{shown}`" if not isinstance(default, list) or default else "`[]`"
        if method == "put":
            text = f"Left out on create: {shown}; on update, it keeps its value."
        elif method == "patch":
            text = "Left out, it keeps its value."
        else:
            text = f"Left out: {shown}."
        prop["description"] = f"{prop.get('description', '').rstrip()} {text}".strip()


def _request_components(document: dict[str, Any], node: Any, seen: set[str]) -> None:
    """The names of the components a request body uses, nested ones included, into `seen`."""
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith(SCHEMAS) and (name := ref.removeprefix(SCHEMAS)) not in seen:
            seen.add(name)
            _request_components(document, document["components"]["schemas"][name], seen)
        for value in node.values():
            _request_components(document, value, seen)
    elif isinstance(node, list):
        for value in node:
            _request_components(document, value, seen)


def build_document(app: FastAPI, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """FastAPI's document, with the rules of this module applied; see `amend_document`."""
    with warnings.catch_warnings():
        # One id for a route's several methods (GET and HEAD): suffixed in `amend_document`.
        warnings.filterwarnings("ignore", message="Duplicate Operation ID")
        document = build()
    return amend_document(app, document)


def amend_document(app: FastAPI, document: dict[str, Any]) -> dict[str, Any]:
    """What makes the document tell the whole truth to a generator, for every route: one
    `Problem` schema behind every error status an operation can answer, the headers sent,
    `Idempotency-Key` where it is honoured, request bodies without defaults, unique ids, root
    `security` (none on the routes without a key) and `servers`. In place; returns it."""
    _rename_generic_schemas(document)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template=SCHEMAS + "{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    components["headers"] = {n.replace("-", ""): h for n, h in _HEADERS.items()}
    (scheme,) = components.get("securitySchemes", {"ApiKey": None})
    document["security"] = [{scheme: []}]
    document["servers"] = [{"url": "/", "description": "This service, where it is served."}]

    seen_ids: set[str] = set()
    request_components: dict[str, str] = {}  # name -> method of the first body using it
    for route in _api_routes(app):
        for method in sorted(m.lower() for m in route.methods):
            operation = document["paths"][route.path_format][method]
            if operation["operationId"] in seen_ids:  # GET and HEAD of one route
                operation["operationId"] += f"_{method}"
            seen_ids.add(operation["operationId"])
            _amend_operation(route, method, operation, components)
            found: set[str] = set()
            _request_components(document, operation.get("requestBody", {}), found)
            for name in found:
                request_components.setdefault(name, method)
    for name, method in request_components.items():
        _without_defaults(schemas[name], method)
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's, replaced by Problem
        if unused in schemas and f'"{SCHEMAS}{unused}"' not in json.dumps(document):
            del schemas[unused]
    return document


def _amend_operation(
    route: Any, method: str, operation: dict[str, Any], components: dict[str, Any]
) -> None:
    if "security" not in operation:  # FastAPI names the scheme where a key is needed
        operation["security"] = []
    honours_key = bool(operation.get(_HONOURS_KEY))
    parameters = operation.setdefault("parameters", [])
    for parameter in parameters:
        _not_null(parameter.get("schema", {}))
    names = {p.get("name") for p in parameters}
    for name, wanted in (
        ("Idempotency-Key", honours_key),
        ("dry_run", bool(operation.get(TAKES_DRY_RUN_KEY))),
    ):
        if wanted and name not in names:
            parameters.append(_ref("parameters", name))
            components.setdefault("parameters", {})[name.replace("-", "")] = _PARAMETERS[name]
    if not parameters:
        del operation["parameters"]
    responses = operation.setdefault("responses", {})
    for status in _statuses(route, method, operation):
        responses[str(status)] = _error_response(
            status, honours_key, responses.get(str(status), {})
        )
    for status, response in responses.items():
        if status.isdigit():
            response["headers"] = _headers(int(status), honours_key)


def _rename_generic_schemas(document: dict[str, Any]) -> None:
    """Pydantic names a generic model's schema by its arguments (`Page_OrderOut_`); the model's
    `title` has the plain name it chose (`OrderPage`, see `Page.model_parametrized_name`)."""
    schemas = document.get("components", {}).get("schemas", {})
    renames = {
        name: schema["title"]
        for name, schema in schemas.items()
        if name.endswith("_")
        and re.fullmatch(r"[A-Za-z0-9]+", str(schema.get("title")))
        and schema["title"] not in schemas
    }
    if not renames:
        return
    for old, new in renames.items():
        schemas[new] = schemas.pop(old)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.removeprefix(SCHEMAS) in renames:
                node["$ref"] = SCHEMAS + renames[ref.removeprefix(SCHEMAS)]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
