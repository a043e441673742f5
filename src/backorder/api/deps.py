"""Dependencies: the principal behind the API key, role checks, the engine."""

from __future__ import annotations

import hmac
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import State

from backorder.api.ratelimit import FailedAuthThrottle, RateLimiter
from backorder.api.strict_query import check_query_string
from backorder.config import Settings
from backorder.db import keys
from backorder.db.engine import run_read, run_transaction
from backorder.domain.errors import Forbidden, Unauthorized

log = logging.getLogger("backorder.auth")

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key (`bo_...`) or the master key, sent as `Authorization: Bearer <key>`.",
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. A key's channel is its name, so a rotated key keeps its orders."""

    role: str
    name: str
    scope: str  # idempotency and rate-limit scope: the key's id, or "master"

    @property
    def is_ops(self) -> bool:
        return self.role == "ops"

    @property
    def channel(self) -> str:
        return self.name

    @property
    def channel_filter(self) -> str | None:
        """Storefronts see only their channel's orders; ops see all."""
        return None if self.is_ops else self.name


MASTER = Principal(role="ops", name="master", scope="master")


class KeyUsage:
    """When this process last recorded each key's use, so that `last_used_at` costs one
    UPDATE per key and minute (`keys.touch`), never a write per request."""

    def __init__(self, interval_s: float = keys.TOUCH_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._touched: dict[UUID, float] = {}  # key id -> time.monotonic() of the last touch

    def due(self, row: keys.ApiKeyRow) -> bool:
        now = time.monotonic()
        if now - self._touched.get(row.id, -math.inf) < self.interval_s:
            return False
        self._touched[row.id] = now
        # The row read for the key check tells whether another process touched it lately.
        last = row.last_used_at
        return last is None or (datetime.now(UTC) - last).total_seconds() >= self.interval_s


def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
    secret = credentials.credentials
    state = request.app.state
    if is_master(state.settings, secret):
        principal = MASTER
    else:
        address = request.client.host if request.client else "unknown"
        check_throttle(state, address, secret)
        # A token that cannot be a key is refused without a database round trip; a revoked
        # key is refused by the very next request (one lookup in autocommit, never cached).
        row = None
        if keys.could_be_key(secret):
            row = await run_read(state.engine, lambda conn: keys.find_active(conn, secret))
        principal = await admit_key(state, address, secret, row)
    request.state.principal = principal
    check_rate(state, principal)
    # The query string is judged once the key is known: a caller without a valid key learns
    # only that it needs one.
    check_query_string(request)
    return principal


# The steps of `authenticate` around the key's lookup, shared with the product read that
# folds the lookup into its own statement (`api/hot_read.py`).


def is_master(settings: Settings, secret: str) -> bool:
    master = settings.master_key_value
    return (
        master is not None
        and master != ""
        and hmac.compare_digest(secret.encode(), master.encode())
    )


def check_throttle(state: State, address: str, secret: str) -> None:
    """Before the lookup: an address out of failed attempts gets 429, unlooked-up."""
    throttle: FailedAuthThrottle | None = state.auth_throttle
    if throttle is not None:
        throttle.check(address, secret)


async def admit_key(
    state: State, address: str, secret: str, row: keys.ApiKeyRow | None
) -> Principal:
    """After the lookup: 401 for no row (counted against the address), else the key's
    principal, its use recorded at most once a minute."""
    principal = principal_of(state, address, secret, row)
    assert row is not None  # `principal_of` refused it otherwise
    await record_use(state, row)
    return principal


def principal_of(state: State, address: str, secret: str, row: keys.ApiKeyRow | None) -> Principal:
    """`admit_key` without recording the use: for a caller that holds locks while it admits
    the key (the lean order path), and records the use (`record_use`) once it let them go."""
    throttle: FailedAuthThrottle | None = state.auth_throttle
    if row is None:
        if throttle is not None:
            throttle.failed(address)
        raise Unauthorized("unknown or revoked API key")
    if throttle is not None:
        throttle.succeeded(secret)
    return Principal(role=row.role, name=row.name, scope=str(row.id))


async def record_use(state: State, row: keys.ApiKeyRow) -> None:
    """The key's `last_used_at`, written at most once a minute per key and process."""
    usage: KeyUsage = state.key_usage
    if usage.due(row):
        key_id = row.id
        try:
            await run_transaction(state.engine, lambda conn: keys.touch(conn, key_id), attempts=1)
        except Exception:  # bookkeeping: never the reason a request fails
            log.warning("recording an API key's use failed", exc_info=True)


def check_rate(state: State, principal: Principal) -> None:
    """After authentication: an unknown key is a 401, never a 429."""
    limiter: RateLimiter | None = state.rate_limiter
    if limiter is not None:
        limiter.check(principal.scope)


async def require_ops(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if not principal.is_ops:
        raise Forbidden("this needs an ops key")
    return principal


AnyKey = Annotated[Principal, Depends(authenticate)]
OpsKey = Annotated[Principal, Depends(require_ops)]
