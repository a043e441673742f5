"""/v1/api-keys: keys for storefronts and ops staff."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api import cursors
from backorder.api.deps import OpsKey
from backorder.api.docs import problems
from backorder.api.execute import HONOURS_IDEMPOTENCY_KEY, read, write
from backorder.api.schemas.common import Page, page
from backorder.api.schemas.keys import ApiKeyCreatedOut, ApiKeyIn, ApiKeyOut
from backorder.db import keys
from backorder.domain.errors import NotFound

router = APIRouter(prefix="/v1/api-keys", tags=["API keys"])


def _view(row: keys.ApiKeyRow) -> dict[str, object]:
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "prefix": row.prefix,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
    }


@router.post(
    "",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=201,
    response_model=ApiKeyCreatedOut,
    responses=problems(403),
    summary="Create an API key",
    description="Creates a key for a storefront or ops staff. The secret `key` is shown in this "
    "answer only and stored as a hash: a retry with the same `Idempotency-Key` replays the "
    "answer with `key` redacted (create another key if it was lost). A storefront key's "
    "**channel is its name**: to rotate a key, create one with the same name, then delete the "
    "old one; orders follow the name.",
)
async def create_key(
    request: Request, principal: OpsKey, body: Annotated[ApiKeyIn, Body()]
) -> Response:
    async def work(conn: AsyncConnection) -> Any:
        row, secret = await keys.create_key(conn, body.name, body.role)
        return {**_view(row), "key": secret}

    return await write(request, principal, work, secret_fields=("key",))


@router.get(
    "",
    response_model=Page[ApiKeyOut],
    responses=problems(403),
    summary="List API keys",
    description="Active keys (never their secrets), oldest id first, each with "
    "`last_used_at`: when it was last used, to the minute (null if never).",
)
async def list_keys(
    request: Request,
    principal: OpsKey,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    after = cursors.decode(cursor, UUID)

    async def work(conn: AsyncConnection) -> Any:
        rows = await keys.list_keys(conn, limit + 1, after[0] if after else None)
        more = len(rows) > limit
        rows = rows[:limit]
        return page([_view(r) for r in rows], cursors.encode(rows[-1].id) if more else None)

    return await read(request, work)


@router.delete(
    "/{key_id}",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=204,
    responses=problems(403, 404),
    summary="Revoke an API key",
    description="The key answers 401 at once, on every worker.",
)
async def revoke_key(request: Request, principal: OpsKey, key_id: UUID) -> Response:
    async def work(conn: AsyncConnection) -> Any:
        if not await keys.revoke(conn, key_id):
            raise NotFound(f"no active API key {key_id}")

    return await write(request, principal, work, status_code=204)
