"""/v1/locations and /v1/transfers: where stock is kept, moving it, and what to pick where."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Path, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api import cursors
from backorder.api.csv_export import CsvShape, csv_response_doc, listing
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
from backorder.api.schemas.dry_runs import DryRunQuery, TransferDryRunOut
from backorder.api.schemas.locations import (
    LocationIn,
    LocationOut,
    PickLineOut,
    TransferIn,
    TransferOut,
)
from backorder.db import locations as locations_db
from backorder.db.engine import run_transaction
from backorder.services import locations
from backorder.services.rehearsal import DryRun

router = APIRouter(prefix="/v1/locations", tags=["Locations"])
transfers = APIRouter(prefix="/v1/transfers", tags=["Locations"])

CodePath = Annotated[
    str,
    Path(
        pattern=SKU_PATTERN,
        description="The location's code: 1-64 of A-Z a-z 0-9 . _ -",
        examples=["leeds"],
    ),
]


@router.put(
    "/{code}",
    response_model=LocationOut,
    status_code=200,
    responses={201: {"description": "Created", "model": LocationOut}, **problems(403)},
    summary="Create or update a location",
    description="Creates the location (201) or updates it (200); on update, fields left out "
    "keep their values, and none may be sent as `null`. `name` is required to create; a new "
    "location has `rank` 100 and is active unless told otherwise. The location `main` always "
    "exists: every write that names no location uses it.\n\n"
    "**rank** (0-1000): a lower rank is preferred when a new order line is allocated, and when "
    "units freed at several locations at once go to the queue.\n\n"
    "**active: false** takes the location's unallocated units out of `available` (they stay "
    "on hand, and may be transferred out) and refuses new stock there (409 "
    "`location_inactive`); units already allocated there can still ship. **active: true** "
    "again makes them available, and they go to the backorder queues at once, head first, "
    "in the same transaction.",
)
async def put_location(
    request: Request, principal: OpsKey, code: CodePath, body: Annotated[LocationIn, Body()]
) -> Response:
    values = fields_sent(body, not_null=("name", "rank", "active"))

    async def work(conn: AsyncConnection) -> tuple[bool, dict[str, Any]]:
        return await locations.put_location(conn, code, values)

    created, view = await run_transaction(request.app.state.engine, work)
    return json_response(view, 201 if created else 200)


@router.get(
    "",
    response_model=Page[LocationOut],
    responses={
        **example(200, examples.LOCATIONS, "Locations by rank, then code."),
        **problems(),
    },
    summary="List locations",
    description="Every location, inactive ones included, by rank (the preferred first), then "
    "code. Any key may read them.",
)
async def list_locations(
    request: Request,
    principal: AnyKey,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    after = cursors.decode(cursor, int, str)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        rows = await locations_db.list_locations(
            conn, limit=limit + 1, after=(after[0], after[1]) if after else None
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = cursors.encode(rows[-1].rank, rows[-1].code) if more else None
        return page([locations_db.view(r) for r in rows], next_cursor)

    return await read(request, work)


@router.get(
    "/{code}",
    response_model=LocationOut,
    responses=problems(404),
    summary="Get a location",
    description="Any key may read it. An unknown code is 404 `not_found`.",
)
async def get_location(request: Request, principal: AnyKey, code: CodePath) -> Response:
    return await read(request, lambda conn: locations.get_location(conn, code))


PICK_LIST_CSV = CsvShape(
    "pick-list",
    ("order_id", "line_id", "sku", "customer_id", "quantity", "priority", "created_at"),
)


@router.get(
    "/{code}/pick-list",
    response_model=Page[PickLineOut],
    responses={**problems(403, 404), **csv_response_doc(PICK_LIST_CSV)},
    summary="Pick list: what to ship from this location",
    description="The lines of ready-to-ship orders with units allocated and not yet shipped "
    "here, highest order priority first, then oldest: walk it top down, and ship each order "
    "with `POST /v1/orders/{id}/shipments` naming this `location`. `quantity` is the line's "
    "units allocated and unshipped here (a line split over two locations shows on both pick "
    "lists, each with its own part). A `complete` order shows only once all of it is "
    "allocated. An unknown code is 404 `not_found`.\n\n"
    "With `Accept: text/csv`: every page from `cursor` on, as one CSV with a header row (a "
    "picker's printout).",
)
async def pick_list(
    request: Request,
    principal: OpsKey,
    code: CodePath,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    async def fetch(conn: AsyncConnection, cursor: str | None, limit: int) -> dict[str, Any]:
        after = cursors.decode(cursor, int, datetime.fromisoformat, UUID, int)
        items, key = await locations.pick_list(conn, code, limit=limit, after=after)
        next_cursor = None
        if key is not None:
            rank, created_at, order_id, line_no = key
            next_cursor = cursors.encode(rank, created_at.isoformat(), order_id, line_no)
        return page(items, next_cursor)

    return await listing(request, fetch, cursor, limit, PICK_LIST_CSV)


@transfers.post(
    "",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=201,
    response_model=TransferOut,
    responses={**dry_run_answer(TransferDryRunOut), **problems(403, 409)},
    summary="Transfer units between locations",
    description="Moves `quantity` unallocated units of `sku` from one location to another: two "
    "ledger rows of kind `transfer`, -quantity at `from` and +quantity at `to`; `on_hand` over "
    "the network stays the same.\n\n"
    "Units may leave an inactive location (closing a store) but only arrive at an active one "
    "(else 409 `location_inactive`). Arriving, they are available and go to the SKU's "
    "backorder queue at once, head first, allocated at `to`: `allocations` lists what each "
    "waiting line got.\n\n"
    "Refusals, which change nothing: more than `from` holds unallocated, 409 "
    "`insufficient_stock`; `from` = `to`, 422 `validation_error`; an unknown location, 422 "
    "`unknown_location`; an unknown SKU, 422 `unknown_sku`. Honours `Idempotency-Key`.\n\n"
    "`?dry_run=true` answers 200 with what the transfer would do now; writes nothing.",
)
async def transfer(
    request: Request,
    principal: OpsKey,
    body: Annotated[TransferIn, Body()],
    dry_run: DryRunQuery = False,
) -> Response:
    return await write(
        request,
        principal,
        lambda conn: locations.transfer(
            conn, body.sku, body.source, body.to, body.quantity, body.reference
        ),
        dry_run=DryRun(sku=body.sku, locations=(body.source, body.to), creates=("id",))
        if dry_run
        else None,
    )
