"""The webhook delivery worker: events become signed POSTs, at least once.

The worker runs three things in one loop:

1. **Fan-out.** In one transaction, lock the `worker_cursor` row (`SKIP LOCKED`: if another
   worker holds it, it is doing this step), read the settled events after it (see
   `db/feed.py` on why only settled ones), insert one `webhook_delivery` per matching
   endpoint and move the cursor past them. Either all of that commits or none does.
2. **Claim.** Whenever a delivery slot is free, in a short transaction, take due deliveries
   with `FOR UPDATE SKIP LOCKED` and push their `next_attempt_at` forward: a lease. Many
   workers (one per API process, or `backorder worker`) can run side by side; none takes
   another's claim.
3. **Deliver.** POST each, outside any transaction, with a total timeout; then record the
   outcome: success, or a retry with exponential backoff and jitter, or `failed` after the
   last allowed attempt.

It is a continuous pool, not a batch: a slot freed by one delivery is refilled at once, so
one slow receiver holds one slot per request, never the others' deliveries. Each endpoint
has at most `webhook_endpoint_concurrency` deliveries in flight (per worker), and a circuit
breaker: after `CIRCUIT_THRESHOLD` failures in a row it is left alone for a while (doubling,
capped), then probed with one delivery. Its deliveries wait meanwhile without spending
attempts.

A worker that dies mid-delivery leaves its leases to run out, after which another worker
delivers again: at least once. A worker asked to stop (`stop` set) abandons its in-flight
POSTs at once and hands their claims back, so a restart delivers them without waiting.

Outbound requests go through `services/webhook_egress.py`: public addresses only (unless
allowed), the vetted address connected to, no proxies from the environment, no redirects.
What an attempt records is coarse ("timeout", "connection failed", "HTTP 503").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backorder.config import Settings
from backorder.db import webhook_queue as rows
from backorder.db.engine import run_transaction
from backorder.services import webhook_egress
from backorder.services.webhook_egress import post
from backorder.services.webhooks import event_body, sign

log = logging.getLogger("backorder.webhooks")

CURSOR = "webhooks"
FAN_OUT_BATCH = 1000
FAN_OUT_ROUNDS = 10  # per turn, so that deliveries are not starved by a long backlog
CONCURRENCY = 16
ERROR_PAUSE_CAP_S = 30.0
CIRCUIT_THRESHOLD = 5  # failures in a row that open an endpoint's circuit
CIRCUIT_OPEN_CAP_S = 600.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry n (n = attempts made): base * 2^(n-1), capped, with equal jitter
    (between half and all of it) so that many failing deliveries do not retry in step."""

    base_s: float
    cap_s: float = 3600.0

    def delay(self, attempts: int) -> float:
        full = min(self.cap_s, self.base_s * 2.0 ** max(0, attempts - 1))
        return full / 2 + random.uniform(0, full / 2)

    @classmethod
    def for_settings(cls, settings: Settings) -> Backoff:
        # Ten polls: 5 s with the default poll interval (5, 10, 20 ... s), and a short
        # schedule wherever a short poll interval is configured (tests).
        return cls(base_s=10 * settings.webhook_poll_interval_s)


