"""Reading the event outbox: the public feed, a channel's view of it, and the horizon that
lets readers move on without skipping an event.

**Reading the outbox safely.** Event ids come from a sequence, and transactions commit in
any order: a reader that sees event 11 may not yet see event 10, which commits a moment
later. A reader that then moves past 11 would never see 10. So readers only take events up
to a *horizon*: the start of the oldest transaction still running in this database (or now,
if none runs). An event still to commit belongs to a running transaction T; every event with
a higher id was created after T started, so after the horizon, and is held back too. Readers
therefore take the prefix of events, in id order, created before the horizon, and stop at the
first one that is not. A long transaction holds the feed back; it never loses an event.
(This relies on `pg_stat_activity` showing the transactions of the service's own database
role, as it does with `track_activities` on, PostgreSQL's default.) The rule holds for a
filtered read too: a settled row proves every lower id settled, whatever its type.

**A channel's view** (a storefront's feed and webhooks, an ops endpoint or read limited to
one channel): the events about its orders (`data.channel`), `product.low_stock` (product
figures are public to storefronts), and `product.back_in_stock` reduced to its own
subscribers, or left out when none is its own (each subscriber in the event names its
channel). Both are plain expressions on the row, no subquery: a subquery's cost is charged
to every row scanned and pushed the feed's estimate past PostgreSQL's JIT threshold (100 ms
compiling a query that runs in 2).

**No index by channel.** A stored generated column `channel` costs about 15 % more per event
insert, and an index `(channel, id)` about 45 % (50,000 events, PostgreSQL 15): a restock
filling a long queue writes two events per line. Filtered reads instead walk the primary
key from the cursor through a bounded window of ids (`SCAN_WINDOW`), and say where to go on
with `next_cursor` when the window ends before the page fills: a read never costs more than
the window, however rare the channel's events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

SCAN_WINDOW = 10_000  # event ids a filtered read looks through, at most
MAX_EVENT_ID = 2**63 - 1

# Statement order matters (see `horizon`): the clock first, then the running transactions,
# then (in a later statement, with a later snapshot) the events.
_NOW = text("SELECT clock_timestamp()")
_OLDEST_RUNNING = text(
    "SELECT min(xact_start) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND xact_start IS NOT NULL"
)


async def horizon(conn: AsyncConnection) -> datetime:
    """Events created before this instant can all be read now: none is still to commit below
    them. Call it before reading the events, in a transaction that has not yet looked at
    `pg_stat_activity` (PostgreSQL keeps that view's snapshot for the whole transaction)."""
    now: datetime = (await conn.execute(_NOW)).scalar_one()
    oldest: datetime | None = (await conn.execute(_OLDEST_RUNNING)).scalar_one()
    return now if oldest is None or oldest > now else oldest


def settled(rows: Sequence[Any], before: datetime) -> list[Any]:
    """The rows (in id order) up to the first one created at or after the horizon."""
    out = []
    for row in rows:
        if row.created_at >= before:
            break
        out.append(row)
    return out


# --- A channel's view ----------------------------------------------------------------------


def in_view(e: str, ch: str) -> str:
    """SQL: event `e` belongs to the view of channel `ch` (an SQL expression; null: all)."""
    return (
        f"({ch} IS NULL OR {e}.data->>'channel' = {ch} OR {e}.type = 'product.low_stock' "
        f"OR ({e}.type = 'product.back_in_stock' AND {e}.data->'subscribers' "
        f"@> jsonb_build_array(jsonb_build_object('channel', {ch}))))"
    )


def data_in_view(e: str, ch: str) -> str:
    """SQL: event `e`'s data as channel `ch` sees it (another channel's subscribers left out)."""
    return (
        f"CASE WHEN {ch} IS NOT NULL AND {e}.type = 'product.back_in_stock' "
        f"THEN jsonb_set({e}.data, ARRAY['subscribers'], jsonb_path_query_array("
        f"{e}.data->'subscribers', '$[*] ? (@.channel == $ch)', "
        f"jsonb_build_object('ch', {ch}))) ELSE {e}.data END"
    )


# --- The feed ------------------------------------------------------------------------------

_CHANNEL = "CAST(:channel AS text)"
_FEED = text(
    f"SELECT e.id, e.type, e.created_at, {data_in_view('e', _CHANNEL)} AS data FROM event e "
    "WHERE e.id > :after AND e.id <= :upto "
    "AND (CAST(:type AS text) IS NULL OR e.type = :type) "
    "AND (CAST(:prefix AS text) IS NULL OR starts_with(e.type, :prefix)) "
    f"AND {in_view('e', _CHANNEL)} "
    "ORDER BY e.id LIMIT :limit"
)
_NEXT_AFTER = text("SELECT created_at FROM event WHERE id > :upto ORDER BY id LIMIT 1")


async def read_feed(
    conn: AsyncConnection,
    *,
    after: int,
    type_: str | None,
    prefix: str | None,
    channel: str | None,
    limit: int,
) -> tuple[list[Any], int | None]:
    """Up to `limit` settled events after `after`, oldest first, in `channel`'s view (None:
    all), and the id to read on from when more may follow (None: the end of the settled
    feed; events held back by the horizon come in a later read)."""
    before = await horizon(conn)
    upto = min(after + SCAN_WINDOW, MAX_EVENT_ID)
    params = {
        "after": after,
        "upto": upto,
        "type": type_,
        "prefix": prefix,
        "channel": channel,
        "limit": limit + 1,
    }
    rows = (await conn.execute(_FEED, params)).all()
    ready = settled(rows, before)
    if len(ready) > limit:
        return ready[:limit], ready[limit - 1].id
    if len(ready) < len(rows):
        return ready, None  # held back: read on with `after` later
    # The window ended before the page filled: more may follow beyond it, and reading on
    # from its end is safe once an event beyond it is settled (see the module's docstring).
    beyond: datetime | None = (await conn.execute(_NEXT_AFTER, {"upto": upto})).scalar()
    return ready, upto if beyond is not None and beyond < before else None


_NEWEST = text(
    "SELECT e.id, e.type, e.created_at, e.data FROM event e ORDER BY e.id DESC LIMIT :limit"
)


async def newest(conn: AsyncConnection, limit: int) -> tuple[list[Any], int]:
    """The newest settled events, newest first, and the id to follow the feed from with
    `read_feed(after=...)` so that no event is skipped. Only the settled prefix of the tail
    counts (see the module's docstring): when its oldest row is not yet settled, none is, and
    the reader follows from just before it."""
    before = await horizon(conn)
    tail = list(reversed((await conn.execute(_NEWEST, {"limit": limit})).all()))
    ready = settled(tail, before)
    after = ready[-1].id if ready else (tail[0].id - 1 if tail else 0)
    return list(reversed(ready)), after
