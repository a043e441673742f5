"""The hottest paths on psycopg 3 directly: a product read and an order's statements, with
the key check folded into their first statement.

`GET /v1/products/{sku}` is what a storefront sends most. Through SQLAlchemy it cost two round
trips (the key, then the product) and about as much CPU in the layer as in psycopg; here it is
one prepared statement on a small pool of autocommit connections of its own: the key (by hash,
not revoked) and the product are read in one snapshot, so a revoked key is refused by the very
next request on every worker, with nothing cached.

`POST /v1/orders` runs its transaction on a second pool (`services/lean_placement.py`): the
key is checked by the statement that locks the order's SKUs, and the statements are sent in a
pipeline. The SQL is the SQLAlchemy path's own (`sql_of` renders a `text()` for psycopg), so
there is one statement to keep, whichever path runs it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import TextClause
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.engine import make_url

from backorder.config import Settings
from backorder.db import keys, products
from backorder.db.engine import connect_options, is_unavailable

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]

# The key's columns get a prefix: the product has a `name` and a `created_at` of its own.
_KEY = """
    SELECT id AS key_id, name AS key_name, role AS key_role, prefix AS key_prefix,
           created_at AS key_created_at, revoked_at AS key_revoked_at,
           last_used_at AS key_last_used_at
    FROM api_key WHERE key_hash = %(hash)s AND revoked_at IS NULL"""
# LATERAL: no key row, no product probe (a guess costs one index lookup, as before).
_KEY_AND_PRODUCT = f"""
SELECT k.*, p.* FROM ({_KEY}) k
LEFT JOIN LATERAL (SELECT {products.COLUMNS} FROM product WHERE sku = %(sku)s) p ON TRUE
"""
# An order's first statement: the key, then, only for a key that is valid, its SKUs locked and
# read with their stock levels (`stock.lock_products`). The function's argument names `k`, so
# it runs once per key row found: an unknown or revoked key locks nothing.
KEY_AND_LOCK = f"""
SELECT k.*, l.* FROM ({_KEY}) k
LEFT JOIN LATERAL lock_products(
    CASE WHEN k.key_id IS NOT NULL THEN CAST(%(skus)s AS text[]) END) l ON TRUE
"""

_DIALECT = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]


@functools.cache
def sql_of(statement: TextClause) -> str:
    """A `text()` statement of the SQLAlchemy path as psycopg takes it (`%(name)s`)."""
    return str(statement.compile(dialect=_DIALECT))


def key_of(row: Mapping[str, Any]) -> keys.ApiKeyRow | None:
    """The key columns of `_KEY` in a row; None when the row has none (no such key)."""
    if row["key_id"] is None:
        return None
    return keys.ApiKeyRow(
        id=row["key_id"],
        name=row["key_name"],
        role=row["key_role"],
        prefix=row["key_prefix"],
        created_at=row["key_created_at"],
        revoked_at=row["key_revoked_at"],
        last_used_at=row["key_last_used_at"],
    )


def make_pool(settings: Settings, *, size: int | None = None, name: str = "backorder-hot") -> Pool:
    """Not opened: `open_pool` connects in the background, so a database that is not up yet
    delays the first reads (up to `pool_timeout_s`, then 503) instead of the start. `size`:
    the read pool's (`read_pool_size`) unless given."""
    url = make_url(settings.require_database_url()).set(drivername="postgresql")
    size = settings.read_pool_size if size is None else size
    return AsyncConnectionPool(
        url.render_as_string(hide_password=False),
        connection_class=AsyncConnection[DictRow],
        min_size=size,
        max_size=size,
        timeout=settings.pool_timeout_s,
        max_lifetime=1800,
        # prepare_threshold 0: the statement is prepared on its first use per connection.
        kwargs={
            "autocommit": True,
            "row_factory": dict_row,
            "prepare_threshold": 0,
            **_generic_plans(connect_options(settings)),
        },
        configure=_configure,
        open=False,
        name=name,
    )


def _generic_plans(options: dict[str, Any]) -> dict[str, Any]:
    """Each prepared statement planned once per connection. Under the default ("auto") a
    statement is re-planned on every execution until a generic plan looks no dearer than
    the custom ones, which for the order's write it never did: planning was half of the
    database's CPU per order (measured: 1.03 ms with a plan per execution, 0.54 ms with the
    generic plan). The statements on these pools look rows up by key or walk one SKU's queue
    by its index, so one plan fits every parameter."""
    return {**options, "options": f"{options['options']} -c plan_cache_mode=force_generic_plan"}


_checks: set[asyncio.Task[None]] = set()


def check_after(pool: Pool, exc: BaseException) -> None:
    """After a lost connection, test every idle one of the pool in the background and replace
    the dead (`AsyncConnectionPool.check`), as SQLAlchemy drops its whole pool on a
    disconnect: after a database restart each pooled connection would otherwise fail one
    request of its own before the pool replaced it."""
    if is_unavailable(exc) and not isinstance(exc, PoolTimeout):
        task = asyncio.create_task(pool.check())
        _checks.add(task)
        task.add_done_callback(_checks.discard)


async def _configure(conn: AsyncConnection[DictRow]) -> None:
    # py-spy: the stdlib's json.loads of `locations` was a twentieth of the read.
    set_json_loads(orjson.loads, conn)


@dataclass(frozen=True, slots=True)
class KeyAndProduct:
    key: keys.ApiKeyRow | None  # None: unknown or revoked
    product: Mapping[str, Any] | None  # None: no such product (or no key to read it with)


async def key_and_product(pool: Pool, secret: str, sku: str) -> KeyAndProduct:
    async with pool.connection() as conn:
        cur = await conn.execute(_KEY_AND_PRODUCT, {"hash": keys.hash_key(secret), "sku": sku})
        row = await cur.fetchone()
    if row is None:
        return KeyAndProduct(None, None)
    return KeyAndProduct(key_of(row), None if row["sku"] is None else cast(Mapping[str, Any], row))
