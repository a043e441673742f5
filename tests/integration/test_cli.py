"""`backorder serve` on its embedded PostgreSQL, as an operator runs it, and the service's
answers when the database is out of reach."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from httpx import ASGITransport, AsyncClient

from backorder.api.app import create_app
from backorder.config import Settings
from tests.support.live import free_port

START_TIMEOUT_S = 120.0  # initdb and the first migration on a busy 2-core machine
STOP_TIMEOUT_S = 60.0
MASTER_LINE = re.compile(r"master key \((?P<origin>[^)]*)\): (?P<key>\S+)")


class Serve:
    """A `backorder serve` process whose output lines are read as they come."""

    def __init__(self, data_dir: Path, port: int, **settings: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKORDER_")}
        env.pop("DATABASE_URL", None)
        env.update(
            BACKORDER_DATA_DIR=str(data_dir),
            BACKORDER_WEBHOOK_WORKER="false",
            PYTHONUNBUFFERED="1",
            **settings,
        )
        self.env = env
        self.base_url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backorder.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def expect(self, pattern: str, deadline: float) -> re.Match[str]:
        """The first line from now on that matches `pattern`."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r}:\n{''.join(self.output)}")
            try:
                line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise AssertionError(
                        f"serve exited with {self.proc.returncode} before {pattern!r}:\n"
                        + "".join(self.output)
                    ) from None
                continue
            found = re.search(pattern, line)
            if found:
                return found

    def wait_ready(self, deadline: float) -> None:
        last = "no answer"
        with httpx.Client(base_url=self.base_url, timeout=5.0) as http:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, "".join(self.output)
                try:
                    r = http.get("/readyz")
                    if r.status_code == 200:
                        return
                    last = f"{r.status_code} {r.text}"
                except httpx.TransportError as exc:
                    last = repr(exc)
                time.sleep(0.2)  # polling a readiness probe
        raise AssertionError(f"not ready ({last}):\n{''.join(self.output)}")

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=STOP_TIMEOUT_S)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)


