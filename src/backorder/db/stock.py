"""The SQL of stock: the SKU lock, the ledger, and the set-based queue fill.

Every writer of a SKU's stock or queue calls `lock_products` first; that row lock is what makes
"never oversell" and "never out of queue order" true.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import events
from backorder.db.orders import CounterUpdate
from backorder.domain.allocation import Allocation, AllocationStrategy
from backorder.domain.products import StockState, stock_state, transition_events

PRODUCT_COLUMNS = (
    "sku, name, backorders_allowed, backorder_limit, allocation_strategy, discontinued, "
    "expected_restock_date, reorder_point, safety_stock, lead_time_days, alternatives, "
    "on_hand, allocated, backordered, incoming, stock_state, created_at, updated_at"
)


@dataclass(slots=True)
class LockedProduct:
    """A product row read under its lock; counters are kept current by the callers."""

    sku: str
    backorders_allowed: bool
    backorder_limit: int | None
    allocation_strategy: AllocationStrategy
    discontinued: bool
    expected_restock_date: date | None
    reorder_point: int | None
    on_hand: int
    allocated: int
    backordered: int
    stock_state: StockState

    @property
    def available(self) -> int:
        return self.on_hand - self.allocated


_LOCK = text(
    "SELECT sku, backorders_allowed, backorder_limit, allocation_strategy, discontinued, "
    "expected_restock_date, reorder_point, on_hand, allocated, backordered, stock_state "
    "FROM product WHERE sku = ANY(:skus) ORDER BY sku FOR UPDATE"
)


async def lock_products(conn: AsyncConnection, skus: list[str]) -> dict[str, LockedProduct]:
    """Lock the products in sorted SKU order (one global order: no deadlocks between orders)."""
    rows = (await conn.execute(_LOCK, {"skus": sorted(set(skus))})).all()
    return {
        r.sku: LockedProduct(
            sku=r.sku,
            backorders_allowed=r.backorders_allowed,
            backorder_limit=r.backorder_limit,
            allocation_strategy=AllocationStrategy(r.allocation_strategy),
            discontinued=r.discontinued,
            expected_restock_date=r.expected_restock_date,
            reorder_point=r.reorder_point,
            on_hand=r.on_hand,
            allocated=r.allocated,
            backordered=r.backordered,
            stock_state=StockState(r.stock_state),
        )
        for r in rows
    }


_MOVE = text(
    "INSERT INTO stock_movement (sku, kind, quantity, reference, reason, order_id, shipment_id, "
    "purchase_order_id) VALUES (:sku, :kind, :quantity, :reference, :reason, :order_id, "
    ":shipment_id, :purchase_order_id) RETURNING id, created_at"
)


async def record_movement(
    conn: AsyncConnection,
    product: LockedProduct,
    kind: str,
    quantity: int,
    *,
    reference: str | None = None,
    reason: str | None = None,
    order_id: UUID | None = None,
    shipment_id: UUID | None = None,
    purchase_order_id: UUID | None = None,
) -> Any:
    """Append to the ledger; the caller writes the counters (`save_counters`)."""
    row = (
        await conn.execute(
            _MOVE,
            {
                "sku": product.sku,
                "kind": kind,
                "quantity": quantity,
                "reference": reference,
                "reason": reason,
                "order_id": order_id,
                "shipment_id": shipment_id,
                "purchase_order_id": purchase_order_id,
            },
        )
    ).one()
    product.on_hand += quantity
    return row


_QUEUE_ORDER = {
    AllocationStrategy.FIFO: "created_at, id",
    AllocationStrategy.PRIORITY: "priority DESC, created_at, id",
}

# One statement gives `units` to the head of the queue. Each waiting line holds at least one
# unit, so the first `units` lines are all that can be reached: the LIMIT bounds the scan.
# `running - backordered` is what the lines ahead took; the head line may be filled partly.
_FILL = """
WITH queue AS (
    SELECT id, order_id, backordered,
           CAST(sum(backordered) OVER (ORDER BY {order} ROWS UNBOUNDED PRECEDING) AS bigint)
               AS running
    FROM (
        SELECT id, order_id, backordered, priority, created_at FROM order_line
        WHERE sku = :sku AND backordered > 0
        ORDER BY {order}
        LIMIT :units
    ) head
), picked AS (
    SELECT id, order_id, running,
           LEAST(backordered, :units - (running - backordered)) AS take
    FROM queue WHERE running - backordered < :units
)
UPDATE order_line l
SET allocated = l.allocated + p.take,
    backordered = l.backordered - p.take,
    filled_at = CASE WHEN l.backordered = p.take THEN clock_timestamp() ELSE l.filled_at END,
    expected_date = CASE WHEN l.backordered = p.take THEN NULL ELSE l.expected_date END
