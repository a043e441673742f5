"""Fixtures of the integration tests: a scratch database for migrations, and for the webhook
worker a receiver on 127.0.0.1 and fast settings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from backorder.config import Settings
from tests.support.webhooks import Receiver, fast_settings, listening


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with listening() as rec:
        yield rec


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return fast_settings(settings)


@pytest.fixture
def scratch_url(server_url: str) -> Iterator[str]:
    """An empty database of its own (the suite's database stays at head)."""
    name = f"backorder_migrate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = server_url.partition("?")
    url = f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    yield url
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
