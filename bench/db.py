"""The benchmark's database: a fresh one per run, built by the real migrations, seeded by SQL.

Seeding writes rows exactly as the service would have left them (counters equal to the sums
over lines, `on_hand` equal to the ledger, statuses and queue keys consistent), only in bulk,
so that a million waiting lines take seconds instead of an hour of API calls.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from backorder.db.engine import WORK_MEM, migrate


def plain(url: str) -> str:
    """A libpq URL (what psycopg and pgbench take) from a SQLAlchemy one."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg_async://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def with_database(server_url: str, name: str) -> str:
    base, _, query = server_url.partition("?")
    root = base.rsplit("/", 1)[0]
    return f"{root}/{name}" + (f"?{query}" if query else "")


@dataclass
class Database:
    url: str  # libpq URL of the benchmark's own database
    data_dir: Path  # BACKORDER_DATA_DIR for the service (temp)
    embedded: bool

    @property
    def sa_url(self) -> str:
        return "postgresql+psycopg://" + self.url[len("postgresql://") :]

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True, **kwargs)


@contextmanager
def bench_database(external_url: str | None, keep: bool = False) -> Iterator[Database]:
    """A fresh database for this run: on BENCH_DATABASE_URL's server, else on an embedded
    PostgreSQL in a temporary data directory. Dropped (and the server stopped) afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="backorder-bench-"))
    embedded = None
    if external_url:
        server_url = plain(external_url)
    else:
        from backorder.embedded import start

        embedded = start(data_dir, exclusive=False)
        server_url = plain(embedded.url)
    name = f"backorder_bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        db = Database(with_database(server_url, name), data_dir, embedded is not None)
        migrate(db.sa_url)
        try:
            yield db
        finally:
            if not keep:
                with psycopg.connect(server_url, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        if embedded is not None and not keep:
            embedded.stop()
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def machine_figures(db: Database) -> dict[str, Any]:
    with db.connect() as conn:

        def setting(name: str) -> str:
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
            return str(row[0]) if row else ""

        version = conn.execute("SELECT version()").fetchone()
        figures: dict[str, Any] = {
            "cores": os.cpu_count(),
            "cpu": _cpu_model(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "postgresql": str(version[0]) if version else "",
            "postgresql_embedded": db.embedded,
            "synchronous_commit": setting("synchronous_commit"),
            "fsync": setting("fsync"),
            "shared_buffers": setting("shared_buffers"),
            "max_connections": setting("max_connections"),
        }
    return figures


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


# --- seeding -----------------------------------------------------------------------------

_PRODUCTS = """
INSERT INTO product (sku, name, on_hand, stock_state)
SELECT CAST(%(prefix)s AS text) || g, 'bench ' || g, %(stock)s,
       CASE WHEN %(stock)s > 0 THEN 'in' ELSE 'out' END
