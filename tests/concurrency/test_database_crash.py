"""A database crash: the PostgreSQL server itself is SIGKILLed (postmaster and every backend at
once) in the middle of a storm of keyed orders, restocks and cancellations, while a real
two-worker `backorder serve` keeps running, and brought back a moment later through crash
recovery. `serve` is never restarted.

Twice over: the embedded PostgreSQL that `serve` started in its own data directory, and a
`DATABASE_URL` server over TCP (a throwaway cluster this test makes: never the machine's).

While the database is down, every request sent after the kill and answered before the
restart began is a 503 `retry_later` with `Retry-After` (never a 500, never a hang past the
client's timeout, which is above the service's own). Once it is back the service answers
again by itself, and its webhook worker delivers every event, those written after the last
crash included. Every write is retried with its Idempotency-Key until it settles; then the
database holds each answered write exactly once (`test_crash.audit`), every invariant holds,
and the queue's history replays through the fill rule.

The plan (the writes, the kill points, how long each outage lasts) is drawn from the seed
before anything starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.concurrency.test_crash import SKUS, Op, audit, plan, problem_code
from tests.concurrency.test_hot_sku import setup_product
from tests.support.api import OPS
from tests.support.figures import SoakFigures, soak_seed, soak_size
from tests.support.invariants import check_invariants
from tests.support.live import ServerProcess
from tests.support.pgcluster import Cluster
from tests.support.queue_order import check_queue_order

CLIENTS = 24
# Above everything the service may wait on (connect 5 s, pool 10 s): an answer slower than
# this is a hang.
CLIENT_TIMEOUT_S = 25.0
MAX_ATTEMPTS = 400  # per write: a write may meet several outages
SETTLED = {"order": {201, 409}, "restock": {201}, "cancel": {200}}
WEBHOOK_WAIT_S = 90.0


@dataclass
class Window:
    """One outage: from the kill (the postmaster gone) to the start of its restart."""

    killed_at: float
    restart_at: float | None = None
    back_at: float | None = None  # the restart done: PostgreSQL accepts connections
    recovered_at: float | None = None  # the service's first 2xx answer after that


@dataclass
class Tally:
    requests: int = 0
    status_5xx: int = 0
    retry_later: int = 0
    while_down: Counter[str] = field(default_factory=Counter)  # answers of requests sent and
    # answered within an outage: "503:retry_later" only
    wrong: list[str] = field(default_factory=list)
    hangs: int = 0
    reads: int = 0


class Receiver:
    """Webhook deliveries, answered 200: the ids of the events received."""

    def __init__(self) -> None:
        self.ids: set[int] = set()
        self.deliveries = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            fields = {
                k.strip().lower(): v.strip()
                for k, _, v in (x.partition(":") for x in head.decode("latin-1").split("\r\n")[1:])
            }
            await reader.readexactly(int(fields.get("content-length", "0")))
            self.deliveries += 1
            self.ids.add(int(fields["webhook-id"]))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, KeyError, ValueError):
            pass
        finally:
            writer.close()


class Storm:
    def __init__(self, url: str, cluster: Cluster, tally: Tally) -> None:
        self.url = url
        self.cluster = cluster
        self.tally = tally
        self.pending: deque[Op] = deque()
        self.ops: list[Op] = []
        self.windows: list[Window] = []
        self.settled = 0

    def add(self, op: Op) -> None:
        self.ops.append(op)
        self.pending.append(op)

    def down_at(self, t: float) -> Window | None:
        for w in self.windows:
            if w.killed_at <= t and (w.restart_at is None or t < w.restart_at):
                return w
        return None

    async def run(self, kill_points: list[int], outages: list[float]) -> None:
        """Work through every write; after `kill_points[i]` answers, crash the database and
        bring it back `outages[i]` seconds later."""
        crashes: list[asyncio.Task[None]] = []
        points = deque(kill_points)
        downtime = deque(outages)
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        async with httpx.AsyncClient(
            base_url=self.url, headers=OPS, timeout=CLIENT_TIMEOUT_S, limits=limits
        ) as http:

            async def crash(down_for: float) -> None:
                window = Window(time.monotonic())
                await asyncio.to_thread(self.cluster.kill)
                window.killed_at = time.monotonic()  # from here on nothing can commit
                self.windows.append(window)
                # Probes agree while it is down: not ready, and never a 500.
                r = await http.get("/readyz")
                if r.status_code != 503 or problem_code(r) != "retry_later":
                    self.tally.wrong.append(f"/readyz while down: {r.status_code} {r.text}")
                await asyncio.sleep(down_for)
                window.restart_at = time.monotonic()
                await asyncio.to_thread(self.cluster.start)
                window.back_at = time.monotonic()

            async def reader() -> None:
                """Reads meanwhile: 200, or 503 retry_later while the database is away."""
                paths = [
                    "/v1/products/CR-F1",
                    "/v1/orders?limit=5",
                    "/v1/events?limit=5",
                    "/v1/backorders?sku=CR-P1",
                    "/readyz",
                ]
                n = 0
                while self.pending or any(not c.done() for c in crashes):
                    n += 1
                    r = await http.get(paths[n % len(paths)])
                    self.tally.reads += 1
                    if r.status_code != 200 and (r.status_code, problem_code(r)) != (
                        503,
                        "retry_later",
                    ):
                        self.tally.wrong.append(f"GET {r.request.url}: {r.status_code} {r.text}")
                    await asyncio.sleep(0.05)

            async def worker() -> None:
                while self.pending or any(not c.done() for c in crashes):
                    if not self.pending:
                        await asyncio.sleep(0.05)
                        continue
                    op = self.pending.popleft()
                    await self.send(http, op)
                    # The next crash once this many writes have settled, and the last crash
                    # is over (its restart done).
                    if points and self.settled >= points[0] and all(c.done() for c in crashes):
                        points.popleft()
                        crashes.append(asyncio.create_task(crash(downtime.popleft())))

            await asyncio.gather(reader(), *(worker() for _ in range(CLIENTS)))
            await asyncio.gather(*crashes)

    async def send(self, http: httpx.AsyncClient, op: Op) -> None:
        op.attempts += 1
        assert op.attempts <= MAX_ATTEMPTS, (op.kind, op.key, "never settled")
        sent = time.monotonic()
        try:
            r = await http.post(op.path, json=op.body, headers={"Idempotency-Key": op.key})
        except httpx.TimeoutException as exc:
            self.tally.hangs += 1
            self.tally.wrong.append(f"{op.kind} {op.key}: no answer in {CLIENT_TIMEOUT_S}s {exc!r}")
            self.pending.append(op)
            return
        except httpx.TransportError as exc:  # `serve` itself must not go away
            self.tally.wrong.append(f"{op.kind} {op.key}: {exc!r}")
            self.pending.append(op)
            return
        answered = time.monotonic()
        self.tally.requests += 1
        code = problem_code(r)
        if r.status_code >= 500:
            self.tally.status_5xx += 1
        window = self.down_at(sent)
        if window is not None and window is self.down_at(answered) and window.killed_at <= sent:
            self.tally.while_down[f"{r.status_code}:{code}"] += 1
        if r.status_code == 503 and code == "retry_later":
            if "Retry-After" not in r.headers:
                self.tally.wrong.append(f"503 without Retry-After: {r.text}")
            self.tally.retry_later += 1
            op.transient += 1
            await asyncio.sleep(min(0.25, 0.02 * op.transient))  # the client's back-off
            self.pending.append(op)
            return
        if (r.status_code, code) == (409, "idempotency_key_in_use"):
            op.transient += 1
            await asyncio.sleep(0.05)
            self.pending.append(op)
            return
        op.answer = r
        self.settled += 1
        for w in self.windows:
            if w.back_at is not None and w.recovered_at is None and r.status_code < 300:
                w.recovered_at = answered
        ok = r.status_code in SETTLED[op.kind]
        if op.kind == "order" and r.status_code == 409:
            ok = code == "insufficient_stock" and [x["sku"] for x in r.json()["lines"]] == ["CR-NB"]
        if not ok:
            self.tally.wrong.append(f"{op.kind} {op.key}: {r.status_code} {r.text[:300]}")
        elif op.kind == "order" and r.status_code == 201 and op.cancel_later:
            oid = r.json()["id"]
            self.add(Op("cancel", f"/v1/orders/{oid}/cancel", {"reason": "crash"}, f"cx-{oid}"))


def _webhook_backlog(database_url: str, received: set[int]) -> list[int]:
    with psycopg.connect(database_url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM event WHERE type = 'order.created'")]
    return sorted(set(ids) - received)


async def database_crash_storm(
    where: str, *, seed: int, operations: int, kills: int, name: str
) -> None:
    figures = SoakFigures(name, kills=0)
    rng = random.Random(seed)
    ops = plan(rng, operations)
    share = max(2, operations // (kills + 1))
    kill_points = sorted(rng.randint(share * i + 1, share * (i + 1)) for i in range(kills))
    outages = [rng.uniform(0.3, 2.0) for _ in range(kills)]
    initial = {sku: rng.randint(0, 12) for sku in SKUS}

    home = Path(tempfile.mkdtemp(prefix="backorder-dbcrash-"))
    env = {
        "BACKORDER_WEBHOOK_WORKER": "true",
        "BACKORDER_WEBHOOK_POLL_INTERVAL_S": "0.2",
        "BACKORDER_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",  # the receiver is on 127.0.0.1
    }
    cluster: Cluster | None = None
    if where == "external":
        cluster = Cluster.throwaway()
        server = ServerProcess(cluster.url, workers=2, env=env)
    else:
        server = ServerProcess(None, workers=2, env={**env, "BACKORDER_DATA_DIR": str(home)})
    receiver = Receiver()
    tally = Tally()
    clean = False
    try:
        hooks = await receiver.start()
        server.start()
        if cluster is None:
            cluster = Cluster.of_embedded(home)
        database_url = cluster.url
        async with httpx.AsyncClient(base_url=server.url, headers=OPS, timeout=30) as http:
            for sku, (strategy, backorders) in SKUS.items():
                await setup_product(
                    http,
                    sku,
                    initial[sku],
                    allocation_strategy=strategy,
                    backorders_allowed=backorders,
                )
            r = await http.post(
                "/v1/webhook-endpoints", json={"url": hooks, "event_types": ["order.created"]}
            )
            assert r.status_code == 201, r.text
        storm = Storm(server.url, cluster, tally)
        for op in ops:
            storm.add(op)
        started = time.monotonic()
        await storm.run(kill_points, outages)
        figures.extra["storm_seconds"] = round(time.monotonic() - started, 1)
        assert server.running, server.log_tail()  # `serve` was never restarted
        figures.kills = cluster.kills

        # The webhook worker resumed: every order's `order.created` reaches the receiver.
        deadline = time.monotonic() + WEBHOOK_WAIT_S
        while backlog := _webhook_backlog(database_url, receiver.ids):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        figures.extra["webhooks_undelivered"] = len(backlog)
        figures.extra["webhook_deliveries"] = receiver.deliveries

        found = audit(database_url, storm.ops, initial)
        checked = check_invariants(database_url)
        replay = check_queue_order(database_url)
        retried = [op for op in storm.ops if op.transient]
        figures.requests = tally.requests
        figures.status_5xx = tally.status_5xx - tally.retry_later  # 503 retry_later is asked for
        figures.lost_writes = found.lost
        figures.duplicated_writes = found.duplicated
        figures.add_invariants(checked)
        figures.extra |= {
            "where": where,
            "seed": seed,
            "writes": len(storm.ops),
            "answered_503_retry_later": tally.retry_later,
            "answers_while_down": dict(tally.while_down),
            "writes_retried": len(retried),
            # a write answered 503 whose retry replayed: it had committed as the database died
            "settled_by_replay": sum(
                op.settled().headers.get("Idempotent-Replayed") == "true" for op in retried
            ),
            "hangs": tally.hangs,
            "reads": tally.reads,
            # from PostgreSQL accepting connections again to the service's first 2xx
            "slowest_recovery_s": round(
                max((w.recovered_at or float("inf")) - (w.back_at or 0) for w in storm.windows),
                2,
            ),
        } | replay.figures()
        figures.print()

        assert not tally.wrong, tally.wrong[:20]
        assert figures.status_5xx == 0
        assert set(tally.while_down) == {"503:retry_later"}, tally.while_down  # and some were
        assert cluster.kills == kills
        # It recovered by itself, promptly: within a pool's worth of failed checkouts.
        assert figures.extra["slowest_recovery_s"] < 15, storm.windows
        assert not backlog, f"{len(backlog)} order.created events never delivered: {backlog[:10]}"
        assert (found.lost, found.duplicated, found.problems) == (0, 0, []), found
        assert checked["oversold_units"] == 0 and checked["violation_total"] == 0, checked
        assert not replay.mismatches, replay.mismatches
        assert replay.units_filled > 0 and replay.waiting_lines_at_end > 0, replay
        clean = True
    finally:
        await receiver.close()
        server.stop()
        if cluster is not None and where == "external":
            cluster.remove()
        if clean:
            server.log.unlink(missing_ok=True)
        else:
            print(f"serve's log: {server.log}")
        with contextlib.suppress(OSError):
            shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("where", ["embedded", "external"])
@pytest.mark.parametrize(
    ("seed", "operations", "kills"),
    [(61, 160, 2), pytest.param(62, 2400, 20, marks=pytest.mark.slow)],
    ids=["ci", "soak"],
)
async def test_sigkill_of_postgresql_mid_storm_answers_503_and_recovers_by_itself(
    where: str, seed: int, operations: int, kills: int, soak: bool
) -> None:
    if soak:
        seed, operations = soak_seed(seed), soak_size(operations, least=160)
        kills = soak_size(kills, least=2)
    await database_crash_storm(
        where,
        seed=seed,
        operations=operations,
        kills=kills,
        name=f"test_database_crash[{where},seed={seed},kills={kills}]",
    )
