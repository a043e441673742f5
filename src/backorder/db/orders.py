"""The SQL of orders: writing an order with its lines, deriving statuses in sets, reading."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db.events import to_json
from backorder.domain.orders import Units

# The status rule of `domain/orders.py`, in SQL over summed units (a test keeps them equal);
# `stock.settle` applies it.
STATUS_SQL = """CASE
    WHEN {o} = 0 AND {a} = 0 AND {s} = 0 THEN 'cancelled'
    WHEN {s} > 0 AND {o} = 0 AND {a} = 0 THEN 'shipped'
    WHEN {s} > 0 THEN 'partially_shipped'
    WHEN {o} = 0 THEN 'allocated'
    WHEN {a} > 0 THEN 'partially_backordered'
    ELSE 'backordered' END"""
# The readiness rule of `domain/orders.py` (`ready_to_ship`), in SQL over the same sums.
READY_SQL = "({a} > 0 AND ({policy} = 'partial' OR {o} = 0))"


@dataclass(frozen=True, slots=True)
class NewLine:
    id: UUID
    sku: str
    quantity: int
    allocated: int
    backordered: int
    # Units cancelled at placement (`backorder: cancel_rest`): what stock could not cover.
    cancelled: int = 0
    # Where the allocated units were taken: `[(location, units)]`, the first at the line's
    # primary location (`location_id`; 0 when nothing was taken).
    allocations: tuple[tuple[str, int], ...] = ()
    location_id: int = 0


# The order's scalars are parameters of their own; its lines and events travel as one JSON
# document (`:doc`, see `place_order_params`): one parameter for the client to encode instead
# of ten arrays, each event's data parsed once with the document.
PLACE_ORDER = text(
    """