FROM generate_series(0, %(count)s - 1) AS g
"""

# Every seeded unit is at the `main` location (stock_level, then its ledger rows, which
# reference it).
_LEVELS = """
INSERT INTO stock_level (sku, location, on_hand, allocated)
SELECT sku, 'main', on_hand, 0 FROM product WHERE sku LIKE %(like)s
"""
_LEDGER = """
INSERT INTO stock_movement (sku, location, kind, quantity, reference)
SELECT sku, 'main', 'restock', on_hand, 'bench seed' FROM product
WHERE sku LIKE %(like)s AND on_hand > 0
"""


def seed_products(conn: psycopg.Connection[Any], prefix: str, count: int, stock: int) -> None:
    """`count` products `<prefix>0 … <prefix>{count-1}` with `stock` units each (ledgered)."""
    conn.execute(_PRODUCTS, {"prefix": prefix, "count": count, "stock": stock})
    like = prefix.replace("_", r"\_") + "%"
    conn.execute(_LEVELS, {"like": like})
    conn.execute(_LEDGER, {"like": like})


def seed_product(conn: psycopg.Connection[Any], sku: str, stock: int) -> None:
    conn.execute(
        "INSERT INTO product (sku, name, on_hand, stock_state) VALUES (%s, %s, %s, %s)",
        (sku, "bench " + sku, stock, "in" if stock > 0 else "out"),
    )
    conn.execute(
        "INSERT INTO stock_level (sku, location, on_hand, allocated) VALUES (%s, 'main', %s, 0)",
        (sku, stock),
    )
    if stock > 0:
        conn.execute(
            "INSERT INTO stock_movement (sku, location, kind, quantity, reference) "
            "VALUES (%s, 'main', 'restock', %s, 'bench seed')",
            (sku, stock),
        )


# Waiting lines of one unit each, `per_order` lines (of distinct SKUs) per order, in queue
# order by `created_at` (orders a microsecond apart). Line n of order g goes to SKU
# `(g * per_order + n) % skus`, so the lines spread evenly over the SKUs.
_QUEUE = """
WITH src AS MATERIALIZED (
    SELECT g, {uuid} AS id, %(t0)s + g * interval '1 microsecond' AS at
    FROM generate_series(%(g0)s, %(g0)s + %(orders)s - 1) AS g
), o AS (
    INSERT INTO sales_order (id, channel, customer_id, status, ready_to_ship,
                             backordered_at_placement, backordered, created_at, updated_at)
    SELECT id, 'bench', 'c-' || g, 'backordered', false, true, %(per_order)s, at, at FROM src
), l AS (
    INSERT INTO order_line (id, order_id, line_no, sku, quantity, allocated, backordered,
                            created_at, initial_backordered)
    SELECT {uuid}, src.id, n + 1,
           CAST(%(prefix)s AS text) || ((g * %(per_order)s + n) %% %(skus)s), 1, 0, 1, at, 1
    FROM src, generate_series(0, %(per_order)s - 1) AS n
    RETURNING id, sku, created_at
)
INSERT INTO backorder_queue (line_id, sku, priority, created_at)
SELECT id, sku, 0, created_at FROM l
"""


def seed_queues(
    db: Database, prefix: str, skus: int, lines: int, per_order: int = 1, parallel: int = 2
) -> float:
    """Products `<prefix>0 …` (if absent) with `lines` waiting one-unit lines spread evenly
    over `skus` of them, counters kept equal to the lines. Returns the seconds it took.

    The rows are consistent by construction, so the foreign-key triggers are skipped where
    the role may (`session_replication_role`), ids are time-ordered UUIDs where the server
    has them (PostgreSQL 18), and `parallel` connections insert disjoint ranges: all of which
    only make the load faster, not the data different.
    """
    assert per_order <= skus and lines % per_order == 0
    started = time.perf_counter()
    orders = lines // per_order
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO product (sku, name, on_hand, stock_state) "
            "SELECT CAST(%(prefix)s AS text) || g, 'bench ' || g, 0, 'out' "
            "FROM generate_series(0, %(skus)s - 1) AS g ON CONFLICT (sku) DO NOTHING",
            {"prefix": prefix, "skus": skus},
        )
        row = conn.execute("SELECT clock_timestamp(), to_regproc('uuidv7') IS NOT NULL").fetchone()
        assert row is not None
        t0, has_v7 = row
    sql = _QUEUE.format(uuid="uuidv7()" if has_v7 else "gen_random_uuid()")
    parallel = max(1, min(parallel, orders))
    bounds = [orders * k // parallel for k in range(parallel + 1)]

    def insert(k: int) -> None:
        with db.connect() as conn:
            _try(conn, "SET session_replication_role = replica")
            conn.execute(
                sql,
                {
                    "prefix": prefix,
                    "skus": skus,
                    "g0": bounds[k],
                    "orders": bounds[k + 1] - bounds[k],
                    "per_order": per_order,
                    "t0": t0,
                },
            )

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(insert, range(parallel)))
    with db.connect() as conn:
        conn.execute(
            "UPDATE product p SET backordered = w.units FROM ("
            " SELECT sku, sum(backordered) AS units FROM order_line"
            " WHERE sku LIKE %(like)s AND backordered > 0 GROUP BY sku) w"
            " WHERE p.sku = w.sku",
            {"like": prefix.replace("_", r"\_") + "%"},
        )
    return time.perf_counter() - started


def _try(conn: psycopg.Connection[Any], sql: str) -> bool:
    try:
        conn.execute(sql)
    except psycopg.Error:
        return False
    return True


def analyze(conn: psycopg.Connection[Any]) -> None:
    """What autovacuum would soon do after a bulk load: visibility map and statistics."""
    conn.execute(
        "VACUUM (ANALYZE) product, sales_order, order_line, backorder_queue, stock_movement"
    )


# --- the bare fill statement -------------------------------------------------------------


def _psycopg(sql: str) -> str:
    return re.sub(r"(?<!:):(sku_0|units_0|changed)\b", r"%(\1)s", sql)


def fill_sql() -> str:
    """The service's own set-based fill (db/stock.py: lines and queue, without the statuses
    and events it settles in the same statement), with psycopg parameters."""
    from backorder.db.stock import fill_statement
    from backorder.domain.allocation import AllocationStrategy

    return _psycopg(fill_statement(AllocationStrategy.FIFO))


def settle_sql() -> str:
    """The whole statement a restock runs (db/stock.py: the fill, the reached orders'
    statuses and the events), with psycopg parameters."""
    from backorder.db.stock import settle_statement
    from backorder.domain.allocation import AllocationStrategy

    return _psycopg(settle_statement(AllocationStrategy.FIFO))


def time_bare_fill(
    conn: psycopg.Connection[Any], sku: str, units: int, *, settle: bool = False
) -> tuple[float, int]:
    """Seconds for the fill statement (rows fetched) in a transaction that is rolled back;
    with `settle`, for the service's whole restock statement instead."""
    sql = settle_sql() if settle else fill_sql()
    params = {"sku_0": sku, "units_0": units, "changed": []}
    with conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")  # as the service runs it
        started = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        elapsed = time.perf_counter() - started
    return elapsed, len(rows)


