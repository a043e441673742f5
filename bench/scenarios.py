"""The scenarios of issue 9 (1-5) and the report timings of issue 5 (6), each with its target."""

from __future__ import annotations

import re
import statistics
import time
from typing import TYPE_CHECKING, Any

import httpx

from bench.cpu import CpuMeter
from bench.db import Database, analyze, check_invariants, seed_queues, time_bare_fill
from bench.load import Load, LoadResult
from bench.procs import Server
from bench.report import Scenario, ratio

if TYPE_CHECKING:
    from bench.run import Run

ORDER_BODY = '{{"customer_id":"c-{{n}}","lines":[{{"sku":"{sku}","quantity":1}}]}}'


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def describe(r: LoadResult) -> str:
    cpu = ", ".join(f"{k.split('_')[0]} {v}" for k, v in r.cpu.items())
    return f"{r.rate:,.0f} req/s, p50 {r.p50_ms} ms, p99 {r.p99_ms} ms, {r.statuses}" + (
        f", CPU ms/request: {cpu}" if cpu else ""
    )


def storefront_key(base: str, master: str) -> str:
    answer = httpx.post(
        f"{base}/v1/api-keys",
        json={"name": "bench-shop", "role": "storefront"},
        headers={"Authorization": f"Bearer {master}"},
        timeout=30,
    )
    answer.raise_for_status()
    key: str = answer.json()["key"]
    return key


def run_all(run: Run, db: Database, server: Server, master: str) -> None:
    from bench.run import HOT, SKU_PREFIX

    base = server.base
    pid = server.pid

    key = storefront_key(base, master)
    auth = {"Authorization": f"Bearer {key}"}
    plan = run.plan
    spread = Load(
        "POST",
        "/v1/orders",
        auth,
        ORDER_BODY.format(sku="{sku}"),
        sku_prefix=SKU_PREFIX,
        sku_count=plan.skus,
    )
    if "1" in run.stages:
        hot = Load("POST", "/v1/orders", auth, ORDER_BODY.format(sku=HOT), sku_count=1_000_000)
        result = run.load(base, hot, pid)
        with db.connect() as conn:
            invariants = check_invariants(conn, [HOT], "HOT")
        run.scenarios.append(hot_sku(run, result, invariants))
        log(f"1 hot SKU: {describe(result)}; {invariants}")
    if "2" in run.stages:
        result = run.load(base, spread, pid)
        with db.connect() as conn:
            invariants = check_invariants(conn, [], SKU_PREFIX + "%")
        run.scenarios.append(spread_orders(run, result, invariants))
        log(f"2 spread: {describe(result)}; {invariants}")
    if "3" in run.stages:
        get = Load("GET", "/v1/products/{sku}", auth, sku_prefix=SKU_PREFIX, sku_count=plan.skus)
        result = run.load(base, get, pid)
        run.scenarios.append(product_reads(run, result))
        log(f"3 product GET: {describe(result)}")
    # Scenario 5 runs before 4: its first level needs queues that are empty everywhere else,
    # and 4 leaves the bare statement's copies (rolled back, so still waiting) behind.
    if "5" in run.stages:
        waiting_elsewhere(run, db, base, spread, pid)
    if "4" in run.stages:
        restocks(run, db, base, master, pid)
    # After 5 and 4: the reports then aggregate every line those scenarios seeded.
    if "6" in run.stages:
        reports(run, db, base, master)


# -- 1, 2, 3 ------------------------------------------------------------------------------


def _base(name: str, r: LoadResult) -> dict[str, Any]:
    return {
        "name": name,
        "rate": r.rate,
        "p50_ms": r.p50_ms,
        "p99_ms": r.p99_ms,
        "errors": r.errors,
    }


# The targets of issue 17 (lean hot paths): ratios in one run, to the best bare SQL order.
HOT_TARGET = 0.25
HOT_P99_MS = 100.0
SPREAD_TARGET = 0.12
READ_TARGET = 0.50
RESTOCK_TARGET = 1 / 3  # the 100,000-line restock within 3x the bare fill
DRY_RUN_TARGET = 1 / 1.5  # its dry run (the console's preview) within 1.5x the restock


