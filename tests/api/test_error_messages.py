"""Error messages a person can act on: where the JSON breaks, what the Content-Type should
be, which values an enumeration allows (once, in the caller's words), which query parameter
holds a NUL character. Never a regular expression, a Python type path or PostgreSQL's text."""

from __future__ import annotations

import pytest
from httpx import AsyncClient

from backorder.api.schemas.events import EVENT_TYPES
from tests.support.api import OPS, assert_problem

JSON = {**OPS, "Content-Type": "application/json"}


async def test_malformed_json_says_the_line_and_column_where_it_breaks(
    client: AsyncClient,
) -> None:
    content = b'{"customer_id": "c-1", "lines": [{"sku": "A", "quantity": 1}],,}'
    r = await client.post("/v1/orders", content=content, headers=JSON)
    body = assert_problem(r, 422, "validation_error")
    assert body["detail"].startswith("the body is not valid JSON (line 1, column 63)")
    assert [e["field"] for e in body["errors"]] == [""]


async def test_malformed_json_on_a_later_line_names_that_line(client: AsyncClient) -> None:
    content = b'{\n  "customer_id": "c-1",\n  oops\n}'
    r = await client.post("/v1/orders", content=content, headers=JSON)
    body = assert_problem(r, 422, "validation_error")
    assert body["detail"].startswith("the body is not valid JSON (line 3, column 3)")


@pytest.mark.parametrize(
    ("content_type", "says"),
    [(None, "it has none"), ("text/plain", "it is text/plain")],
    ids=["missing", "plain-text"],
)
async def test_a_body_sent_without_the_json_content_type_says_so(
    client: AsyncClient, content_type: str | None, says: str
) -> None:
    headers = {**OPS, **({"Content-Type": content_type} if content_type else {})}
    content = b'{"customer_id": "c-1", "lines": [{"sku": "A", "quantity": 1}]}'
    body = assert_problem(
        await client.post("/v1/orders", content=content, headers=headers), 422, "validation_error"
    )
    assert "Content-Type: application/json" in body["detail"]
    assert says in body["detail"]


@pytest.mark.parametrize("content", [b"null", b"[]", b"42", b""])
async def test_a_json_body_that_is_not_an_object_says_so(
    client: AsyncClient, content: bytes
) -> None:
    r = await client.post("/v1/orders", content=content, headers=JSON)
    assert assert_problem(r, 422, "validation_error")["detail"] == "the body must be a JSON object"


async def test_an_enumeration_lists_its_allowed_values(client: AsyncClient) -> None:
    body = {"customer_id": "c", "ship_policy": "x", "lines": [{"sku": "A", "quantity": 1}]}
    problem = assert_problem(
        await client.post("/v1/orders", json=body, headers=OPS), 422, "validation_error"
    )
    (error,) = problem["errors"]
    assert error["field"] == "ship_policy"
    assert error["msg"] == "must be one of: partial, complete"
    assert error["allowed"] == ["partial", "complete"]
    assert "ship_policy: must be one of: partial, complete" in problem["detail"]


async def test_a_union_of_enumerations_is_one_error_listing_each_value_once(
    client: AsyncClient,
) -> None:
    r = await client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://example.com/hook", "event_types": ["order.bogus"]},
        headers=OPS,
    )
    problem = assert_problem(r, 422, "validation_error")
    assert "literal[" not in r.text
    (error,) = problem["errors"]
    assert error["field"] == "event_types.0"
    assert error["loc"] == ["body", "event_types", 0]
    for event_type in EVENT_TYPES:
        assert error["msg"].count(event_type) == 1, event_type
    assert sorted(error["allowed"]) == sorted([*EVENT_TYPES, "*"])


async def test_an_enumeration_in_a_query_lists_its_allowed_values(client: AsyncClient) -> None:
    r = await client.get("/v1/purchase-orders?status=shut", headers=OPS)
    (error,) = assert_problem(r, 422, "validation_error")["errors"]
    assert (error["field"], error["msg"]) == ("status", "must be one of: open, closed, cancelled")


async def test_a_malformed_sku_is_explained_in_words_not_a_regular_expression(
    client: AsyncClient,
) -> None:
    r = await client.get("/v1/products/a%20b", headers=OPS)
    body = assert_problem(r, 422, "validation_error")
    (error,) = body["errors"]
    assert error["field"] == "sku"
    assert error["msg"] == "must be 1-64 characters of A-Z a-z 0-9 . _ -"
    assert "^" not in body["detail"]


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/orders?customer_id=c%00-1", "customer_id"),
        ("/v1/orders?cursor=%00", "cursor"),
        ("/v1/products?status=in_stock%00", "status"),
        ("/v1/purchase-orders?sku=A%00", "sku"),
    ],
)
async def test_a_nul_in_a_query_parameter_names_the_parameter(
    client: AsyncClient, path: str, name: str
) -> None:
    r = await client.get(path, headers=OPS)
    body = assert_problem(r, 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == [name]
    assert name in body["detail"] and "NUL" in body["detail"]
    assert "PostgreSQL" not in r.text
