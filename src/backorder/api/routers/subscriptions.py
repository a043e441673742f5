"""/v1/products/{sku}/subscriptions: back-in-stock notices for waiting customers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api.deps import AnyKey
from backorder.api.docs import problems
from backorder.api.execute import write
from backorder.api.routers.products import SkuPath
from backorder.api.schemas.common import OptionalText, StrictModel, Text
from backorder.domain.errors import NotFound

router = APIRouter(prefix="/v1/products", tags=["Products and stock"])


class SubscriptionIn(StrictModel):
    customer_id: Text
    contact: OptionalText | None = None

    model_config = StrictModel.model_config | {
        "json_schema_extra": {"examples": [{"customer_id": "c-1001", "contact": "ana@example.com"}]}
    }


class SubscriptionOut(BaseModel):
    id: UUID
    sku: str
    customer_id: str
    contact: str | None
    created_at: datetime


@router.post(
    "/{sku}/subscriptions",
    status_code=201,
    response_model=SubscriptionOut,
    responses=problems(404),
    summary="Subscribe a customer to a back-in-stock notice",
    description="When the SKU next becomes available (available goes from 0 to more), one "
    "`product.back_in_stock` event names every waiting subscriber, and those subscriptions "
    "are used up.",
)
async def subscribe(
    request: Request, principal: AnyKey, sku: SkuPath, body: Annotated[SubscriptionIn, Body()]
) -> Response:
    async def work(conn: AsyncConnection) -> dict[str, Any]:
        row = (
            await conn.execute(
                text(
                    "INSERT INTO stock_subscription (id, sku, customer_id, contact, channel) "
                    "SELECT :id, sku, :customer_id, :contact, :channel FROM product "
                    "WHERE sku = :sku RETURNING id, sku, customer_id, contact, created_at"
                ),
                {
                    "id": uuid4(),
                    "sku": sku,
                    "customer_id": body.customer_id,
                    "contact": body.contact,
                    "channel": principal.channel,
                },
            )
        ).one_or_none()
        if row is None:
            raise NotFound(f"no product with SKU {sku!r}")
        return dict(row._mapping)

    return await write(request, principal, work)