def hot_sku(run: Run, r: LoadResult, invariants: dict[str, int]) -> Scenario:
    best = run.best_bare("hot")
    ceiling_rate = best.tps if best else None
    rt = ratio(r.rate, ceiling_rate)
    violations = sum(v for k, v in invariants.items() if k != "lines")
    met = None
    if rt is not None:
        met = rt >= HOT_TARGET and r.p99_ms <= HOT_P99_MS and r.errors == 0 and violations == 0
    return Scenario(
        **_base(f"1 hot SKU orders, {run.plan.connections} conn", r),
        ceiling=best.name if best else "bare SQL hot (not measured)",
        ceiling_rate=ceiling_rate,
        ratio=rt,
        target=f">={HOT_TARGET:.2f}, p99<={HOT_P99_MS:g}ms, 0 err, 0 oversold",
        met=met,
        details={"load": r.as_dict(), "invariants": invariants},
    )


def spread_orders(run: Run, r: LoadResult, invariants: dict[str, int]) -> Scenario:
    bare = run.best_bare("spread")
    rt = ratio(r.rate, bare.tps if bare else None)
    violations = sum(v for k, v in invariants.items() if k != "lines")
    return Scenario(
        **_base(f"2 orders over {run.plan.skus:,} SKUs, {run.plan.connections} conn", r),
        ceiling=bare.name if bare else "bare SQL spread (not measured)",
        ceiling_rate=bare.tps if bare else None,
        ratio=rt,
        target=f">={SPREAD_TARGET:.2f}, 0 err",
        met=None if rt is None else rt >= SPREAD_TARGET and r.errors == 0 and not violations,
        details={
            "load": r.as_dict(),
            "invariants": invariants,
            "ratio_to_stack_select": ratio(r.rate, run.select_rate()),
        },
    )


def product_reads(run: Run, r: LoadResult) -> Scenario:
    rt = ratio(r.rate, run.select_rate())
    hello = run.stack.get("hello")
    return Scenario(
        **_base(f"3 GET product over {run.plan.skus:,} SKUs", r),
        ceiling="stack one-SELECT route",
        ceiling_rate=run.select_rate(),
        ratio=rt,
        target=f">={READ_TARGET:.2f}",
        met=None if rt is None else rt >= READ_TARGET and r.errors == 0,
        details={"load": r.as_dict(), "hello_ratio": ratio(r.rate, hello.rate if hello else None)},
    )


# -- 4 ------------------------------------------------------------------------------------


def _restock(
    client: httpx.Client, sku: str, quantity: int, *, dry_run: bool = False
) -> tuple[float, dict[str, Any], int]:
    started = time.perf_counter()
    answer = client.post(
        f"/v1/products/{sku}/restocks",
        json={"quantity": quantity},
        params={"dry_run": "true"} if dry_run else None,
    )
    elapsed = time.perf_counter() - started
    body = answer.json() if answer.headers.get("content-type", "").endswith("json") else {}
    return elapsed, body, answer.status_code


def _all_listed(body: dict[str, Any], lines: int) -> bool:
    allocations = body.get("allocations") or []
    return (
        len(allocations) == lines
        and sum(a["quantity"] for a in allocations) == lines
        and len({a["line_id"] for a in allocations}) == lines
    )


