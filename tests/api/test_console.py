"""The ops console over HTTP (in-process): its session cookie, CSRF, who may sign in, and
what its pages and forms do. tests/browser drives the same pages in a real Chromium."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from httpx import AsyncClient, Response

from tests.support.api import MASTER_KEY, OPS, make_key, make_product, place

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text[:2000]
    return found.group(1)


async def sign_in(client: AsyncClient, key: str) -> Response:
    form = await client.get("/console/sign-in")
    return await client.post(
        "/console/sign-in",
        data={"csrf": csrf_of(form), "key": key},
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


async def new_ops_key(client: AsyncClient, name: str = "desk") -> tuple[str, str]:
    r = await client.post("/v1/api-keys", json={"name": name, "role": "ops"}, headers=OPS)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


async def test_a_page_without_a_session_sends_the_browser_to_sign_in(client: AsyncClient) -> None:
    r = await client.get("/console")
    assert r.status_code == 303
    assert r.headers["location"] == "/console/sign-in"


async def test_signing_in_with_an_ops_key_sets_a_strict_http_only_cookie_without_the_key(
    client: AsyncClient,
) -> None:
    _, key = await new_ops_key(client)
    r = await sign_in(client, key)
    assert r.status_code == 303 and r.headers["location"] == "/console"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("backorder_console="))
    attributes = {a.strip().lower() for a in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/console"} <= attributes
    assert "secure" not in attributes  # served over plain HTTP here
    assert key not in cookie and key.split("_", 1)[1][:20] not in cookie
    page = await client.get("/console")
    assert page.status_code == 200
    assert "Backorder rate" in page.text
    csp = page.headers.get_list("content-security-policy")
    assert csp == ["default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' "
                   "data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                   "base-uri 'none'"]  # fmt: skip
    assert page.headers["cache-control"] == "no-store"


async def test_the_cookie_is_secure_when_the_request_came_over_tls(client: AsyncClient) -> None:
    client.base_url = client.base_url.copy_with(scheme="https")
    r = await sign_in(client, MASTER_KEY)
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("backorder_console="))
    assert "secure" in {a.strip().lower() for a in cookie.split(";")}


async def test_a_storefront_key_is_refused_with_a_clear_message(client: AsyncClient) -> None:
    headers = await make_key(client, "web-shop")
    r = await sign_in(client, headers["Authorization"].removeprefix("Bearer "))
    assert r.status_code == 403
    assert "storefront key: the console is for ops keys only" in r.text
    assert "backorder_console=" not in " ".join(r.headers.get_list("set-cookie"))


async def test_an_unknown_key_is_refused(client: AsyncClient) -> None:
    r = await sign_in(client, "bo_" + "x" * 43)
    assert r.status_code == 401
    assert "unknown or revoked" in r.text


async def test_a_sign_in_without_the_forms_token_is_refused(client: AsyncClient) -> None:
    r = await client.post(
        "/console/sign-in",
        data={"csrf": "forged", "key": MASTER_KEY},
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400
    assert "backorder_console=" not in " ".join(r.headers.get_list("set-cookie"))


async def test_a_revoked_key_is_signed_out_by_its_next_request(client: AsyncClient) -> None:
    key_id, key = await new_ops_key(client)
    await sign_in(client, key)
    assert (await client.get("/console")).status_code == 200
    assert (await client.delete(f"/v1/api-keys/{key_id}", headers=OPS)).status_code == 204
    r = await client.get("/console")
    assert r.status_code == 303
    assert r.headers["location"] == "/console/sign-in?reason=revoked"
    feed = await client.get("/console/events.json")
    assert feed.status_code == 401 and feed.json()["reason"] in {"revoked", "invalid", ""}


async def test_a_tampered_cookie_is_not_a_session(client: AsyncClient) -> None:
    await sign_in(client, MASTER_KEY)
    value = client.cookies["backorder_console"]
    payload, signature = value.split(".")
    client.cookies.set("backorder_console", payload + "." + signature[::-1], path="/console")
    r = await client.get("/console")
    assert r.status_code == 303 and r.headers["location"].endswith("reason=invalid")


async def test_restocking_from_the_product_page_fills_the_queue(client: AsyncClient) -> None:
    await make_product(client, "CON-1")
    await place(client, [("CON-1", 3)], customer_id="c-first")
    await place(client, [("CON-1", 2)], customer_id="c-second")
    await sign_in(client, MASTER_KEY)
    page = await client.get("/console/products/CON-1")
    assert page.status_code == 200
    assert page.text.index("c-first") < page.text.index("c-second")
    form = {"csrf": csrf_of(page), "quantity": "4", "location": "main", "reference": "R-1"}
    r = await client.post("/console/products/CON-1/restocks", data=form)
    assert r.status_code == 303
    after = await client.get(r.headers["location"])
    assert "Restocked 4 units: 4 went to waiting customers." in after.text
    product = (await client.get("/v1/products/CON-1", headers=OPS)).json()
    assert (product["on_hand"], product["backordered"]) == (4, 1)
    assert "c-first" not in after.text and "c-second" in after.text


async def test_a_form_without_the_sessions_csrf_token_changes_nothing(
    client: AsyncClient,
) -> None:
    await make_product(client, "CON-2")
    await sign_in(client, MASTER_KEY)
    r = await client.post(
        "/console/products/CON-2/restocks", data={"csrf": "nope", "quantity": "4"}
    )
    assert r.status_code == 422
    assert "nothing was done" in r.text
    assert (await client.get("/v1/products/CON-2", headers=OPS)).json()["on_hand"] == 0


async def test_a_refused_restock_shows_the_reason_on_the_page(client: AsyncClient) -> None:
    await make_product(client, "CON-3")
    await sign_in(client, MASTER_KEY)
    page = await client.get("/console/products/CON-3")
    form = {"csrf": csrf_of(page), "quantity": "4", "location": "nowhere"}
    r = await client.post("/console/products/CON-3/restocks", data=form)
    assert r.status_code == 422
    assert "unknown location" in r.text


async def test_a_restock_preview_lists_who_it_would_fill_and_changes_nothing(
    client: AsyncClient,
) -> None:
    await make_product(client, "CON-PV")
    first = await place(client, [("CON-PV", 3)], customer_id="c-first")
    second = await place(client, [("CON-PV", 2)], customer_id="c-second")
    await sign_in(client, MASTER_KEY)
    page = await client.get("/console/products/CON-PV")
    form = {"csrf": csrf_of(page), "quantity": "4", "location": "main", "reference": "R-9"}
    r = await client.post("/console/products/CON-PV/restocks/preview", data=form)
    assert r.status_code == 200, r.text[:2000]
    fills = re.findall(
        r'<tr data-line="([^"]+)"><td class="n">\d+</td><td>([^<]+)</td>'
        r'<td class="n">(\d+)</td>',
        r.text.split('class="preview-fills"')[1].split("</table>")[0],
    )
    assert fills == [
        (first["lines"][0]["id"], "c-first", "3"),
        (second["lines"][0]["id"], "c-second", "1"),
    ]
    assert "4 of them would go to 2 waiting lines" in r.text
    # Nothing done: the figures, the ledger and the feed are as they were.
    product = (await client.get("/v1/products/CON-PV", headers=OPS)).json()
    assert (product["on_hand"], product["backordered"]) == (0, 5)
    ledger = (await client.get("/v1/products/CON-PV/movements", headers=OPS)).json()["data"]
    assert ledger == []
    # The preview's own button carries the same restock, with a fresh token.
    hidden = dict(
        re.findall(
            r'<input type="hidden" name="(\w+)" value="([^"]*)">',
            r.text.split('aria-label="Restock preview"')[1].split("</form>")[0],
        )
    )
    assert (hidden["quantity"], hidden["location"], hidden["reference"]) == ("4", "main", "R-9")
    done = await client.post("/console/products/CON-PV/restocks", data=hidden)
    assert done.status_code == 303
    product = (await client.get("/v1/products/CON-PV", headers=OPS)).json()
    assert (product["on_hand"], product["backordered"]) == (4, 1)


async def test_a_refused_preview_shows_the_reason_and_a_forged_one_is_refused(
    client: AsyncClient,
) -> None:
    await make_product(client, "CON-PX")
    await put_inactive_location(client, "shut")
    await sign_in(client, MASTER_KEY)
    page = await client.get("/console/products/CON-PX")
    token = csrf_of(page)
    r = await client.post(
        "/console/products/CON-PX/restocks/preview",
        data={"csrf": token, "quantity": "4", "location": "shut"},
    )
    assert r.status_code == 409 and "inactive" in r.text
    r = await client.post(
        "/console/products/CON-PX/restocks/preview", data={"csrf": "forged", "quantity": "4"}
    )
    assert r.status_code == 422 and "nothing was done" in r.text
    r = await client.post(
        "/console/products/NOPE/restocks/preview", data={"csrf": token, "quantity": "4"}
    )
    assert r.status_code == 404


async def put_inactive_location(client: AsyncClient, code: str) -> None:
    r = await client.put(f"/v1/locations/{code}", json={"name": code, "active": False}, headers=OPS)
    assert r.status_code == 201, r.text


async def test_the_at_risk_page_pages_soonest_deadline_first(client: AsyncClient) -> None:
    """55 lines at risk (no promise date at all), deadlines a day apart: 50, then 5."""
    await make_product(client, "CON-AR")
    now = datetime.now(UTC)
    for n in range(55):
        deadline = (now + timedelta(days=55 - n)).isoformat()
        await place(client, [("CON-AR", 1)], customer_id=f"c-{n:02}", backorder_deadline=deadline)
    await sign_in(client, MASTER_KEY)
    first = await client.get("/console/at-risk")
    assert first.status_code == 200
    customers = re.findall(r"<td>(c-\d\d)</td>", first.text)
    assert customers == [f"c-{n:02}" for n in range(54, 4, -1)]  # the soonest deadline first
    following = re.search(r'rel="next" href="([^"]+)"', first.text)
    assert following
    second = await client.get(following.group(1).replace("&amp;", "&"))
    assert re.findall(r"<td>(c-\d\d)</td>", second.text) == [f"c-{n:02}" for n in range(4, -1, -1)]
    assert 'rel="next"' not in second.text


async def test_a_purchase_order_is_created_from_a_replenishment_row(client: AsyncClient) -> None:
    await make_product(client, "CON-4", lead_time_days=10)
    await place(client, [("CON-4", 7)])
    await sign_in(client, MASTER_KEY)
    page = await client.get("/console/replenishment")
    assert 'data-sku="CON-4"' in page.text
    expected = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()
    assert f'value="{expected}"' in page.text
    form = {
        "csrf": csrf_of(page),
        "sku": "CON-4",
        "quantity": "7",
        "expected_date": expected,
        "back": "replenishment",
    }
    r = await client.post("/console/purchase-orders", data=form)
    assert r.status_code == 303
    assert (
        "Purchase order for 7 units of CON-4 created."
        in (await client.get(r.headers["location"])).text
    )
    pos = (await client.get("/v1/purchase-orders?sku=CON-4", headers=OPS)).json()["data"]
    assert [(p["quantity"], p["expected_date"]) for p in pos] == [(7, expected)]


async def test_the_queue_pages_in_fill_order(client: AsyncClient) -> None:
    await make_product(client, "CON-5")
    for i in range(55):
        await place(client, [("CON-5", 1)], customer_id=f"c-{i:03d}")
    await sign_in(client, MASTER_KEY)
    first = await client.get("/console/products/CON-5")
    assert "c-000" in first.text and "c-049" in first.text and "c-050" not in first.text
    link = re.search(r'rel="next" href="([^"]+)"', first.text)
    assert link
    second = await client.get(link.group(1).replace("&amp;", "&"))
    assert "c-050" in second.text and "c-054" in second.text and "c-049" not in second.text


async def test_the_events_feed_answers_what_came_after_the_page(client: AsyncClient) -> None:
    await make_product(client, "CON-6")
    await sign_in(client, MASTER_KEY)
    page = await client.get("/console/events")
    after = re.search(r'data-after="(\d+)"', page.text)
    assert after
    await place(client, [("CON-6", 2)])
    r = await client.get(f"/console/events.json?after={after.group(1)}")
    assert r.status_code == 200
    types = [e["type"] for e in r.json()["events"]]
    assert "order.created" in types and "order.backordered" in types
