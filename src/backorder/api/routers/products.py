"""/v1/products: the catalog, stock figures, restocks, adjustments and the ledger."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api import cursors
from backorder.api.deps import AnyKey, OpsKey
from backorder.api.docs import dry_run_answer, example, problems
from backorder.api.execute import (
    HONOURS_IDEMPOTENCY_KEY,
    fields_sent,
    json_response,
    read,
    write,
)
from backorder.api.schemas import examples
from backorder.api.schemas.common import SKU_PATTERN, Page, page
from backorder.api.schemas.dry_runs import DryRunQuery, StockChangeDryRunOut
from backorder.api.schemas.products import (
    AdjustmentIn,
    MovementOut,
    ProductIn,
    ProductOut,
    ProductStatusName,
    PromiseOut,
    RestockIn,
    StockChangeOut,
)
from backorder.db import products
from backorder.db.engine import run_transaction
from backorder.domain.errors import NotFound, ValidationFailed
from backorder.domain.locations import MAIN
from backorder.services import catalog, inventory, promising
from backorder.services.rehearsal import DryRun

router = APIRouter(prefix="/v1/products", tags=["Products and stock"])

SkuPath = Annotated[
    str, Path(pattern=SKU_PATTERN, description="1-64 of A-Z a-z 0-9 . _ -", examples=["TRAIL-42"])
]


@router.put(
    "/{sku}",
    response_model=ProductOut,
    status_code=200,
    responses={201: {"description": "Created", "model": ProductOut}, **problems(403)},
    summary="Create or update a product",
    description="Creates the product (201) or updates it (200). On update, fields left out keep "
    "their values and a field sent as `null` is cleared (`backorder_limit: null` lifts the "
    "limit). `name` is required to create.\n\n`allocation_strategy` sets the queue order: "
    "`fifo` fills waiting lines by placement time, `priority` by order priority first.\n\n"
    "`alternatives` must name other existing products: an unknown SKU is 422 `unknown_sku` "
    "(listed in `skus`), the product itself 422 `validation_error`.",
)
async def put_product(
    request: Request, principal: OpsKey, sku: SkuPath, body: Annotated[ProductIn, Body()]
) -> Response:
    values = fields_sent(
        body,
        not_null=(
            "name",
            "backorders_allowed",
            "allocation_strategy",
            "discontinued",
            "alternatives",
        ),
    )

    async def work(conn: AsyncConnection) -> tuple[bool, dict[str, Any]]:
        return await catalog.put_product(conn, sku, values)

    created, view = await run_transaction(request.app.state.engine, work)
    return json_response(view, 201 if created else 200)


@router.get(
    "/{sku}",
    response_model=ProductOut,
    responses=problems(404),
    summary="Get a product with its live figures",
    description="`available` = `on_hand` - `allocated` is what a new order can take now. "
    "`status`: `in_stock` above the reorder point, `low_stock` at or below it, `backorder` "
    "when nothing is available but new orders will wait, `out_of_stock` when they would be "
    "refused, `discontinued`.",
)
async def get_product(request: Request, principal: AnyKey, sku: SkuPath) -> Response:
    return await read(request, lambda conn: catalog.get_product(conn, sku))


@router.get(
    "",
    response_model=Page[ProductOut],
    responses=problems(),
    summary="List products",
    description="By SKU, with live figures; filter by `status`.",
)
async def list_products(
    request: Request,
    principal: AnyKey,
    status: Annotated[ProductStatusName | None, Query()] = None,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    after = cursors.decode(cursor, str)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        rows = await products.list_products(
            conn, limit=limit + 1, after=after[0] if after else None, status=status
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return page(
            [products.view(r) for r in rows], cursors.encode(rows[-1].sku) if more else None
        )

    return await read(request, work)


@router.get(
    "/{sku}/alternatives",
    response_model=Page[ProductOut],
    responses={
        **example(200, examples.ALTERNATIVES, "The alternatives with stock, in one page."),
        **problems(404),
    },
    summary="In-stock alternatives",
    description="The product's listed alternatives that have stock now (`available > 0`), "
    "most available first, so a storefront can offer them to a customer who would wait.",
)
async def alternatives(request: Request, principal: AnyKey, sku: SkuPath) -> Response:
    async def work(conn: AsyncConnection) -> dict[str, Any]:
        row = await products.get(conn, sku)
        if row is None:
            raise NotFound(f"no product with SKU {sku!r}")
        rows = await products.available_alternatives(conn, list(row.alternatives))
        return page([products.view(r) for r in rows], None)

    return await read(request, work)


@router.get(
    "/{sku}/promise",
    response_model=PromiseOut,
    responses=problems(404),
    summary="Promise before ordering: what an order would get",
    description="What an order of `quantity` units placed now, at priority 0, would get: "
    "`available_now` allocated at once, `backordered` to wait, and `expected_date`, when the "
    "last waiting unit is expected — the date its line would be given, by the same rule "
    "(open purchase orders that are not overdue cover the queue in date order, behind every "
    "line already waiting; past them, the product's `expected_restock_date`). `lines_ahead` "
    "and `units_ahead` are the queue it would join (0 when nothing would wait).\n\n"
    "Where the order would be refused whole, `refused` names the code it would get "
    "(`discontinued`, `insufficient_stock` when the product takes no backorders, "
    "`backorder_limit_exceeded`) and every figure is 0. Nothing is written or reserved: an "
    "order placed afterwards gets the same only if nothing changed in between. Any key; an "
    "unknown SKU is 404, a `quantity` outside 1-1,000,000 is 422 `validation_error`.",
)
async def promise(
    request: Request,
    principal: AnyKey,
    sku: SkuPath,
    quantity: Annotated[
        int,
        Query(ge=1, le=1_000_000, description="Units the order would ask for.", examples=[30]),
    ],
) -> Response:
    return await read(request, lambda conn: promising.promise(conn, sku, quantity))


def stocking(sku: str, location: str | None) -> DryRun:
    """The dry run of a restock or an adjustment: it locks its location, then the SKU."""
    return DryRun(sku=sku, locations=(location or MAIN,), creates=("id",))


@router.post(
    "/{sku}/restocks",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=201,
    response_model=StockChangeOut,
    responses={**dry_run_answer(StockChangeDryRunOut), **problems(403, 404, 409)},
    summary="Restock: add units, fill the queue",
    description="Adds to `on_hand`, then **in the same transaction** gives the new units to the "
    "SKU's backorder queue, head first, until the units or the queue run out (the last line "
    "reached may be filled partly). `allocations` lists what each waiting line got, in queue "
    "order. Honours `Idempotency-Key`.\n\n"
    "`?dry_run=true` answers 200 with what the restock would do now (who would be filled, "
    "whose date would move) and writes nothing.",
)
async def restock(
    request: Request,
    principal: OpsKey,
    sku: SkuPath,
    body: Annotated[RestockIn, Body()],
    dry_run: DryRunQuery = False,
) -> Response:
    return await write(
        request,
        principal,
        lambda conn: inventory.restock(
            conn, sku, body.quantity, body.reference, body.location or MAIN
        ),
        dry_run=stocking(sku, body.location) if dry_run else None,
    )


@router.post(
    "/{sku}/adjustments",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=201,
    response_model=StockChangeOut,
    responses={**dry_run_answer(StockChangeDryRunOut), **problems(403, 404, 409)},
    summary="Adjust stock (cycle count, damage, found)",
    description="A positive `delta` adds units and fills the queue like a restock. A negative "
    "one that would leave `on_hand` below `allocated` (or below zero) is refused with 409 "
    "`would_strand_allocations`: cancel or ship first. Honours `Idempotency-Key`.\n\n"
    "`?dry_run=true` answers 200 with what the adjustment would do now; writes nothing.",
)
async def adjust(
    request: Request,
    principal: OpsKey,
    sku: SkuPath,
    body: Annotated[AdjustmentIn, Body()],
    dry_run: DryRunQuery = False,
) -> Response:
    if body.delta == 0:
        raise ValidationFailed(
            "delta must not be zero",
            [{"loc": ["body", "delta"], "field": "delta", "msg": "must not be zero"}],
        )
    return await write(
        request,
        principal,
        lambda conn: inventory.adjust(
            conn, sku, body.delta, body.reason, body.reference, body.location or MAIN
        ),
        dry_run=stocking(sku, body.location) if dry_run else None,
    )


@router.get(
    "/{sku}/movements",
    response_model=Page[MovementOut],
    responses={
        **example(200, examples.MOVEMENTS, "Ledger entries, oldest first."),
        **problems(403, 404),
    },
    summary="The stock ledger",
    description="Every change of `on_hand`, oldest first, with signed quantities (`restock`, "
    "`adjustment`, `shipment`, `receipt`). `on_hand` always equals the sum of the ledger.",
)
async def movements(
    request: Request,
    principal: OpsKey,
    sku: SkuPath,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    after = cursors.decode(cursor, int)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        if await products.get(conn, sku) is None:
            raise NotFound(f"no product with SKU {sku!r}")
        rows = await products.movements(
            conn, sku, limit=limit + 1, after=after[0] if after else None
        )
        more = len(rows) > limit
        rows = rows[:limit]
        data = [{**r._mapping, "id": str(r.id)} for r in rows]
        return page(data, cursors.encode(rows[-1].id) if more else None)

    return await read(request, work)