def restocks(run: Run, db: Database, base: str, master: str, pid: int | None) -> None:
    p = run.plan
    with db.connect() as conn:
        # Service copies (FA, GA), identical copies for the bare statement (FB, GB) and for
        # the service's own whole statement run bare (FC).
        seeded = {
            prefix: round(seed_queues(db, prefix, skus, lines), 2)
            for prefix, skus, lines in (
                ("FA-", 1, p.fill_lines),
                ("FB-", 1, p.fill_lines),
                ("FC-", 1, p.fill_lines),
                ("FD-", 1, p.fill_lines),
                ("GA-", p.fill_skus, p.fill_skus * p.fill_per_sku),
                ("GB-", p.fill_skus, p.fill_skus * p.fill_per_sku),
            )
        }
        analyze(conn)
        log(f"4 seeded waiting lines in {seeded} s")
        # One run: a rolled-back run leaves dead row versions that slow the next one down.
        bare_s, bare_rows = time_bare_fill(conn, "FB-0", p.fill_lines)
        settle_s, _ = time_bare_fill(conn, "FC-0", p.fill_lines, settle=True)
        bare_small = [
            time_bare_fill(conn, f"GB-{i}", p.fill_per_sku)[0] for i in range(p.fill_skus)
        ]
    assert bare_rows == p.fill_lines, bare_rows
    headers = {"Authorization": f"Bearer {master}"}
    with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
        meter = CpuMeter(pid, run.postgres_pid)
        meter.start()
        big_s, big_body, big_status = _restock(client, "FA-0", p.fill_lines)
        big_cpu = meter.stop(1)
        # Its dry run, on a copy (a rolled-back fill leaves dead row versions behind it).
        dry_s, dry_body, dry_status = _restock(client, "FD-0", p.fill_lines, dry_run=True)
        meter.start()
        small: list[float] = []
        small_ok = 0
        small_errors = 0
        for i in range(p.fill_skus):
            secs, body, status = _restock(client, f"GA-{i}", p.fill_per_sku)
            small.append(secs)
            small_errors += status != 201
            small_ok += _all_listed(body, p.fill_per_sku)
        small_cpu = meter.stop(len(small))
    with db.connect() as conn:
        invariants = check_invariants(conn, ["FA-0"], "GA-%")
    listed = _all_listed(big_body, p.fill_lines)
    rt = round(bare_s / big_s, 3) if big_status == 201 else None
    run.scenarios.append(
        Scenario(
            name=f"4a restock filling {p.fill_lines:,} lines of one SKU",
            rate=round(1 / big_s, 3),
            p50_ms=round(big_s * 1000, 1),
            p99_ms=round(big_s * 1000, 1),
            errors=int(big_status != 201),
            ceiling="bare fill statement (rolled back)",
            ceiling_rate=round(1 / bare_s, 3),
            ratio=rt,
            target=">=0.33 (<=3x bare), all listed",
            met=rt is not None and rt >= RESTOCK_TARGET and listed,
            details={
                "request_s": round(big_s, 3),
                "bare_s": round(bare_s, 3),
                # The service's one restock statement (fill, statuses, events) run bare: what
                # the request costs beyond it is the service's own overhead.
                "bare_settle_s": round(settle_s, 3),
                "problem": None if big_status == 201 else big_body,
                "cpu": big_cpu,
                "all_allocations_listed": listed,
                "status": big_status,
                "invariants": invariants,
                "seed_s": seeded,
            },
        )
    )
    dry_listed = _all_listed(dry_body, p.fill_lines)
    dry_rt = round(big_s / dry_s, 3) if dry_status == 200 else None
    run.scenarios.append(
        Scenario(
            name=f"4c dry run of the {p.fill_lines:,}-line restock",
            rate=round(1 / dry_s, 3),
            p50_ms=round(dry_s * 1000, 1),
            p99_ms=round(dry_s * 1000, 1),
            errors=int(dry_status != 200),
            ceiling="the restock itself (4a)",
            ceiling_rate=round(1 / big_s, 3),
            ratio=dry_rt,
            target=">=0.67 (<=1.5x the restock), all listed",
            met=dry_rt is not None and dry_rt >= DRY_RUN_TARGET and dry_listed,
            details={
                "request_s": round(dry_s, 3),
                "restock_s": round(big_s, 3),
                "status": dry_status,
                "all_allocations_listed": dry_listed,
                "orders_listed": len(dry_body.get("orders") or []),
            },
        )
    )
    log(f"4c: dry run {dry_s:.2f} s vs the restock {big_s:.2f} s, all listed: {dry_listed}")
    log(
        f"4a: request {big_s:.2f} s (status {big_status}) vs bare {bare_s:.2f} s "
        f"(the service's whole statement bare: {settle_s:.2f} s), all listed: {listed}"
    )
    small_ms = sorted(s * 1000 for s in small)
    bare_ms = sorted(s * 1000 for s in bare_small)
    p50, bare_p50 = statistics.median(small_ms), statistics.median(bare_ms)
    rt = round(bare_p50 / p50, 3)
    run.scenarios.append(
        Scenario(
            name=f"4b restocks filling {p.fill_per_sku} lines on each of {p.fill_skus:,} SKUs",
            rate=round(len(small) / sum(small), 1),
            p50_ms=round(p50, 2),
            p99_ms=round(small_ms[min(len(small_ms) - 1, int(0.99 * len(small_ms)))], 2),
            errors=small_errors,
            ceiling="bare fill statement per SKU (p50)",
            ceiling_rate=round(1000 / bare_p50, 1),
            ratio=rt,
            target=">=0.50 (<=2x bare), all listed",
            met=rt >= 0.5 and small_ok == p.fill_skus and small_errors == 0,
            details={
                "bare_p50_ms": round(bare_p50, 3),
                "bare_p99_ms": round(bare_ms[min(len(bare_ms) - 1, int(0.99 * len(bare_ms)))], 3),
                "requests_all_listed": small_ok,
                "cpu": small_cpu,
                "invariants": invariants,
            },
        )
    )
    log(f"4b: p50 {p50:.2f} ms vs bare {bare_p50:.2f} ms; listed {small_ok}/{p.fill_skus}")