# --- invariants --------------------------------------------------------------------------

_INVARIANTS = """
WITH lines AS (
    SELECT sku, sum(allocated) AS a, sum(backordered) AS b, count(*) AS n,
           count(*) FILTER (WHERE quantity <> allocated + backordered + shipped + cancelled)
               AS broken
    FROM order_line WHERE sku = ANY(%(skus)s) OR sku LIKE %(like)s GROUP BY sku
), ledger AS (
    SELECT sku, sum(quantity) AS q FROM stock_movement
    WHERE sku = ANY(%(skus)s) OR sku LIKE %(like)s GROUP BY sku
)
SELECT
  COALESCE(sum(GREATEST(p.allocated - p.on_hand, 0)), 0) AS oversold_units,
  count(*) FILTER (WHERE p.allocated <> COALESCE(l.a, 0) OR p.backordered <> COALESCE(l.b, 0))
      AS counters_not_lines,
  count(*) FILTER (WHERE p.on_hand <> COALESCE(g.q, 0)) AS on_hand_not_ledger,
  count(*) FILTER (WHERE p.on_hand - p.allocated > 0 AND COALESCE(l.b, 0) > 0)
      AS idle_stock_while_waiting,
  COALESCE(sum(l.broken), 0) AS lines_not_adding_up,
  COALESCE(sum(l.n), 0) AS lines
FROM product p
LEFT JOIN lines l ON l.sku = p.sku
LEFT JOIN ledger g ON g.sku = p.sku
WHERE p.sku = ANY(%(skus)s) OR p.sku LIKE %(like)s
"""


def check_invariants(conn: psycopg.Connection[Any], skus: list[str], like: str) -> dict[str, int]:
    """API.md's invariants 1-3 in SQL for the SKUs a scenario touched."""
    row = conn.execute(_INVARIANTS, {"skus": skus, "like": like}).fetchone()
    assert row is not None
    names = (
        "oversold_units",
        "counters_not_lines",
        "on_hand_not_ledger",
        "idle_stock_while_waiting",
        "lines_not_adding_up",
        "lines",
    )
    return {name: int(value) for name, value in zip(names, row, strict=True)}