WITH d AS (SELECT CAST(:doc AS jsonb) AS doc
), x AS (
    SELECT x.*
    FROM d, ROWS FROM (jsonb_to_recordset(d.doc -> 'lines')
                       AS (id uuid, sku text, q bigint, a bigint, b bigint, c bigint,
                           home smallint, elsewhere jsonb))
         WITH ORDINALITY AS x(id, sku, q, a, b, c, home, elsewhere, n)
), o AS (
    -- One reading of the clock for both times: the answer shows the order as stored.
    -- A deadline in days counts whole days of 24 hours from `created_at`, as the answer does.
    INSERT INTO sales_order (id, channel, customer_id, priority, ship_policy, external_ref,
                             status, ready_to_ship, backordered_at_placement, allocated,
                             backordered, created_at, updated_at, backorder_deadline)
    SELECT :id, :channel, :customer_id, :priority, :ship_policy, :external_ref,
           :status, :ready, :backordered_at_placement, :allocated, :backordered, t.now, t.now,
           COALESCE(CAST(:backorder_deadline AS timestamptz),
                    t.now + make_interval(secs => CAST(:deadline_days AS integer) * 86400))
    FROM (SELECT clock_timestamp() AS now) t
    -- A reference the channel already used: nothing of this statement is written (every
    -- other part hangs on `o`), and the caller answers 409. Concurrent twins wait here for
    -- the first to commit or roll back, so exactly one of them is written.
    ON CONFLICT (external_ref, channel) WHERE external_ref IS NOT NULL DO NOTHING
    RETURNING created_at, backorder_deadline
), l AS (
    INSERT INTO order_line (id, order_id, line_no, sku, quantity, allocated, backordered,
                            cancelled, created_at, initial_backordered, location_id,
                            allocated_at)
    SELECT x.id, :id, x.n, x.sku, x.q, x.a, x.b, x.c, o.created_at, x.b, x.home, x.elsewhere
    FROM o, x
    RETURNING id, sku, backordered, created_at
), q AS (
    INSERT INTO backorder_queue (line_id, sku, priority, created_at, deadline)
    SELECT l.id, l.sku, :priority, l.created_at, o.backorder_deadline
    FROM l, o WHERE l.backordered > 0
), e AS (
    INSERT INTO event (type, data)
    SELECT e.value ->> 0, e.value -> 1
    FROM d, jsonb_array_elements(d.doc -> 'events') WITH ORDINALITY AS e(value, n)
    WHERE EXISTS (SELECT FROM o)
    ORDER BY e.n
), p AS (
    UPDATE product SET allocated = c.allocated, backordered = c.backordered,
                       stock_state = c.stock_state, updated_at = clock_timestamp(),
                       units_backordered_at_placement =
                           product.units_backordered_at_placement + w.waiting
    FROM unnest(CAST(:product_skus AS text[]), CAST(:product_allocated AS bigint[]),
                CAST(:product_backordered AS bigint[]), CAST(:product_states AS text[]))
         AS c(sku, allocated, backordered, stock_state),
         LATERAL (SELECT COALESCE(sum(x.b), 0) AS waiting FROM x WHERE x.sku = c.sku) w
    WHERE product.sku = c.sku AND EXISTS (SELECT FROM o)
), s AS (
    UPDATE stock_level SET allocated = c.allocated
    FROM unnest(CAST(:level_skus AS text[]), CAST(:level_locations AS text[]),
                CAST(:level_allocated AS bigint[])) AS c(sku, location, allocated)
    WHERE stock_level.sku = c.sku AND stock_level.location = c.location
      AND EXISTS (SELECT FROM o)
)
SELECT created_at FROM o
"""
)


@dataclass(frozen=True, slots=True)
class CounterUpdate:
    """A locked product's counters after placement (`on_hand` does not move), with the
    allocated units of the locations it took from: `[(location, allocated)]`."""

    sku: str
    allocated: int
    backordered: int
    stock_state: str
    levels: tuple[tuple[str, int], ...] = ()


def place_order_params(
    *,
    order_id: UUID,
    channel: str,
    customer_id: str,
    priority: int,
    ship_policy: str,
    external_ref: str | None,
    status: str,
    ready: bool,
    lines: list[NewLine],
    events: list[tuple[str, dict[str, Any]]],
    counters: list[CounterUpdate],
    backorder_deadline: datetime | None = None,
    deadline_days: int | None = None,
) -> dict[str, Any]:
    """The parameters of `PLACE_ORDER`: the order's scalars, its lines and events as one JSON
    document, and its products' counters as arrays."""
    return {
        "id": order_id,
        "channel": channel,
        "customer_id": customer_id,
        "priority": priority,
        "ship_policy": ship_policy,
        "external_ref": external_ref,
        "status": status,
        "ready": ready,
        "backordered_at_placement": any(line.backordered for line in lines),
        "allocated": sum(line.allocated for line in lines),
        "backordered": sum(line.backordered for line in lines),
        "backorder_deadline": backorder_deadline,
        "deadline_days": deadline_days,
        "doc": to_json(
            {
                "lines": [
                    {
                        "id": line.id,
                        "sku": line.sku,
                        "q": line.quantity,
                        "a": line.allocated,
                        "b": line.backordered,
                        "c": line.cancelled,
                        "home": line.location_id,
                        # Units at locations other than the primary one (null for most).
                        "elsewhere": dict(line.allocations[1:])
                        if len(line.allocations) > 1
                        else None,
                    }
                    for line in lines
                ],
                "events": events,
            }
        ),
        # The counters stay arrays: the planner sizes an array's rows from its parameter and
        # looks the few products and levels up by key (a JSON recordset is guessed at 100
        # rows, and the stock levels were then scanned whole).
        "product_skus": [c.sku for c in counters],
        "product_allocated": [c.allocated for c in counters],
        "product_backordered": [c.backordered for c in counters],
        "product_states": [c.stock_state for c in counters],
        "level_skus": [c.sku for c in counters for _ in c.levels],
        "level_locations": [loc for c in counters for loc, _ in c.levels],
        "level_allocated": [n for c in counters for _, n in c.levels],
    }


async def place_order(conn: AsyncConnection, params: dict[str, Any]) -> datetime | None:
    """Write the order, its lines, its events and its products' counters in one statement
    (`place_order_params`). `created_at` is taken now, after the SKU locks are held, so queue
    order is the order in which orders reached the stock. None, and nothing written, when the
    channel already has an order with this `external_ref`."""
    row = (await conn.execute(PLACE_ORDER, params)).one_or_none()
    if row is None:
        return None
    created_at: datetime = row.created_at
    return created_at


