"""`HEAD` on the probes (load balancers and uptime checks send it), and names that are
something to show a person: whitespace alone is refused wherever a name is taken."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient

from backorder.api.app import create_app
from backorder.config import Settings
from tests.support.api import OPS, assert_problem, error_fields, make_product

# --- HEAD on the probes ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_head_on_a_probe_answers_like_get_without_a_body(
    client: AsyncClient, path: str
) -> None:
    get = await client.get(path)
    head = await client.head(path)
    assert (head.status_code, get.status_code) == (200, 200)
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == str(len(get.content))
    assert head.headers["x-request-id"]


@pytest.fixture
async def unready(settings: Settings, clean_db: None) -> AsyncIterator[AsyncClient]:
    """The service with a schema behind its code: not ready."""
    app = create_app(settings)
    app.state.head_revision = "a-newer-revision"
    transport = ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        yield http


async def test_head_on_readyz_is_503_when_not_ready(unready: AsyncClient) -> None:
    get = await unready.get("/readyz")
    head = await unready.head("/readyz")
    assert (head.status_code, get.status_code) == (503, 503)
    assert head.content == b""
    assert head.headers["retry-after"] == get.headers["retry-after"]


# --- blank names ---------------------------------------------------------------------------------

BLANK = ["", " ", "   ", "\t\n", "\u00a0\u2003"]
BLANK_IDS = ["empty", "space", "spaces", "tab-newline", "unicode-spaces"]


@pytest.mark.parametrize("name", BLANK, ids=BLANK_IDS)
async def test_a_product_with_a_blank_name_is_refused_and_not_created(
    client: AsyncClient, name: str
) -> None:
    r = await client.put("/v1/products/SKU-1", json={"name": name}, headers=OPS)
    body = assert_problem(r, 422, "validation_error")
    assert error_fields(body) == {"name"}
    assert (await client.get("/v1/products/SKU-1", headers=OPS)).status_code == 404


async def test_renaming_a_product_to_blank_is_refused_and_keeps_its_name(
    client: AsyncClient,
) -> None:
    await make_product(client, "SKU-1")
    r = await client.put("/v1/products/SKU-1", json={"name": "  "}, headers=OPS)
    body = assert_problem(r, 422, "validation_error")
    assert body["errors"][0]["msg"] == "must not be blank or contain NUL characters"
    product = (await client.get("/v1/products/SKU-1", headers=OPS)).json()
    assert product["name"] == "Product SKU-1"


@pytest.mark.parametrize("name", BLANK, ids=BLANK_IDS)
async def test_an_api_key_with_a_blank_name_is_refused_and_not_created(
    client: AsyncClient, name: str
) -> None:
    r = await client.post("/v1/api-keys", json={"name": name, "role": "storefront"}, headers=OPS)
    assert error_fields(assert_problem(r, 422, "validation_error")) == {"name"}
    assert (await client.get("/v1/api-keys", headers=OPS)).json()["data"] == []


async def test_a_name_with_spaces_around_words_is_taken_as_sent(client: AsyncClient) -> None:
    r = await client.put("/v1/products/SKU-1", json={"name": " Trail 42 "}, headers=OPS)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == " Trail 42 "
