"""Webhook delivery worker (to be built)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.config import Settings


async def run(engine: AsyncEngine, settings: Settings, stop: asyncio.Event) -> None:
    """Deliver due webhook deliveries until `stop` is set."""
    await stop.wait()