# A just-placed order's waiting lines with the dates `promises.refresh` gave them.
WAITING_DATES = text(
    "SELECT id, expected_date FROM order_line WHERE order_id = :id AND backordered > 0"
)


ORDER_WITH_REF = text("SELECT id FROM sales_order WHERE external_ref = :ref AND channel = :channel")


async def order_with_ref(conn: AsyncConnection, channel: str, external_ref: str) -> UUID | None:
    """The id of the channel's order placed with this `external_ref`, if any."""
    row = (
        await conn.execute(ORDER_WITH_REF, {"ref": external_ref, "channel": channel})
    ).one_or_none()
    return None if row is None else row.id


@dataclass(slots=True)
class LineRow:
    id: UUID
    order_id: UUID
    line_no: int
    sku: str
    quantity: int
    allocated: int
    backordered: int
    shipped: int
    cancelled: int
    expected_date: date | None
    # Units per location that holds any: `[(location, allocated, shipped)]`, by rank, code.
    allocations: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def units(self) -> Units:
        return Units(self.quantity, self.allocated, self.backordered, self.shipped, self.cancelled)


@dataclass(slots=True)
class OrderRow:
    id: UUID
    channel: str
    customer_id: str
    priority: int
    ship_policy: str
    external_ref: str | None
    status: str
    created_at: datetime
    updated_at: datetime
    backorder_deadline: datetime | None
    lines: list[LineRow]


_ORDER_COLUMNS = (
    "id, channel, customer_id, priority, ship_policy, external_ref, status, created_at, "
    "updated_at, backorder_deadline"
)
# A waiting line at risk (`domain/deadlines.py`), as its queue row `q` says: `db/promises.py`
# keeps the row's flag to the rule with every date it gives, and only waiting lines can be at
# risk. The rows with a deadline are found through a partial index.
AT_RISK = "q.deadline IS NOT NULL AND q.at_risk"
# The orders with a line at risk.
AT_RISK_ORDERS = f"""
    SELECT l.order_id FROM backorder_queue q JOIN order_line l ON l.id = q.line_id
    WHERE {AT_RISK}"""

# A line's units per location, as `[[location, allocated, shipped]]` by rank, then code (the
# view `line_allocation` derives them from the line's columns).
LINE_ALLOCATIONS = """(
    SELECT COALESCE(json_agg(json_build_array(a.location, a.allocated, a.shipped)
                             ORDER BY loc.rank, a.location), '[]')
    FROM line_allocation a JOIN location loc ON loc.code = a.location
    WHERE a.line_id = order_line.id) AS allocations"""
_LINE_COLUMNS = (
    "id, order_id, line_no, sku, quantity, allocated, backordered, shipped, cancelled, "
    f"expected_date, {LINE_ALLOCATIONS}"
)


def _line(r: Any) -> LineRow:
    return LineRow(
        r.id,
        r.order_id,
        r.line_no,
        r.sku,
        r.quantity,
        r.allocated,
        r.backordered,
        r.shipped,
        r.cancelled,
        r.expected_date,
        [(loc, allocated, shipped) for loc, allocated, shipped in r.allocations],
    )


async def _attach_lines(conn: AsyncConnection, orders: list[Any]) -> list[OrderRow]:
    if not orders:
        return []
    lines = (
        await conn.execute(
            text(
                f"SELECT {_LINE_COLUMNS} FROM order_line WHERE order_id = ANY(:ids) "
                "ORDER BY order_id, line_no"
            ),
            {"ids": [o.id for o in orders]},
        )
    ).all()
    by_order: dict[UUID, list[LineRow]] = {}
    for r in lines:
        by_order.setdefault(r.order_id, []).append(_line(r))
    return [
        OrderRow(
            o.id,
            o.channel,
            o.customer_id,
            o.priority,
            o.ship_policy,
            o.external_ref,
            o.status,
            o.created_at,
            o.updated_at,
            o.backorder_deadline,
            by_order.get(o.id, []),
        )
        for o in orders
    ]