def postmaster_pid(data_dir: Path) -> int | None:
    pidfile = data_dir / "pgdata" / "postmaster.pid"
    try:
        return int(pidfile.read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def stop_postgres(data_dir: Path) -> None:
    """Teardown only: never leave an embedded server behind, whatever the test did."""
    pid = postmaster_pid(data_dir)
    if pid is None or not running(pid):
        return
    os.kill(pid, signal.SIGQUIT)  # immediate shutdown
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path (/tmp/pytest-of-root is 0700): run as root, the embedded
    # server's user must pass through every ancestor, and backorder refuses to widen one.
    path = Path(tempfile.mkdtemp(prefix="backorder-cli-"))
    yield path
    stop_postgres(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def serves(data_dir: Path) -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for serve in started:
        serve.kill()


def test_serve_runs_on_its_embedded_database_and_keeps_it(
    data_dir: Path, serves: list[Serve]
) -> None:
    port = free_port()
    deadline = time.monotonic() + START_TIMEOUT_S
    first = Serve(data_dir, port)
    serves.append(first)
    swagger = first.expect(r"Swagger UI at (\S+)", deadline)
    assert swagger.group(1) == f"http://127.0.0.1:{port}/docs"
    master = first.expect(MASTER_LINE.pattern, deadline)
    assert master.group("origin") == "generated now"
    key = master.group("key")
    assert len(key) >= 32
    assert (data_dir / "master_key").read_text().strip() == key
    assert (data_dir / "master_key").stat().st_mode & 0o077 == 0
    first.wait_ready(deadline)

    ops = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=first.base_url, timeout=10.0) as http:
        assert http.get("/docs").status_code == 200
        r = http.put("/v1/products/KEPT-1", json={"name": "Kept"}, headers=ops)
        assert r.status_code == 201, r.text
        r = http.post("/v1/products/KEPT-1/restocks", json={"quantity": 7}, headers=ops)
        assert r.status_code == 201, r.text

    # A second serve on the same data directory is refused, and names the directory.
    second = subprocess.run(
        [sys.executable, "-m", "backorder.cli", "serve", "--port", str(free_port())],
        env=first.env,
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT_S,
    )
    assert second.returncode != 0
    assert str(data_dir.resolve()) in second.stderr
    assert "already" in second.stderr
    assert "Traceback" not in second.stderr
    with httpx.Client(base_url=first.base_url, timeout=10.0) as http:
        assert http.get("/readyz").status_code == 200

    # SIGTERM: a clean exit, and the embedded PostgreSQL stops with it.
    pid = postmaster_pid(data_dir)
    assert pid is not None and running(pid)
    assert first.terminate() == 0, "".join(first.output)
    assert "Traceback" not in "".join(first.output)
    assert not running(pid), "the embedded PostgreSQL outlived `backorder serve`"
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()

    # A restart reuses the kept master key and the data, and names where the key is kept
    # without printing it again (output is often kept in logs).
    deadline = time.monotonic() + START_TIMEOUT_S
    again = Serve(data_dir, port)
    serves.append(again)
    kept = again.expect(r"master key: the one kept in (\S+)", deadline)
    assert kept.group(1) == str((data_dir / "master_key").resolve())
    again.wait_ready(deadline)
    assert key not in "".join(again.output)
    with httpx.Client(base_url=again.base_url, timeout=10.0) as http:
        r = http.get("/v1/products/KEPT-1", headers=ops)
        assert r.status_code == 200, r.text
        assert (r.json()["name"], r.json()["on_hand"]) == ("Kept", 7)
    assert again.terminate() == 0, "".join(again.output)


def test_a_master_key_from_the_environment_is_used_and_not_generated(
    data_dir: Path, serves: list[Serve]
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    env_key = "operator-chosen-master-key-0123456789"
    serve = Serve(data_dir, free_port(), BACKORDER_MASTER_KEY=env_key)
    serves.append(serve)
    serve.expect(r"Swagger UI at ", deadline)
    serve.expect(r"master key: the one in BACKORDER_MASTER_KEY", deadline)
    serve.wait_ready(deadline)
    with httpx.Client(base_url=serve.base_url, timeout=10.0) as http:
        r = http.get("/v1/products", headers={"Authorization": f"Bearer {env_key}"})
        assert r.status_code == 200, r.text
    assert not (data_dir / "master_key").exists()
    assert serve.terminate() == 0, "".join(serve.output)
    assert env_key not in "".join(serve.output), "the operator's key was printed"


# --- the database out of reach ----------------------------------------------------------------


@asynccontextmanager
async def unreachable_client() -> AsyncIterator[AsyncClient]:
    """The app, started, with its database on a closed port."""
    settings = Settings(
        database_url="postgresql://backorder@127.0.0.1:1/backorder",
        master_key="unreachable-master-key-long-enough-0123",
        webhook_worker=False,
    )
    app = create_app(settings)
    transport = ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        yield http


async def test_readyz_says_503_when_the_database_is_unreachable() -> None:
    async with unreachable_client() as http:
        assert (await http.get("/healthz")).status_code == 200
        r = await http.get("/readyz")
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "retry_later"
    assert int(r.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    ("method", "path", "body", "key"),
    [
        ("GET", "/v1/products/SKU-1", None, "unreachable-master-key-long-enough-0123"),
        ("GET", "/v1/products", None, "unreachable-master-key-long-enough-0123"),
        ("PUT", "/v1/products/SKU-1", {"name": "x"}, "unreachable-master-key-long-enough-0123"),
        (
            "POST",
            "/v1/orders",
            {"customer_id": "c-1", "lines": [{"sku": "SKU-1", "quantity": 1}]},
            "unreachable-master-key-long-enough-0123",
        ),
        ("GET", "/v1/products", None, "bo_a-storefront-key-looked-up-in-the-database0"),
    ],
    ids=["get-product", "list-products", "put-product", "place-order", "key-lookup"],
)
async def test_a_request_needing_the_database_gets_503_retry_later(
    method: str, path: str, body: dict[str, object] | None, key: str
) -> None:
    async with unreachable_client() as http:
        r = await http.request(
            method,
            path,
            json=body,
            headers={"Authorization": f"Bearer {key}", "X-Request-ID": "down-1"},
        )
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert (problem["status"], problem["code"], problem["request_id"]) == (
        503,
        "retry_later",
        "down-1",
    )
    assert int(r.headers["retry-after"]) >= 1


async def test_a_keyed_refusal_that_cannot_be_stored_is_a_503_never_a_500() -> None:
    """A bad body under an Idempotency-Key is stored as its answer; with the database away it
    cannot be, so the client is told to retry (with the same key), not given a 500."""
    async with unreachable_client() as http:
        r = await http.post(
            "/v1/orders",
            json={"customer_id": "c-1", "lines": [{"sku": "SKU-1", "quantity": 0}]},
            headers={
                "Authorization": "Bearer unreachable-master-key-long-enough-0123",
                "Idempotency-Key": "k-down",
            },
        )
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "retry_later"
    assert int(r.headers["retry-after"]) >= 1
