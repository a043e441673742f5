"""Fixtures of the webhook worker's tests: a receiver on 127.0.0.1 and fast settings."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
