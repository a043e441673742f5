"""The webhook delivery worker: events become signed POSTs, at least once.

Each round:

1. **Fan-out.** In one transaction, lock the `worker_cursor` row (`SKIP LOCKED`: if another
   worker holds it, it is doing this step), read the settled events after it (see
   `db/webhooks.py` on why only settled ones), insert one `webhook_delivery` per matching
   endpoint and move the cursor past them. Either all of that commits or none does.
2. **Claim.** In a short transaction, take due deliveries with `FOR UPDATE SKIP LOCKED` and
   push their `next_attempt_at` forward: a lease. Many workers (one per API process, or
   `backorder worker`) can run side by side; none takes another's claim.
3. **Deliver.** POST each, outside any transaction, with a total timeout; then record the
   outcome: success, or a retry with exponential backoff and jitter, or `failed` after the
   last allowed attempt.

A worker that dies mid-delivery leaves its leases to run out, after which another worker
delivers again: at least once. A worker asked to stop (`stop` set) abandons its in-flight
POSTs at once and hands their claims back, so a restart delivers them without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backorder import __version__
from backorder.config import Settings
from backorder.db import webhooks as rows
from backorder.db.engine import run_transaction
from backorder.services.webhooks import event_body, sign

log = logging.getLogger("backorder.webhooks")

CURSOR = "webhooks"
FAN_OUT_BATCH = 1000
FAN_OUT_ROUNDS = 10  # per cycle, so that deliveries are not starved by a long backlog
CONCURRENCY = 16
ERROR_PAUSE_CAP_S = 30.0
USER_AGENT = f"backorder-webhooks/{__version__}"


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


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


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

    async def run(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        errors = 0
        await self._tx(lambda conn: rows.ensure_cursor(conn, CURSOR), stop)
        while not stop.is_set():
            try:
                busy = await self.cycle(client, stop)
                errors = 0
            except Exception:  # the loop outlives a database outage or a bug in one round
                errors += 1
                log.exception("webhook worker round failed; pausing")
                busy = False
            if not busy:
                pause = self.settings.webhook_poll_interval_s
                if errors:
                    pause = min(ERROR_PAUSE_CAP_S, pause * 2**errors)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=pause)

    async def cycle(self, client: httpx.AsyncClient, stop: asyncio.Event) -> bool:
        """One fan-out and one batch of deliveries; True if more work is likely waiting."""
        fanned = 0
        for _ in range(FAN_OUT_ROUNDS):
            n = await run_transaction(
                self.engine, lambda conn: rows.fan_out(conn, CURSOR, FAN_OUT_BATCH)
            )
            fanned += n
            if n < FAN_OUT_BATCH or stop.is_set():
                break
        if stop.is_set():
            return False
        claims = await run_transaction(
            self.engine, lambda conn: rows.claim_due(conn, self.concurrency, self.lease_s)
        )
        if claims:
            await self.deliver_all(client, claims, stop)
        return fanned >= FAN_OUT_BATCH * FAN_OUT_ROUNDS or len(claims) >= self.concurrency

    async def deliver_all(
        self, client: httpx.AsyncClient, claims: list[Any], stop: asyncio.Event
    ) -> None:
        tasks = {asyncio.create_task(self.deliver(client, c)): c for c in claims}
        stopping = asyncio.create_task(stop.wait())
        pending: set[asyncio.Task[Any]] = set(tasks)
        try:
            while pending:
                done, _ = await asyncio.wait(
                    pending | {stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                pending -= done
                if stopping in done:
                    break
        finally:
            # On a stop, and also when this task is itself cancelled (treated like a crash:
            # the leases then run out instead of being handed back).
            stopping.cancel()
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            interrupted = [(tasks[t].id, tasks[t].attempts) for t in pending]
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
        outcome = await self.post(client, claim)
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
            ),
        )

    async def post(self, client: httpx.AsyncClient, claim: Any) -> Outcome:
        body = event_body(claim.event_id, claim.type, claim.created_at, claim.data)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Webhook-Id": str(claim.event_id),
            "Webhook-Signature": sign(claim.secret, body),
        }
        timeout = self.settings.webhook_timeout_s
        try:
            async with asyncio.timeout(timeout):
                # Streamed and never read: the answer's status is all that counts, and a
                # receiver cannot make the worker buffer a large body.
                async with client.stream("POST", claim.url, content=body, headers=headers) as r:
                    status = r.status_code
        except TimeoutError:
            return Outcome(None, f"timed out after {timeout:g}s")
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= status < 300:
            return Outcome(status, None)
        return Outcome(status, f"HTTP {status}")

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
    """
    worker = Worker(
        engine,
        settings,
        backoff=backoff or Backoff.for_settings(settings),
        lease_s=lease_s if lease_s is not None else settings.webhook_timeout_s + 60.0,
        concurrency=concurrency,
    )
    async with httpx.AsyncClient(
        transport=transport,
        timeout=settings.webhook_timeout_s,
        follow_redirects=False,
    ) as client:
        await worker.run(client, stop)
