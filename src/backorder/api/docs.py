"""OpenAPI helpers: the problem responses each route documents."""

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


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the listed statuses plus the ones any route may answer."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({401, 422, 429, 503, *statuses}):
        out[status] = {
            "description": _DESCRIPTIONS[status],
            "content": {"application/problem+json": {"schema": Problem.model_json_schema()}},
        }
    return out
