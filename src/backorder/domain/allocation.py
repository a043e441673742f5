"""The fill rule, as plain Python. `db/stock.py` runs the same rule as one SQL statement, and a
property test demands that both agree on random queues.

A queue is the SKU's open backordered lines. Fill order: `fifo` by (created_at, line id);
`priority` by (priority descending, created_at, line id). New units go to the head first; the
last line reached may be filled partly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID


class AllocationStrategy(StrEnum):
    FIFO = "fifo"
    PRIORITY = "priority"


@dataclass(frozen=True, slots=True)
class WaitingLine:
    line_id: UUID
    order_id: UUID
    backordered: int
    priority: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Allocation:
    order_id: UUID
    line_id: UUID
    quantity: int


def queue_key(line: WaitingLine, strategy: AllocationStrategy) -> tuple[object, ...]:
    if strategy == AllocationStrategy.PRIORITY:
        return (-line.priority, line.created_at, line.line_id)
    return (line.created_at, line.line_id)


def queue_order(lines: list[WaitingLine], strategy: AllocationStrategy) -> list[WaitingLine]:
    return sorted(lines, key=lambda line: queue_key(line, strategy))


def fill(lines: list[WaitingLine], units: int, strategy: AllocationStrategy) -> list[Allocation]:
    """Give `units` to the waiting lines, head first, until units or queue run out."""
    allocations: list[Allocation] = []
    for line in queue_order(lines, strategy):
        if units <= 0:
            break
        take = min(units, line.backordered)
        if take > 0:
            allocations.append(Allocation(line.order_id, line.line_id, take))
            units -= take
    return allocations


def take_now(requested: int, available: int) -> tuple[int, int]:
    """Split a new line into (allocated now, backordered)."""
    allocated = max(0, min(requested, available))
    return allocated, requested - allocated
