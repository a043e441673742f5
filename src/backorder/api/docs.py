"""OpenAPI helpers: the problem responses each route documents, and answer examples."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

_DESCRIPTIONS = {
    401: "No API key, or an unknown or revoked one (`unauthorized`).",
    403: "The key's role may not do this (`forbidden`).",
    404: "No such resource, or not visible to this key (`not_found`).",
    409: "Refused by a business rule; see `code`.",
    422: "Invalid request (`validation_error`, `unknown_sku`, `idempotency_key_reused`).",
    429: "Too many requests for this key (`rate_limited`); see `Retry-After`.",
    503: "A lock wait or the database briefly unavailable (`retry_later`); see `Retry-After`.",
}


class Problem(BaseModel):
    """An error, as RFC 9457 problem+json with a stable machine `code`."""

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine word, e.g. `insufficient_stock`.")
    request_id: str | None = None


ANY_KEYED_ROUTE = (401, 422, 429, 503)


def problems(
    *statuses: int, always: tuple[int, ...] = ANY_KEYED_ROUTE
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the listed statuses plus `always`, the ones any route behind
    a key may answer (a probe that needs no key passes `always=()`)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*always, *statuses}):
        out[status] = {
            "description": _DESCRIPTIONS[status],
            "content": {"application/problem+json": {"schema": Problem.model_json_schema()}},
        }
    return out


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
