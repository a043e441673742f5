"""Product rules: the availability status and which availability events a change announces."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ProductStatus(StrEnum):
    IN_STOCK = "in_stock"
    LOW_STOCK = "low_stock"
    BACKORDER = "backorder"
    OUT_OF_STOCK = "out_of_stock"
    DISCONTINUED = "discontinued"


class StockState(StrEnum):
    """Coarse availability, remembered on the product to announce transitions once."""

    OUT = "out"  # nothing available
    LOW = "low"  # 0 < available <= reorder point
    IN = "in"  # available above the reorder point


@dataclass(frozen=True, slots=True)
class Figures:
    on_hand: int
    allocated: int
    backordered: int

    @property
    def available(self) -> int:
        return self.on_hand - self.allocated


def product_status(
    *,
    available: int,
    reorder_point: int | None,
    backorders_allowed: bool,
    discontinued: bool,
) -> ProductStatus:
    if discontinued:
        return ProductStatus.DISCONTINUED
    if available > (reorder_point or 0):
        return ProductStatus.IN_STOCK
    if available > 0:
        return ProductStatus.LOW_STOCK
    return ProductStatus.BACKORDER if backorders_allowed else ProductStatus.OUT_OF_STOCK


def stock_state(available: int, reorder_point: int | None) -> StockState:
    if available <= 0:
        return StockState.OUT
    if reorder_point is not None and available <= reorder_point:
        return StockState.LOW
    return StockState.IN


def transition_events(before: StockState, after: StockState) -> list[str]:
    """Event types a move between states announces (on entering a state, never while in it)."""
    if before == after:
        return []
    announced = ["product.back_in_stock"] if before == StockState.OUT else []
    if after == StockState.LOW:
        announced.append("product.low_stock")
    return announced
