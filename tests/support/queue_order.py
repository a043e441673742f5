"""Queue order under concurrency, replayed: every fill the database recorded must be the one the
domain's fill rule (`backorder.domain.allocation.fill`) gives for the queue as it stood.

The end-state checks of `invariants.py` see only FIFO products, and only what is left. This
replays each SKU's history instead, in event-id order: a placement (`order.created`) puts its
waiting lines in the queue; a cancellation (`order.cancelled`, or any `*cancelled` event
naming lines) takes units off them, backordered units first; a reprioritisation and a change
of strategy (which write no event: the test passes what their answers said) re-key the queue;
and each fill, the `order.line_allocated` events one transaction wrote for the SKU, must be
exactly `fill(queue, units it gave, strategy)`: the same lines, in the same order, with the
same quantities. A placement that took stock while the model queue was not empty jumped it.
At the end the model queue must be the database's `backorder_queue`, unit for unit.

Why the order of events is the order of the SKU's history: every writer of a SKU's queue holds
the product row's lock while it writes its events, and event ids come from a sequence drawn
under that lock. Reprioritisations and strategy changes are placed among the events by time:
their `updated_at` and the events' `created_at` are both `clock_timestamp()` of one server,
taken under the same lock.

Unknown event types and extra fields in event data are ignored (a new field such as `channel`
changes nothing here).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from backorder.domain.allocation import AllocationStrategy, WaitingLine, fill


@dataclass(frozen=True)
class Reprioritised:
    """A `PATCH /v1/orders/{id}` answer: the order's new priority and its `updated_at`."""

    order_id: str
    priority: int
    at: datetime

    @classmethod
    def from_answer(cls, body: Mapping[str, Any]) -> Reprioritised:
        return cls(str(body["id"]), int(body["priority"]), _when(body["updated_at"]))


@dataclass(frozen=True)
class StrategySet:
    """A `PUT /v1/products/{sku}` answer: the SKU's strategy from its `updated_at` on."""

    sku: str
    strategy: str
    at: datetime

    @classmethod
    def from_answer(cls, body: Mapping[str, Any]) -> StrategySet:
        return cls(str(body["sku"]), str(body["allocation_strategy"]), _when(body["updated_at"]))


@dataclass
class QueueReplay:
    """What the replay saw; `mismatches` must be empty, and the figures show it was not idle."""

    fills: int = 0
    units_filled: int = 0  # units given from the queue by fills the replay checked
    fills_by_strategy: Counter[str] = field(default_factory=Counter)
    placements: int = 0
    cancellations: int = 0
    reprioritisations: int = 0
    waiting_lines_at_end: int = 0
    waiting_units_at_end: int = 0
    mismatches: list[str] = field(default_factory=list)

    def mismatch(self, text: str) -> None:
        if len(self.mismatches) < 30:
            self.mismatches.append(text)
        else:
            self.mismatches[-1] = f"... and more (last: {text})"

    def figures(self) -> dict[str, Any]:
        return {
            "queue_fills_replayed": self.fills,
            "queue_units_replayed": self.units_filled,
            "queue_waiting_at_end": self.waiting_lines_at_end,
            "queue_mismatches": len(self.mismatches),
        }


