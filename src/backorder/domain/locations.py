"""Where units are taken from, and where freed units go: the cross-location rules, as plain
Python. Placement runs `allocate_line` on the stock it has locked; `db/stock.py` runs
`split_fill` as SQL inside the one fill statement, and a property test demands that both agree.

A location's `available` is `on_hand - allocated` when it is active, 0 when not. Locations
are preferred by rank (lower first), then code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAIN = "main"


@dataclass(slots=True)
class LocationStock:
    """One SKU's stock at one location, as read under the SKU lock (and kept current)."""

    location: str
    rank: int
    active: bool
    on_hand: int
    allocated: int
    # The location's small number (`location.id`), as a line names its primary location.
    id: int = 0

    @property
    def available(self) -> int:
        return self.on_hand - self.allocated if self.active else 0

    @property
    def unavailable(self) -> int:
        """Unallocated units an inactive location holds back from orders."""
        return 0 if self.active else self.on_hand - self.allocated


def preference(stock: LocationStock) -> tuple[int, str]:
    return (stock.rank, stock.location)


def allocate_line(
    quantity: int, stock: Iterable[LocationStock], preferred: str | None = None
) -> list[tuple[str, int]]:
    """Where a new line's `quantity` units (at most what the active locations have) are taken:
    the preferred location first (if active); then, if one active location can cover the whole
    rest, the best-ranked such location; then active locations by rank, then code, taking what
    each has. `[(location, units)]` in the order taken, no zero entries."""
    ranked = sorted((s for s in stock if s.available > 0), key=preference)
    taken: list[tuple[str, int]] = []
    rest = quantity
    first = next((s for s in ranked if s.location == preferred), None)
    if first is not None and rest > 0:
        units = min(rest, first.available)
        taken.append((first.location, units))
        rest -= units
        ranked.remove(first)
    if rest > 0:
        whole = next((s for s in ranked if s.available >= rest), None)
        if whole is not None:
            taken.append((whole.location, rest))
            rest = 0
    for s in ranked:
        if rest <= 0:
            break
        units = min(rest, s.available)
        taken.append((s.location, units))
        rest -= units
    return taken


def fill_segments(stock: Iterable[LocationStock]) -> list[tuple[str, int]]:
    """The units a fill hands out, per location, in the order it hands them out: every active
    location's available units, by rank, then code (the queue head gets the first)."""
    return [(s.location, s.available) for s in sorted(stock, key=preference) if s.available > 0]


def split_fill(
    takes: Sequence[int], segments: Sequence[tuple[str, int]]
) -> list[list[tuple[str, int]]]:
    """Where each line's take in a fill comes from. `takes` are the lines' units in queue
    order, `segments` the units per location in hand-out order: the units are laid end to end
    and each line gets the stretch that lines up with its own, so the head is served from the
    first location and a line may straddle two."""
    out: list[list[tuple[str, int]]] = []
    seg = 0
    left = segments[0][1] if segments else 0
    for take in takes:
        parts: list[tuple[str, int]] = []
        while take > 0:
            while left == 0:
                seg += 1
                left = segments[seg][1]
            units = min(take, left)
            parts.append((segments[seg][0], units))
            take -= units
            left -= units
        out.append(parts)
    return out


def release_order(stock: Iterable[tuple[str, int, int]]) -> list[str]:
    """The order in which a partly cancelled line gives up its allocated units: from the
    least preferred location first (rank, code descending), so what stays is where it
    ships best. `stock`: (location, rank, allocated)."""
    return [loc for loc, _, _ in sorted(stock, key=lambda s: (s[1], s[0]), reverse=True)]
