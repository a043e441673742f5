"""Deadlines passing in the middle of a storm: a real `serve` (two workers, each with its own
expiry watch every 0.2 s) expires orders while orders, restocks and cancels race it.

What must hold: every order whose deadline passed with units waiting is expired exactly once
(one `order.backorder_expired`, none for an order that stopped waiting in time), it keeps what
its policy says it keeps, the queue is served in order through all of it (the expiry frees a
`complete` order's units to the next in line), and the invariants hold at the end.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import psycopg

from tests.concurrency.test_hot_sku import bounded, client, setup_product
from tests.support.invariants import assert_invariants
from tests.support.live import killable_server
from tests.support.queue_order import check_queue_order

SKUS = ("DL-A", "DL-B", "DL-C")
ORDERS = 160
WATCH_TIMEOUT_S = 60.0


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _waiting_with_deadline(database_url: str) -> int:
    """Waiting lines with a deadline (every order here has one): what the watch will expire
    once their deadline passes, unless stock comes first."""
    with psycopg.connect(_plain(database_url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM backorder_queue WHERE deadline IS NOT NULL"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _event_counts(database_url: str, kind: str) -> Counter[str]:
    with psycopg.connect(_plain(database_url)) as conn:
        rows = conn.execute(
            "SELECT data->>'order_id' FROM event WHERE type = %s", (kind,)
        ).fetchall()
    return Counter(r[0] for r in rows)


async def test_deadlines_that_pass_mid_storm_expire_each_order_once(database_url: str) -> None:
    rng = random.Random(20261206)
    env = {"BACKORDER_EXPIRY_WORKER": "true", "BACKORDER_EXPIRY_INTERVAL_S": "0.2"}
    with killable_server(database_url, workers=2, env=env) as server:
        async with client(server.url) as http:
            for sku in SKUS:
                await setup_product(http, sku, rng.randint(5, 15))

            def order_body(n: int) -> tuple[float, dict[str, Any]]:
                # A deadline 2 to 5 s after the order is sent: most pass while the storm runs.
                picked = rng.sample(SKUS, rng.randint(1, 2))
                return 2 + 3 * rng.random(), {
                    "customer_id": f"c-{n}",
                    "ship_policy": rng.choice(["partial", "complete"]),
                    "lines": [{"sku": s, "quantity": rng.randint(1, 4)} for s in picked],
                }

            async def send(wait_s: float, body: dict[str, Any]) -> httpx.Response:
                deadline = datetime.now(UTC) + timedelta(seconds=wait_s)
                return await http.post(
                    "/v1/orders", json={**body, "backorder_deadline": deadline.isoformat()}
                )

            bodies = [order_body(n) for n in range(ORDERS)]
            placed = await bounded([partial(send, *b) for b in bodies])
            assert all(r.status_code == 201 for r in placed), [
                r.text for r in placed if r.status_code != 201
            ][:3]
            orders = [r.json() for r in placed]
            # Stock and cancellations keep arriving while the deadlines pass.
            calls: list[Callable[[], Awaitable[httpx.Response]]] = []
            for _ in range(60):
                path = f"/v1/products/{rng.choice(SKUS)}/restocks"
                calls.append(partial(http.post, path, json={"quantity": rng.randint(1, 3)}))
            for order in rng.sample(orders, 25):
                calls.append(partial(http.post, f"/v1/orders/{order['id']}/cancel"))
            rng.shuffle(calls)
            answers: list[httpx.Response] = []
            for i in range(0, len(calls), 10):  # spread over the deadlines' window
                answers += await bounded(calls[i : i + 10])
                await asyncio.sleep(0.3)
            assert all(r.status_code < 500 for r in answers), [r.text for r in answers]
            assert {r.status_code for r in answers} <= {200, 201, 409}

            # Every deadline passes within seconds: the watch ends every wait, on its own.
            for _ in range(int(WATCH_TIMEOUT_S / 0.2)):  # bounded
                if not _waiting_with_deadline(database_url):
                    break
                await asyncio.sleep(0.2)
            assert _waiting_with_deadline(database_url) == 0
            final = {o["id"]: (await http.get(f"/v1/orders/{o['id']}")).json() for o in orders}

    expired = _event_counts(database_url, "order.backorder_expired")
    assert expired, "no deadline passed with units waiting: the storm proved nothing"
    assert max(expired.values()) == 1, [o for o, n in expired.items() if n > 1]
    for order_id, order in final.items():
        assert order["backordered"] == 0  # every deadline has passed: nothing waits any more
        if order_id in expired and order["ship_policy"] == "complete":
            assert order["allocated"] == 0, order  # a complete order ships whole or not at all
    with psycopg.connect(_plain(database_url)) as conn:
        reasons = Counter(
            r[0]
            for r in conn.execute(
                "SELECT data->>'reason' FROM event WHERE type = 'order.line_cancelled'"
            ).fetchall()
        )
    assert reasons["deadline"] >= len(expired)
    complete = sum(final[o]["ship_policy"] == "complete" for o in expired)
    print(
        f"deadline storm: {len(expired)} of {ORDERS} orders expired ({complete} complete), "
        f"{reasons['deadline']} lines cancelled by deadline"
    )
    assert_invariants(database_url)
    # Every fill in queue order, the expiries' included (the queue ends empty here: every
    # deadline passed).
    replay = check_queue_order(database_url)
    assert not replay.mismatches, replay.mismatches
    assert replay.units_filled > 0 and replay.cancellations > 0, replay
