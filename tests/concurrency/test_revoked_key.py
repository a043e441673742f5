"""A revoked key is refused by the very next request on every worker, under load: nothing
caches a key. The worker behind a connection is found from the operating system's socket
table (which process holds the server end of our client port), not from anything the service
would have to reveal.

Both lean paths are held to it: the product read (the key in the read's statement) and the
order (the key in the statement that locks the SKUs, orders of one key sharing a transaction
on each worker)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.client import HTTPConnection
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests.support.api import OPS
from tests.support.invariants import assert_invariants

STREAMS = 4
MAX_CONNECTIONS = 200  # tries to reach both workers; a handful normally does
SKU = "REV-1"
PRODUCT = f"/v1/products/{SKU}"
STOCK = 1_000_000  # every order of the run is served from stock: none is refused for it


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None
    served: int  # the status of a request the key may make


READ = Request("GET", PRODUCT, None, 200)
ORDER = Request(
    "POST",
    "/v1/orders",
    json.dumps({"customer_id": "c-1", "lines": [{"sku": SKU, "quantity": 1}]}).encode(),
    201,
)


def _worker_of(conn: HTTPConnection, server_port: int) -> int:
    """The pid of the worker process holding the server end of `conn`."""
    assert conn.sock is not None
    client_port = conn.sock.getsockname()[1]
    for c in psutil.net_connections(kind="tcp"):
        if c.laddr and c.raddr and c.laddr.port == server_port and c.raddr.port == client_port:
            assert c.pid is not None
            return c.pid
    raise LookupError(f"no server socket for client port {client_port}")


def _send(conn: HTTPConnection, key: str, request: Request) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    if request.body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(request.method, request.path, body=request.body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


@pytest.mark.parametrize("request_", [READ, ORDER], ids=["read", "order"])
def test_a_revoked_key_gets_401_on_its_next_request_on_each_worker(
    live_url: str, database_url: str, request_: Request
) -> None:
    with httpx.Client(base_url=live_url, headers=OPS, timeout=30) as ops:
        assert ops.put(PRODUCT, json={"name": "Revocable"}).status_code == 201
        restocked = ops.post(f"{PRODUCT}/restocks", json={"quantity": STOCK})
        assert restocked.status_code == 201, restocked.text
        created = ops.post("/v1/api-keys", json={"name": "web-shop", "role": "storefront"})
        assert created.status_code == 201
        key, key_id = created.json()["key"], created.json()["id"]
        host, port = urlsplit(live_url).hostname, urlsplit(live_url).port
        assert host is not None and port is not None

        # A stream of requests with the key, each noting when it was sent and what it got.
        seen: list[tuple[float, int]] = []
        pinned_statuses: list[int] = []
        stop = threading.Event()

        def stream() -> None:
            conn = HTTPConnection(host, port, timeout=30)
            try:
                while not stop.is_set():
                    sent = time.monotonic()
                    seen.append((sent, _send(conn, key, request_)))
            finally:
                conn.close()

        def send(conn: HTTPConnection) -> int:
            status = _send(conn, key, request_)
            pinned_statuses.append(status)
            return status

        threads = [threading.Thread(target=stream) for _ in range(STREAMS)]
        for t in threads:
            t.start()
        pinned: dict[int, HTTPConnection] = {}
        try:
            # Under the stream's load both workers accept connections: keep one on each.
            for _ in range(MAX_CONNECTIONS):
                conn = HTTPConnection(host, port, timeout=30)
                assert send(conn) == request_.served
                pid = _worker_of(conn, port)
                if pid in pinned:
                    conn.close()
                else:
                    pinned[pid] = conn
                if len(pinned) == 2:
                    break
            assert len(pinned) == 2, "every connection reached the same worker"
            for conn in pinned.values():
                assert send(conn) == request_.served  # still served, on each worker, just before

            assert ops.delete(f"/v1/api-keys/{key_id}").status_code == 204
            revoked = time.monotonic()
            for pid, conn in pinned.items():
                assert send(conn) == 401
                assert _worker_of(conn, port) == pid  # the same connection, the same worker
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
            for conn in pinned.values():
                conn.close()

        before = [status for sent, status in seen if sent < revoked]
        after = [status for sent, status in seen if sent > revoked]
        assert before and set(before) <= {request_.served, 401}
        assert after, "the stream sent nothing after the revocation"
        assert set(after) == {401}, "a request sent after the revocation was served"

        if request_ is ORDER:
            # Every order answered 201 was written, and no refused one counted.
            placed = sum(1 for _, s in seen if s == 201) + pinned_statuses.count(201)
            figures = ops.get(PRODUCT).json()
            assert (figures["on_hand"], figures["allocated"]) == (STOCK, placed)
            assert_invariants(database_url)
