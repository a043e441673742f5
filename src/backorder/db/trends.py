"""The console overview in one statement: the backorder report's figures over all time, the
lines that began and ended a wait per day, and how long the open ones have waited.

A line "opened" a backorder on the day it was placed with units backordered
(`initial_backordered > 0`) and "filled" it on the day its last waiting unit was allocated
(`filled_at`). Days are UTC days; every day of the window has a row (zeros included). A line's
age is `now() - created_at` in days, bucketed by `AGE_BUCKETS`.

Why one statement, and why this one: the overview must answer within the report's own time
(issue 18), yet shows the report and more. The report's cost is a scan of `order_line` grouped
by SKU (db/reports.py); over all time the overview needs no SKU groups, since its ten SKUs with
the most waiting units are read from the counters the service keeps on `product` and
`backorder_queue`. It groups the scan by days instead, which the charts need: per (day placed,
day filled) of the lines that waited, every other line in one group, with the report's sums per
group: a few hundred groups over months of history, and one for the benchmark's 100,000 lines
waiting since today, where the report hashes a thousand SKUs. Ages come from the same groups:
a day's open lines share one bucket unless an age boundary falls on that day, and the lines of
those (at most four) days placed before their boundary are found through
`ix_order_line_waited_created_at`. One statement is also one snapshot: the tiles and the charts
agree, which three statements on three connections did not promise.

Exactness: the report's sums are exact (numeric) and sums of sums, so every figure equals the
report's and the per-line definitions above; tests/integration/test_overview.py compares them
with the straightforward statements on random lines, boundaries included. The ages rely on
"units never move back to `backordered`" (db/orders.py, db/stock.py): an open line is one that
waited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db.reports import FIGURES, BackorderFigures, figures_of

# The buckets' upper bounds in days; the last is open-ended.
AGE_BUCKETS = (
    ("0-1 d", 1),
    ("1-3 d", 3),
    ("3-7 d", 7),
    ("7-14 d", 14),
    ("14+ d", None),
)
_BOUNDARY_DAYS = [days for _, days in AGE_BUCKETS if days is not None]

# `date_bin` from a UTC midnight gives a timestamp's UTC day as a timestamp: integer arithmetic
# (IMMUTABLE), where `CAST(… AT TIME ZONE 'UTC' AS date)` converts through a calendar (with
# 100,000 waiting lines: 36 -> 31 ms of CPU for the whole statement). `_PLACED` and `_FILLED` are
# the expressions of migration 20261208_0009's statistics object, in meaning if not in
# spacing: the planner matches them to plan the grouped scan in parallel.
_ORIGIN = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
_PLACED = f"CASE WHEN initial_backordered > 0 THEN date_bin('1 day', created_at, {_ORIGIN}) END"
_FILLED = f"CASE WHEN initial_backordered > 0 THEN date_bin('1 day', filled_at, {_ORIGIN}) END"
# An open line's age is summed as its time since the start of its day: an interval of less than
# a day, added in integers, where `extract(epoch FROM now() - created_at)` makes a numeric per
# line (with 100,000 waiting lines: 29 -> 22 ms of CPU for the statement). The day's share,
# `now() - placed_day` per open line, is added once per group. (An interval's microseconds
# overflow, with an error, past some 100 million waiting lines placed on one day.)
_PER_DAY = f"""
    SELECT {_PLACED} AS placed_day,
           {_FILLED} AS filled_day,
           count(*) AS lines,
           sum(quantity) AS units_ordered,
           sum(quantity - initial_backordered) AS units_allocated_at_placement,
           count(*) FILTER (WHERE backordered > 0) AS open_lines,
           sum(backordered) AS open_units,
           min(created_at) FILTER (WHERE backordered > 0) AS oldest_open_at,
           sum(created_at - {_PLACED}) FILTER (WHERE backordered > 0) AS open_since_day,
           sum(extract(epoch FROM filled_at - created_at)) AS fill_s
    FROM order_line
    GROUP BY 1, 2
