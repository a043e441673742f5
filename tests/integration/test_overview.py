"""The console overview's one statement (db/trends.py) gives the figures of the statements it
replaced, exactly: the backorder report over all time, and per line the days a wait began and
ended and the age of every open line. Random books with lines on the instants where a rule
could slip by a microsecond (an age boundary, a UTC midnight, the window's first instant)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backorder.db import reports, trends

pytestmark = pytest.mark.usefixtures("clean_db")

DAY_US = 86_400_000_000
DAYS = 30

# The per-line definitions, as the console computed them before the overview was one statement.
REFERENCE_DAILY = text("""
WITH w AS (
    SELECT (date_trunc('day', now() AT TIME ZONE 'UTC') - make_interval(days => :days - 1))
               AT TIME ZONE 'UTC' AS start
), marks AS (
    SELECT CAST(created_at AT TIME ZONE 'UTC' AS date) AS opened_on,
           CAST(filled_at AT TIME ZONE 'UTC' AS date) AS filled_on,
           created_at >= w.start AS opened_in, filled_at >= w.start AS filled_in
    FROM order_line, w
    WHERE initial_backordered > 0 AND (created_at >= w.start OR filled_at >= w.start)
), opened AS (
    SELECT opened_on AS day, count(*) AS n FROM marks WHERE opened_in GROUP BY 1
), filled AS (
    SELECT filled_on AS day, count(*) AS n FROM marks WHERE filled_in GROUP BY 1
), series AS (
    SELECT CAST(d AS date) AS day
    FROM w, generate_series(CAST(w.start AT TIME ZONE 'UTC' AS date),
                            CAST(now() AT TIME ZONE 'UTC' AS date), interval '1 day') AS d
)
SELECT s.day, COALESCE(o.n, 0) AS opened, COALESCE(f.n, 0) AS filled
FROM series s LEFT JOIN opened o ON o.day = s.day LEFT JOIN filled f ON f.day = s.day
ORDER BY s.day
""")
REFERENCE_AGEING = text("""
SELECT CASE WHEN age < 1 THEN 0 WHEN age < 3 THEN 1 WHEN age < 7 THEN 2
            WHEN age < 14 THEN 3 ELSE 4 END AS bucket,
       CAST(sum(backordered) AS bigint) AS units, count(*) AS lines
FROM (SELECT backordered, extract(epoch FROM now() - created_at) / 86400 AS age
      FROM order_line WHERE backordered > 0) b
GROUP BY 1
""")


@dataclass
class Line:
    sku: str
    quantity: int
    waited: int  # initial_backordered
    waiting: int  # backordered now
    filled: tuple[str, int] | None  # when the wait ended, as an instant (see `At`)


# An instant as (origin, microseconds before it): origin "now" is the statement's now(), so
# "now" with 1 day is exactly the first age boundary; "midnight" is today's UTC midnight.
At = tuple[str, int]


def special_instants() -> Iterator[At]:
    for days in (0, 1, 3, 7, 14, DAYS - 1, DAYS, DAYS + 1):
        for nudge in (-1, 0, 1):
            yield ("now", max(0, days * DAY_US + nudge))
    for days in (0, 1, 2, DAYS - 1, DAYS):  # today, yesterday, the window's first day
        for nudge in (-1, 0, 1):
            yield ("midnight", days * DAY_US + nudge)


def random_book(seed: int) -> list[tuple[At, list[Line]]]:
    """Orders of 1-3 lines on 7 SKUs: placed at the special instants and at random ones in the
    last 45 days; about half the lines waited, and of those some were filled (at a special
    instant or a random later one), some partly, some not at all."""
    rng = random.Random(seed)
    placements = [*special_instants(), *(("now", rng.randrange(45 * DAY_US)) for _ in range(250))]
    fills = list(special_instants())
    book = []
    for placed in placements:
        lines = []
        for sku in rng.sample([f"OV-{n}" for n in range(7)], rng.randint(1, 3)):
            quantity = rng.randint(1, 6)
            waited = rng.choice([0, quantity, rng.randint(0, quantity)])
            # still all waiting, partly filled, or filled (twice as likely)
            waiting = rng.choice([waited, rng.randint(0, waited), 0, 0])
            filled: At | None = None
            if waited and waiting == 0:
                filled = rng.choice(
                    [rng.choice(fills), ("now", rng.randrange(max(1, placed[1] // 2 + 1)))]
                )
            lines.append(Line(sku, quantity, waited, waiting, filled))
        book.append((placed, lines))
    return book


INSTANT = """CASE {o} WHEN 'now' THEN now()
    ELSE date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' END
    - {us} * interval '1 microsecond'"""


async def write_book(conn: AsyncConnection, book: list[tuple[At, list[Line]]]) -> None:
    """Rows as the service leaves them: lines adding up, the queue holding the waiting ones,
    each product's `backordered` the sum of its lines'. A wait ends no earlier than it began,
    and no later than now."""
    orders: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for (origin, us), order_lines in book:
        order_id = uuid4()
        waited = any(li.waited for li in order_lines)
        orders.append({"id": order_id, "o": origin, "us": us, "waited": waited})
        for n, li in enumerate(order_lines, start=1):
            lines.append(
                {
                    "id": uuid4(), "order_id": order_id, "n": n, "sku": li.sku, "q": li.quantity,
                    "waited": li.waited, "waiting": li.waiting,
                    "fo": li.filled[0] if li.filled else None,
                    "fus": li.filled[1] if li.filled else None,
                }
            )  # fmt: skip
    await conn.execute(
        text(
            "INSERT INTO product (sku, name) "
            "SELECT DISTINCT sku, sku FROM unnest(CAST(:skus AS text[])) AS sku"
        ),
        {"skus": [li["sku"] for li in lines]},
    )
    await conn.execute(
        text(f"""
