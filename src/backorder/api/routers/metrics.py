"""GET /metrics: Prometheus text, no key (keep it off the public network)."""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Depends, Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from backorder import metrics
from backorder.api.strict_query import check_query_string
from backorder.db import reports
from backorder.db.engine import run_transaction
from backorder.db.reports import MetricFigures
from backorder.domain.errors import RetryLater

# No key here, so no `authenticate` to judge the query string: the router does.
router = APIRouter(tags=["Operations"], dependencies=[Depends(check_query_string)])
log = logging.getLogger("backorder.metrics")

# A scrape must stay cheap and never hang: its SQL gets its own, short statement timeout.
SCRAPE_SQL_TIMEOUT_MS = 2000

EXAMPLE = """\
# HELP backorder_http_requests_total HTTP requests answered, by method, route template and \
status class.
# TYPE backorder_http_requests_total counter
backorder_http_requests_total{method="POST",route="/v1/orders",status="2xx"} 42.0
# HELP backorder_orders_placed_total Orders placed (cancelled ones included).
# TYPE backorder_orders_placed_total counter
backorder_orders_placed_total 42.0
# HELP backorder_open_backorder_units Backordered units waiting now (sum of the products' \
backordered).
# TYPE backorder_open_backorder_units gauge
backorder_open_backorder_units 20.0
"""


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format 0.0.4.",
            "content": {metrics.CONTENT_TYPE: {"schema": {"type": "string"}, "example": EXAMPLE}},
        }
    },
    summary="Prometheus metrics",
    description="Needs no key. The whole service, whichever worker answers:\n\n"
    "* `backorder_http_requests_total` and `backorder_http_request_duration_seconds` by "
    "`method`, `route` (the route template, `unmatched` when none) and `status` class;\n"
    "* from the database at scrape time: `backorder_orders_placed_total`, "
    "`backorder_units_backordered_at_placement_total`, "
    "`backorder_units_filled_from_queue_total`, `backorder_open_backorder_units`, "
    "`backorder_open_backorder_lines`, `backorder_webhook_deliveries{status}`;\n"
    "* `backorder_db_pool_checked_out` and `backorder_db_pool_size`.\n\n"
    "The SQL figures are read at most once every `BACKORDER_METRICS_CACHE_S` (5 s) per worker "
    "process; a scrape within that reuses them, unless the process answered a write since. "
    "When the database does not answer within 2 s, "
    "the SQL figures are left out and `backorder_metrics_database_up` is 0; the scrape itself "
    "still succeeds.",
)
async def scrape(request: Request) -> Response:
    engine = request.app.state.engine
    metrics.observe_pool(engine.pool)  # before the scrape's own connection is taken
    state = request.app.state
    cache: FigureCache | None = getattr(state, "metric_figures", None)
    if cache is None:
        cache = state.metric_figures = FigureCache(state.settings.metrics_cache_s)
    figures = await cache.get(engine)
    return Response(metrics.exposition(figures), media_type=metrics.CONTENT_TYPE)


class FigureCache:
    """The SQL figures, read at most once per `ttl_s` in a process: `/metrics` needs no key,
    so a scrape storm must not become a storm of counting queries. A write this process
    answered since the read makes them stale at once (a scrape after an order counts it), so
    reads are bounded by the scrape rate and by the write rate, whichever is lower, besides
    the ttl. Concurrent scrapes wait for the one read under way; a failed read is kept just
    as long (no retry storm)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._lock = asyncio.Lock()
        self._read_at: float | None = None
        self._writes_at_read = -1
        self._figures: MetricFigures | None = None

    def _fresh(self) -> bool:
        return (
            self._read_at is not None
            and self._writes_at_read == metrics.WRITES.answered
            and time.monotonic() - self._read_at < self.ttl_s
        )

    async def get(self, engine: AsyncEngine) -> MetricFigures | None:
        if self._fresh():
            return self._figures
        async with self._lock:
            if self._fresh():
                return self._figures
            self._writes_at_read = metrics.WRITES.answered  # before: a write now is not seen
            try:
                self._figures = await run_transaction(
                    engine,
                    lambda conn: reports.metric_figures(conn, timeout_ms=SCRAPE_SQL_TIMEOUT_MS),
                    attempts=1,
                )
            except (DBAPIError, RetryLater, OSError, TimeoutError) as exc:
                log.warning("metrics: database figures unavailable: %s", type(exc).__name__)
                self._figures = None
            self._read_at = time.monotonic()
            return self._figures