class Worker:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        *,
        backoff: Backoff,
        lease_s: float,
        concurrency: int,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.backoff = backoff
        self.lease_s = lease_s
        self.concurrency = concurrency
        self.in_flight: dict[asyncio.Task[None], Any] = {}
        self.per_endpoint: Counter[UUID] = Counter()
        self.slot_freed = asyncio.Event()

    async def run(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        await self._tx(lambda conn: rows.ensure_cursor(conn, CURSOR), stop)
        errors = 0
        next_fan_out = 0.0
        try:
            while not stop.is_set():
                more = False
                try:
                    if time.monotonic() >= next_fan_out:
                        backlog = await self.fan_out(stop)
                        pause = 0.0 if backlog else self.settings.webhook_poll_interval_s
                        next_fan_out = time.monotonic() + pause
                        more = backlog
                    more = await self.claim(client) or more
                    errors = 0
                except Exception:  # the loop outlives a database outage or a bug in one turn
                    errors += 1
                    log.exception("webhook worker turn failed; pausing")
                if more and not errors and len(self.in_flight) < self.concurrency:
                    continue
                pause = self.settings.webhook_poll_interval_s
                if errors:
                    pause = min(ERROR_PAUSE_CAP_S, pause * 2**errors)
                await self._wait(stop, pause, wake_on_slot=not errors)
        finally:
            await self._abandon(stop.is_set())

    async def fan_out(self, stop: asyncio.Event) -> bool:
        """Fan out the settled events; True if a backlog remains."""
        for _ in range(FAN_OUT_ROUNDS):
            n = await run_transaction(
                self.engine, lambda conn: rows.fan_out(conn, CURSOR, FAN_OUT_BATCH)
            )
            if n < FAN_OUT_BATCH or stop.is_set():
                return False
        return True

    async def claim(self, client: httpx.AsyncClient) -> bool:
        """Fill the free slots with due deliveries; True if they were all filled."""
        free = self.concurrency - len(self.in_flight)
        if free <= 0:
            return False
        busy = {k: v for k, v in self.per_endpoint.items() if v > 0}
        claims = await run_transaction(
            self.engine,
            lambda conn: rows.claim_due(
                conn,
                limit=free,
                lease_s=self.lease_s,
                per_endpoint=self.settings.webhook_endpoint_concurrency,
                busy=busy,
                threshold=CIRCUIT_THRESHOLD,
                max_attempts=self.settings.webhook_max_attempts,
            ),
        )
        for c in claims:
            self.per_endpoint[c.endpoint_id] += 1
            task = asyncio.create_task(self.deliver(client, c))
            self.in_flight[task] = c
            task.add_done_callback(self._done)
        return len(claims) >= free

    def _done(self, task: asyncio.Task[None]) -> None:
        claim = self.in_flight.pop(task, None)
        if claim is not None:
            self.per_endpoint[claim.endpoint_id] -= 1
            if self.per_endpoint[claim.endpoint_id] <= 0:
                del self.per_endpoint[claim.endpoint_id]
        self.slot_freed.set()

    async def _wait(self, stop: asyncio.Event, pause_s: float, *, wake_on_slot: bool) -> None:
        """Until `pause_s` passed, `stop`, or (if asked) a delivery slot frees up."""
        self.slot_freed.clear()
        waits = [asyncio.create_task(stop.wait())]
        if wake_on_slot:
            waits.append(asyncio.create_task(self.slot_freed.wait()))
        try:
            await asyncio.wait(waits, timeout=pause_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _abandon(self, stopping: bool) -> None:
        """Cancel the deliveries in flight. On a stop their claims are handed back; when this
        task is itself cancelled (treated like a crash) the leases run out instead."""
        pending = dict(self.in_flight)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if stopping and pending:
            interrupted = [(c.id, c.attempts) for c in pending.values()]
            with contextlib.suppress(Exception):
                await run_transaction(
                    self.engine,
                    lambda conn: rows.release(conn, interrupted, "interrupted: the worker stopped"),
                )

    async def deliver(self, client: httpx.AsyncClient, claim: Any) -> None:
        try:
            await self._deliver(client, claim)
        except Exception:  # the lease runs out and another attempt follows
            log.exception("recording a webhook delivery failed", extra={"delivery_id": claim.id})

    async def _deliver(self, client: httpx.AsyncClient, claim: Any) -> None:
        body = event_body(claim.event_id, claim.type, claim.created_at, claim.data)
        outcome = await post(
            client,
            claim.url,
            body,
            webhook_id=str(claim.event_id),
            signature=sign(claim.secret, body, previous=claim.previous_secret),
            timeout_s=self.settings.webhook_timeout_s,
        )
        if outcome.ok:
            code = outcome.status_code or 0
            await run_transaction(
                self.engine,
                lambda conn: rows.record_success(conn, claim.id, claim.attempts, code),
            )
            return
        delay = self.backoff.delay(claim.attempts)
        final = claim.attempts >= self.settings.webhook_max_attempts
        log.info(
            "webhook delivery failed",
            extra={
                "delivery_id": claim.id,
                "event_id": claim.event_id,
                "attempts": claim.attempts,
                "status_code": outcome.status_code,
                "error": outcome.error,
                "final": final,
            },
        )
        await run_transaction(
            self.engine,
            lambda conn: rows.record_failure(
                conn,
                claim.id,
                claim.attempts,
                code=outcome.status_code,
                error=outcome.error or "failed",
                delay_s=delay,
                max_attempts=self.settings.webhook_max_attempts,
                threshold=CIRCUIT_THRESHOLD,
                open_base_s=self.backoff.base_s,
                open_cap_s=CIRCUIT_OPEN_CAP_S,
            ),
        )

    async def _tx(
        self, work: Callable[[AsyncConnection], Awaitable[Any]], stop: asyncio.Event
    ) -> None:
        """Run a set-up transaction, retrying until it works or the worker is stopped."""
        errors = 0
        while not stop.is_set():
            try:
                await run_transaction(self.engine, work)
                return
            except Exception:
                errors += 1
                log.exception("webhook worker cannot reach the database; retrying")
                pause = min(ERROR_PAUSE_CAP_S, self.settings.webhook_poll_interval_s * 2**errors)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=pause)


async def run(
    engine: AsyncEngine,
    settings: Settings,
    stop: asyncio.Event,
    *,
    backoff: Backoff | None = None,
    lease_s: float | None = None,
    concurrency: int = CONCURRENCY,
    transport: httpx.AsyncBaseTransport | None = None,
) -> None:
    """Deliver webhooks until `stop` is set; returns promptly once it is.

    The lease outlasts a whole attempt (the POST's timeout plus recording its outcome).
    `transport` replaces the vetted one (tests that answer in-process).
    """
    worker = Worker(
        engine,
        settings,
        backoff=backoff or Backoff.for_settings(settings),
        lease_s=lease_s if lease_s is not None else settings.webhook_timeout_s + 60.0,
        concurrency=concurrency,
    )
    async with webhook_egress.client(
        allow_private=settings.webhook_allow_private_networks,
        timeout_s=settings.webhook_timeout_s,
        transport=transport,
    ) as client:
        await worker.run(client, stop)
