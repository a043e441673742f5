"""Starting and stopping the servers under test: `backorder serve` and the ceiling app."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A server process on 127.0.0.1 that is ready when `ready_path` answers 200."""

    def __init__(self, cmd: list[str], env: dict[str, str], ready_path: str, port: int, log: Path):
        self.cmd, self.env, self.log = cmd, env, log
        self.base = f"http://127.0.0.1:{port}"
        self.ready_url = self.base + ready_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout_s: float = 180) -> str:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.cmd[0]} exited early:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(self.ready_url, timeout=2).status_code == 200:
                    return self.base
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.cmd[0]} not ready:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.2)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start the server (if not started yet) and stop it on the way out."""
    try:
        if server.proc is None:
            server.start()
        yield server
    finally:
        server.stop()


def service(database_url: str, data_dir: Path, workers: int = 2) -> tuple[Server, str]:
    """`backorder serve --workers N` on 127.0.0.1 (not started yet), and its master key."""
    port = free_port()
    master = "bench-master-" + secrets.token_urlsafe(16)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BACKORDER_DATA_DIR": str(data_dir),
        "BACKORDER_MASTER_KEY": master,
        "BACKORDER_WEBHOOK_WORKER": "false",
        "BACKORDER_RATE_LIMIT_PER_MINUTE": "0",  # the load is one key on purpose
    }
    cmd = [
        str(BIN / "backorder"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return Server(cmd, env, "/readyz", port, data_dir / "service.log"), master


def ceiling_app(dsn: str, data_dir: Path, workers: int = 2, pool_size: int = 8) -> Server:
    """bench/ceiling_app.py on the same uvicorn settings as `backorder serve` (not started)."""
    port = free_port()
    env = {**os.environ, "BENCH_CEILING_DSN": dsn, "BENCH_CEILING_POOL": str(pool_size)}
    cmd = [
        str(BIN / "python"),
        "-m",
        "uvicorn",
        "bench.ceiling_app:app",
        "--app-dir",
        str(ROOT),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return Server(cmd, env, "/hello", port, data_dir / "ceiling.log")
