"""Swagger UI and ReDoc in a real headless Chromium with no network but loopback: the ops
desk works through Swagger UI, often on networks without internet."""

from __future__ import annotations

from typing import Any

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import requested_urls, screenshot
from tests.support.api import MASTER_KEY

DRAW_TIMEOUT_S = 60  # a cold Chromium parsing the whole schema on a crowded machine


def operation_count(live_url: str) -> int:
    paths = httpx.get(f"{live_url}/openapi.json").json()["paths"]
    methods = {"get", "put", "post", "patch", "delete", "head"}
    return sum(1 for item in paths.values() for method in item if method in methods)


def off_loopback(urls: list[str], live_url: str) -> list[str]:
    return [u for u in urls if not u.startswith((live_url + "/", "data:", "blob:"))]


def test_swagger_ui_draws_every_operation_with_no_network_but_loopback(
    chromium: Any, live_url: str
) -> None:
    requested_urls(chromium)  # forget what an earlier page asked for
    chromium.get(f"{live_url}/docs")
    WebDriverWait(chromium, DRAW_TIMEOUT_S).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock")
    )
    screenshot(chromium, "swagger-ui")
    paths = {e.text for e in chromium.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert "/v1/orders" in paths
    assert len(chromium.find_elements(By.CSS_SELECTOR, ".opblock")) == operation_count(live_url)
    assert off_loopback(requested_urls(chromium), live_url) == []


def test_swagger_ui_authorizes_with_an_api_key_and_forgets_it_on_reload(
    chromium: Any, live_url: str
) -> None:
    chromium.get(f"{live_url}/docs")
    wait = WebDriverWait(chromium, DRAW_TIMEOUT_S)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"))

    chromium.find_element(By.CSS_SELECTOR, ".auth-wrapper button.authorize").click()
    field = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".modal-ux input"))
    field.send_keys(MASTER_KEY)
    chromium.find_element(By.CSS_SELECTOR, ".modal-ux button.authorize").click()
    chromium.find_element(By.CSS_SELECTOR, ".modal-ux button.btn-done").click()

    # "Try it out" on a route that answers 401 without a key.
    block = chromium.find_element(
        By.XPATH,
        "//div[contains(@class,'opblock-get')]"
        "[.//*[contains(@class,'opblock-summary-path') and @data-path='/v1/api-keys']]",
    )
    block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(lambda d: block.find_element(By.CSS_SELECTOR, ".try-out__btn")).click()
    wait.until(lambda d: block.find_element(By.CSS_SELECTOR, ".execute")).click()
    answer = ".live-responses-table tr.response .response-col_status"
    status = wait.until(lambda d: block.find_element(By.CSS_SELECTOR, answer))
    screenshot(chromium, "swagger-ui-authorized")
    assert status.text.strip().startswith("200")

    # persistAuthorization is off: the key is not kept in the browser.
    assert chromium.execute_script("return window.localStorage.getItem('authorized')") is None
    chromium.refresh()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"))
    button = chromium.find_element(By.CSS_SELECTOR, ".auth-wrapper button.authorize")
    assert "unlocked" in (button.get_attribute("class") or "").split()


def test_redoc_draws_the_operations_with_no_network_but_loopback(
    chromium: Any, live_url: str
) -> None:
    requested_urls(chromium)
    chromium.get(f"{live_url}/redoc")
    WebDriverWait(chromium, DRAW_TIMEOUT_S).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "[data-section-id*='operation/']")
    )
    screenshot(chromium, "redoc")
    assert "Place an order" in chromium.find_element(By.TAG_NAME, "body").text
    assert off_loopback(requested_urls(chromium), live_url) == []
