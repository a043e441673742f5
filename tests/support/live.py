"""A real `backorder serve` process (uvicorn, several workers) for tests over a socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.api import MASTER_KEY

# Bounded wait for /readyz; raise it on a crowded machine (BACKORDER_TEST_READY_TIMEOUT).
READY_TIMEOUT_S = float(os.environ.get("BACKORDER_TEST_READY_TIMEOUT", "30"))
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(base_url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer yet"
    with httpx.Client(base_url=base_url, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"backorder serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
                )
            try:
                r = http.get("/readyz")
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:200]}"
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(0.2)  # polling a readiness probe, not synchronising test steps
    raise RuntimeError(
        f"backorder serve not ready after {READY_TIMEOUT_S}s ({last}):\n{log.read_text()[-4000:]}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def live_server(database_url: str, *, workers: int = 2) -> Iterator[str]:
    """Start `backorder serve` on a free port against `database_url`; yield its base URL."""
    exe = Path(sys.executable).parent / "backorder"
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BACKORDER_MASTER_KEY": MASTER_KEY,
        "BACKORDER_WEBHOOK_WORKER": "false",
        "BACKORDER_LOG_LEVEL": "WARNING",
    }
    log = Path(tempfile.mkstemp(prefix="backorder-serve-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(exe),
                "serve",
                "--workers",
                str(workers),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base_url, proc, log)
        yield base_url
    finally:
        _stop(proc)
