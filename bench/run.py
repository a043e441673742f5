"""`python -m bench.run`: the benchmarks of issue 9, each figure a ratio to a ceiling measured
in the same run on the same PostgreSQL.

1. starts PostgreSQL (embedded, in a temp directory; or BENCH_DATABASE_URL's server) and makes
   a fresh database with the real migrations, seeded by SQL;
2. measures the ceilings: pgbench on the bare order transaction (bench/pgbench.py), then the
   server stack itself (bench/ceiling_app.py, hello-world and one primary-key SELECT);
3. starts `backorder serve --workers 2` and loads it with wrk from a separate process
   (bench/load.py): scenarios 1-5, then the ops reports over all the lines made (6);
4. prints a table and writes bench/results.json.

The load generator, the server and PostgreSQL share the machine's cores: every figure is a
ratio to a ceiling measured under the same sharing, never a pass/fail on speed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.cpu import CpuMeter, postmaster_pid
from bench.db import bench_database, machine_figures, seed_product, seed_products
from bench.load import Load, LoadResult, generator_name, run_load
from bench.pgbench import HOT_SKU, SPREAD_PREFIX, PgbenchResult, run_pgbench
from bench.procs import Server, ceiling_app, running, service
from bench.profile import Recording
from bench.report import Scenario, ceilings_table, cpu_note, table

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.json"
STAGES = ("pgbench", "stack", "1", "2", "3", "4", "5", "6")


@dataclass(frozen=True)
class Plan:
    """Sizes of one run. The default keeps a whole run near five minutes on 2 cores."""

    seconds: float = 8.0  # HTTP load per scenario (after the warm-up)
    warmup: float = 1.0
    pg_seconds: int = 4
    hot_clients: tuple[int, ...] = (2, 4, 64)
    spread_clients: tuple[int, ...] = (8, 64)
    connections: int = 64
    max_requests: int = 400_000  # a cap per load run; the duration normally ends it first
    skus: int = 10_000
    fill_lines: int = 100_000
    fill_skus: int = 1_000
    fill_per_sku: int = 100
    waiting_levels: tuple[int, ...] = (0, 10_000, 1_000_000)
    waiting_skus: int = 1_000
    waiting_per_order: int = 10
    s5_seconds: float = 5.0
    stack_select_sa: bool = True
    report_repeats: int = 5
    report_waiting: int = 100_000  # 6: at least this many waiting lines (issue 18)
    overview_repeats: int = 11  # 6: overview and report requests, alternating


QUICK = Plan(
    seconds=1.0,
    warmup=0.0,
    pg_seconds=1,
    hot_clients=(2, 64),
    spread_clients=(64,),
    connections=16,
    max_requests=20_000,
    skus=100,
    fill_lines=500,
    fill_skus=10,
    fill_per_sku=10,
    waiting_levels=(0, 100, 1_000),
    waiting_skus=10,
    waiting_per_order=10,
    s5_seconds=1.0,
    stack_select_sa=False,
    report_repeats=2,
    report_waiting=1_000,
    overview_repeats=3,
)

DEFINITIONS = {
    "ratio": "rate / ceiling_rate; for 4a and 4b (single timed requests) the bare statement's "
    "time / the request's time (p50 for 4b), so 0.50 means twice the bare time",
    "ceiling 1": "the best bare-SQL hot-SKU rate of any form and concurrency (pgbench)",
    "ceiling 2, 3": "the stack's one-SELECT route (bench/ceiling_app.py, same uvicorn, workers, "
    "driver)",
    "ceiling 5": "the same load with 0 lines waiting elsewhere, measured just before",
    "ceiling 6": "issue 5's budget of one second per report answer; ratio = budget / p50; "
    "for the console overview, the report's p50 measured alternately with it; ratio = report "
    "p50 / overview p50",
    "cpu": "CPU milliseconds per request (or transaction) of the server's process tree and of "
    "PostgreSQL's, measured from /proc: less sensitive to a noisy neighbour than rates",
    "generator": "wrk, closed loop, one thread; it shares the machine's cores with the server and "
    "PostgreSQL",
}

SKU_PREFIX = "B-"
HOT = "HOT"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Run:
    def __init__(self, plan: Plan, stages: set[str]) -> None:
        self.plan = plan
        self.stages = stages
        self.pgbench: list[PgbenchResult] = []
        self.stack: dict[str, LoadResult] = {}
        self.scenarios: list[Scenario] = []
        self.postgres_pid: int | None = None
        self.loads = 0

    # -- ceilings -------------------------------------------------------------------------

    def measure_pgbench(self, url: str) -> None:
        p = self.plan
        runs = [("hot", form, c) for c in p.hot_clients for form in ("statement", "transaction")]
        runs += [("spread", form, c) for c in p.spread_clients for form in ("statement",)]
        runs += [("spread", "transaction", max(p.spread_clients))]
        for sku, form, clients in runs:
            meter = CpuMeter(None, self.postgres_pid)
            meter.start()
            result = run_pgbench(url, sku, form, clients, p.pg_seconds, p.skus)
            result.cpu = meter.stop(result.transactions)
            log(
                f"{result.name}: {result.tps:,.0f} tps, {result.latency_ms} ms avg"
                + (
                    f", PostgreSQL CPU ms/tx {result.cpu['postgres_cpu_ms_per_request']}"
                    if result.cpu
                    else ""
                )
            )
            self.pgbench.append(result)

    def measure_stack(self, server: Server) -> None:
        p = self.plan
        base = server.wait_ready()
        routes = [("hello", "/hello"), ("select", "/select/{sku}")]
        if p.stack_select_sa:
            routes.append(("select_sa", "/select-sa/{sku}"))
        for name, path in routes:
            load = Load("GET", path, {}, sku_prefix=SKU_PREFIX, sku_count=p.skus)
            result = self.load(base, load, server.pid)
            log(f"stack {name}: {scenarios.describe(result)}")
            self.stack[name] = result

    def best_bare(self, sku: str) -> PgbenchResult | None:
        found = [r for r in self.pgbench if r.sku == sku]
        return max(found, key=lambda r: r.tps) if found else None

    def select_rate(self) -> float | None:
        found = self.stack.get("select")
        return found.rate if found else None

    # -- load -----------------------------------------------------------------------------

    def load(
        self, base: str, load: Load, server_pid: int | None, seconds: float | None = None
    ) -> LoadResult:
        """Warm up, then measure; with the CPU the server and PostgreSQL spent per request."""
        p = self.plan
        if p.warmup:
            run_load(
                base, load, connections=p.connections, seconds=p.warmup, max_requests=p.max_requests
            )
        self.loads += 1
        label = f"{self.loads:02d}-{load.method}-{load.path.strip('/').replace('/', '_')}"
        recording = Recording(server_pid, label)  # py-spy, when BENCH_PYSPY asks for it
        meter = CpuMeter(server_pid, self.postgres_pid)
        meter.start()
        try:
            result = run_load(
                base,
                load,
                connections=p.connections,
                seconds=seconds or p.seconds,
                max_requests=p.max_requests,
            )
        finally:
            recording.stop()
        result.cpu = meter.stop(result.requests)
        return result


def seed(db_conn: Any, plan: Plan) -> None:
    seed_products(db_conn, SKU_PREFIX, plan.skus, 1_000_000)
    seed_product(db_conn, HOT, 100_000_000)
    seed_products(db_conn, SPREAD_PREFIX, plan.skus, 1_000_000_000)
    seed_product(db_conn, HOT_SKU, 1_000_000_000)
    db_conn.execute("VACUUM (ANALYZE) product, stock_movement")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke, tiny counts")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--only",
        default=",".join(STAGES),
        help=f"comma-separated subset of {','.join(STAGES)} (ratios need their ceilings)",
    )
    parser.add_argument("--seconds", type=float, help="HTTP load seconds per scenario")
    parser.add_argument("--keep", action="store_true", help="keep the database and temp dir")
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else Plan()
    if args.seconds:
        plan = replace(plan, seconds=args.seconds)
    stages = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = stages - set(STAGES)
    if unknown:
        parser.error(f"unknown stages: {', '.join(sorted(unknown))}")
    started = time.monotonic()
    run = Run(plan, stages)
    generator = generator_name()
    log(f"load generator: {generator}")
    external = os.environ.get("BENCH_DATABASE_URL") or None
    with bench_database(external, keep=args.keep) as db:
        machine = machine_figures(db)
        if args.keep:
            log(f"keeping the database {db.url} and {db.data_dir}")
        log(
            f"{machine['cores']} cores, {machine['postgresql'].split(' on ')[0]}, "
            f"synchronous_commit={machine['synchronous_commit']}, "
            f"load {machine['load_average_at_start']}"
        )
        with db.connect() as conn:
            seed(conn, plan)
        run.postgres_pid = postmaster_pid(db.data_dir) if db.embedded else None
        if "pgbench" in stages:
            run.measure_pgbench(db.url)
        server, master = service(db.sa_url, db.data_dir)
        with running(server):
            # Both servers start together (idle workers cost nothing while the other is
            # measured); only their start-up overlaps, never a measurement.
            if "stack" in stages:
                with running(ceiling_app(db.url, db.data_dir).start()) as ceiling:
                    server.wait_ready()
                    run.measure_stack(ceiling)
            server.wait_ready()
            scenarios.run_all(run, db, server, master)
    elapsed = time.monotonic() - started

    ordered = sorted(run.scenarios, key=lambda s: s.name.split()[0])
    result = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "seconds": round(elapsed, 1),
        "generator": generator,
        "sharing": f"load generator, server (2 workers) and PostgreSQL share the "
        f"{machine['cores']} cores of this machine",
        "machine": machine,
        "ceilings": {
            "bare_sql": [r.as_dict() for r in run.pgbench],
            "stack": {k: v.as_dict() for k, v in run.stack.items()},
        },
        "scenarios": [s.as_dict() for s in ordered],
        "definitions": DEFINITIONS,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")

    print()
    rows: list[tuple[str, float | None, str]] = [
        (r.name, r.tps, f"{r.latency_ms} ms avg; {cpu_note(r.cpu)}") for r in run.pgbench
    ]
    rows += [
        (f"stack {k}", v.rate, f"p99 {v.p99_ms} ms; {cpu_note(v.cpu)}")
        for k, v in run.stack.items()
    ]
    if rows:
        print(ceilings_table(rows))
        print()
    print(table(ordered))
    print()
    print(f"{result['sharing']}; generator: {generator}.")
    print(f"figures are ratios to ceilings measured in this run; written to {args.output}")
    print(f"whole run: {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
