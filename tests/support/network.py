"""The contract's rules of locations, written out naively for the property tests to hold the
domain's rules (`backorder.domain.locations`) and their SQL against."""

from __future__ import annotations

from backorder.domain.locations import LocationStock


def naive_allocation(
    quantity: int, stock: list[LocationStock], preferred: str | None
) -> list[tuple[str, int]]:
    """API.md, step by step: the preferred location (if active); then, if one active location
    can cover the whole rest of the line, the best-ranked such location; then active locations
    by rank, then code, taking what each has."""
    left = {s.location: s.available for s in stock if s.active and s.available > 0}
    rank = {s.location: s.rank for s in stock}
    order = sorted(left, key=lambda c: (rank[c], c))
    taken: list[tuple[str, int]] = []
    rest = quantity
    if preferred in left and rest > 0:
        n = min(rest, left.pop(preferred))
        taken.append((preferred, n))
        rest -= n
        order.remove(preferred)
    covering = [c for c in order if left[c] >= rest]
    if rest > 0 and covering:
        return [*taken, (covering[0], rest)]
    for c in order:
        n = min(rest, left[c])
        if n > 0:
            taken.append((c, n))
            rest -= n
    return taken


def naive_segments(stock: list[LocationStock]) -> list[tuple[str, int]]:
    """A fill's units per location in hand-out order: active ones with units, rank then code."""
    ranked = sorted(stock, key=lambda s: (s.rank, s.location))
    return [
        (s.location, s.on_hand - s.allocated)
        for s in ranked
        if s.active and s.on_hand > s.allocated
    ]


def naive_split(takes: list[int], segments: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    """Unit by unit: the units in hand-out order, each to the next line that still wants one;
    per line its (location, units) in the order it got them."""
    units = [code for code, n in segments for _ in range(n)]
    assert sum(takes) <= len(units), (takes, segments)
    out: list[list[tuple[str, int]]] = []
    i = 0
    for take in takes:
        parts: list[tuple[str, int]] = []
        for code in units[i : i + take]:
            if parts and parts[-1][0] == code:
                parts[-1] = (code, parts[-1][1] + 1)
            else:
                parts.append((code, 1))
        i += take
        out.append(parts)
    return out
