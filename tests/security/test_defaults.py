"""Defaults that hold out a leaked key, a framing page, a cache and a flood of headers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from httpx import AsyncClient
from pydantic import ValidationError

from backorder import cli
from backorder.api import ratelimit
from backorder.api.protocol import MAX_HEAD_BYTES
from backorder.config import Settings
from tests.support.api import OPS
from tests.support.live import free_port


class Clock:
    def __init__(self) -> None:
        self.ns = 10**12

    def __call__(self) -> int:
        return self.ns


def test_the_default_rate_limit_serves_a_busy_storefront_but_bursts_only_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("BACKORDER_RATE_LIMIT_PER_MINUTE", "BACKORDER_RATE_LIMIT_BURST_S"):
        monkeypatch.delenv(name, raising=False)
    clock = Clock()
    monkeypatch.setattr(ratelimit, "monotonic_ns", clock)
    settings = Settings()
    limiter = ratelimit.RateLimiter(settings.rate_limit_per_minute, 1, settings.rate_limit_burst_s)
    admitted = 0
    with pytest.raises(ratelimit.RateLimited):
        for _ in range(10_000):
            limiter.check("leaked-key")
            admitted += 1
    assert admitted == 500  # five seconds' worth at once, not a minute's 60,000
    clock.ns += 10**9  # a second later: a hundred more
    for _ in range(100):
        limiter.check("leaked-key")
    with pytest.raises(ratelimit.RateLimited):
        limiter.check("leaked-key")
    assert settings.rate_limit_per_minute == 6_000  # 100 a second, sustained


def test_a_master_key_shorter_than_32_characters_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(master_key="x" * 31)
    Settings(master_key="x" * 32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKORDER_")}
    env.update(
        BACKORDER_MASTER_KEY="short-but-memorable", DATABASE_URL="postgresql://x@127.0.0.1:1/x"
    )
    r = subprocess.run(
        [sys.executable, "-m", "backorder.cli", "serve", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode != 0
    assert "BACKORDER_MASTER_KEY must be at least 32 characters" in r.stderr
    assert "Traceback" not in r.stderr


async def test_api_answers_are_never_cached_nor_sniffed(client: AsyncClient) -> None:
    for path, headers in (("/v1/products", OPS), ("/v1/products", {}), ("/v1/nowhere", OPS)):
        r = await client.get(path, headers=headers)
        assert r.headers["cache-control"] == "no-store", path
        assert r.headers["x-content-type-options"] == "nosniff", path
    for path in ("/healthz", "/openapi.json", "/metrics"):
        r = await client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path


async def test_the_html_pages_cannot_be_framed_and_run_only_their_own_scripts(
    client: AsyncClient,
) -> None:
    for path in ("/docs", "/redoc"):
        r = await client.get(path)
        assert r.status_code == 200
        assert r.headers["x-frame-options"] == "DENY"
        csp = dict(
            part.strip().split(" ", 1) for part in r.headers["content-security-policy"].split(";")
        )
        assert csp["frame-ancestors"] == "'none'"
        assert csp["default-src"] == "'none'"
        assert csp["script-src"] == "'self'"  # no inline script, no other host
        assert "'self'" in csp["connect-src"]
        assert "*" not in r.headers["content-security-policy"]
        assert "http" not in r.headers["content-security-policy"]
    init = await client.get("/docs/swagger-ui-init.js")  # the key is not kept in the browser
    assert '"persistAuthorization":false' in init.text


def test_serve_bounds_connections_and_request_heads(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BACKORDER_MASTER_KEY", "m" * 40)
    monkeypatch.setenv("BACKORDER_WORKER_PROCESSES", "1")  # serve sets it: restored after
    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert cli.main(["serve", "--port", str(free_port())]) == 0
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert seen["limit_concurrency"] == 1000
    assert seen["http"] == "backorder.api.protocol:BoundedHttpToolsProtocol"
    assert seen["h11_max_incomplete_event_size"] == MAX_HEAD_BYTES
    assert seen["server_header"] is False


@pytest.fixture
def bounded_server() -> Iterator[int]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"served"})

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http="backorder.api.protocol:BoundedHttpToolsProtocol",
        log_level="error",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)  # waiting for the server thread to listen
    yield port
    server.should_exit = True
    thread.join(10)


def exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # Refused while sending: the answer was written first.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"served" in answer or b"431" in answer:
                break
        return answer


def test_a_5_mb_header_is_refused_before_it_is_read(bounded_server: int) -> None:
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (5 * 1024 * 1024) + b"\r\n\r\n"
    assert exchange(bounded_server, huge).startswith(b"HTTP/1.1 431 ")
    ordinary = b"GET / HTTP/1.1\r\nHost: x\r\nX-Ok: " + b"a" * 8000 + b"\r\n\r\n"
    assert exchange(bounded_server, ordinary).startswith(b"HTTP/1.1 200 ")
    body = b"a" * 900_000  # a large body is not a large head
    post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\n\r\n" + body
    assert exchange(bounded_server, post).startswith(b"HTTP/1.1 200 ")