INSERT INTO sales_order (id, channel, customer_id, status, backordered_at_placement,
                         created_at, updated_at)
SELECT id, 'test', 'c-overview', 'allocated', waited, at, at
FROM (SELECT id, waited, {INSTANT.format(o="o", us="us")} AS at
      FROM unnest(CAST(:ids AS uuid[]), CAST(:origins AS text[]), CAST(:us AS bigint[]),
                  CAST(:waited AS boolean[])) AS x(id, o, us, waited)) t
"""),
        {
            "ids": [o["id"] for o in orders],
            "origins": [o["o"] for o in orders],
            "us": [o["us"] for o in orders],
            "waited": [o["waited"] for o in orders],
        },
    )
    await conn.execute(
        text(f"""
INSERT INTO order_line (id, order_id, line_no, sku, quantity, allocated, backordered,
                        created_at, initial_backordered, filled_at)
SELECT x.id, x.order_id, x.n, x.sku, x.q, x.q - x.waiting, x.waiting, so.created_at, x.waited,
       CASE WHEN x.fo IS NOT NULL
            THEN LEAST(now(), GREATEST(so.created_at, {INSTANT.format(o="x.fo", us="x.fus")}))
       END
FROM unnest(CAST(:ids AS uuid[]), CAST(:order_ids AS uuid[]), CAST(:ns AS smallint[]),
            CAST(:skus AS text[]), CAST(:qs AS bigint[]), CAST(:waited AS bigint[]),
            CAST(:waiting AS bigint[]), CAST(:fos AS text[]), CAST(:fus AS bigint[]))
     AS x(id, order_id, n, sku, q, waited, waiting, fo, fus)
JOIN sales_order so ON so.id = x.order_id
"""),
        {
            "ids": [li["id"] for li in lines],
            "order_ids": [li["order_id"] for li in lines],
            "ns": [li["n"] for li in lines],
            "skus": [li["sku"] for li in lines],
            "qs": [li["q"] for li in lines],
            "waited": [li["waited"] for li in lines],
            "waiting": [li["waiting"] for li in lines],
            "fos": [li["fo"] for li in lines],
            "fus": [li["fus"] for li in lines],
        },
    )
    await conn.execute(
        text(
            "INSERT INTO backorder_queue (line_id, sku, priority, created_at) "
            "SELECT id, sku, 0, created_at FROM order_line WHERE backordered > 0"
        )
    )
    await conn.execute(
        text(
            "UPDATE product p SET backordered = l.units FROM "
            "(SELECT sku, sum(backordered) AS units FROM order_line GROUP BY sku) l "
            "WHERE l.sku = p.sku"
        )
    )


async def reference(conn: AsyncConnection) -> dict[str, Any]:
    daily = [
        (r.day, int(r.opened), int(r.filled))
        for r in await conn.execute(REFERENCE_DAILY, {"days": DAYS})
    ]
    rows = await conn.execute(REFERENCE_AGEING)
    found = {int(r.bucket): (int(r.units), int(r.lines)) for r in rows}
    ageing = [(label, *found.get(i, (0, 0))) for i, (label, _) in enumerate(trends.AGE_BUCKETS)]
    return {
        "figures": await reports.backorder_figures(conn, None, None),
        "daily": daily,
        "ageing": ageing,
    }


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_the_overview_equals_the_report_and_the_per_line_definitions(
    engine: AsyncEngine, seed: int
) -> None:
    book = random_book(seed)
    async with engine.connect() as conn, conn.begin() as transaction:  # one now() for all
        await write_book(conn, book)
        expected = await reference(conn)
        found = await trends.overview(conn, DAYS)
        await transaction.rollback()
    assert found.figures == expected["figures"]
    assert [(d.day, d.opened, d.filled) for d in found.daily] == expected["daily"]
    assert [(b.label, b.units, b.lines) for b in found.ageing] == expected["ageing"]
    # The book reached what it is there to test.
    assert len(found.daily) == DAYS and sum(d.filled for d in found.daily) > 0
    assert all(b.lines > 0 for b in found.ageing)
    assert len(found.figures.top_skus) == 7


async def test_an_empty_book_has_zeros_everywhere(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        found = await trends.overview(conn, DAYS)
        expected = await reference(conn)
    assert found.figures == expected["figures"]
    assert found.figures.open_lines == 0 and found.figures.top_skus == []
    assert [(d.opened, d.filled) for d in found.daily] == [(0, 0)] * DAYS
    assert [(b.units, b.lines) for b in found.ageing] == [(0, 0)] * len(trends.AGE_BUCKETS)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def test_the_planner_knows_how_few_days_the_scan_groups_by(engine: AsyncEngine) -> None:
    """Migration 20261208_0009's statistics match the statement's day expressions: 3,000 lines
    placed at 3,000 instants over three days make a handful of groups, and the plan says so
    (without the statistics it plans hundreds, and sorts the table in one process)."""
    book = [(("now", n * 86_000_000), [Line("OV-0", 2, 1, 1, None)]) for n in range(3000)]
    async with engine.connect() as conn, conn.begin() as transaction:
        await write_book(conn, book)
        await conn.execute(text("ANALYZE order_line"))
        params = {"days": DAYS, "boundary_days": [1, 3, 7, 14]}
        explained = await conn.execute(
            text("EXPLAIN (FORMAT JSON) " + str(trends._OVERVIEW.text)), params
        )
        plan = explained.scalar_one()
        await transaction.rollback()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    grouped = [
        node
        for node in _nodes(plan[0]["Plan"])
        if "date_bin" in " ".join(node.get("Group Key", []))
    ]
    assert grouped, plan
    assert all(node["Plan Rows"] <= 20 for node in grouped), [n["Plan Rows"] for n in grouped]