def _when(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@dataclass
class _Line:
    line_id: UUID
    order_id: str
    created_at: datetime
    backordered: int = 0


def _cancelled_lines(data: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(line id, units) named by a cancellation event, whatever its exact shape."""
    entries = data.get("lines")
    if not isinstance(entries, list):
        entries = [data]
    out = []
    for x in entries:
        if not isinstance(x, Mapping):
            continue
        line_id = x.get("line_id")
        units = x.get("quantity", x.get("units", x.get("cancelled")))
        if line_id is not None and isinstance(units, int):
            out.append((str(line_id), units))
    return out


def check_queue_order(
    database_url: str,
    *,
    reprioritised: Iterable[Reprioritised] = (),
    placed_priority: Mapping[str, int] | None = None,
    strategies: Iterable[StrategySet] = (),
) -> QueueReplay:
    """Replay every SKU's queue from the event log and hold each fill against the fill rule.

    `reprioritised`: every successful reprioritisation; then `placed_priority` must give the
    priority each reprioritised order was placed with (the database keeps only the last).
    `strategies`: every answer that set a SKU's strategy, its creation included, for SKUs whose
    strategy changed; other SKUs are replayed with the strategy they have now.
    """
    out = QueueReplay()
    with psycopg.connect(_plain(database_url), row_factory=dict_row) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        lines = {
            str(r["id"]): r
            for r in conn.execute(
                "SELECT l.id, CAST(l.order_id AS text) AS order_id, l.sku, l.created_at, "
                "o.priority FROM order_line l JOIN sales_order o ON o.id = l.order_id"
            )
        }
        product_strategy = {
            r["sku"]: r["allocation_strategy"]
            for r in conn.execute("SELECT sku, allocation_strategy FROM product")
        }
        events = conn.execute(
            "SELECT id, type, data, created_at, CAST(xmin AS text) AS tx FROM event "
            "WHERE type IN ('order.created', 'order.line_allocated') OR type LIKE '%cancelled' "
            "ORDER BY id"
        ).fetchall()
        queue = {
            str(r["line_id"]): r
            for r in conn.execute(
                "SELECT q.line_id, q.sku, l.backordered FROM backorder_queue q "
                "JOIN order_line l ON l.id = q.line_id"
            )
        }
        conn.rollback()

    # Per SKU: its events in id order, and its re-keyings by time.
    per_sku: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        data = e["data"] if isinstance(e["data"], dict) else json.loads(e["data"])
        e = {**e, "data": data}
        if e["type"] == "order.created":
            skus = {x["sku"] for x in data.get("lines", [])}
        elif e["type"] == "order.line_allocated":
            skus = {data["sku"]}
        else:
            skus = {lines[lid]["sku"] for lid, _ in _cancelled_lines(data) if lid in lines}
        for sku in skus:
            per_sku[sku].append(e)

    changes = sorted(reprioritised, key=lambda r: r.at)
    reprioritised_orders = {r.order_id for r in changes}
    placed = dict(placed_priority or {})
    missing = reprioritised_orders - set(placed)
    if missing:
        raise ValueError(f"reprioritised orders without their placed priority: {sorted(missing)}")
    strategy_changes: defaultdict[str, list[StrategySet]] = defaultdict(list)
    for s in sorted(strategies, key=lambda s: s.at):
        strategy_changes[s.sku].append(s)

    priority_now = {row["order_id"]: int(row["priority"]) for row in lines.values()}
    model: dict[str, int] = {}
    for sku in sorted(set(per_sku) | set(product_strategy)):
        history = per_sku.get(sku, [])
        replay = _SkuReplay(sku, lines, placed, reprioritised_orders, out)
        replay.strategy = product_strategy.get(sku, "fifo")
        replay.priority_now = priority_now
        replay.run(history, changes, strategy_changes.get(sku, []))
        model |= {lid: w.backordered for lid, w in replay.waiting.items() if w.backordered > 0}
    out.reprioritisations = len(changes)

    # The model's queue is the database's, line for line and unit for unit.
    stored = {lid: int(r["backordered"]) for lid, r in queue.items()}
    if model != stored:
        diff = {
            k: (model.get(k), stored.get(k))
            for k in set(model) | set(stored)
            if model.get(k) != stored.get(k)
        }
        out.mismatch(f"queue at the end, line: (model, database): {diff}")
    out.waiting_lines_at_end = len(stored)
    out.waiting_units_at_end = sum(stored.values())
    return out


class _SkuReplay:
    """One SKU's queue, rebuilt event by event."""

    def __init__(
        self,
        sku: str,
        lines: dict[str, dict[str, Any]],
        placed: dict[str, int],
        reprioritised_orders: set[str],
        out: QueueReplay,
    ) -> None:
        self.sku = sku
        self.lines = lines
        self.placed = placed
        self.reprioritised_orders = reprioritised_orders
        self.out = out
        self.strategy = "fifo"
        self.waiting: dict[str, _Line] = {}
        self.priority: dict[str, int] = {}  # each order's priority, as far as the replay is
        self.priority_now: dict[str, int] = {}  # the orders' priorities in the database

    def run(
        self,
        events: list[dict[str, Any]],
        changes: list[Reprioritised],
        strategies: list[StrategySet],
    ) -> None:
        pending, settings = list(changes), list(strategies)
        if settings:
            self.strategy = settings[0].strategy
        i = 0
        while i < len(events):
            at = events[i]["created_at"]
            while pending and pending[0].at < at:  # re-keyings that came before this event
                change = pending.pop(0)
                self.priority[change.order_id] = change.priority
            while settings and settings[0].at < at:
                self.strategy = settings.pop(0).strategy
            # The events one transaction wrote for this SKU, taken together.
            j = i + 1
            while j < len(events) and events[j]["tx"] == events[i]["tx"]:
                j += 1
            self.transaction(events[i:j])
            i = j

    def transaction(self, events: list[dict[str, Any]]) -> None:
        cancelled: dict[str, int] = {}
        fill_events = []
        for e in events:
            if e["type"] == "order.created":
                self.placement(e)
            elif e["type"] == "order.line_allocated":
                fill_events.append(e)
            else:
                # A transaction may announce one cancellation in two events (a line cancel that
                # cancels the order): count each line once.
                for lid, units in _cancelled_lines(e["data"]):
                    cancelled[lid] = max(units, cancelled.get(lid, 0))
        if cancelled:
            self.out.cancellations += 1
        for lid, units in cancelled.items():  # backordered units go first
            if lid in self.waiting:
                w = self.waiting[lid]
                w.backordered -= min(units, w.backordered)
        if fill_events:  # after the cancellations: they are what freed the units
            self.fill(fill_events)

    def priority_of(self, order_id: str) -> int:
        if order_id not in self.priority:
            if order_id in self.reprioritised_orders:
                self.priority[order_id] = self.placed[order_id]
            else:
                self.priority[order_id] = self.priority_now[order_id]
        return self.priority[order_id]

    def placement(self, e: dict[str, Any]) -> None:
        self.out.placements += 1
        waiting_units = sum(w.backordered for w in self.waiting.values())
        for x in e["data"].get("lines", []):
            if x.get("sku") != self.sku:
                continue
            lid = str(x["line_id"])
            row = self.lines.get(lid)
            if row is None:
                self.out.mismatch(f"{self.sku}: event {e['id']} names line {lid}, not stored")
                continue
            if int(x.get("allocated", 0)) > 0 and waiting_units:
                self.out.mismatch(
                    f"{self.sku}: line {lid} took {x['allocated']} at placement (event "
                    f"{e['id']}) while {waiting_units} units waited"
                )
            if int(x.get("backordered", 0)) > 0:
                self.waiting[lid] = _Line(
                    UUID(lid), row["order_id"], row["created_at"], int(x["backordered"])
                )

    def fill(self, events: list[dict[str, Any]]) -> None:
        got: list[tuple[str, int]] = []
        for e in events:
            lid, q = str(e["data"]["line_id"]), int(e["data"]["quantity"])
            if got and got[-1][0] == lid:
                # A line that took units at two locations: one event per location, one after
                # the other (API.md, "Wave 2: locations"); one take of the fill rule.
                got[-1] = (lid, got[-1][1] + q)
            else:
                got.append((lid, q))
        units = sum(q for _, q in got)
        queue = [
            WaitingLine(
                w.line_id,
                UUID(w.order_id),
                w.backordered,
                self.priority_of(w.order_id),
                w.created_at,
            )
            for w in self.waiting.values()
            if w.backordered > 0
        ]
        want = [
            (str(a.line_id), a.quantity)
            for a in fill(queue, units, AllocationStrategy(self.strategy))
        ]
        if got != want:
            self.out.mismatch(
                f"{self.sku} ({self.strategy}): a fill of {units} (tx {events[0]['tx']}, events "
                f"from {events[0]['id']}) gave {got}; the fill rule gives {want}"
            )
        for lid, q in got:
            if lid in self.waiting:
                self.waiting[lid].backordered -= q
        self.out.fills += 1
        self.out.units_filled += units
        self.out.fills_by_strategy[self.strategy] += 1


def assert_queue_order(
    database_url: str,
    *,
    reprioritised: Iterable[Reprioritised] = (),
    placed_priority: Mapping[str, int] | None = None,
    strategies: Iterable[StrategySet] = (),
    filled: Iterable[str] = ("fifo", "priority"),
) -> QueueReplay:
    """`check_queue_order`, failing on any mismatch, and on a pass that proves nothing: some
    units must have been filled from the queue (by fills of each strategy in `filled`), and
    some lines must still wait at the end (else every order could have been served at once)."""
    replay = check_queue_order(
        database_url,
        reprioritised=reprioritised,
        placed_priority=placed_priority,
        strategies=strategies,
    )
    assert not replay.mismatches, replay.mismatches
    assert replay.units_filled > 0, ("no unit was filled from the queue", replay)
    for strategy in filled:
        assert replay.fills_by_strategy[strategy] > 0, (f"no {strategy} fill", replay)
    assert replay.waiting_lines_at_end > 0, ("the queue ended empty", replay)
    return replay