async def get_order(
    conn: AsyncConnection, order_id: UUID, *, channel: str | None = None
) -> OrderRow | None:
    """The order with its lines; `channel` hides other channels' orders (as if absent)."""
    sql = f"SELECT {_ORDER_COLUMNS} FROM sales_order WHERE id = :id"
    params: dict[str, Any] = {"id": order_id}
    if channel is not None:
        sql += " AND channel = :channel"
        params["channel"] = channel
    row = (await conn.execute(text(sql), params)).one_or_none()
    if row is None:
        return None
    return (await _attach_lines(conn, [row]))[0]


async def list_orders(
    conn: AsyncConnection,
    *,
    limit: int,
    after: tuple[datetime, UUID] | None,
    channel: str | None,
    status: str | None,
    customer_id: str | None,
    sku: str | None,
    external_ref: str | None = None,
    ready_to_ship: bool | None = None,
    at_risk: bool | None = None,
    created_since: datetime | None = None,
    created_until: datetime | None = None,
) -> list[OrderRow]:
    """Newest first, keyset-paginated on (created_at, id): stable under concurrent inserts,
    and under any filter (each only narrows the rows the key walks)."""
    where = ["TRUE"]
    params: dict[str, Any] = {"limit": limit}
    if after is not None:
        where.append("(created_at, id) < (:after_at, :after_id)")
        params["after_at"], params["after_id"] = after
    equal = {
        "channel": channel,
        "status": status,
        "customer_id": customer_id,
        "external_ref": external_ref,
        "ready_to_ship": ready_to_ship,
    }
    for column, value in equal.items():  # fixed column names: only the values are bound
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    if created_since is not None:
        where.append("created_at >= :created_since")
        params["created_since"] = created_since
    if created_until is not None:
        where.append("created_at < :created_until")
        params["created_until"] = created_until
    if sku is not None:
        where.append(
            "EXISTS (SELECT 1 FROM order_line l WHERE l.order_id = sales_order.id AND l.sku = :sku)"
        )
        params["sku"] = sku
    if at_risk is not None:
        where.append(f"{'' if at_risk else 'NOT '}id IN ({AT_RISK_ORDERS})")
    rows = (
        await conn.execute(
            text(
                f"SELECT {_ORDER_COLUMNS} FROM sales_order WHERE {' AND '.join(where)} "
                "ORDER BY created_at DESC, id DESC LIMIT :limit"
            ),
            params,
        )
    ).all()
    return await _attach_lines(conn, list(rows))


_AT_RISK_LINES = text(
    f"""
SELECT q.deadline, q.line_id, l.order_id, l.sku, l.backordered, l.expected_date,
       o.customer_id, o.channel, o.priority, o.ship_policy, o.created_at
FROM backorder_queue q
JOIN order_line l ON l.id = q.line_id
JOIN sales_order o ON o.id = l.order_id
WHERE {AT_RISK}
  AND (CAST(:after_deadline AS timestamptz) IS NULL
       OR (q.deadline, q.line_id) > (:after_deadline, CAST(:after_line AS uuid)))
ORDER BY q.deadline, q.line_id
LIMIT :limit
"""
)
_AT_RISK_COUNT = text(
    f"""
SELECT count(*) AS lines, count(DISTINCT l.order_id) AS orders,
       COALESCE(sum(l.backordered), 0) AS units
FROM backorder_queue q JOIN order_line l ON l.id = q.line_id
WHERE {AT_RISK}
"""
)


async def at_risk_lines(
    conn: AsyncConnection, *, limit: int, after: tuple[datetime, UUID] | None
) -> list[Any]:
    """The waiting lines at risk of missing their order's deadline, the soonest deadline
    first, keyset-paginated on (deadline, line id)."""
    params = {
        "limit": limit,
        "after_deadline": after[0] if after else None,
        "after_line": after[1] if after else None,
    }
    return list((await conn.execute(_AT_RISK_LINES, params)).all())


