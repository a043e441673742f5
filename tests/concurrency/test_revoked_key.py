"""A revoked key is refused by the very next request on every worker, under load: nothing
caches a key. The worker behind a connection is found from the operating system's socket
table (which process holds the server end of our client port), not from anything the service
would have to reveal."""

from __future__ import annotations

import threading
import time
from http.client import HTTPConnection
from urllib.parse import urlsplit

import httpx
import psutil

from tests.support.api import OPS

STREAMS = 4
MAX_CONNECTIONS = 200  # tries to reach both workers; a handful normally does
PATH = "/v1/products/REV-1"


def _worker_of(conn: HTTPConnection, server_port: int) -> int:
    """The pid of the worker process holding the server end of `conn`."""
    assert conn.sock is not None
    client_port = conn.sock.getsockname()[1]
    for c in psutil.net_connections(kind="tcp"):
        if c.laddr and c.raddr and c.laddr.port == server_port and c.raddr.port == client_port:
            assert c.pid is not None
            return c.pid
    raise LookupError(f"no server socket for client port {client_port}")


def _get(conn: HTTPConnection, key: str) -> int:
    conn.request("GET", PATH, headers={"Authorization": f"Bearer {key}"})
    response = conn.getresponse()
    response.read()
    return response.status


def test_a_revoked_key_gets_401_on_its_next_request_on_each_worker(live_url: str) -> None:
    with httpx.Client(base_url=live_url, headers=OPS, timeout=30) as ops:
        assert ops.put(PATH, json={"name": "Revocable"}).status_code == 201
        created = ops.post("/v1/api-keys", json={"name": "web-shop", "role": "storefront"})
        assert created.status_code == 201
        key, key_id = created.json()["key"], created.json()["id"]
        host, port = urlsplit(live_url).hostname, urlsplit(live_url).port
        assert host is not None and port is not None

        # A stream of reads with the key, each noting when it was sent and what it got.
        seen: list[tuple[float, int]] = []
        stop = threading.Event()

        def stream() -> None:
            conn = HTTPConnection(host, port, timeout=30)
            try:
                while not stop.is_set():
                    sent = time.monotonic()
                    seen.append((sent, _get(conn, key)))
            finally:
                conn.close()

        threads = [threading.Thread(target=stream) for _ in range(STREAMS)]
        for t in threads:
            t.start()
        pinned: dict[int, HTTPConnection] = {}
        try:
            # Under the stream's load both workers accept connections: keep one on each.
            for _ in range(MAX_CONNECTIONS):
                conn = HTTPConnection(host, port, timeout=30)
                assert _get(conn, key) == 200
                pid = _worker_of(conn, port)
                if pid in pinned:
                    conn.close()
                else:
                    pinned[pid] = conn
                if len(pinned) == 2:
                    break
            assert len(pinned) == 2, "every connection reached the same worker"
            for conn in pinned.values():
                assert _get(conn, key) == 200  # still served, on each worker, just before

            assert ops.delete(f"/v1/api-keys/{key_id}").status_code == 204
            revoked = time.monotonic()
            for pid, conn in pinned.items():
                assert _get(conn, key) == 401
                assert _worker_of(conn, port) == pid  # the same connection, the same worker
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
            for conn in pinned.values():
                conn.close()

    before = [status for sent, status in seen if sent < revoked]
    after = [status for sent, status in seen if sent > revoked]
    assert before and set(before) <= {200, 401}
    assert after, "the stream sent nothing after the revocation"
    assert set(after) == {401}, "a request sent after the revocation was served"