# -- 5 ------------------------------------------------------------------------------------


def waiting_elsewhere(run: Run, db: Database, base: str, spread: Load, pid: int | None) -> None:
    p = run.plan
    seeded = 0
    first: LoadResult | None = None
    for level in p.waiting_levels:
        seed_s = 0.0
        if level > seeded:
            with db.connect() as conn:
                seed_s = seed_queues(
                    db, "Q-", p.waiting_skus, level - seeded, per_order=p.waiting_per_order
                )
                started = time.perf_counter()
                analyze(conn)
                analyze_s = time.perf_counter() - started
            log(
                f"5 seeded {level - seeded:,} waiting lines in {seed_s:.1f} s "
                f"(+{analyze_s:.1f} s analyze)"
            )
            seeded = level
        r = run.load(base, spread, pid, seconds=p.s5_seconds)
        first = first or r
        rt = ratio(r.rate, first.rate)
        run.scenarios.append(
            Scenario(
                **_base(f"5 order, {level:>9,} lines waiting elsewhere", r),
                ceiling="same, 0 lines waiting",
                ceiling_rate=first.rate,
                ratio=rt,
                target=">=0.80 (flat)",
                met=None if rt is None else rt >= 0.8 and r.errors == 0,
                details={
                    "load": r.as_dict(),
                    "p50_ratio": ratio(first.p50_ms, r.p50_ms),
                    "seed_s": round(seed_s, 2),
                },
            )
        )
        log(f"5 at {level:,} waiting: {describe(r)}")


# -- 6 ------------------------------------------------------------------------------------

