"""The SQL of stock: the SKU lock, the ledger, and the set-based queue fill.

Every writer of a SKU's stock or queue calls `lock_products` first; that row lock is what makes
"never oversell" and "never out of queue order" true.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import events, locations
from backorder.db.orders import READY_SQL, STATUS_SQL, CounterUpdate
from backorder.db.queue import QUEUE_ORDER
from backorder.domain.allocation import AllocationStrategy
from backorder.domain.locations import LocationStock, fill_segments
from backorder.domain.products import StockState, stock_state, transition_events

PRODUCT_COLUMNS = (
    "sku, name, backorders_allowed, backorder_limit, allocation_strategy, discontinued, "
    "expected_restock_date, reorder_point, safety_stock, lead_time_days, alternatives, "
    "on_hand, allocated, backordered, incoming, stock_state, created_at, updated_at"
)


@dataclass(slots=True)
class LockedProduct:
    """A product row read under its lock, with its stock per location; the callers keep the
    counters current through the methods below, and `save_counters` writes them."""

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
    incoming: int
    stock_state: StockState
    # Unallocated units at inactive locations (the product row's counter, kept current).
    unavailable: int = 0
    # How long an order that comes to wait for it waits at most (null: no limit).
    max_backorder_days: int | None = None
    # Stock per location, by rank then code (empty when read without the lock: a what-if).
    levels: dict[str, LocationStock] = field(default_factory=dict)
    # The locations whose level changed since the lock (`save_counters` writes those).
    touched: set[str] = field(default_factory=set)

    @property
    def available(self) -> int:
        return self.on_hand - self.allocated - self.unavailable

    def level(self, place: Any) -> LocationStock:
        """The stock at a location (a `location` row), made empty on its first movement."""
        found = self.levels.get(place.code)
        if found is None:
            found = self.levels[place.code] = LocationStock(
                place.code, place.rank, place.active, 0, 0, place.id
            )
        return found

    def move(self, location: str, on_hand: int = 0, allocated: int = 0) -> None:
        """Change the units on hand and allocated at a location, and the network totals."""
        level = self.levels[location]
        before = level.unavailable
        self.touched.add(location)
        level.on_hand += on_hand
        level.allocated += allocated
        self.on_hand += on_hand
        self.allocated += allocated
        self.unavailable += level.unavailable - before


# The products locked in SKU order, then read with their stock levels (`[[location, rank,
# active, on_hand, allocated, id]]` by rank, then code) in one round trip: the function's
# second statement reads after the locks are held (migration 20261207_0008 says why).
LOCK = text("SELECT * FROM lock_products(CAST(:skus AS text[]))")


async def lock_products(conn: AsyncConnection, skus: list[str]) -> dict[str, LockedProduct]:
    """Lock the products in sorted SKU order (one global order: no deadlocks between orders),
    with their stock per location as it stands under the locks."""
    return locked_of((await conn.execute(LOCK, {"skus": sorted(set(skus))})).all())


def locked_of(rows: Iterable[Any]) -> dict[str, LockedProduct]:
    """The rows of `lock_products` (attribute access: SQLAlchemy's rows or psycopg's named
    tuples) as locked products; a row without a SKU (an outer join's empty side) is skipped."""
    found = {}
    for r in rows:
        if r.sku is None:
            continue
        product = found[r.sku] = product_of(r)
        product.levels = {
            code: LocationStock(code, rank, active, on_hand, allocated, location_id)
            for code, rank, active, on_hand, allocated, location_id in r.levels or ()
        }
    return found


def product_of(r: Any) -> LockedProduct:
    """A product row with the columns of `LOCK` (read under the lock, or not: a what-if)."""
    return LockedProduct(
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
        incoming=r.incoming,
        stock_state=StockState(r.stock_state),
        unavailable=r.unavailable,
        max_backorder_days=getattr(r, "max_backorder_days", None),
    )


# The stock level is made on the SKU's first movement at the location (the ledger row's key
# points at it); the caller holds the SKU lock, so no one else writes it meanwhile.
_MOVE = text(
    "WITH level AS (INSERT INTO stock_level (sku, location) VALUES (:sku, :location) "
    "ON CONFLICT (sku, location) DO NOTHING) "
    "INSERT INTO stock_movement (sku, location, kind, quantity, reference, reason, order_id, "
    "shipment_id, purchase_order_id, transfer_id) VALUES (:sku, :location, :kind, :quantity, "
    ":reference, :reason, :order_id, :shipment_id, :purchase_order_id, :transfer_id) "
    "RETURNING id, created_at, location"
)


async def record_movement(
    conn: AsyncConnection,
    product: LockedProduct,
    kind: str,
    quantity: int,
    *,
    location: str,
    reference: str | None = None,
    reason: str | None = None,
    order_id: UUID | None = None,
    shipment_id: UUID | None = None,
    purchase_order_id: UUID | None = None,
    transfer_id: UUID | None = None,
    allocated: int = 0,
) -> Any:
    """Append to the ledger at a location (whose level the caller made with `product.level`)
    and move `on_hand` (and `allocated`, for a shipment) there; `save_counters` writes them."""
    row = (
        await conn.execute(
            _MOVE,
            {
                "sku": product.sku,
                "location": location,
                "kind": kind,
                "quantity": quantity,
                "reference": reference,
                "reason": reason,
                "order_id": order_id,
                "shipment_id": shipment_id,
                "purchase_order_id": purchase_order_id,
                "transfer_id": transfer_id,
            },
        )
    ).one()
    product.move(location, on_hand=quantity, allocated=allocated)
    return row


# Each SKU gives its `units` to the head of its queue: one branch per SKU, walking the index of
# its strategy. Each waiting line holds at least one unit, so a SKU's first `units` queue rows
# are all that can be reached: the LIMIT bounds the scan. Each SKU and its units are plain
# parameters, so the planner knows how many lines a fill reaches: ten units on a SKU with
# 1,000,000 waiting lines take milliseconds (with the units hidden in an array it guessed a
# tenth of the queue and hashed whole tables: 2 s). `running - backordered` is what the lines
# ahead took; the last line reached may be filled partly. A line whose last unit is allocated
# leaves the queue in the same statement, found at the address (ctid) the head read it from:
# every writer of a SKU's queue rows holds the product lock the fill holds, so none moves.
_HEAD_BRANCH = """
    (SELECT CAST(:sku_{i} AS text) AS sku, CAST(:units_{i} AS bigint) AS units,
            CAST(:locations_{i} AS text[]) AS locations, CAST(:ids_{i} AS smallint[]) AS ids,
            CAST(:ends_{i} AS bigint[]) AS ends, CAST(:amounts_{i} AS bigint[]) AS amounts,
            line_id, ctid AS queue_tid, row_number() OVER (ORDER BY {order}) AS n
     FROM backorder_queue WHERE sku = :sku_{i}
     ORDER BY {order} LIMIT :units_{i})"""
_NO_HEAD = """
    SELECT CAST(NULL AS text) AS sku, CAST(NULL AS bigint) AS units,
           CAST(NULL AS text[]) AS locations, CAST(NULL AS smallint[]) AS ids,
           CAST(NULL AS bigint[]) AS ends, CAST(NULL AS bigint[]) AS amounts,
           CAST(NULL AS uuid) AS line_id, CAST(NULL AS tid) AS queue_tid,
           CAST(NULL AS bigint) AS n
    WHERE false"""
# The units are laid end to end, location after location (`:locations_<i>` and their
# `:ids_<i>`, with each one's `:amounts_<i>` and running `:ends_<i>`, in hand-out order:
# `domain/locations.fill_segments`), and each line takes the stretch that lines up with its
# own place in the queue. Its first unit's location is found by binary search in the ends
# (`width_bucket`); nearly every line's stretch lies within that one location (`single`), and
# a line that straddles two or more gets its `parts`, `{location: units}`. A line that held
# no units takes the first location as its primary (`order_line.location_id`, a fixed-width
# column: the line is still rewritten in place); units anywhere else go into its
# `allocated_at` (`units_add`). `domain/locations.split_fill` is the same rule in Python.
_FILL_CTES = """head AS ({head}
), queue AS (
    SELECT h.sku, h.units, h.locations, h.ids, h.ends, h.amounts, h.n, h.queue_tid, l.id,
           l.order_id, l.backordered,
           CAST(sum(l.backordered) OVER (PARTITION BY h.sku ORDER BY h.n
                                         ROWS UNBOUNDED PRECEDING) AS bigint) AS running
    FROM head h JOIN order_line l ON l.id = h.line_id
), reaching AS (
    SELECT sku, n, queue_tid, id, order_id, locations, ids, ends, amounts,
           running - backordered AS start,
           LEAST(backordered, units - (running - backordered)) AS take
    FROM queue WHERE running - backordered < units
), spanning AS (
    -- The locations its first and last unit come from (1-based, in hand-out order).
    SELECT *, width_bucket(start, ends) + 1 AS first_k,
           width_bucket(start + take - 1, ends) + 1 AS last_k
    FROM reaching
), picked AS (
    SELECT sku, n, queue_tid, id, order_id, take, start, locations, ends, amounts,
           first_k, last_k, ids[first_k] AS first_id, locations[first_k] AS first_location,
           first_k = last_k AS single,
           CASE WHEN first_k <> last_k THEN
               (SELECT jsonb_object_agg(locations[k], LEAST(start + take, ends[k])
                                                      - GREATEST(start, ends[k] - amounts[k]))
                FROM generate_series(first_k, last_k) AS k) END AS parts
    FROM spanning
), filled AS (
    UPDATE order_line l
    SET allocated = l.allocated + p.take,
        backordered = l.backordered - p.take,
        location_id = CASE WHEN l.location_id = 0 THEN p.first_id ELSE l.location_id END,
        allocated_at = CASE
            WHEN p.single AND l.location_id IN (0, p.first_id) THEN l.allocated_at
            WHEN l.location_id IN (0, p.first_id)
                THEN units_add(l.allocated_at, p.parts - p.first_location)
            ELSE units_add(l.allocated_at,
                           COALESCE(p.parts, jsonb_build_object(p.first_location, p.take))
                           - (SELECT code FROM location WHERE id = l.location_id)) END,
        filled_at = CASE WHEN l.backordered = p.take THEN clock_timestamp() ELSE l.filled_at END,
        expected_date = CASE WHEN l.backordered = p.take THEN NULL ELSE l.expected_date END
    FROM picked p
    WHERE l.id = p.id
    RETURNING p.sku, p.n, p.queue_tid, l.order_id, l.id, p.take, p.start, p.locations,
              p.ends, p.amounts, p.first_k, p.last_k, l.backordered
), dequeued AS (
    DELETE FROM backorder_queue q USING filled f
    WHERE q.ctid = f.queue_tid AND q.line_id = f.id AND f.backordered = 0
)"""


def _fill_ctes(strategies: tuple[AllocationStrategy, ...]) -> str:
    """The fill's CTEs for SKUs of these strategies (parameters `sku_<i>`, `units_<i>`,
    `locations_<i>`, `ends_<i>`, `amounts_<i>`)."""
    head = "\n    UNION ALL".join(
        _HEAD_BRANCH.format(i=i, order=QUEUE_ORDER[s]) for i, s in enumerate(strategies)
    )
    return _FILL_CTES.format(head=head or _NO_HEAD)


# The fill, then the status and readiness of every order it reached or the transaction
# changed before (`:changed`, e.g. a cancelled order), then the events, in one statement.
# The orders are locked in id order before they are written, once per transaction (callers
# settle once), so transactions reaching overlapping orders queue instead of deadlocking.
# Statuses come from the order's unit counters as read by that lock: the newest committed
# row, even when a fill of another SKU changed the order after this statement began. (Its
# lines, read through the statement's snapshot, could be older than that: a status summed
# from them was written stale when two fills reached one order at once.)
_SETTLE = """WITH {fill}, reached AS MATERIALIZED (
    -- What this statement gave each order (0 for the orders changed before it).
    SELECT id, CAST(sum(take) AS bigint) AS take FROM (
        SELECT order_id AS id, take FROM filled
        UNION ALL
        SELECT unnest(CAST(:changed AS uuid[])), 0
    ) t GROUP BY id
), before AS MATERIALIZED (
    SELECT so.id, so.channel, so.ready_to_ship, r.take
    FROM reached r JOIN sales_order so ON so.id = r.id
    ORDER BY so.id FOR NO KEY UPDATE OF so
), changed AS (
    UPDATE sales_order so
    SET allocated = so.allocated + b.take,
        backordered = so.backordered - b.take,
        status = {status},
        ready_to_ship = {ready},
        updated_at = clock_timestamp()
    FROM before b
    WHERE so.id = b.id
    RETURNING so.id, so.channel, so.ready_to_ship, b.ready_to_ship AS was_ready
), counted AS (
    -- The products' running total for /metrics (their rows are locked by the caller).
    UPDATE product p SET units_filled_from_queue = p.units_filled_from_queue + f.units
    FROM (SELECT sku, sum(take) AS units FROM filled GROUP BY sku) f
    WHERE p.sku = f.sku
), announced AS (
    -- One allocation event per filled line and location in queue order, then readiness by
    -- order id.
    INSERT INTO event (type, data)
    SELECT type, data FROM (
        SELECT 1 AS e, f.sku, f.n, k, NULL AS id, 'order.line_allocated' AS type,
               jsonb_build_object(
                   'order_id', f.order_id, 'line_id', f.id, 'sku', f.sku,
                   'quantity', CASE WHEN f.first_k = f.last_k THEN f.take
                                    ELSE LEAST(f.start + f.take, f.ends[k])
                                         - GREATEST(f.start, f.ends[k] - f.amounts[k]) END,
                   'location', f.locations[k], 'channel', b.channel) AS data
        FROM filled f JOIN before b ON b.id = f.order_id
        -- One event per location the line's units came from, in hand-out order.
        CROSS JOIN LATERAL generate_series(f.first_k, f.last_k) AS k
        UNION ALL
        SELECT 2, NULL, NULL, NULL, id, 'order.ready_to_ship',
               jsonb_build_object('order_id', id, 'channel', channel)
        FROM changed WHERE ready_to_ship AND NOT was_ready
    ) e
    ORDER BY e, sku, n, k, id
)
-- Per SKU the units given (the caller knows where: the first of them, location after location)
-- and the allocations in queue order, as JSON.
SELECT sku, CAST(sum(take) AS bigint) AS units,
       CAST(json_agg(json_build_object('order_id', order_id, 'line_id', id, 'quantity', take)
                     ORDER BY n) AS text) AS allocations
FROM filled GROUP BY sku
"""


# An order's units after the fill: its counters (as the lock read them) and what it took.
_O, _A = "(so.backordered - b.take)", "(so.allocated + b.take)"


def fill_params(i: int, sku: str, segments: list[tuple[str, int, int]]) -> dict[str, Any]:
    """The parameters of SKU `i` of a fill: its units per location (code, id, units), in
    hand-out order."""
    amounts = [units for _, _, units in segments]
    return {
        f"sku_{i}": sku,
        f"units_{i}": sum(amounts),
        f"locations_{i}": [location for location, _, _ in segments],
        f"ids_{i}": [location_id for _, location_id, _ in segments],
        f"ends_{i}": list(itertools.accumulate(amounts)),
        f"amounts_{i}": amounts,
    }


@functools.lru_cache(maxsize=256)
def _settle_sql(strategies: tuple[AllocationStrategy, ...]) -> TextClause:
    """The settle statement for SKUs of these strategies, in this order. Restocks use two
    (one SKU, either strategy); cancellations of many-line orders make more, hence the bound."""
    return text(
        _SETTLE.format(
            fill=_fill_ctes(strategies).strip(),
            status=STATUS_SQL.format(o=_O, a=_A, s="so.shipped"),
            ready=READY_SQL.format(o=_O, a=_A, policy="so.ship_policy"),
        )
    )


def fill_statement(strategy: AllocationStrategy) -> str:
    """The bare fill of one SKU (lines, their locations and queue only, no statuses or
    events; the parameters of `fill_params`): the benchmark's ceiling."""
    return f"WITH {_fill_ctes((strategy,)).strip()}\nSELECT sku, n, order_id, id, take FROM filled"


def settle_statement(strategy: AllocationStrategy) -> str:
    """The whole statement `settle` runs for one SKU (the benchmark also times it bare)."""
    return _settle_sql((strategy,)).text


@dataclass(frozen=True, slots=True)
class Settled:
    """What `settle` allocated per SKU: units, and the allocations in queue order as a JSON
    array of `{"order_id", "line_id", "quantity", "location"}` (built by PostgreSQL: a restock
    reaching 100,000 lines answers them without making 100,000 Python objects)."""

    units: dict[str, int]
    allocations: dict[str, str]

    def json(self, sku: str) -> str:
        return self.allocations.get(sku, "[]")


NOTHING_SETTLED = Settled({}, {})


async def settle(
    conn: AsyncConnection, fill: list[LockedProduct], changed: Iterable[UUID] = ()
) -> Settled:
    """Give the available units of `fill` to their queues, head first, and bring the status
    and readiness of every order reached, and of the orders in `changed`, up to date.

    Runs after anything that makes units available (restock, receipt, positive adjustment,
    cancellation, transfer in, activation) or changes lines (a shipment), in the same
    transaction and under the SKU locks; once per transaction, with every order the
    transaction changed. The units of every active location are handed out by rank, then
    code, each allocated where it is. Updates the products' counters in memory
    (`save_counters` writes them).
    """
    segments = {
        p.sku: fill_segments(p.levels.values()) for p in fill if p.available and p.backordered
    }
    wanted = [p for p in fill if segments.get(p.sku)]
    order_ids = list(set(changed))
    if not wanted and not order_ids:
        return NOTHING_SETTLED
    params: dict[str, Any] = {"changed": order_ids}
    for i, product in enumerate(wanted):
        levels = product.levels
        placed = [(loc, levels[loc].id, units) for loc, units in segments[product.sku]]
        params.update(fill_params(i, product.sku, placed))
    statement = _settle_sql(tuple(p.allocation_strategy for p in wanted))
    rows = (await conn.execute(statement, params)).all()
    settled = Settled({r.sku: r.units for r in rows}, {r.sku: r.allocations for r in rows})
    for product in wanted:
        given = settled.units.get(product.sku, 0)
        product.backordered -= given
        # The queue took the first `given` units as laid out: the segments' prefix.
        for location, units in segments[product.sku]:
            if given <= 0:
                break
            product.move(location, allocated=min(units, given))
            given -= units
    return settled


_SAVE = text(
    "UPDATE product SET on_hand = :on_hand, allocated = :allocated, backordered = :backordered, "
    "unavailable = :unavailable, stock_state = :stock_state, updated_at = clock_timestamp() "
    "WHERE sku = :sku"
)

# Every product that came back in stock in one statement: a stock count of 10,000 products
# (a CSV import) made one round trip each here.
_TAKE_SUBSCRIBERS = text(
    "UPDATE stock_subscription SET notified_at = clock_timestamp() "
    "WHERE sku = ANY(:skus) AND notified_at IS NULL "
    "RETURNING sku, id, customer_id, contact, channel"
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
        CounterUpdate(
            p.sku,
            p.allocated,
            p.backordered,
            p.stock_state.value,
            tuple((loc, p.levels[loc].allocated) for loc in sorted(p.touched)),
        )
        for p in products
    ]
    return counters, announced


async def save_counters(conn: AsyncConnection, products: list[LockedProduct]) -> None:
    """Write the counters of locked products and announce availability transitions.

    `product.back_in_stock` (naming, and using up, the waiting subscriptions) when available
    goes from 0 to more; `product.low_stock` when it enters the band at or below the reorder
    point. Neither again while the product stays in that state.
    """
    announcements: list[tuple[str, dict[str, Any]]] = []
    back: dict[str, list[dict[str, Any]]] = {}  # SKU -> its back-in-stock event's subscribers
    for product in products:
        for event_type, data in _announce_transition(product):
            if event_type == "product.back_in_stock":
                data["subscribers"] = back.setdefault(product.sku, [])
            announcements.append((event_type, data))
    if back:
        for s in await conn.execute(_TAKE_SUBSCRIBERS, {"skus": list(back)}):
            back[s.sku].append(
                {
                    "subscription_id": str(s.id),
                    "customer_id": s.customer_id,
                    "contact": s.contact,
                    "channel": s.channel,  # whose subscriber: a channel's view keeps its own
                }
            )
    await conn.execute(
        _SAVE,
        [
            {
                "sku": p.sku,
                "on_hand": p.on_hand,
                "allocated": p.allocated,
                "backordered": p.backordered,
                "unavailable": p.unavailable,
                "stock_state": p.stock_state.value,
            }
            for p in products
        ],
    )
    await locations.save_levels(
        conn, [(p.sku, p.levels[loc]) for p in products for loc in sorted(p.touched)]
    )
    await events.emit_many(conn, announcements)
