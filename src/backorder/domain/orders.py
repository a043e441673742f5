"""Order and line statuses, derived from the units of each line (never stored by hand)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ShipPolicy(StrEnum):
    PARTIAL = "partial"
    COMPLETE = "complete"


class OrderStatus(StrEnum):
    CANCELLED = "cancelled"
    SHIPPED = "shipped"
    PARTIALLY_SHIPPED = "partially_shipped"
    ALLOCATED = "allocated"
    PARTIALLY_BACKORDERED = "partially_backordered"
    BACKORDERED = "backordered"


class BackorderType(StrEnum):
    NONE = "none"
    PARTIAL = "partial"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class Units:
    """Units of a line, or summed over an order."""

    quantity: int
    allocated: int
    backordered: int
    shipped: int
    cancelled: int

    def __add__(self, other: Units) -> Units:
        return Units(
            self.quantity + other.quantity,
            self.allocated + other.allocated,
            self.backordered + other.backordered,
            self.shipped + other.shipped,
            self.cancelled + other.cancelled,
        )

    @property
    def open_units(self) -> int:
        """Units neither shipped nor cancelled."""
        return self.allocated + self.backordered


ZERO = Units(0, 0, 0, 0, 0)


def status_of(u: Units) -> OrderStatus:
    o, a, s = u.backordered, u.allocated, u.shipped
    if o == a == s == 0:
        return OrderStatus.CANCELLED
    if s > 0:
        return OrderStatus.SHIPPED if o == a == 0 else OrderStatus.PARTIALLY_SHIPPED
    if o == 0:
        return OrderStatus.ALLOCATED
    return OrderStatus.PARTIALLY_BACKORDERED if a > 0 else OrderStatus.BACKORDERED


def backorder_type_of(u: Units, policy: ShipPolicy) -> BackorderType:
    if u.backordered == 0:
        return BackorderType.NONE
    if u.allocated + u.shipped == 0 or (policy == ShipPolicy.COMPLETE and u.shipped == 0):
        return BackorderType.FULL
    return BackorderType.PARTIAL


def ready_to_ship(u: Units, policy: ShipPolicy) -> bool:
    return u.allocated > 0 and (policy == ShipPolicy.PARTIAL or u.backordered == 0)


def total(lines: list[Units]) -> Units:
    result = ZERO
    for line in lines:
        result = result + line
    return result
