"""A real `backorder serve` process (uvicorn, several workers) for tests over a socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
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


class ServerProcess:
    """A `backorder serve` in a process group of its own, which a test may SIGKILL at any
    moment (uvicorn master, workers and all) and start again on the same database.

    Each start takes a fresh free port (`url` follows it) and a fresh Prometheus
    multiprocess directory, so that nothing a killed run left behind leaks into the next.
    """

    def __init__(
        self, database_url: str | None, *, workers: int = 2, env: dict[str, str] | None = None
    ) -> None:
        """`database_url` None: `serve` starts the embedded PostgreSQL of the data directory
        that `env` names in BACKORDER_DATA_DIR."""
        self.database_url = database_url
        self.workers = workers
        self.env = dict(env or {})  # extra settings, e.g. BACKORDER_TRANSACTION_ATTEMPTS
        self.starts = 0
        self.kills = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._metrics_dir: Path | None = None
        self._url: str | None = None
        self.log = Path(tempfile.mkstemp(prefix="backorder-serve-", suffix=".log")[1])

    @property
    def url(self) -> str:
        if self._url is None or not self.running:
            raise RuntimeError("the server is not running")
        return self._url

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> str:
        """Start the server and wait for /readyz; answer its base URL."""
        if self.running:
            raise RuntimeError("the server is already running")
        exe = Path(sys.executable).parent / "backorder"
        port = free_port()
        self._metrics_dir = Path(tempfile.mkdtemp(prefix="backorder-test-metrics-"))
        env = {
            **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
            **({"DATABASE_URL": self.database_url} if self.database_url else {}),
            "BACKORDER_MASTER_KEY": MASTER_KEY,
            "BACKORDER_WEBHOOK_WORKER": "false",
            # Servers of a test run share its database: a deadline watch of one would expire
            # orders another test set up to expire with its own pass. A test of the watch
            # turns it on.
            "BACKORDER_EXPIRY_WORKER": "false",
            "BACKORDER_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
            "BACKORDER_LOG_LEVEL": "WARNING",
            # Storms of thousands of requests on one key: load, not a leaked key.
            "BACKORDER_RATE_LIMIT_PER_MINUTE": "0",
            "PROMETHEUS_MULTIPROC_DIR": str(self._metrics_dir),
            **self.env,
        }
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts + 1} on port {port}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                [
                    str(exe),
                    "serve",
                    "--workers",
                    str(self.workers),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches every worker
            )
        self.starts += 1
        self._url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(self._url, self._proc, self.log)
        except BaseException:
            self.kill()
            raise
        return self._url

    def kill(self) -> None:
        """SIGKILL the whole process group at once: no graceful shutdown, no cleanup."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            self.kills += 1
        proc.wait(timeout=STOP_TIMEOUT_S)
        self._after_exit()

    def stop(self) -> None:
        """Graceful stop (SIGTERM to the master, which stops its workers)."""
        proc = self._proc
        if proc is None:
            return
        _stop(proc)
        # Anything left in the group after the master is gone is killed, not waited for.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        self._after_exit()

    def _after_exit(self) -> None:
        self._proc = None
        self._url = None
        if self._metrics_dir is not None:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
            self._metrics_dir = None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@contextmanager
def killable_server(
    database_url: str | None, *, workers: int = 2, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A started `ServerProcess` on `database_url`, stopped on exit; its log is removed
    after a clean exit and kept (its path in `server.log`) when the block raised."""
    server = ServerProcess(database_url, workers=workers, env=env)
    clean = False
    try:
        server.start()
        yield server
        clean = True
    finally:
        server.stop()
        if clean:
            server.log.unlink(missing_ok=True)


@contextmanager
def live_server(database_url: str, *, workers: int = 2) -> Iterator[str]:
    """Start `backorder serve` on a free port against `database_url`; yield its base URL."""
    with killable_server(database_url, workers=workers) as server:
        yield server.url


@asynccontextmanager
async def backorder_worker(database_url: str, **settings: str) -> AsyncIterator[None]:
    """`backorder worker` (no API) on the test database, with `settings` as `BACKORDER_*`
    environment (e.g. `EXPIRY_INTERVAL_S="0.1"`); stopped with SIGTERM, which it must obey
    cleanly (exit 0) within a minute."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKORDER_")}
    env.update(
        DATABASE_URL=database_url,
        BACKORDER_MASTER_KEY=MASTER_KEY,
        BACKORDER_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
        **{f"BACKORDER_{name}": value for name, value in settings.items()},
    )
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backorder.cli",
        "worker",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), timeout=60) == 0  # a clean stop
