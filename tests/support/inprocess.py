"""The app in-process behind a blocking facade, for hypothesis' state machines (which are
driven synchronously)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal

from backorder.api.app import create_app
from backorder.config import Settings


class SyncClient:
    """The app in-process (lifespan included) behind a blocking facade: hypothesis drives
    its state machines synchronously, so the async client runs in a portal thread."""

    def __init__(self, portal: BlockingPortal, http: httpx.AsyncClient) -> None:
        self.portal, self.http = portal, http

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.portal.call(partial(self.http.request, method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)


@contextmanager
def in_process_client(settings: Settings) -> Iterator[SyncClient]:
    app = create_app(settings)
    with ExitStack() as stack:
        portal = stack.enter_context(start_blocking_portal())
        stack.enter_context(portal.wrap_async_context_manager(app.router.lifespan_context(app)))
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        stack.enter_context(portal.wrap_async_context_manager(http))
        yield SyncClient(portal, http)


def problem_code(r: Any) -> str | None:
    if r.headers.get("content-type", "").startswith("application/problem+json"):
        code: str = r.json()["code"]
        return code
    return None
