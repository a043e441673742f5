"""An app with chosen settings on the test database, through an in-process client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from backorder.api.app import create_app
from backorder.config import Settings
from tests.support.api import MASTER_KEY

Service = Callable[..., AbstractAsyncContextManager[tuple[FastAPI, AsyncClient]]]


@pytest.fixture
def service(database_url: str, clean_db: None) -> Service:
    """`async with service(pool_size=1) as (app, http)`: a started app with these settings."""

    @asynccontextmanager
    async def started(
        client: tuple[str, int] = ("127.0.0.1", 123), **settings: Any
    ) -> AsyncIterator[tuple[FastAPI, AsyncClient]]:
        values: dict[str, Any] = {
            "database_url": database_url,
            "master_key": MASTER_KEY,
            "pool_size": 2,
            "webhook_worker": False,
            # No watch over the clock: a test here counts the statements the app sends.
            "overdue_worker": False,
            "expiry_worker": False,
            **settings,
        }
        app = create_app(Settings(**values))
        async with app.router.lifespan_context(app):
            transport = ASGITransport(app=app, client=client)
            async with AsyncClient(transport=transport, base_url="http://test") as http:
                yield app, http

    return started
