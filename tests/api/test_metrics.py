"""/metrics and the access log: what ops watch, without a key, across workers."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest
from httpx import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from backorder.logging import configure
from tests.support.api import OPS, make_product, place
from tests.support.live import live_server

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

METRIC_NAMES = {
    "backorder_http_requests_total",
    "backorder_http_request_duration_seconds_bucket",
    "backorder_http_request_duration_seconds_count",
    "backorder_orders_placed_total",
    "backorder_units_backordered_at_placement_total",
    "backorder_units_filled_from_queue_total",
    "backorder_open_backorder_units",
    "backorder_open_backorder_lines",
    "backorder_webhook_deliveries",
    "backorder_db_pool_checked_out",
    "backorder_db_pool_size",
    "backorder_metrics_database_up",
}


def parse(exposition: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_of(samples: Samples, route: str, status: str, method: str = "GET") -> float:
    return value(
        samples, "backorder_http_requests_total", method=method, route=route, status=status
    )


async def scrape(client: AsyncClient) -> Samples:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


async def test_metrics_need_no_key_and_name_every_metric(client: AsyncClient) -> None:
    await client.get("/healthz")
    samples = await scrape(client)
    assert {name for name, _ in samples} >= METRIC_NAMES
    assert value(samples, "backorder_metrics_database_up") == 1
    statuses = {
        dict(labels)["status"] for name, labels in samples if name == "backorder_webhook_deliveries"
    }
    assert statuses == {"pending", "succeeded", "failed"}
    assert value(samples, "backorder_db_pool_size") >= 1


async def test_business_counters_move_with_orders_restocks_and_cancels(
    client: AsyncClient,
) -> None:
    await make_product(client, "SKU-1", on_hand=5)
    before = await scrape(client)
    await place(client, [("SKU-1", 8)])  # 5 allocated, 3 waiting
    second = await place(client, [("SKU-1", 2)])  # 2 waiting
    after_orders = await scrape(client)

    def moved(name: str, since: Samples, now: Samples) -> float:
        return value(now, name) - value(since, name)

    assert moved("backorder_orders_placed_total", before, after_orders) == 2
    assert moved("backorder_units_backordered_at_placement_total", before, after_orders) == 5
    assert value(after_orders, "backorder_open_backorder_units") == 5
    assert value(after_orders, "backorder_open_backorder_lines") == 2

    r = await client.post("/v1/products/SKU-1/restocks", json={"quantity": 4}, headers=OPS)
    assert r.status_code == 201, r.text
    r = await client.post(f"/v1/orders/{second['id']}/cancel", headers=OPS)
    assert r.status_code == 200, r.text
    after_fill = await scrape(client)
    # The restock fills the first order's 3 and 1 of the second's; the cancel frees that 1
    # again, with nobody left waiting for it.
    assert moved("backorder_units_filled_from_queue_total", after_orders, after_fill) == 4
    assert value(after_fill, "backorder_open_backorder_units") == 0
    assert moved("backorder_orders_placed_total", after_orders, after_fill) == 0


async def test_requests_are_counted_by_route_template_not_path(client: AsyncClient) -> None:
    await make_product(client, "SKU-1")
    await make_product(client, "SKU-2")
    before = await scrape(client)
    for sku in ("SKU-1", "SKU-2", "NOPE"):
        await client.get(f"/v1/products/{sku}", headers=OPS)
    await client.get("/v1/no-such-route/123", headers=OPS)
    await client.post("/v1/orders", json={}, headers=OPS)
    after = await scrape(client)

    def moved(route: str, status: str, method: str = "GET") -> float:
        return requests_of(after, route, status, method) - requests_of(
            before, route, status, method
        )

    assert moved("/v1/products/{sku}", "2xx") == 2
    assert moved("/v1/products/{sku}", "4xx") == 1
    assert moved("unmatched", "4xx") == 1
    assert moved("/v1/orders", "4xx", "POST") == 1
    routes = {dict(labels).get("route") for name, labels in after}
    assert not any(route and ("SKU-1" in route or "123" in route) for route in routes)
    count = value(
        after,
        "backorder_http_request_duration_seconds_count",
        method="GET",
        route="/v1/products/{sku}",
        status="2xx",
    )
    assert count >= 2


async def test_each_request_writes_one_access_line_with_its_request_id(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="backorder.access"):
        await client.get("/v1/products/NOPE", headers={**OPS, "X-Request-ID": "trace-42"})
    lines = [r for r in caplog.records if r.name == "backorder.access"]
    assert len(lines) == 1
    line = lines[0]
    assert line.__dict__["request_id"] == "trace-42"
    assert line.__dict__["method"] == "GET"
    assert line.__dict__["route"] == "/v1/products/{sku}"
    assert line.__dict__["status"] == 404
    assert line.__dict__["duration_ms"] >= 0
    assert "test-master-key" not in caplog.text


def test_json_log_lines_carry_the_extras_and_hide_secrets() -> None:
    out = io.StringIO()
    configure("INFO", "json", stream=out)
    try:
        log = logging.getLogger("backorder.test")
        log.info(
            "calling with Bearer bo_abcdefghijkl",
            extra={"request_id": "r-1", "authorization": "Bearer secret", "status": 201},
        )
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if getattr(handler, "stream", None) is out:
                root.removeHandler(handler)
    entry = json.loads(out.getvalue().splitlines()[-1])
    assert entry["level"] == "INFO" and entry["logger"] == "backorder.test"
    assert entry["request_id"] == "r-1" and entry["status"] == 201
    assert entry["ts"].endswith("Z")
    assert entry["authorization"] == "[redacted]"
    assert "bo_abcdefghijkl" not in out.getvalue()
    assert "secret" not in out.getvalue()


def test_text_logs_are_chosen_for_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    configure("INFO", "auto", stream=out)
    try:
        logging.getLogger("backorder.test").warning("hello", extra={"request_id": "r-2"})
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if getattr(handler, "stream", None) is out:
                root.removeHandler(handler)
    line = out.getvalue().splitlines()[-1]
    assert "WARNING" in line and "hello" in line and "request_id=r-2" in line
    assert not line.startswith("{")


def test_every_worker_is_counted_whichever_answers_the_scrape(database_url: str) -> None:
    """Two uvicorn workers share their samples (multiprocess mode): every scrape adds all up."""
    requests = 40
    with live_server(database_url, workers=2) as base_url:
        # A new connection for every request, so that the workers share them out.
        before = parse(httpx.get(f"{base_url}/metrics", timeout=10).text)
        for _ in range(requests):
            assert httpx.get(f"{base_url}/healthz", timeout=10).status_code == 200
        for _ in range(6):
            after = parse(httpx.get(f"{base_url}/metrics", timeout=10).text)
            counted = requests_of(after, "/healthz", "2xx") - requests_of(before, "/healthz", "2xx")
            assert counted == requests
            assert value(after, "backorder_metrics_database_up") == 1
