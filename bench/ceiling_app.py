"""The server stack's own ceiling: a tiny app on the service's stack (uvicorn with uvloop and
httptools, FastAPI, psycopg 3 async), run with the same worker count and pool size.

- `GET /hello`: no database; what the stack can answer at all.
- `GET /select/{sku}`: one primary-key SELECT of a product row on a pooled autocommit
  connection (prepared after a few uses, as psycopg does by default), answered as JSON. No
  request that touches the database can beat it.
- `GET /select-sa/{sku}`: the same SELECT through SQLAlchemy's async engine in a transaction,
  as the service runs its reads; it shows what that layer costs (not a ceiling).

    BENCH_CEILING_DSN=postgresql://… uvicorn bench.ceiling_app:app --workers 2 \
        --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.responses import Response

_SELECT = (
    "SELECT sku, name, backorders_allowed, backorder_limit, on_hand, allocated, backordered, "
    "incoming, updated_at FROM product WHERE sku = %s"
)
_SELECT_SA = text(_SELECT.replace("%s", ":sku"))


def _json(body: Any, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC),
        status_code=status_code,
        media_type="application/json",
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    dsn = os.environ["BENCH_CEILING_DSN"]
    size = int(os.environ.get("BENCH_CEILING_POOL", "8"))
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        dsn,
        min_size=size,
        max_size=size,
        kwargs={"autocommit": True, "row_factory": dict_row},
        open=False,
    )
    await pool.open(wait=True)
    engine = create_async_engine(
        "postgresql+psycopg://" + dsn.split("://", 1)[1], pool_size=size, max_overflow=0
    )
    app.state.pool = pool
    app.state.engine = engine
    try:
        yield
    finally:
        await pool.close()
        await engine.dispose()


app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/hello")
async def hello() -> Response:
    return _json({"hello": "world"})


@app.get("/select/{sku}")
async def select(request: Request, sku: str) -> Response:
    async with request.app.state.pool.connection() as conn:
        cur = await conn.execute(_SELECT, (sku,))
        row = await cur.fetchone()
    if row is None:
        return _json({"detail": "not found"}, 404)
    return _json(row)


@app.get("/select-sa/{sku}")
async def select_sa(request: Request, sku: str) -> Response:
    async with request.app.state.engine.begin() as conn:
        row = (await conn.execute(_SELECT_SA, {"sku": sku})).mappings().one_or_none()
    if row is None:
        return _json({"detail": "not found"}, 404)
    return _json(dict(row))