REPORT_BUDGET_S = 1.0  # issue 5: "well under a second with 1,000,000 order lines"
# Issue 18: "the overview answers within the report's own time" with this many lines waiting.
# On a small book (--quick) both take a few milliseconds and the page's fixed costs decide:
# the ratio is shown, not judged.
OVERVIEW_WAITING = 100_000
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def reports(run: Run, db: Database, base: str, master: str) -> None:
    """The ops reports over every order line the run has made (about a million in a full
    run), each timed as single requests against a one-second budget; then the console's
    overview against the report (issue 18: "the overview answers within the report's own
    time"), with at least `plan.report_waiting` lines waiting (seeded here when the stages
    before made fewer, as a run of this stage alone does)."""
    p = run.plan
    with db.connect() as conn:
        waiting = _count(conn, "backorder_queue")
    seed_s = 0.0
    if waiting < p.report_waiting:
        missing = -(-(p.report_waiting - waiting) // 10) * 10  # whole orders of 10 lines
        seed_s = seed_queues(db, "R-", p.waiting_skus, missing, per_order=10)
        log(f"6 seeded {missing:,} waiting lines in {seed_s:.1f} s")
    with db.connect() as conn:
        analyze(conn)
        lines, waiting = _count(conn, "order_line"), _count(conn, "backorder_queue")
    headers = {"Authorization": f"Bearer {master}"}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        for label, path in (
            ("backorder report", "/v1/reports/backorders"),
            ("replenishment", "/v1/replenishment?limit=200"),
        ):
            times, errors = _timed(client, [path], run.plan.report_repeats)[path]
            p50 = statistics.median(times)
            rt = round(REPORT_BUDGET_S / p50, 3)
            run.scenarios.append(
                Scenario(
                    name=f"6 {label} over {lines:,} order lines",
                    rate=round(1 / p50, 2),
                    p50_ms=round(p50 * 1000, 1),
                    p99_ms=round(times[-1] * 1000, 1),
                    errors=errors,
                    ceiling=f"budget of {REPORT_BUDGET_S:g} s per answer (issue 5)",
                    ceiling_rate=round(1 / REPORT_BUDGET_S, 2),
                    ratio=rt,
                    target=">=1.0 (under the budget)",
                    met=rt >= 1.0 and errors == 0,
                    details={"order_lines": lines, "repeats": len(times), "path": path},
                )
            )
            log(f"6 {label}: p50 {p50 * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms over {lines:,}")
        console_overview(run, client, master, lines, waiting, seed_s)


def console_overview(
    run: Run, client: httpx.Client, master: str, lines: int, waiting: int, seed_s: float
) -> None:
    """The overview (signed-in GET /console) and the report, alternating request by request so
    that both meet the same machine; the ratio is the report's p50 over the overview's."""
    sign_in = client.get("/console/sign-in")
    token = CSRF.search(sign_in.text)
    assert token, sign_in.text[:500]
    signed = client.post("/console/sign-in", data={"csrf": token.group(1), "key": master})
    assert signed.status_code == 303 and signed.headers["location"] == "/console", signed.text
    report, overview = "/v1/reports/backorders", "/console"
    timed = _timed(client, [report, overview], run.plan.overview_repeats)
    (report_times, report_errors), (times, errors) = timed[report], timed[overview]
    report_p50, p50 = statistics.median(report_times), statistics.median(times)
    rt = round(report_p50 / p50, 3)
    met = None if waiting < OVERVIEW_WAITING else rt >= 1.0
    run.scenarios.append(
        Scenario(
            name=f"6 console overview over {lines:,} order lines, {waiting:,} waiting",
            rate=round(1 / p50, 2),
            p50_ms=round(p50 * 1000, 1),
            p99_ms=round(times[-1] * 1000, 1),
            errors=errors + report_errors,
            ceiling="the backorder report's p50, alternating with it",
            ceiling_rate=round(1 / report_p50, 2),
            ratio=rt,
            target=f">=1.0 (within the report's time) with >={OVERVIEW_WAITING:,} waiting",
            met=False if errors + report_errors else met,
            details={
                "order_lines": lines,
                "waiting_lines": waiting,
                "seed_s": round(seed_s, 2),
                "repeats": len(times),
                "report_p50_ms": round(report_p50 * 1000, 1),
                "overview_p50_ms": round(p50 * 1000, 1),
                "report_ms": [round(t * 1000, 1) for t in report_times],
                "overview_ms": [round(t * 1000, 1) for t in times],
                "path": overview,
            },
        )
    )
    log(
        f"6 console overview: p50 {p50 * 1000:.0f} ms against the report's "
        f"{report_p50 * 1000:.0f} ms ({waiting:,} waiting)"
    )


def _timed(
    client: httpx.Client, paths: list[str], repeats: int
) -> dict[str, tuple[list[float], int]]:
    """`repeats` single GETs of each path, taking turns; per path the sorted seconds and the
    count of answers other than 200."""
    times: dict[str, list[float]] = {path: [] for path in paths}
    errors = dict.fromkeys(paths, 0)
    for _ in range(repeats):
        for path in paths:
            started = time.perf_counter()
            answer = client.get(path)
            times[path].append(time.perf_counter() - started)
            errors[path] += answer.status_code != 200
    return {path: (sorted(times[path]), errors[path]) for path in paths}


def _count(conn: Any, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0
