"""/v1/products/{sku}/subscriptions: back-in-stock notices for waiting customers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api import cursors
from backorder.api.deps import AnyKey
from backorder.api.docs import problems
from backorder.api.execute import HONOURS_IDEMPOTENCY_KEY, read, write
from backorder.api.routers.products import SkuPath
from backorder.api.schemas.common import Page, page
from backorder.api.schemas.events import SubscriptionIn, SubscriptionOut
from backorder.db import products
from backorder.db import subscriptions as rows_of
from backorder.domain.errors import NotFound
from backorder.services import webhooks

router = APIRouter(prefix="/v1/products", tags=["Products and stock"])


@router.post(
    "/{sku}/subscriptions",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=201,
    response_model=SubscriptionOut,
    responses=problems(404),
    summary="Subscribe a customer to a back-in-stock notice",
    description="When the SKU next becomes available (`available` goes from 0 to more), one "
    "`product.back_in_stock` event names every waiting subscriber "
    "(`data.subscribers: [{subscription_id, customer_id, contact}]`) and those "
    "subscriptions are used up (`status: notified`). A product in stock now notifies at its "
    "next return. Subscribing a customer who is already waiting answers that same "
    "subscription (with `contact` updated if sent). Storefront or ops keys; a "
    "subscription belongs to the key's channel. Unknown SKU: 404. Honours `Idempotency-Key`.",
)
async def subscribe(
    request: Request, principal: AnyKey, sku: SkuPath, body: Annotated[SubscriptionIn, Body()]
) -> Response:
    return await write(
        request,
        principal,
        lambda conn: webhooks.subscribe(
            conn, sku, principal.channel, body.customer_id, body.contact
        ),
    )


@router.get(
    "/{sku}/subscriptions",
    response_model=Page[SubscriptionOut],
    responses=problems(404),
    summary="List a product's back-in-stock subscriptions",
    description="Oldest first; `status=waiting` for those the next return will name. "
    "Storefront keys see their own channel's subscriptions only.",
)
async def list_subscriptions(
    request: Request,
    principal: AnyKey,
    sku: SkuPath,
    status: Annotated[Literal["waiting", "notified"] | None, Query()] = None,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    after = cursors.decode(cursor, datetime.fromisoformat, UUID)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        if await products.get(conn, sku) is None:
            raise NotFound(f"no product with SKU {sku!r}")
        rows = await rows_of.list_subscriptions(
            conn,
            sku,
            channel=principal.channel_filter,
            waiting=None if status is None else status == "waiting",
            limit=limit + 1,
            after=(after[0], after[1]) if after else None,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = cursors.encode(rows[-1].created_at.isoformat(), rows[-1].id) if more else None
        return page([webhooks.subscription_view(r) for r in rows], next_cursor)

    return await read(request, work)
