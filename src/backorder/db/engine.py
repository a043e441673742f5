"""Engine, transactions with bounded retries, and migrations."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from psycopg_pool import PoolTimeout as RawPoolTimeout
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from backorder.config import Settings
from backorder.domain.errors import RetryLater

T = TypeVar("T")

# Deadlock and serialization failures: the transaction did nothing and may simply run again.
RETRYABLE = {"40P01", "40001"}
# lock_timeout (55P03) and the statement cancelled by statement_timeout (57014): waiting longer
# would not help the caller now; they get a 503 with Retry-After.
_BUSY = {"55P03", "57014"}
# Connection gone or refused: the database is briefly unavailable.
_UNAVAILABLE_PREFIXES = ("08", "57P")

PROJECT_ROOT = Path(__file__).resolve().parents[3]

# A restock reaching 100,000 waiting lines sorts their orders a few times (5-10 MB each);
# PostgreSQL's 4 MB default would spill those sorts to disk.
WORK_MEM = "32MB"


def connect_options(settings: Settings) -> dict[str, Any]:
    """What every connection of the service is opened with, pooled by SQLAlchemy or not."""
    options = (
        f"-c lock_timeout={settings.lock_timeout_ms} "
        f"-c statement_timeout={settings.statement_timeout_ms} "
        "-c idle_in_transaction_session_timeout=60000 -c timezone=UTC "
        f"-c work_mem={WORK_MEM}"
    )
    return {"options": options, "connect_timeout": 5, "application_name": "backorder"}


def make_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        settings.require_database_url(),
        # Bound parameters (customer ids, contacts, key hashes) stay out of logged errors.
        hide_parameters=True,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_s,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args=connect_options(settings),
    )


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, raised through SQLAlchemy or by psycopg itself."""
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None)


def is_unavailable(exc: BaseException) -> bool:
    gone = InterfaceError | OperationalError | psycopg.InterfaceError | psycopg.OperationalError
    if isinstance(exc, gone) and sqlstate(exc) is None:
        return True
    state = sqlstate(exc) or ""
    return state.startswith(_UNAVAILABLE_PREFIXES)


async def run_transaction(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    attempts: int = 5,
) -> T:
    """Run `work` in one transaction; rerun it on deadlock or serialization failure.

    `work` must only touch the database through the connection it is given, so that a rerun
    starts from a clean slate. Anything else it raises (domain refusals included) rolls back.
    """
    for attempt in range(1, attempts + 1):
        try:
            async with engine.begin() as conn:
                return await work(conn)
        except DBAPIError as exc:
            if sqlstate(exc) in RETRYABLE and attempt < attempts:
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
                continue
            _raise_retry_later(exc)
            raise
        except (OSError, TimeoutError, PoolTimeout) as exc:
            _raise_retry_later(exc)
            raise
    raise AssertionError("unreachable")


async def run_read(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run a read-only `work` on a connection in autocommit mode.

    Each statement sees what was committed before it started, exactly as in the READ COMMITTED
    transaction `run_transaction` would open, but without the BEGIN and COMMIT round trips:
    a read of one row costs one round trip. `work` must not write.
    """
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await work(conn)
    except (DBAPIError, OSError, TimeoutError, PoolTimeout) as exc:
        _raise_retry_later(exc)
        raise


def raise_retry_later(exc: BaseException) -> None:
    """For code on psycopg directly (`db/hot.py`): what `run_read` makes of a database error."""
    _raise_retry_later(exc)


def _raise_retry_later(exc: BaseException) -> None:
    """A busy SKU or an unavailable database is not the caller's fault: a 503 with
    Retry-After. Anything else returns, for the caller to raise as it is."""
    if isinstance(exc, PoolTimeout | RawPoolTimeout):
        # Every pooled connection stayed busy for pool_timeout_s: the service is saturated,
        # which a client fixes by waiting, not by reporting a bug.
        raise RetryLater("the service is busy; retry shortly", retry_after=1) from exc
    if isinstance(exc, OSError | TimeoutError):
        raise RetryLater("the database is briefly unavailable", retry_after=2) from exc
    state = sqlstate(exc)
    if state in RETRYABLE or state in _BUSY:
        raise RetryLater("the SKU is busy; retry shortly", retry_after=1) from exc
    if is_unavailable(exc):
        raise RetryLater("the database is briefly unavailable", retry_after=2) from exc


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    cfg.attributes["database_url"] = sync_url(database_url)
    return cfg


def sync_url(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg_async://", "postgresql+psycopg://")


def migrate(database_url: str) -> None:
    """Bring the schema to the newest migration (idempotent; safe from several processes)."""
    command.upgrade(alembic_config(database_url), "head")


def head_revision(database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


async def current_revision(conn: AsyncConnection) -> str | None:
    """The schema's Alembic revision, read directly: Alembic's MigrationContext would log two
    INFO lines on every readiness probe."""
    exists = (
        await conn.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
    ).scalar()
    if not exists:
        return None
    revision = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    return None if revision is None else str(revision)


def make_sync_engine(database_url: str) -> object:
    return create_engine(sync_url(database_url), poolclass=pool.NullPool)
