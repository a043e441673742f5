"""Test set-up: a real PostgreSQL (embedded unless TEST_DATABASE_URL is set), a fresh database
per run made by the real migrations, and an in-process ASGI client for API tests."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.api.app import create_app
from backorder.config import Settings
from backorder.db.engine import make_engine, migrate

MASTER_KEY = "test-master-key-long-enough-for-the-32-char-rule"
OPS = {"Authorization": f"Bearer {MASTER_KEY}"}


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A PostgreSQL server URL (any database on it); embedded unless TEST_DATABASE_URL."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield _plain(external)
        return
    from backorder.embedded import start

    # The data directory is mkdtemp's own (its parent /tmp is passable by anyone): run as
    # root, the server's user must reach it, and nothing widens an ancestor for it.
    home = Path(tempfile.mkdtemp(prefix="backorder-test-"))
    embedded = start(home, exclusive=False)
    try:
        yield _plain(embedded.url)
    finally:
        embedded.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh database for this run, built by the Alembic migrations (never create_all)."""
    name = f"backorder_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = server_url.partition("?")
    root = base.rsplit("/", 1)[0]
    url = f"{root}/{name}" + (f"?{query}" if query else "")
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    migrate(sa_url)
    yield sa_url
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        master_key=MASTER_KEY,
        pool_size=4,
        webhook_worker=False,
        # No deadline watch: a test that lets a deadline pass runs the pass itself (the tests
        # of the watch turn it on).
        expiry_worker=False,
        # Test receivers listen on 127.0.0.1; tests of the refusal turn it off.
        webhook_allow_private_networks=True,
        metrics_cache_s=0,  # tests read the figures right after changing them
        # A test may send thousands of requests on one key; the limit itself is tested with
        # apps of its own (tests/api/test_limits.py, tests/security).
        rate_limit_per_minute=0,
    )


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(settings)
    yield eng
    await eng.dispose()


TABLES = (
    "webhook_delivery, webhook_endpoint, worker_cursor, event, stock_subscription, shipment, "
    "order_line, sales_order, stock_movement, purchase_order, product, api_key, idempotency_key, "
    "stock_level, transfer, location"
)
# The migration makes `main`, and the service counts on it: every truncation puts it back.
MAIN_LOCATION = "INSERT INTO location (code, name, rank, active) VALUES ('main', 'Main', 100, true)"


def truncate_all(database_url: str) -> None:
    with psycopg.connect(_plain(database_url), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        conn.execute(MAIN_LOCATION)


@pytest.fixture
def clean_db(database_url: str) -> Iterator[None]:
    truncate_all(database_url)
    yield
    truncate_all(database_url)


@pytest.fixture
async def client(settings: Settings, clean_db: None) -> AsyncIterator[AsyncClient]:
    """The HTTP contract through an in-process ASGI client, on a clean database."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://test") as http:
            yield http
