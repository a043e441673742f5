"""API keys: stored as SHA-256 hashes of high-entropy secrets; the secret is shown once."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

KEY_PREFIX = "bo_"
# What `new_secret` makes: the prefix and 43 URL-safe base64 characters (32 random bytes).
_KEY_SHAPE = re.compile(r"bo_[A-Za-z0-9_-]{43}")


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def could_be_key(secret: str) -> bool:
    """Whether `secret` has the shape of a key `new_secret` made (no need to look it up)."""
    return _KEY_SHAPE.fullmatch(secret) is not None


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    id: UUID
    name: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


_COLUMNS = "id, name, role, prefix, created_at, revoked_at, last_used_at"
# How stale `last_used_at` may get: a key in use is written once per interval, not per request.
TOUCH_INTERVAL_S = 60


async def create_key(conn: AsyncConnection, name: str, role: str) -> tuple[ApiKeyRow, str]:
    secret = new_secret()
    row = (
        await conn.execute(
            text(
                f"INSERT INTO api_key (id, name, role, key_hash, prefix) "
                f"VALUES (:id, :name, :role, :hash, :prefix) RETURNING {_COLUMNS}"
            ),
            {
                "id": uuid4(),
                "name": name,
                "role": role,
                "hash": hash_key(secret),
                "prefix": secret[:10],
            },
        )
    ).one()
    return ApiKeyRow(*row), secret


async def find_active(conn: AsyncConnection, secret: str) -> ApiKeyRow | None:
    # The lookup is by hash, so timing reveals nothing about the secret itself.
    row = (
        await conn.execute(
            text(f"SELECT {_COLUMNS} FROM api_key WHERE key_hash = :hash AND revoked_at IS NULL"),
            {"hash": hash_key(secret)},
        )
    ).one_or_none()
    return ApiKeyRow(*row) if row else None


async def touch(conn: AsyncConnection, key_id: UUID) -> bool:
    """Record that the key was used, unless it already was in the last interval (by this
    process or another: the condition is evaluated on the row, after any concurrent touch)."""
    result = await conn.execute(
        text(
            "UPDATE api_key SET last_used_at = now() WHERE id = :id AND ("
            "last_used_at IS NULL OR last_used_at < now() - make_interval(secs => :interval)"
            ") RETURNING id"
        ),
        {"id": key_id, "interval": TOUCH_INTERVAL_S},
    )
    return result.one_or_none() is not None


async def list_keys(conn: AsyncConnection, limit: int, after: UUID | None) -> list[ApiKeyRow]:
    rows = await conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM api_key WHERE revoked_at IS NULL "
            "AND (CAST(:after AS uuid) IS NULL OR id > :after) ORDER BY id LIMIT :limit"
        ),
        {"after": after, "limit": limit},
    )
    return [ApiKeyRow(*r) for r in rows]


async def revoke(conn: AsyncConnection, key_id: UUID) -> bool:
    result = await conn.execute(
        text(
            "UPDATE api_key SET revoked_at = clock_timestamp() "
            "WHERE id = :id AND revoked_at IS NULL RETURNING id"
        ),
        {"id": key_id},
    )
    return result.one_or_none() is not None


async def find_active_by_id(conn: AsyncConnection, key_id: UUID) -> ApiKeyRow | None:
    """The key with this id unless revoked: the console's session names its key by id."""
    row = (
        await conn.execute(
            text(f"SELECT {_COLUMNS} FROM api_key WHERE id = :id AND revoked_at IS NULL"),
            {"id": key_id},
        )
    ).one_or_none()
    return ApiKeyRow(*row) if row else None
