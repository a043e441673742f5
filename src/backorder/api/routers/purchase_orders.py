"""/v1/purchase-orders: inbound supply, promise dates and receipts."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api import cursors
from backorder.api.deps import OpsKey
from backorder.api.docs import problems
from backorder.api.execute import read, write
from backorder.api.schemas.common import SKU_PATTERN, Page, Quantity, Sku, StrictModel, Text, page
from backorder.api.schemas.products import StockChangeOut
from backorder.services import purchasing

router = APIRouter(prefix="/v1/purchase-orders", tags=["Purchase orders"])

PoStatus = Literal["open", "closed", "cancelled"]


class PurchaseOrderIn(StrictModel):
    sku: Sku
    quantity: Quantity
    expected_date: date
    reference: Text | None = None

    model_config = StrictModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "sku": "TRAIL-42",
                    "quantity": 100,
                    "expected_date": "2026-12-01",
                    "reference": "PO-1234",
                }
            ]
        }
    }


class PurchaseOrderPatch(StrictModel):
    expected_date: date


class ReceiveIn(StrictModel):
    quantity: Quantity


class PurchaseOrderOut(BaseModel):
    id: UUID
    sku: str
    quantity: int
    received: int
    remaining: int
    expected_date: date
    reference: str | None
    status: PoStatus
    created_at: datetime
    updated_at: datetime


class ReceiptOut(StockChangeOut):
    purchase_order: PurchaseOrderOut


@router.post(
    "",
    status_code=201,
    response_model=PurchaseOrderOut,
    responses=problems(403),
    summary="Create a purchase order",
    description="Inbound supply with an expected date. Open POs make the product's `incoming` "
    "and set the `expected_date` of waiting lines: the queue is covered in fill order by open "
    "POs in `expected_date` order. Unknown SKU: 422 `unknown_sku`. Honours `Idempotency-Key`.",
)
async def create(
    request: Request, principal: OpsKey, body: Annotated[PurchaseOrderIn, Body()]
) -> Response:
    return await write(
        request,
        principal,
        lambda conn: purchasing.create(
            conn, body.sku, body.quantity, body.expected_date, body.reference
        ),
    )


@router.get(
    "",
    response_model=Page[PurchaseOrderOut],
    responses=problems(403),
    summary="List purchase orders",
    description="Oldest first; filter by `sku` and `status`.",
)
async def list_pos(
    request: Request,
    principal: OpsKey,
    sku: Annotated[str | None, Query(pattern=SKU_PATTERN)] = None,
    status: Annotated[PoStatus | None, Query()] = None,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    after = cursors.decode(cursor, datetime.fromisoformat, UUID)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        rows = await purchasing.list_pos(conn, sku=sku, status=status, limit=limit + 1, after=after)
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if rows else None
        next_cursor = (
            cursors.encode(last["created_at"].isoformat(), last["id"]) if more and last else None
        )
        return page(rows, next_cursor)

    return await read(request, work)


@router.get(
    "/{po_id}",
    response_model=PurchaseOrderOut,
    responses=problems(403, 404),
    summary="Get a purchase order",
    description="With what remains to be received.",
)
async def get_po(request: Request, principal: OpsKey, po_id: UUID) -> Response:
    return await read(request, lambda conn: purchasing.get(conn, po_id))


@router.patch(
    "/{po_id}",
    response_model=PurchaseOrderOut,
    responses=problems(403, 404),
    summary="Change a purchase order's expected date",
    description="Waiting lines it covers get the new date; each line whose date moves is "
    "announced with `backorder.expected_date_changed`.",
)
async def patch_po(
    request: Request,
    principal: OpsKey,
    po_id: UUID,
    body: Annotated[PurchaseOrderPatch, Body()],
) -> Response:
    return await write(
        request,
        principal,
        lambda conn: purchasing.change_expected_date(conn, po_id, body.expected_date),
        status_code=200,
    )


@router.post(
    "/{po_id}/cancel",
    response_model=PurchaseOrderOut,
    responses=problems(403, 404, 409),
    summary="Cancel a purchase order",
    description="Only an open PO; what it no longer brings leaves `incoming` and promise dates.",
)
async def cancel_po(request: Request, principal: OpsKey, po_id: UUID) -> Response:
    return await write(
        request, principal, lambda conn: purchasing.cancel(conn, po_id), status_code=200
    )


@router.post(
    "/{po_id}/receive",
    status_code=201,
    response_model=ReceiptOut,
    responses=problems(403, 404, 409),
    summary="Receive units of a purchase order",
    description="A restock of that quantity (ledger kind `receipt`) that fills the queue in the "
    "same transaction; the PO closes when fully received. More than remains: 409 `conflict`. "
    "Honours `Idempotency-Key`.",
)
async def receive(
    request: Request, principal: OpsKey, po_id: UUID, body: Annotated[ReceiveIn, Body()]
) -> Response:
    return await write(
        request, principal, lambda conn: purchasing.receive(conn, po_id, body.quantity)
    )
