"""Secrets and the database's own words stay out of answers and logs."""

from __future__ import annotations

import io
import logging

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.logging import JsonFormatter, TextFormatter
from tests.support.api import OPS


async def test_the_databases_own_error_text_never_reaches_the_client(
    client: AsyncClient,
) -> None:
    # A NUL in a query parameter reaches PostgreSQL unless something refuses it first; either
    # way, the client reads our words, not PostgreSQL's.
    for path in ("/v1/orders?customer_id=a%00b", "/v1/products?cursor=%00"):
        r = await client.get(path, headers=OPS)
        assert 400 <= r.status_code < 500, r.text
        for words in ("0x00", "UTF8", "invalid byte sequence", "psycopg", "SQL"):
            assert words not in r.text, (path, r.text)


async def test_logged_database_errors_hold_no_bound_parameters(engine: AsyncEngine) -> None:
    contact = "jane.doe@example.com"
    with pytest.raises(DBAPIError) as raised:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1 / 0 WHERE :contact <> ''"), {"contact": contact})
    assert contact not in str(raised.value)
    assert "hide_parameters" in str(raised.value)


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()], ids=["json", "text"])
def test_webhook_secrets_and_keys_are_redacted_in_logs(formatter: logging.Formatter) -> None:
    secrets = ["whsec_" + "s3cr3t" * 7, "bo_" + "k" * 43, "bo_master_" + "m" * 43]
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger("tests.security.leaks")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for secret in secrets:
            logger.warning("delivery signed with %s failed", secret)
            try:
                raise RuntimeError(f"could not use {secret}")
            except RuntimeError:
                logger.exception("while sending")
    finally:
        logger.removeHandler(handler)
    logged = out.getvalue()
    assert "[redacted]" in logged
    for secret in secrets:
        assert secret[-20:] not in logged
