"""The ops console in a real headless Chromium against a real `backorder serve`: sign in,
read the overview, restock, order from a replenishment row, follow the events; and the
refusals (a storefront key, a revoked key). Each page is kept as a screenshot at a desk's
and a phone's width."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import requested_urls, screenshot
from tests.support.api import MASTER_KEY

OPS = {"Authorization": f"Bearer {MASTER_KEY}"}
WAIT_S = 30
WIDTHS = (1366, 390)


@pytest.fixture
def api(live_url: str) -> Any:
    with httpx.Client(base_url=live_url, headers=OPS, timeout=30) as http:
        yield http


@pytest.fixture
def browser(chromium: Any, live_url: str) -> Any:
    """The module's Chromium, signed out, at a desk's width."""
    chromium.get(f"{live_url}/console/sign-in")
    chromium.delete_all_cookies()
    chromium.set_window_size(1366, 900)
    return chromium


def product(api: httpx.Client, sku: str, **settings: Any) -> None:
    r = api.put(f"/v1/products/{sku}", json={"name": f"Product {sku}", **settings})
    assert r.status_code == 201, r.text


def order(api: httpx.Client, sku: str, quantity: int, customer: str) -> dict[str, Any]:
    body = {"customer_id": customer, "lines": [{"sku": sku, "quantity": quantity}]}
    r = api.post("/v1/orders", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def sign_in(driver: Any, live_url: str, key: str) -> None:
    driver.get(f"{live_url}/console/sign-in")
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, ".sign-in button[type=submit]").click()
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".sign-out, .error")
    )


def shots(driver: Any, name: str) -> None:
    """The whole page at each width (the window made as tall as the page)."""
    for width in WIDTHS:
        driver.set_window_size(width, 900)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(int(height) + 140, 5000))
        screenshot(driver, f"console-{name}-{width}")
    driver.set_window_size(1366, 900)


def figure(driver: Any, name: str) -> str:
    tile = driver.find_element(By.CSS_SELECTOR, f'.tile[data-figure="{name}"] .value')
    text: str = tile.text
    return text


def test_signs_in_and_sees_the_overview_drawn_from_the_data_it_made(
    browser: Any, live_url: str, api: httpx.Client
) -> None:
    product(api, "BR-OVER")
    order(api, "BR-OVER", 40, "c-over-1")
    order(api, "BR-OVER", 25, "c-over-2")
    assert api.post("/v1/products/BR-OVER/restocks", json={"quantity": 40}).status_code == 201
    requested_urls(browser)

    sign_in(browser, live_url, MASTER_KEY)
    report = api.get("/v1/reports/backorders").json()
    assert browser.current_url == f"{live_url}/console"
    assert figure(browser, "open_backorder_units") == f"{report['open_backorder_units']:,}"
    assert figure(browser, "backorder_rate") == f"{report['backorder_rate'] * 100:.1f} %"
    # Today's bars: both orders opened a backorder today, the restock filled the first.
    today = datetime.now(UTC).date().isoformat()
    opened = browser.find_element(By.CSS_SELECTOR, f'rect.opened[data-day="{today}"]')
    filled = browser.find_element(By.CSS_SELECTOR, f'rect.filled[data-day="{today}"]')
    assert int(opened.get_attribute("data-value")) >= 2
    assert int(filled.get_attribute("data-value")) >= 1
    assert float(opened.get_attribute("height")) > 0
    youngest = browser.find_element(By.CSS_SELECTOR, 'rect.age[data-bucket="0-1 d"]')
    assert int(youngest.get_attribute("data-value")) == report["open_backorder_units"]
    top = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".top-skus tbody td:first-child")]
    assert top == [t["sku"] for t in report["top_skus"]]
    assert "BR-OVER" in top
    shots(browser, "overview")
    # Nothing but this origin: no CDN, no font service.
    assert [u for u in requested_urls(browser) if not u.startswith(live_url + "/")] == []


def test_restocks_from_the_product_page_and_sees_the_queue_move(
    browser: Any, live_url: str, api: httpx.Client
) -> None:
    product(api, "BR-REST")
    for customer, quantity in (("c-ada", 3), ("c-bob", 4), ("c-cy", 5)):
        order(api, "BR-REST", quantity, customer)
    sign_in(browser, live_url, MASTER_KEY)
    browser.get(f"{live_url}/console/products/BR-REST")
    customers = [
        e.text for e in browser.find_elements(By.CSS_SELECTOR, ".queue tbody td:nth-child(2)")
    ]
    assert customers == ["c-ada", "c-bob", "c-cy"]
    shots(browser, "product")

    # Preview first: who the 7 units would fill, and nothing done yet.
    form = browser.find_element(By.CSS_SELECTOR, "form[action$='/restocks']")
    form.find_element(By.NAME, "quantity").send_keys("7")
    form.find_element(By.NAME, "reference").send_keys("dock 4")
    form.find_element(By.CSS_SELECTOR, "button[data-preview]").click()
    preview = WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".preview")
    )
    fills = [
        [td.text for td in r.find_elements(By.TAG_NAME, "td")][1:4]
        for r in preview.find_elements(By.CSS_SELECTOR, ".preview-fills tbody tr")
    ]
    assert fills == [
        ["c-ada", "3", "allocated, ready to ship"],
        ["c-bob", "4", "allocated, ready to ship"],
    ]
    queued = browser.find_elements(By.CSS_SELECTOR, ".queue tbody td:nth-child(2)")
    assert [e.text for e in queued] == ["c-ada", "c-bob", "c-cy"]  # nobody filled yet
    assert figure(browser, "backordered") == "12"
    assert api.get("/v1/products/BR-REST").json()["on_hand"] == 0
    assert api.get("/v1/products/BR-REST/movements").json()["data"] == []
    shots(browser, "product-preview")

    # Then the restock itself, from the preview's button.
    preview.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    notice = WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".notice")
    )
    assert notice.text == "Restocked 7 units: 7 went to waiting customers."
    rows = browser.find_elements(By.CSS_SELECTOR, ".queue tbody tr")
    cells = [[td.text for td in r.find_elements(By.TAG_NAME, "td")][:3] for r in rows]
    assert cells == [["1", "c-cy", "5"]]  # c-ada and c-bob were filled, c-cy is next
    assert figure(browser, "backordered") == "5"
    assert api.get("/v1/products/BR-REST").json()["on_hand"] == 7
    shots(browser, "product-restocked")


def test_creates_a_purchase_order_from_a_replenishment_row(
    browser: Any, live_url: str, api: httpx.Client
) -> None:
    product(api, "BR-REPL", lead_time_days=5, reorder_point=0)
    order(api, "BR-REPL", 9, "c-repl")
    sign_in(browser, live_url, MASTER_KEY)
    browser.get(f"{live_url}/console/replenishment")
    # The suggestion pages by SKU: walk to the row, as a user would.
    while not browser.find_elements(By.CSS_SELECTOR, 'tr[data-sku="BR-REPL"]'):
        browser.find_element(By.CSS_SELECTOR, "a[rel=next]").click()
    shots(browser, "replenishment")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-sku="BR-REPL"]')
    assert row.find_element(By.NAME, "quantity").get_attribute("value") == "9"
    expected = (datetime.now(UTC).date() + timedelta(days=5)).isoformat()
    assert row.find_element(By.NAME, "expected_date").get_attribute("value") == expected
    row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    notice = WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".notice")
    )
    assert notice.text == "Purchase order for 9 units of BR-REPL created."
    pos = api.get("/v1/purchase-orders", params={"sku": "BR-REPL"}).json()["data"]
    assert [(p["quantity"], p["expected_date"], p["status"]) for p in pos] == [
        (9, expected, "open")
    ]
    assert api.get("/v1/products/BR-REPL").json()["incoming"] == 9


def test_the_at_risk_page_lists_the_lines_that_would_miss_their_deadline(
    browser: Any, live_url: str, api: httpx.Client
) -> None:
    # Restock expected in 60 days: a customer who waits 10 days at most is at risk, one who
    # waits 90 is not.
    restock_day = (datetime.now(UTC) + timedelta(days=60)).date().isoformat()
    product(api, "BR-RISK", expected_restock_date=restock_day)
    soon = (datetime.now(UTC) + timedelta(days=10)).isoformat()
    late = (datetime.now(UTC) + timedelta(days=90)).isoformat()
    for customer, deadline in (("c-hurried", soon), ("c-patient", late)):
        body = {
            "customer_id": customer,
            "backorder_deadline": deadline,
            "lines": [{"sku": "BR-RISK", "quantity": 2}],
        }
        r = api.post("/v1/orders", json=body)
        assert r.status_code == 201, r.text
    at_risk = api.get("/v1/orders", params={"at_risk": "true"}).json()["data"]
    assert [o["customer_id"] for o in at_risk] == ["c-hurried"]

    sign_in(browser, live_url, MASTER_KEY)
    browser.find_element(By.LINK_TEXT, "At risk").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "h1"))
    rows = browser.find_elements(By.CSS_SELECTOR, ".at-risk tbody tr")
    cells = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows]
    assert [(c[2], c[3], c[4], c[5], c[6]) for c in cells] == [
        ("BR-RISK", "2", restock_day, "50 d", "c-hurried")
    ]
    assert (figure(browser, "lines"), figure(browser, "units")) == ("1", "2")
    shots(browser, "at-risk")


def test_follows_new_events_without_a_reload(
    browser: Any, live_url: str, api: httpx.Client
) -> None:
    product(api, "BR-EVT")
    sign_in(browser, live_url, MASTER_KEY)
    browser.get(f"{live_url}/console/events")
    placed = order(api, "BR-EVT", 2, "c-evt")

    def shows_it(d: Any) -> bool:
        codes = d.find_elements(By.CSS_SELECTOR, "#events tbody tr.fresh code")
        return any(placed["id"] in c.text for c in codes)

    WebDriverWait(browser, WAIT_S).until(shows_it)
    first = browser.find_element(By.CSS_SELECTOR, "#events tbody tr")
    ids = [
        int(r.get_attribute("data-id"))
        for r in browser.find_elements(By.CSS_SELECTOR, "#events tbody tr")
    ]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert first.get_attribute("class") == "fresh"
    shots(browser, "events")


def test_a_storefront_key_is_refused_with_a_clear_message(
    browser: Any, live_url: str, api: httpx.Client
) -> None:
    r = api.post("/v1/api-keys", json={"name": "br-shop", "role": "storefront"})
    sign_in(browser, live_url, r.json()["key"])
    error = browser.find_element(By.CSS_SELECTOR, ".error")
    assert error.text == "The key 'br-shop' is a storefront key: the console is for ops keys only."
    assert browser.get_cookie("backorder_console") is None
    shots(browser, "sign-in-refused")
    browser.get(f"{live_url}/console")
    assert browser.current_url == f"{live_url}/console/sign-in"


def test_is_signed_out_once_its_key_is_revoked(
    browser: Any, live_url: str, api: httpx.Client
) -> None:
    r = api.post("/v1/api-keys", json={"name": "br-desk", "role": "ops"})
    key_id, key = r.json()["id"], r.json()["key"]
    sign_in(browser, live_url, key)
    assert browser.find_element(By.CSS_SELECTOR, ".who").text == "br-desk"
    cookie = browser.get_cookie("backorder_console")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert key not in cookie["value"]
    browser.get(f"{live_url}/console/events")  # a page whose script polls the server

    assert api.delete(f"/v1/api-keys/{key_id}").status_code == 204
    # The polling script meets the 401 and takes the browser to the sign-in page.
    WebDriverWait(browser, WAIT_S).until(lambda d: "/console/sign-in" in d.current_url)
    assert "revoked" in browser.find_element(By.CSS_SELECTOR, ".error").text
    browser.get(f"{live_url}/console/products/BR-OVER")
    assert browser.current_url.startswith(f"{live_url}/console/sign-in")
    shots(browser, "signed-out")
