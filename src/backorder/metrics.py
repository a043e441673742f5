"""Prometheus metrics: HTTP traffic per route template, business figures, the DB pool.

Two sources, each chosen for being right with several worker processes:

* **HTTP requests and the pool** are per process, so they use prometheus_client's
  multiprocess mode when `PROMETHEUS_MULTIPROC_DIR` is set (`backorder serve --workers N`
  sets it to a fresh directory before the workers start): each worker writes its samples to
  files there, and whichever worker answers a scrape adds them all up. With one process the
  samples stay in memory. A scrape thus always sees the whole service, never one worker.
* **Business figures** (orders placed, units backordered at placement, units filled from the
  queue, open backorders, webhook deliveries by outcome) are read from SQL at scrape time.
  They are exact whatever the number of workers or restarts, and no use case has to count.

Labels are bounded: the route is the matched route's template (`/v1/orders/{order_id}`),
`unmatched` when nothing matched; methods outside the HTTP set are `OTHER`; statuses are
classes (`2xx`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backorder.db.reports import MetricFigures
from backorder.logging import log_request

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DELIVERY_STATUSES = ("pending", "succeeded", "failed")


def multiprocess_dir() -> str | None:
    """The shared directory of multiprocess mode, when the service runs in it."""
    return os.environ.get(MULTIPROC_ENV) or None


# The process's own samples. Not the global default registry: nothing else registers here, and
# in multiprocess mode these objects only write files that the scrape reads back.
_REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "backorder_http_requests",
    "HTTP requests answered, by method, route template and status class.",
    ["method", "route", "status"],
    registry=_REGISTRY,
)
HTTP_DURATION = Histogram(
    "backorder_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status class.",
    ["method", "route", "status"],
    buckets=_BUCKETS,
    registry=_REGISTRY,
)
ORDER_BATCH_SIZE = Histogram(
    "backorder_order_batch_size",
    "Orders placed per transaction on the lean order path: concurrent orders of one key for "
    "the same SKUs share one lock and one commit (a flash sale's batches grow).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
    registry=_REGISTRY,
)
DB_POOL_CHECKED_OUT = Gauge(
    "backorder_db_pool_checked_out",
    "Database connections checked out of the pool (summed over live worker processes; "
    "each worker updates its value after every request).",
    registry=_REGISTRY,
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "backorder_db_pool_size",
    "Configured database pool size (summed over live worker processes).",
    registry=_REGISTRY,
    multiprocess_mode="livesum",
)


def route_template(scope: Scope) -> str:
    """The matched route's path template, so `/v1/orders/<any id>` is one label value."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED


def _pool_of(scope: Scope) -> Any:
    app = scope.get("app")
    engine = getattr(getattr(app, "state", None), "engine", None)
    return getattr(engine, "pool", None)


def observe_pool(pool: Any) -> None:
    """Record the pool's checked-out connections (SQLAlchemy `QueuePool`; others are skipped)."""
    checkedout = getattr(pool, "checkedout", None)
    size = getattr(pool, "size", None)
    if callable(checkedout) and callable(size):
        DB_POOL_CHECKED_OUT.set(checkedout())
        DB_POOL_SIZE.set(size())


class _Writes:
    """How many writes (a non-GET answered below 400) this process has answered: the
    scrape's cache of SQL figures (`routers/metrics.FigureCache`) is stale after one."""

    answered = 0


WRITES = _Writes()
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class MetricsMiddleware:
    """Pure ASGI: time each request, count it by route template, log it, note the pool.

    Sits outermost, so it sees every answer, the 404s of no route and the 413s of the body
    limit included; an exception escaping the app counts as a 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            elapsed = time.perf_counter() - start
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            route = route_template(scope)
            labels = (method, route, f"{status // 100}xx")
            HTTP_REQUESTS.labels(*labels).inc()
            HTTP_DURATION.labels(*labels).observe(elapsed)
            if method not in _READS and status < 400:
                WRITES.answered += 1
            observe_pool(_pool_of(scope))
            log_request(scope, method, route, status, elapsed)

    @staticmethod
    def _lifespan_send(send: Send) -> Send:
        """On shutdown, drop this process's live gauges from the shared directory."""

        async def wrapped(message: Message) -> None:
            await send(message)
            directory = multiprocess_dir()
            if message["type"] == "lifespan.shutdown.complete" and directory:
                mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]

        return wrapped


class _Static:
    """A collector of metric families computed before the scrape (e.g. from SQL)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return self.families


class _Forward:
    """The in-memory registry of a single process, as a collector of the scrape's registry."""

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return _REGISTRY.collect()


def business_families(figures: MetricFigures | None) -> list[Metric]:
    """The SQL-derived families; only the `database_up` gauge when SQL could not be read."""
    up = GaugeMetricFamily(
        "backorder_metrics_database_up",
        "1 when the figures read from the database at this scrape are present, else 0.",
        value=0 if figures is None else 1,
    )
    if figures is None:
        return [up]
    deliveries = GaugeMetricFamily(
        "backorder_webhook_deliveries",
        "Webhook deliveries by outcome: pending (incl. retrying), succeeded, failed.",
        labels=["status"],
    )
    for status in sorted({*_DELIVERY_STATUSES, *figures.webhook_deliveries}):
        deliveries.add_metric([status], figures.webhook_deliveries.get(status, 0))
    return [
        up,
        CounterMetricFamily(
            "backorder_orders_placed",
            "Orders placed (cancelled ones included).",
            value=figures.orders_placed,
        ),
        CounterMetricFamily(
            "backorder_units_backordered_at_placement",
            "Units that had to wait when their order was placed.",
            value=figures.units_backordered_at_placement,
        ),
        CounterMetricFamily(
            "backorder_units_filled_from_queue",
            "Backordered units allocated from the queue (restocks, receipts, adjustments, "
            "cancellations freeing stock).",
            value=figures.units_filled_from_queue,
        ),
        GaugeMetricFamily(
            "backorder_open_backorder_units",
            "Backordered units waiting now (sum of the products' backordered).",
            value=figures.open_backorder_units,
        ),
        GaugeMetricFamily(
            "backorder_open_backorder_lines",
            "Order lines waiting now.",
            value=figures.open_backorder_lines,
        ),
        deliveries,
    ]


def exposition(figures: MetricFigures | None) -> bytes:
    """The Prometheus text of the whole service: every worker's samples plus the SQL figures."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory:
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward())
    registry.register(_Static(business_families(figures)))
    return generate_latest(registry)


@contextmanager
def multiprocess_directory(workers: int) -> Iterator[str | None]:
    """For `serve --workers N`: a fresh `PROMETHEUS_MULTIPROC_DIR` the workers inherit.

    It must be set before any worker imports prometheus_client, and be empty so that no
    samples of an earlier run are added in; it is removed on exit. A directory the operator
    set already is kept (and left to them to empty between runs). One worker needs none.
    """
    existing = multiprocess_dir()
    if existing:
        os.makedirs(existing, exist_ok=True)
        yield existing
        return
    if workers <= 1:
        yield None
        return
    directory = tempfile.mkdtemp(prefix="backorder-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)
