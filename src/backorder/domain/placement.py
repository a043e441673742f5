"""The placement rule, as plain Python: how each line of a new order splits into units taken
now, units that wait and units cancelled at once, or which refusal turns the order away whole.

Placement runs it on the products it has locked; the promise before ordering runs it on a
product read without a lock. One rule for both, so the promise cannot drift from what an
order gets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from backorder.domain.allocation import take_now
from backorder.domain.errors import (
    BackorderLimitExceeded,
    Discontinued,
    InsufficientStock,
    UnknownSku,
)


@dataclass(frozen=True, slots=True)
class LineRequest:
    sku: str
    quantity: int


class StockFacts(Protocol):
    """What the rule needs of a product (its counters as they stand now)."""

    @property
    def discontinued(self) -> bool: ...

    @property
    def backorders_allowed(self) -> bool: ...

    @property
    def backorder_limit(self) -> int | None: ...

    @property
    def backordered(self) -> int: ...

    @property
    def available(self) -> int: ...


@dataclass(frozen=True, slots=True)
class LineSplit:
    sku: str
    quantity: int
    allocated: int
    backordered: int
    # Units cancelled at placement (`backorder: cancel_rest`): what stock could not cover.
    cancelled: int = 0


def _refusal_lines(
    lines: Sequence[LineRequest], products: Mapping[str, StockFacts], skus: set[str]
) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        if line.sku in skus:
            product = products.get(line.sku)
            out.append(
                {
                    "sku": line.sku,
                    "requested": line.quantity,
                    "available": max(0, product.available) if product else 0,
                }
            )
    return out


def split_lines(
    lines: Sequence[LineRequest], products: Mapping[str, StockFacts], backorder: str = "allow"
) -> list[LineSplit]:
    """Split each line into allocated and backordered (or, with `backorder="cancel_rest"`,
    cancelled) units, or refuse the order whole: unknown SKU, discontinued, insufficient
    stock, backorder limit exceeded, in that order of precedence."""
    unknown = {line.sku for line in lines if line.sku not in products}
    if unknown:
        raise UnknownSku(
            f"unknown SKU: {', '.join(sorted(unknown))}",
            lines=_refusal_lines(lines, products, unknown),
        )
    discontinued = {line.sku for line in lines if products[line.sku].discontinued}
    if discontinued:
        raise Discontinued(
            f"discontinued: {', '.join(sorted(discontinued))}",
            lines=_refusal_lines(lines, products, discontinued),
        )
    splits: list[LineSplit] = []
    short: set[str] = set()
    over_limit: set[str] = set()
    for line in lines:
        product = products[line.sku]
        allocated, backordered = take_now(line.quantity, product.available)
        if backorder == "cancel_rest":
            # Nothing waits, so no backorder rule can refuse it.
            splits.append(LineSplit(line.sku, line.quantity, allocated, 0, cancelled=backordered))
            continue
        if backordered and not product.backorders_allowed:
            short.add(line.sku)
        elif (
            backordered
            and product.backorder_limit is not None
            and product.backordered + backordered > product.backorder_limit
        ):
            over_limit.add(line.sku)
        splits.append(LineSplit(line.sku, line.quantity, allocated, backordered))
    if short:
        raise InsufficientStock(
            f"not enough stock and no backorders allowed: {', '.join(sorted(short))}",
            lines=_refusal_lines(lines, products, short),
        )
    if over_limit:
        refused = _refusal_lines(lines, products, over_limit)
        for entry in refused:
            product = products[entry["sku"]]
            limit = product.backorder_limit or 0
            entry["backorder_capacity"] = max(0, limit - product.backordered)
        raise BackorderLimitExceeded(
            f"backorder limit reached: {', '.join(sorted(over_limit))}", lines=refused
        )
    return splits