async def at_risk_totals(conn: AsyncConnection) -> Any:
    """How many lines, orders and units are at risk now."""
    return (await conn.execute(_AT_RISK_COUNT)).one()


async def customers_of(conn: AsyncConnection, order_ids: list[UUID]) -> dict[UUID, str]:
    """The customer of each order named (for a page that shows whom a change reaches)."""
    rows = await conn.execute(
        text("SELECT id, customer_id FROM sales_order WHERE id = ANY(:ids)"), {"ids": order_ids}
    )
    return {r.id: r.customer_id for r in rows}


async def order_skus(conn: AsyncConnection, order_id: UUID) -> list[str]:
    rows = await conn.execute(
        text("SELECT sku FROM order_line WHERE order_id = :id"), {"id": order_id}
    )
    return [r.sku for r in rows]


# A line whose wait ends here (its last backordered unit cancelled) leaves the queue in the
# same statement. Units never move back to `backordered`, so no line joins the queue here.
# The orders' unit counters move with their lines (`stock.settle` then writes the statuses);
# callers hold the locks of every SKU of these orders, so no fill reaches them meanwhile.
_APPLY_LINE_CHANGES = text(
    """
WITH changed AS (
    UPDATE order_line l
    SET allocated = l.allocated + d.da, backordered = l.backordered + d.db,
        shipped = l.shipped + d.ds, cancelled = l.cancelled + d.dc,
        -- The primary location's units are the rest: only the others' are in the maps. A line
        -- left with no units has no primary any more (the next fill gives it one).
        allocated_at = units_add(l.allocated_at, CAST(d.da_at AS jsonb) - {home}),
        shipped_at = units_add(l.shipped_at, CAST(d.ds_at AS jsonb) - {home}),
        location_id = CASE WHEN l.allocated + d.da = 0 AND l.shipped + d.ds = 0 THEN 0
                           ELSE l.location_id END,
        expected_date = CASE WHEN l.backordered + d.db = 0 THEN NULL ELSE l.expected_date END
    FROM unnest(CAST(:ids AS uuid[]), CAST(:da AS bigint[]), CAST(:db AS bigint[]),
                CAST(:ds AS bigint[]), CAST(:dc AS bigint[]), CAST(:da_at AS text[]),
                CAST(:ds_at AS text[])) AS d(id, da, db, ds, dc, da_at, ds_at)
    WHERE l.id = d.id
    RETURNING l.id, l.order_id, l.backordered, d.da, d.db, d.ds
), dequeued AS (
    DELETE FROM backorder_queue q USING changed c
    WHERE q.line_id = c.id AND c.backordered = 0 AND c.db < 0
)
UPDATE sales_order so
SET allocated = so.allocated + c.da, backordered = so.backordered + c.db,
    shipped = so.shipped + c.ds
FROM (SELECT order_id, sum(da) AS da, sum(db) AS db, sum(ds) AS ds
      FROM changed GROUP BY order_id) c
WHERE so.id = c.order_id
""".format(home="COALESCE((SELECT code FROM location WHERE id = l.location_id), '')")
)


@dataclass(frozen=True, slots=True)
class LineChange:
    line_id: UUID
    allocated: int = 0
    backordered: int = 0
    shipped: int = 0
    cancelled: int = 0
    # The allocated and shipped units' moves per location: `[(location, allocated, shipped)]`
    # (they sum to `allocated` and `shipped`).
    at: tuple[tuple[str, int, int], ...] = ()


async def apply_line_changes(conn: AsyncConnection, changes: list[LineChange]) -> None:
    """Apply unit moves to lines in one statement (the CHECK keeps every line adding up)."""
    if not changes:
        return
    await conn.execute(
        _APPLY_LINE_CHANGES,
        {
            "ids": [c.line_id for c in changes],
            "da": [c.allocated for c in changes],
            "db": [c.backordered for c in changes],
            "ds": [c.shipped for c in changes],
            "dc": [c.cancelled for c in changes],
            "da_at": [to_json({loc: da for loc, da, _ in c.at if da}) for c in changes],
            "ds_at": [to_json({loc: ds for loc, _, ds in c.at if ds}) for c in changes],
        },
    )
