"""A query parameter a route does not know is a 422 naming it, on every route: a misspelt
filter that silently answered everything looked like a filter that matched everything."""

from __future__ import annotations

import re
import uuid

from httpx import AsyncClient

from tests.support.api import OPS, assert_problem, error_fields, make_product

_PLACEHOLDER = re.compile(r"\{([^}]+)\}")


def _fill(path: str) -> str:
    """A concrete path for a route template: ids are fresh UUIDs, anything else a SKU-like."""
    return _PLACEHOLDER.sub(lambda m: str(uuid.uuid4()) if m.group(1).endswith("id") else "A", path)


async def test_every_route_refuses_a_query_parameter_it_does_not_know(
    client: AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    checked = []
    for path, operations in schema["paths"].items():
        for method in operations:
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            r = await client.request(
                method.upper(), _fill(path), params={"no_such_filter": "x"}, headers=OPS
            )
            body = assert_problem(r, 422, "validation_error")
            assert error_fields(body) == {"no_such_filter"}, (method, path, body)
            assert "no_such_filter" in body["detail"]
            checked.append((method, path))
    assert len(checked) > 30
    assert ("get", "/v1/orders") in checked and ("get", "/healthz") in checked


async def test_the_parameters_a_route_declares_are_still_taken(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=1)
    r = await client.get("/v1/orders", params={"limit": 5, "status": "allocated"}, headers=OPS)
    assert r.status_code == 200, r.text
    r = await client.get("/v1/products/A/movements", params={"limit": 5}, headers=OPS)
    assert r.status_code == 200, r.text


async def test_the_refusal_names_every_unknown_parameter_once_and_what_the_route_takes(
    client: AsyncClient,
) -> None:
    r = await client.get("/v1/backorders?customer=c-1&skuu=A&customer=c-2&limit=5", headers=OPS)
    body = assert_problem(r, 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["customer", "skuu"]
    assert "customer_id" in body["errors"][0]["msg"]


async def test_without_a_valid_key_an_unknown_parameter_is_still_a_401(client: AsyncClient) -> None:
    # The key is checked first: a caller without one learns only that it needs one.
    for headers in ({}, {"Authorization": "Bearer bo_" + "x" * 43}):
        r = await client.get("/v1/orders", params={"no_such_filter": "x"}, headers=headers)
        assert_problem(r, 401, "unauthorized")
        r = await client.get("/v1/orders", params={"customer_id": "c\x00"}, headers=headers)
        assert_problem(r, 401, "unauthorized")
    # A route that needs no key refuses it at once.
    r = await client.get("/healthz", params={"no_such_filter": "x"})
    assert error_fields(assert_problem(r, 422, "validation_error")) == {"no_such_filter"}
