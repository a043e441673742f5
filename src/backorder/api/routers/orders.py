"""/v1/orders: placing, reading, cancelling, shipping and reprioritising orders."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api import cursors
from backorder.api.csv_export import CsvShape, csv_response_doc, listing
from backorder.api.deps import AnyKey, OpsKey, Principal, get_settings
from backorder.api.docs import (
    dry_run_answer,
    example,
    problem_example,
    problems,
    with_problem_examples,
)
from backorder.api.execute import HONOURS_IDEMPOTENCY_KEY, read, write
from backorder.api.schemas import examples
from backorder.api.schemas.common import SKU_PATTERN, ChannelQuery, Page, page
from backorder.api.schemas.dry_runs import DryRunQuery, OrderDryRunOut, ShipmentDryRunOut
from backorder.api.schemas.orders import (
    CancelIn,
    LineCancelIn,
    OrderIn,
    OrderOut,
    OrderStatusName,
    PriorityIn,
    ShipmentIn,
    ShipmentOut,
)
from backorder.api.schemas.reports import Instant
from backorder.db import orders
from backorder.domain.errors import Conflict, Forbidden, InsufficientStock, ValidationFailed
from backorder.domain.orders import ShipPolicy
from backorder.domain.placement import LineRequest
from backorder.services import ordering, placement
from backorder.services.rehearsal import DryRun

router = APIRouter(prefix="/v1/orders", tags=["Orders"])


STOREFRONT_MAX_PRIORITY = 4

_ORDER_COLUMNS = (
    "customer_id", "channel", "priority", "ship_policy", "external_ref", "backorder_type",
    "ready_to_ship", "created_at", "updated_at", "backorder_deadline",
)  # fmt: skip
_LINE_COLUMNS = (
    "sku", "quantity", "allocated", "backordered", "shipped", "cancelled", "expected_date",
    "allocations", "at_risk",
)  # fmt: skip


def _order_lines(order: dict[str, Any]) -> list[dict[str, Any]]:
    """An order as CSV rows: one per line, the order's fields repeated on each."""
    head = {c: order[c] for c in _ORDER_COLUMNS}
    head.update(order_id=order["id"], order_status=order["status"])
    return [
        {**head, **{c: line[c] for c in _LINE_COLUMNS}, "line_id": line["id"],
         "line_status": line["status"]}
        for line in order["lines"]
    ]  # fmt: skip


ORDERS_CSV = CsvShape(
    "orders",
    ("order_id", *_ORDER_COLUMNS[:5], "order_status", *_ORDER_COLUMNS[5:], "line_id",
     *_LINE_COLUMNS[:6], "line_status", *_LINE_COLUMNS[6:]),
    _order_lines,
)  # fmt: skip


def check_line_count(request: Request, count: int, what: str) -> None:
    """Hold a body's `lines` to the configured `max_order_lines` (a 422 naming `lines`)."""
    cap = get_settings(request).max_order_lines
    if count > cap:
        msg = f"at most {cap} lines per {what}, not {count}"
        raise ValidationFailed(
            f"invalid request: lines ({msg})",
            [{"loc": ["body", "lines"], "field": "lines", "msg": msg, "type": "too_long"}],
        )


def check_priority(principal: Principal, priority: int) -> None:
    """Storefront keys may send priority 0-4, ops keys 0-9 (the body's own range)."""
    if not principal.is_ops and priority > STOREFRONT_MAX_PRIORITY:
        raise ValidationFailed(
            "storefront keys may set priority 0-4",
            [
                {
                    "loc": ["body", "priority"],
                    "field": "priority",
                    "msg": "storefront keys may set priority 0-4",
                }
            ],
        )


def command_of(principal: Principal, body: OrderIn) -> placement.PlaceOrder:
    """The order a body asks for, placed in the key's channel."""
    return placement.PlaceOrder(
        channel=principal.channel,
        customer_id=body.customer_id,
        priority=body.priority,
        ship_policy=ShipPolicy(body.ship_policy),
        external_ref=body.external_ref,
        lines=[LineRequest(line.sku, line.quantity) for line in body.lines],
        preferred_location=body.preferred_location,
        backorder=body.backorder,
        backorder_deadline=body.backorder_deadline,
    )


