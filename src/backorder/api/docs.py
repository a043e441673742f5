"""OpenAPI helpers for routes: the one `Problem` schema, the problem responses a route
documents, answer examples. The rules for the whole document are in `api/openapi.py`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from backorder.api.problems import problem_body
from backorder.domain.errors import DomainError

PROBLEM_JSON = "application/problem+json"
SCHEMAS = "#/components/schemas/"
PROBLEM_REF = {"$ref": SCHEMAS + "Problem"}

DESCRIPTIONS = {
    401: "No API key, or an unknown or revoked one (`unauthorized`).",
    403: "The key's role may not do this (`forbidden`).",
    404: "No such resource, or not visible to this key (`not_found`).",
    409: "Refused by a business rule; see `code`.",
    413: "The request body is over the service's limit (`payload_too_large`).",
    422: "Invalid request: `validation_error` (each bad field in `errors`), or another refusal "
    "named by `code` (e.g. `unknown_sku`).",
    429: "Too many requests for this key (`rate_limited`); see `Retry-After`.",
    503: "A lock wait or the database briefly unavailable (`retry_later`); see `Retry-After`.",
}


def _absent_not_null(schema: dict[str, Any]) -> None:
    """Members that may be left out of a problem are absent, never null: no `default: null`."""
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None:
            del prop["default"]


class ProblemLine(BaseModel):
    """A line of a refused request and what stands in its way."""

    model_config = ConfigDict(json_schema_extra=_absent_not_null)

    sku: str
    requested: int = Field(description="Units the line asked for.")
    available: int | SkipJsonSchema[None] = Field(
        default=None, description="Units a new order could take now (order refusals)."
    )
    backorder_capacity: int | SkipJsonSchema[None] = Field(
        default=None,
        description="Units the product may still backorder (`backorder_limit_exceeded`).",
    )
    line_id: str | SkipJsonSchema[None] = Field(
        default=None, description="The order line (`not_allocated`)."
    )
    allocated: int | SkipJsonSchema[None] = Field(
        default=None, description="Units of the line allocated now (`not_allocated`)."
    )


class ProblemError(BaseModel):
    """One reason a request is invalid."""

    model_config = ConfigDict(json_schema_extra=_absent_not_null)

    loc: list[str | int] = Field(description='Where: e.g. `["body", "lines", 0, "quantity"]`.')
    field: str | SkipJsonSchema[None] = Field(
        default=None, description="`loc` as a dotted name, e.g. `lines.0`."
    )
    msg: str
    type: str | SkipJsonSchema[None] = Field(
        default=None, description="A machine word for the kind of error."
    )


def _problem_schema(schema: dict[str, Any]) -> None:
    _absent_not_null(schema)
    schema["examples"] = [
        {
            "type": "https://backorder.dev/problems/insufficient_stock",
            "title": "Insufficient stock",
            "status": 409,
            "detail": "not enough stock and no backorders allowed: TRAIL-42",
            "code": "insufficient_stock",
            "request_id": "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a99",
            "lines": [{"sku": "TRAIL-42", "requested": 100, "available": 80}],
        }
    ]


class Problem(BaseModel):
    """An error, as RFC 9457 problem+json with a stable machine `code`. Members other than those
    listed may be added (e.g. `sku`, `on_hand` of `would_strand_allocations`)."""

    type: str = Field(description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine word, e.g. `insufficient_stock`.")
    request_id: str | None = Field(
        description="The answer's `X-Request-ID`; the first request's, when replayed."
    )
    lines: list[ProblemLine] | SkipJsonSchema[None] = Field(
        default=None,
        description="Order refusals (`insufficient_stock`, `discontinued`, "
        "`backorder_limit_exceeded`, `unknown_sku`) and `not_allocated`: the lines concerned.",
    )
    errors: list[ProblemError] | SkipJsonSchema[None] = Field(
        default=None, description="`validation_error`: each bad field."
    )
    order_id: str | SkipJsonSchema[None] = Field(
        default=None,
        description="The existing order, when a conflict names one (`external_ref` taken).",
    )
    reason: str | SkipJsonSchema[None] = Field(
        default=None,
        description="Which case of the `code`: `external_ref_taken`; for cancels "
        "`nothing_to_cancel` or `exceeds_remaining`.",
    )
    cancellable: int | SkipJsonSchema[None] = Field(
        default=None, description="Line cancels: the units the line could still cancel."
    )

    model_config = ConfigDict(json_schema_extra=_problem_schema)


ANY_KEYED_ROUTE = (401, 422, 429, 503)


def problems(
    *statuses: int, always: tuple[int, ...] = ANY_KEYED_ROUTE
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the listed statuses plus `always`, the ones any route behind
    a key may answer (a probe that needs no key passes `always=()`). The app's `openapi()`
    adds whatever else the route can answer (`openapi.amend_document`)."""
    return {
        status: {
            "description": DESCRIPTIONS[status],
            "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
        }
        for status in sorted({*always, *statuses})
    }


