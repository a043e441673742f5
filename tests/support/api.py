"""Small helpers shared by API tests: keys, products, orders."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient, Response

MASTER_KEY = "test-master-key-long-enough-for-the-32-char-rule"
OPS = {"Authorization": f"Bearer {MASTER_KEY}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def make_key(client: AsyncClient, name: str, role: str = "storefront") -> dict[str, str]:
    r = await client.post("/v1/api-keys", json={"name": name, "role": role}, headers=OPS)
    assert r.status_code == 201, r.text
    return bearer(r.json()["key"])


async def make_product(
    client: AsyncClient, sku: str, on_hand: int = 0, **settings: Any
) -> dict[str, Any]:
    body = {"name": f"Product {sku}", **settings}
    r = await client.put(f"/v1/products/{sku}", json=body, headers=OPS)
    assert r.status_code == 201, r.text
    if on_hand:
        r = await client.post(
            f"/v1/products/{sku}/restocks", json={"quantity": on_hand}, headers=OPS
        )
        assert r.status_code == 201, r.text
    product: dict[str, Any] = (await client.get(f"/v1/products/{sku}", headers=OPS)).json()
    return product


async def place(
    client: AsyncClient,
    lines: list[tuple[str, int]],
    *,
    headers: dict[str, str] | None = None,
    expect: int = 201,
    **fields: Any,
) -> dict[str, Any]:
    body = {
        "customer_id": fields.pop("customer_id", "c-1"),
        "lines": [{"sku": s, "quantity": q} for s, q in lines],
        **fields,
    }
    r = await client.post("/v1/orders", json=body, headers=headers or OPS)
    assert r.status_code == expect, r.text
    out: dict[str, Any] = r.json()
    return out


PROBLEM_FIELDS = {"type", "title", "status", "detail", "code", "request_id"}


def assert_problem(r: Response, status: int, code: str) -> dict[str, Any]:
    """`r` is an RFC 9457 problem with this status and contract code, naming its request id."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body.keys() >= PROBLEM_FIELDS
    assert (body["status"], body["code"]) == (status, code)
    assert body["request_id"] == r.headers["x-request-id"]
    return body


def error_fields(body: dict[str, Any]) -> set[str]:
    """The fields a validation problem names."""
    return {e["field"] for e in body["errors"]}


async def all_pages(client: AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paged list (ops key), page after page by its `next_cursor`."""
    items: list[dict[str, Any]] = []
    query: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
    while True:
        r = await client.get(path, params=query, headers=OPS)
        assert r.status_code == 200, r.text
        body = r.json()
        items.extend(body["data"])
        if body["next_cursor"] is None:
            return items
        query["cursor"] = body["next_cursor"]