FROM picked p
WHERE l.id = p.id
RETURNING l.order_id, l.id, p.take, p.running
"""
# The fill and its `order.line_allocated` events, one per filled line in queue order, in one
# statement: the allocations never travel to the service and back to be announced.
_FILL_AND_ANNOUNCE = """
WITH filled AS (
{fill}
), announced AS (
    INSERT INTO event (type, data)
    SELECT 'order.line_allocated',
           jsonb_build_object('order_id', order_id, 'line_id', id, 'sku', CAST(:sku AS text),
                              'quantity', take)
    FROM filled ORDER BY running
)
SELECT order_id, id, take, running FROM filled ORDER BY running
"""
_FILL_SQL = {
    strategy: text(_FILL_AND_ANNOUNCE.format(fill=_FILL.format(order=o).strip()))
    for strategy, o in _QUEUE_ORDER.items()
}


async def fill_queue(conn: AsyncConnection, product: LockedProduct) -> list[Allocation]:
    """Give the product's available units to its waiting lines, head first.

    Runs after anything that makes units available (restock, receipt, positive adjustment,
    cancellation), in the same transaction and under the SKU lock. Updates the lines, the
    product's counters (in memory; `save_counters` writes them) and the events. Returns the
    allocations in queue order; the caller refreshes the statuses of their orders, once for
    the whole transaction (`orders.refresh_order_statuses`).
    """
    units = product.available
    if units <= 0 or product.backordered <= 0:
        return []
    result = await conn.execute(
        _FILL_SQL[product.allocation_strategy], {"sku": product.sku, "units": units}
    )
    allocations = [Allocation(r.order_id, r.id, r.take) for r in result]
    filled = sum(a.quantity for a in allocations)
    product.allocated += filled
    product.backordered -= filled
    return allocations


_SAVE = text(
    "UPDATE product SET on_hand = :on_hand, allocated = :allocated, backordered = :backordered, "
    "stock_state = :stock_state, updated_at = clock_timestamp() WHERE sku = :sku"
)

_TAKE_SUBSCRIBERS = text(
    "UPDATE stock_subscription SET notified_at = clock_timestamp() "
    "WHERE sku = :sku AND notified_at IS NULL RETURNING id, customer_id, contact"
)


def _announce_transition(product: LockedProduct) -> list[tuple[str, dict[str, Any]]]:
    """Move the product to the stock state its counters give; the events that announces."""
    new_state = stock_state(product.available, product.reorder_point)
    announced = [
        (
            event_type,
            {
                "sku": product.sku,
                "available": product.available,
                "reorder_point": product.reorder_point,
            },
        )
        for event_type in transition_events(product.stock_state, new_state)
    ]
    product.stock_state = new_state
    return announced


def counters_after_placement(
    products: list[LockedProduct],
) -> tuple[list[CounterUpdate], list[tuple[str, dict[str, Any]]]]:
    """The counters of products an order took from, and the transitions they announce, for
    `orders.place_order` to write in its one statement. Placing an order only lowers
    availability, so `product.back_in_stock` (which uses up subscriptions) cannot be among them.
    """
    announced: list[tuple[str, dict[str, Any]]] = []
    for product in products:
        for event_type, data in _announce_transition(product):
            if event_type == "product.back_in_stock":
                raise AssertionError(f"placing an order raised availability of {product.sku}")
            announced.append((event_type, data))
    counters = [
        CounterUpdate(p.sku, p.allocated, p.backordered, p.stock_state.value) for p in products
    ]
    return counters, announced


async def save_counters(conn: AsyncConnection, products: list[LockedProduct]) -> None:
    """Write the counters of locked products and announce availability transitions.

    `product.back_in_stock` (naming, and using up, the waiting subscriptions) when available
    goes from 0 to more; `product.low_stock` when it enters the band at or below the reorder
    point. Neither again while the product stays in that state.
    """
    announcements: list[tuple[str, dict[str, Any]]] = []
    for product in products:
        for event_type, data in _announce_transition(product):
            if event_type == "product.back_in_stock":
                subs = (await conn.execute(_TAKE_SUBSCRIBERS, {"sku": product.sku})).all()
                data["subscribers"] = [
                    {
                        "subscription_id": str(s.id),
                        "customer_id": s.customer_id,
                        "contact": s.contact,
                    }
                    for s in subs
                ]
            announcements.append((event_type, data))
    await conn.execute(
        _SAVE,
        [
            {
                "sku": p.sku,
                "on_hand": p.on_hand,
                "allocated": p.allocated,
                "backordered": p.backordered,
                "stock_state": p.stock_state.value,
            }
            for p in products
        ],
    )
    await events.emit_many(conn, announcements)