def dry_run_answer(model: type[Any]) -> dict[int | str, dict[str, Any]]:
    """`responses=` entry of a write's `?dry_run=true` answer (200, `model`)."""
    return {
        200: {
            "model": model,
            "description": "With `?dry_run=true`: what the call would do now; nothing written.",
        }
    }


def example(
    status: int, value: Any, description: str | None = None
) -> dict[int | str, dict[str, Any]]:
    """`responses=` entry showing `value` as a route's JSON answer for `status`, where the
    response model's own example does not fit (e.g. what a cancelled order looks like). The
    schema stays the route's `response_model`; FastAPI merges the two."""
    response: dict[str, Any] = {"content": {"application/json": {"example": value}}}
    if description is not None:
        response["description"] = description
    return {status: response}


EXAMPLE_REQUEST_ID = "5f0c2a9e8b7d4c1a9e3f6b2d0a8c4e71"


def problem_example(error: type[DomainError], detail: str, **extra: Any) -> dict[str, Any]:
    """The problem body the service answers for `error`, as an example for a route's docs
    (built by the handler's own `problem_body`, so the two cannot drift apart)."""
    return problem_body(
        error.status,
        error.code,
        detail,
        title=error.title,
        request_id=EXAMPLE_REQUEST_ID,
        **extra,
    )


def with_problem_examples(
    responses: dict[int | str, dict[str, Any]], status: int, **named: dict[str, Any]
) -> dict[int | str, dict[str, Any]]:
    """`responses` with example problem bodies for `status` (the machine fields it carries)."""
    content = responses[status]["content"][PROBLEM_JSON]
    content["examples"] = {name: {"value": value} for name, value in named.items()}
    return responses


def restore_example_nulls(document: dict[str, Any]) -> dict[str, Any]:
    """Put back the nulls FastAPI drops from examples; in place, idempotent; returns `document`.

    FastAPI serialises the OpenAPI document with `exclude_none`, which also removes every null
    *inside* an example: `"expected_date": null` disappears, so the example no longer shows (or
    satisfies) a required, nullable field. For each example (components' `examples`, media
    types' `example` and `examples`), a required property that is missing and whose schema
    admits null gets its null back. Meant for the app's `openapi()`, after FastAPI's build."""
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = schemas.get(node["$ref"].rsplit("/", 1)[-1], {})
        return node

    def admits_null(node: dict[str, Any]) -> bool:
        node = resolve(node)
        types = node.get("type")
        if types == "null" or (isinstance(types, list) and "null" in types):
            return True
        return any(admits_null(n) for n in node.get("anyOf", []) + node.get("oneOf", []))

    def walk(value: Any, node: dict[str, Any]) -> None:
        node = resolve(node)
        for branch in node.get("anyOf", []) + node.get("oneOf", []) + node.get("allOf", []):
            walk(value, branch)
        if isinstance(value, dict):
            properties = node.get("properties", {})
            for name in node.get("required", []):
                if name not in value and name in properties and admits_null(properties[name]):
                    value[name] = None
            for name, item in value.items():
                if name in properties:
                    walk(item, properties[name])
        elif isinstance(value, list) and isinstance(node.get("items"), dict):
            for item in value:
                walk(item, node["items"])

    def media(content: dict[str, Any]) -> None:
        for medium in content.values():
            schema = medium.get("schema", {})
            if "example" in medium:
                walk(medium["example"], schema)
            for named in medium.get("examples", {}).values():
                if isinstance(named, dict) and "value" in named:
                    walk(named["value"], schema)

    for schema in schemas.values():
        for value in schema.get("examples", []):
            walk(value, schema)
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            media(operation.get("requestBody", {}).get("content", {}))
            for response in operation.get("responses", {}).values():
                media(response.get("content", {}))
    return document