"""

# The report's sums are per group here: a group with a `filled_day` holds exactly the lines
# the report's `fill_s` and `fills` count (waited, then filled). Ages: boundary i (1-based, at
# now - 1, 3, 7, 14 days) falls on one UTC day, whose lines go to bucket i - 1 as a whole (the
# boundaries younger than it are at least a day later); its lines placed at or before it belong
# to bucket i. A day with no boundary in it goes whole to the bucket of its last instant.
_OVERVIEW = text(f"""
WITH per_day AS MATERIALIZED ({_PER_DAY}), boundary AS (
    SELECT i, now() - make_interval(hours => 24 * d) AS at
    FROM unnest(CAST(:boundary_days AS int[])) WITH ORDINALITY AS b(d, i)
), before_boundary AS (
    SELECT b.i, w.units, w.lines
    FROM boundary b CROSS JOIN LATERAL (
        SELECT COALESCE(sum(l.backordered), 0) AS units, count(*) AS lines
        FROM order_line l
        WHERE l.initial_backordered > 0 AND l.backordered > 0
          AND l.created_at >= date_bin('1 day', b.at, {_ORIGIN}) AND l.created_at <= b.at
    ) w
), ageing AS (
    SELECT bucket, sum(units) AS units, sum(lines) AS lines FROM (
        SELECT (SELECT count(*) FROM boundary b WHERE b.at >= d.placed_day + interval '24 hours')
                   AS bucket,
               d.open_units AS units, d.open_lines AS lines
        FROM per_day d WHERE d.open_lines > 0
        UNION ALL
        SELECT i - 1, -units, -lines FROM before_boundary
        UNION ALL
        SELECT i, units, lines FROM before_boundary
    ) a
    GROUP BY bucket
)
SELECT
{FIGURES}
    -- The counters agree with the lines (API.md's invariants): a product's `backordered` is
    -- the sum of its lines', its queue has one row per waiting line. Ties as the report's.
    (SELECT COALESCE(
        json_agg(json_build_object('sku', t.sku, 'open_units', t.backordered, 'lines',
                                   (SELECT count(*) FROM backorder_queue q WHERE q.sku = t.sku))
                 ORDER BY t.backordered DESC, t.sku COLLATE "C"),
        '[]')
     FROM (SELECT sku, backordered FROM product WHERE backordered > 0
           ORDER BY backordered DESC, sku COLLATE "C" LIMIT 10) t) AS top_skus,
    (SELECT json_agg(json_build_array(CAST(w.day AT TIME ZONE 'UTC' AS date),
                                      COALESCE(op.n, 0), COALESCE(fi.n, 0)) ORDER BY w.day)
     FROM generate_series(date_bin('1 day', now(), {_ORIGIN})
                              - make_interval(hours => 24 * (:days - 1)),
                          now(), interval '24 hours') AS w(day)
     LEFT JOIN (SELECT placed_day, sum(lines) AS n FROM per_day GROUP BY 1) op
            ON op.placed_day = w.day
     LEFT JOIN (SELECT filled_day, sum(lines) AS n FROM per_day GROUP BY 1) fi
            ON fi.filled_day = w.day) AS daily,
    (SELECT COALESCE(json_agg(json_build_array(bucket, units, lines)), '[]') FROM ageing)
        AS ageing
FROM (
    SELECT count(*) AS orders, count(*) FILTER (WHERE backordered_at_placement)
               AS backordered_orders
    FROM sales_order
) o, (
    SELECT sum(units_ordered) AS units_ordered,
           sum(units_allocated_at_placement) AS units_allocated_at_placement,
           sum(open_lines) AS open_lines, sum(open_units) AS open_units,
           min(oldest_open_at) AS oldest_open_at,
           sum(open_lines * extract(epoch FROM now() - placed_day)
               - extract(epoch FROM open_since_day)) AS open_age_s,
           sum(fill_s) FILTER (WHERE filled_day IS NOT NULL) AS fill_s,
           sum(lines) FILTER (WHERE filled_day IS NOT NULL) AS fills
    FROM per_day
) l
""")


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    opened: int
    filled: int


@dataclass(frozen=True, slots=True)
class AgeBucket:
    label: str
    units: int
    lines: int


@dataclass(frozen=True, slots=True)
class Overview:
    figures: BackorderFigures  # the report's over all time
    daily: list[Day]  # per UTC day of the window, oldest first
    ageing: list[AgeBucket]  # in `AGE_BUCKETS` order


async def overview(conn: AsyncConnection, days: int = 30) -> Overview:
    """The report over all time, the last `days` UTC days (today included) and the ages of
    the open lines, from one snapshot."""
    r = (await conn.execute(_OVERVIEW, {"days": days, "boundary_days": _BOUNDARY_DAYS})).one()
    found: dict[int, tuple[int, int]] = {
        int(bucket): (int(units), int(lines)) for bucket, units, lines in r.ageing
    }
    return Overview(
        figures=figures_of(r),
        daily=[Day(date.fromisoformat(d), int(o), int(f)) for d, o, f in r.daily],
        ageing=[
            AgeBucket(label, *found.get(i, (0, 0))) for i, (label, _) in enumerate(AGE_BUCKETS)
        ],
    )