@router.post(
    "",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=201,
    response_model=OrderOut,
    responses=with_problem_examples(
        problems(403, 409),
        409,
        external_ref_taken=problem_example(
            Conflict,
            "this channel already has an order with external_ref 'web-88812'",
            order_id=examples.ORDER_ID,
            reason="external_ref_taken",
        ),
        insufficient_stock=problem_example(
            InsufficientStock,
            "not enough stock and no backorders allowed: TRAIL-42",
            lines=[{"sku": "TRAIL-42", "requested": 100, "available": 80}],
        ),
    ),
    summary="Place an order",
    description="Each line takes what is available now and the rest is **backordered**: 100 "
    "ordered with 80 available gives `allocated: 80, backordered: 20`. The order is "
    "all-or-nothing: it is refused whole, with nothing reserved, when a line names an unknown "
    "SKU (422 `unknown_sku`), a discontinued product (409 `discontinued`), needs a backorder "
    "the product does not allow (409 `insufficient_stock`) or would push its open backorders "
    "over `backorder_limit` (409 `backorder_limit_exceeded`). 409 bodies list "
    "`lines: [{sku, requested, available}]` so a storefront can offer what there is.\n\n"
    "`backorder: cancel_rest` (a storefront's \"don't backorder\"): each line takes what is "
    "available now and the rest is cancelled at once: nothing waits, no backorder refusal "
    "applies, each such line writes `order.line_cancelled` with `reason: short_stock`, and "
    "with nothing in stock at all the order is placed `cancelled` (then `order.cancelled`).\n\n"
    "`external_ref` is unique per channel: an order with a reference the channel already "
    "used is 409 `conflict` with the first order's id as `order_id` at the top of the problem "
    "body (and `reason: external_ref_taken`), reserving nothing; even when stock would now "
    "refuse it. Two orders racing with one reference: exactly one is placed. A retry with the "
    "first request's `Idempotency-Key` is still answered as a replay.\n\n"
    "`ship_policy: partial` lets allocated units ship now (a partial backorder); `complete` "
    "holds the whole order until every unit is allocated (a full backorder). Storefront keys "
    "may send `priority` 0-4, ops 0-9. Honours `Idempotency-Key`.",
)
async def place_order(
    request: Request, principal: AnyKey, body: Annotated[OrderIn, Body()]
) -> Response:
    check_line_count(request, len(body.lines), "order")
    check_priority(principal, body.priority)
    cmd = command_of(principal, body)
    return await write(request, principal, lambda conn: placement.place_order(conn, cmd))


