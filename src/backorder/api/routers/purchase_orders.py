"""/v1/purchase-orders: inbound supply, promise dates and receipts (ops keys only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api import cursors
from backorder.api.deps import OpsKey
from backorder.api.docs import dry_run_answer, problems
from backorder.api.execute import HONOURS_IDEMPOTENCY_KEY, read, write
from backorder.api.schemas.common import SKU_PATTERN, Page, page
from backorder.api.schemas.dry_runs import DryRunQuery, ReceiptDryRunOut
from backorder.api.schemas.purchasing import (
    PoStatus,
    PurchaseOrderIn,
    PurchaseOrderOut,
    PurchaseOrderPatch,
    ReceiptOut,
    ReceiveIn,
)
from backorder.domain.locations import MAIN
from backorder.services import purchasing
from backorder.services.rehearsal import DryRun

router = APIRouter(prefix="/v1/purchase-orders", tags=["Purchase orders"])


@router.post(
    "",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=201,
    response_model=PurchaseOrderOut,
    responses=problems(403),
    summary="Create a purchase order",
    description="Inbound supply with an expected date. Open POs make the product's `incoming` "
    "and set the `expected_date` of its waiting lines: the queue, in fill order, is covered "
    "by the open POs in `expected_date` order (then creation); a line no PO covers takes the "
    "product's `expected_restock_date`. Lines whose date moves are announced with "
    "`backorder.expected_date_changed` events. Unknown SKU: 422 `unknown_sku`. "
    "`expected_date` runs from today (UTC) to today's date five years on; outside that, 422 "
    "`validation_error`.\n\n"
    "**Overdue.** When an open PO's date passes with units unreceived, the service marks it "
    "`overdue: true` on its own (within `BACKORDER_OVERDUE_INTERVAL_S`), writes one "
    "`purchase_order.overdue` event, and dates the lines it covered as if it were not there "
    "(with `backorder.expected_date_changed` for each line that moves). It still counts in "
    "`incoming`. Honours `Idempotency-Key`.",
)
async def create(
    request: Request, principal: OpsKey, body: Annotated[PurchaseOrderIn, Body()]
) -> Response:
    return await write(
        request,
        principal,
        lambda conn: purchasing.create(
            conn, body.sku, body.quantity, body.expected_date, body.reference, body.location or MAIN
        ),
    )


@router.get(
    "",
    response_model=Page[PurchaseOrderOut],
    responses=problems(403),
    summary="List purchase orders",
    description="Oldest first; filter by `sku`, `status` (`open`, `closed`, `cancelled`) and "
    "`overdue` (`true`: the open POs past their date with units still to come, the ones to "
    "chase with the supplier).",
)
async def list_pos(
    request: Request,
    principal: OpsKey,
    sku: Annotated[str | None, Query(pattern=SKU_PATTERN, examples=["TRAIL-42"])] = None,
    status: Annotated[PoStatus | None, Query()] = None,
    overdue: Annotated[
        bool | None, Query(description="Only overdue POs (`true`), or none of them (`false`).")
    ] = None,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    after = cursors.decode(cursor, datetime.fromisoformat, UUID)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        rows = await purchasing.list_pos(
            conn,
            sku=sku,
            status=status,
            overdue=overdue,
            limit=limit + 1,
            after=(after[0], after[1]) if after else None,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = (
            cursors.encode(rows[-1]["created_at"].isoformat(), rows[-1]["id"]) if more else None
        )
        return page(rows, next_cursor)

    return await read(request, work)


@router.get(
    "/{po_id}",
    response_model=PurchaseOrderOut,
    responses=problems(403, 404),
    summary="Get a purchase order",
    description="With what has been received and what `remaining` is still to come.",
)
async def get_po(request: Request, principal: OpsKey, po_id: UUID) -> Response:
    return await read(request, lambda conn: purchasing.get(conn, po_id))


@router.patch(
    "/{po_id}",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    response_model=PurchaseOrderOut,
    responses=problems(403, 404, 409),
    summary="Change a purchase order's expected date",
    description="The waiting lines the PO covers take the new date, and since POs cover the "
    "queue in date order, others may move too; each line whose date moves is announced "
    "with `backorder.expected_date_changed` `{order_id, line_id, sku, from, to}`. Only an "
    "open PO can change: a closed or cancelled one is 409 `conflict`. The new date runs from "
    "today (UTC) to today's date five years on (else 422 `validation_error`); an overdue PO "
    "given one is no longer overdue and drives dates again.",
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
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=200,
    response_model=PurchaseOrderOut,
    responses=problems(403, 404, 409),
    summary="Cancel a purchase order",
    description="Only an open PO (else 409 `conflict`). What it no longer brings leaves "
    "`incoming`, and the lines it covered take their dates from the next POs or the "
    "product's `expected_restock_date`. Units already received stay on hand. Honours "
    "`Idempotency-Key`.",
)
async def cancel_po(request: Request, principal: OpsKey, po_id: UUID) -> Response:
    return await write(
        request, principal, lambda conn: purchasing.cancel(conn, po_id), status_code=200
    )


@router.post(
    "/{po_id}/receive",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=201,
    response_model=ReceiptOut,
    responses={**dry_run_answer(ReceiptDryRunOut), **problems(403, 404, 409)},
    summary="Receive units of a purchase order",
    description="A restock of `quantity` units (ledger kind `receipt`) that gives them to the "
    "SKU's backorder queue, head first, in the same transaction; the answer is the restock's "
    "(`allocations` in queue order) plus the `purchase_order`. The PO closes when fully "
    "received. More than remains, or a PO that is not open: 409 `conflict`. Honours "
    "`Idempotency-Key`.\n\n"
    "`?dry_run=true` answers 200 with what the receipt would do now; writes nothing.",
)
async def receive(
    request: Request,
    principal: OpsKey,
    po_id: UUID,
    body: Annotated[ReceiveIn, Body()],
    dry_run: DryRunQuery = False,
) -> Response:
    return await write(
        request,
        principal,
        lambda conn: purchasing.receive(conn, po_id, body.quantity),
        dry_run=DryRun(purchase_order_id=po_id, creates=("id",)) if dry_run else None,
    )
