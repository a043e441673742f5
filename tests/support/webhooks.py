"""A webhook receiver on 127.0.0.1 and helpers to run the delivery worker against it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.config import Settings
from backorder.workers import webhooks as worker
from tests.support.api import OPS

WAIT_S = 20


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server. `script` gives each request's fate in turn: a status code,
    or "hang" (answer only once `release` is set); past its end, 200."""

    script: list[int | str] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            n = len(self.requests)
            self.requests.append(Received(headers, body))
            async with self.arrived:
                self.arrived.notify_all()
            fate = self.script[n] if n < len(self.script) else 200
            if fate == "hang":
                await self.release.wait()
                fate = 200
            writer.write(
                f"HTTP/1.1 {fate} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def wait_for_requests(self, n: int) -> None:
        async with asyncio.timeout(WAIT_S), self.arrived:
            await self.arrived.wait_for(lambda: len(self.requests) >= n)


@contextlib.asynccontextmanager
async def listening(rec: Receiver | None = None) -> AsyncIterator[Receiver]:
    """A receiver listening on 127.0.0.1 (an ephemeral port) until the block ends."""
    rec = rec or Receiver()
    server = await asyncio.start_server(rec.handle, "127.0.0.1", 0)
    rec.port = server.sockets[0].getsockname()[1]
    try:
        yield rec
    finally:
        rec.release.set()
        server.close()
        await server.wait_closed()


def fast_settings(settings: Settings) -> Settings:
    """Short polls and timeouts, few attempts: a test's worker."""
    return settings.model_copy(
        update={
            "webhook_poll_interval_s": 0.02,
            "webhook_timeout_s": 1.0,
            "webhook_max_attempts": 5,
        }
    )


class Running:
    """A worker task, stopped (and awaited) on exit."""

    def __init__(self, engine: AsyncEngine, settings: Settings, **options: Any) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(worker.run(engine, settings, self.stop, **options))

    async def __aenter__(self) -> Running:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 5)


async def endpoint(client: AsyncClient, url: str, event_types: list[str]) -> dict[str, Any]:
    r = await client.post(
        "/v1/webhook-endpoints", json={"url": url, "event_types": event_types}, headers=OPS
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def delivery_rows(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT id, endpoint_id, event_id, status, attempts, last_status_code, "
                "last_error, next_attempt_at, clock_timestamp() AS now FROM webhook_delivery "
                "ORDER BY id"
            )
        )
        return list(result)


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not await check():  # noqa: ASYNC110 (the condition is in the database)
            await asyncio.sleep(0.05)


def all_in(engine: AsyncEngine, status: str, count: int = 1) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        rows = await delivery_rows(engine)
        return len(rows) == count and all(r.status == status for r in rows)

    return check