@router.get(
    "",
    response_model=Page[OrderOut],
    responses={**problems(403), **csv_response_doc(ORDERS_CSV)},
    summary="List orders",
    description="Newest first, paged by `cursor` (a keyset: stable while orders arrive, and "
    "with any filters; pass the same filters with each page). Filters combine with AND:\n\n"
    "* `status`, `customer_id`, `sku` (orders with a line of it), `external_ref` (your "
    "reference, unique per channel), `ready_to_ship` (`true` or `false`).\n"
    "* `at_risk`: `true`, orders with a line at risk of missing the order's "
    "`backorder_deadline` (its `expected_date` unknown or after the deadline's date); "
    "`false`, orders with none.\n"
    "* `created_since` (inclusive) and `created_until` (exclusive): RFC 3339 date-times with "
    "an offset, e.g. `2026-12-01T00:00:00Z`.\n"
    "* `channel` (ops keys): one channel's orders. Storefront keys see their own channel's "
    "orders only; a storefront naming another channel is refused with 403 `forbidden` (its "
    "own is accepted and changes nothing).\n\n"
    "A query parameter not listed here is 422 `validation_error` naming it.\n\n"
    "With `Accept: text/csv`: every page from `cursor` on, as one CSV with **one row per "
    "order line** (the order's fields repeated on each; `allocations` as JSON).",
)
async def list_orders(
    request: Request,
    principal: AnyKey,
    status: Annotated[OrderStatusName | None, Query()] = None,
    customer_id: Annotated[str | None, Query(max_length=255, examples=["c-1001"])] = None,
    sku: Annotated[str | None, Query(pattern=SKU_PATTERN, examples=["TRAIL-42"])] = None,
    external_ref: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=255,
            description="The `external_ref` the order was placed with.",
            examples=["web-88812"],
        ),
    ] = None,
    ready_to_ship: Annotated[
        bool | None,
        Query(description="Only orders that can (`true`) or cannot (`false`) ship now."),
    ] = None,
    at_risk: Annotated[
        bool | None,
        Query(
            description="Only orders with (`true`) or without (`false`) a line at risk of "
            "missing the order's `backorder_deadline`."
        ),
    ] = None,
    created_since: Annotated[
        Instant | None,
        Query(
            description="Placed at or after this RFC 3339 date-time (with offset).",
            examples=["2026-12-01T00:00:00Z"],
        ),
    ] = None,
    created_until: Annotated[
        Instant | None,
        Query(
            description="Placed before this RFC 3339 date-time (with offset), exclusive.",
            examples=["2026-12-02T00:00:00Z"],
        ),
    ] = None,
    channel: ChannelQuery = None,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    if not principal.is_ops and channel is not None and channel != principal.channel:
        raise Forbidden("storefront keys see their own channel's orders only")

    async def fetch(conn: AsyncConnection, cursor: str | None, limit: int) -> dict[str, Any]:
        after = cursors.decode(cursor, datetime.fromisoformat, UUID)
        rows = await orders.list_orders(
            conn,
            limit=limit + 1,
            after=(after[0], after[1]) if after else None,
            channel=principal.channel_filter or channel,
            status=status,
            customer_id=customer_id,
            sku=sku,
            external_ref=external_ref,
            ready_to_ship=ready_to_ship,
            at_risk=at_risk,
            created_since=created_since,
            created_until=created_until,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = cursors.encode(rows[-1].created_at.isoformat(), rows[-1].id) if more else None
        return page([ordering.order_view(r) for r in rows], next_cursor)

    return await listing(request, fetch, cursor, limit, ORDERS_CSV)


@router.get(
    "/{order_id}",
    response_model=OrderOut,
    responses=problems(404),
    summary="Get an order",
    description="With per-line units (`allocated`, `backordered`, `shipped`, `cancelled`) and "
    "each backordered line's `expected_date`. Another channel's order answers 404.",
)
async def get_order(request: Request, principal: AnyKey, order_id: UUID) -> Response:
    return await read(
        request, lambda conn: ordering.get_order(conn, order_id, principal.channel_filter)
    )


@router.post(
    "/{order_id}/cancel",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=200,
    response_model=OrderOut | OrderDryRunOut,
    responses={
        **example(200, examples.ORDER_CANCELLED, "The order, every unshipped unit cancelled."),
        **with_problem_examples(
            problems(404, 409),
            409,
            nothing_to_cancel=problem_example(
                Conflict,
                "nothing left to cancel on this order",
                reason="nothing_to_cancel",
            ),
        ),
    },
    summary="Cancel an order",
    description="Cancels every unshipped unit. Freed allocated units go to the head of each "
    "SKU's queue in the same transaction. Nothing left to cancel: 409 (`already_shipped` if "
    'shipped units stand in the way, else `conflict`), with `"reason": '
    '"nothing_to_cancel"` in the problem body. Writes one `order.line_cancelled` per line '
    "with open units (`reason: request`, your `reason` as `note`), then `order.cancelled` if "
    "the order is now `cancelled` (not when some of it shipped). Honours `Idempotency-Key`.\n\n"
    "`?dry_run=true` answers with the order as the cancel would leave it, plus what would "
    "move for others (a storefront sees its own channel's orders only); writes nothing.",
)
async def cancel_order(
    request: Request,
    principal: AnyKey,
    order_id: UUID,
    body: Annotated[CancelIn | None, Body()] = None,
    dry_run: DryRunQuery = False,
) -> Response:
    reason = body.reason if body else None
    return await write(
        request,
        principal,
        lambda conn: ordering.cancel_order(conn, order_id, principal.channel_filter, reason),
        status_code=200,
        dry_run=DryRun(order_id=order_id) if dry_run else None,
    )


@router.post(
    "/{order_id}/lines/{line_id}/cancel",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=200,
    response_model=OrderOut | OrderDryRunOut,
    responses={
        **example(
            200,
            examples.ORDER_LINE_CANCELLED,
            'The order after `{"quantity": 5}`: backordered units are cancelled first.',
        ),
        **with_problem_examples(
            problems(404, 409),
            409,
            exceeds_remaining=problem_example(
                Conflict,
                "the line has 3 unshipped, uncancelled units",
                reason="exceeds_remaining",
                cancellable=3,
            ),
        ),
    },
    summary="Cancel units of a line",
    description="Cancels `quantity` units (all unshipped ones if left out), **backordered "
    "units first**, then allocated ones, whose units go to the SKU's queue at once. More "
    "than the line still has: 409 (`already_shipped` if shipped units stand in the way, else "
    "`conflict`) with `reason` `nothing_to_cancel` (none left) or `exceeds_remaining`, and "
    "`cancellable` (how many could be). Writes `order.line_cancelled`, and `order.cancelled` "
    "after it when this empties an order of which nothing shipped. Honours `Idempotency-Key`."
    "\n\n`?dry_run=true` answers with the order as the cancel would leave it, plus what would "
    "move for others (a storefront sees its own channel's orders only); writes nothing.",
)
async def cancel_line(
    request: Request,
    principal: AnyKey,
    order_id: UUID,
    line_id: UUID,
    body: Annotated[LineCancelIn | None, Body()] = None,
    dry_run: DryRunQuery = False,
) -> Response:
    quantity = body.quantity if body else None
    reason = body.reason if body else None
    return await write(
        request,
        principal,
        lambda conn: ordering.cancel_line(
            conn, order_id, line_id, quantity, principal.channel_filter, reason
        ),
        status_code=200,
        dry_run=DryRun(order_id=order_id) if dry_run else None,
    )


@router.patch(
    "/{order_id}",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    response_model=OrderOut,
    responses={
        **example(200, examples.ORDER_REPRIORITISED, "The order with its new priority."),
        **problems(403, 404),
    },
    summary="Change an order's priority",
    description="Moves its backordered lines within `priority` queues at once.",
)
async def patch_order(
    request: Request, principal: OpsKey, order_id: UUID, body: Annotated[PriorityIn, Body()]
) -> Response:
    return await write(
        request,
        principal,
        lambda conn: ordering.reprioritise(conn, order_id, body.priority),
        status_code=200,
    )


@router.post(
    "/{order_id}/shipments",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=201,
    response_model=ShipmentOut,
    responses={**dry_run_answer(ShipmentDryRunOut), **problems(403, 404, 409)},
    summary="Ship allocated units",
    description="Ships allocated units: `on_hand` and `allocated` both drop, and the ledger "
    "records a `shipment`. All-or-nothing: more than is allocated on any line is 409 "
    "`not_allocated`; a `complete` order with units still backordered is 409 "
    "`order_incomplete`. An order may ship in several shipments. Honours `Idempotency-Key`."
    "\n\n`?dry_run=true` answers 200 with what the shipment would do now; writes nothing.",
)
async def ship(
    request: Request,
    principal: OpsKey,
    order_id: UUID,
    body: Annotated[ShipmentIn, Body()],
    dry_run: DryRunQuery = False,
) -> Response:
    check_line_count(request, len(body.lines), "shipment")
    requested = [(line.line_id, line.quantity) for line in body.lines]
    return await write(
        request,
        principal,
        lambda conn: ordering.ship(conn, order_id, requested, body.location),
        dry_run=DryRun(
            order_id=order_id,
            locations=(body.location,) if body.location else (),
            creates=("id",),
        )
        if dry_run
        else None,
    )
