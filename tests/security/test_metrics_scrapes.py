"""`/metrics` needs no key, so a storm of scrapes must not become a storm of counting queries."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event

from tests.security.conftest import Service
from tests.support.api import OPS, place


async def test_a_scrape_storm_costs_one_database_read_per_process(service: Service) -> None:
    statements: list[str] = []
    async with service() as (app, http):  # the default: figures reused for 5 s

        def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        event.listen(app.state.engine.sync_engine, "before_cursor_execute", record)
        scrapes = await asyncio.gather(*(http.get("/metrics") for _ in range(30)))
        event.remove(app.state.engine.sync_engine, "before_cursor_execute", record)
        assert {r.status_code for r in scrapes} == {200}
        assert all("backorder_orders_placed_total 0.0" in r.text for r in scrapes)
        assert 1 <= len(statements) <= 3  # one read (a SET LOCAL and the figures) for all 30


async def test_scraped_figures_are_fresh_again_once_the_cache_has_aged(service: Service) -> None:
    async with service(metrics_cache_s=0.3) as (_, http):
        assert "backorder_orders_placed_total 0.0" in (await http.get("/metrics")).text
        await http.put("/v1/products/M-1", json={"name": "m"}, headers=OPS)
        await http.post("/v1/products/M-1/restocks", json={"quantity": 1}, headers=OPS)
        await place(http, [("M-1", 1)])
        await asyncio.sleep(0.4)  # the cache's age, not a synchronisation
        assert "backorder_orders_placed_total 1.0" in (await http.get("/metrics")).text


async def test_a_scrape_after_a_write_counts_it_without_waiting_for_the_cache(
    service: Service,
) -> None:
    async with service() as (_, http):  # the default: figures reused for 5 s without writes
        assert "backorder_orders_placed_total 0.0" in (await http.get("/metrics")).text
        assert "backorder_orders_placed_total 0.0" in (await http.get("/metrics")).text
        await http.put("/v1/products/M-1", json={"name": "m"}, headers=OPS)
        await place(http, [("M-1", 1)])
        assert "backorder_orders_placed_total 1.0" in (await http.get("/metrics")).text
