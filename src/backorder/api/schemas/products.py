"""Products, stock and the ledger, as the API shows them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field, Strict, StrictBool

from backorder.api.schemas import examples
from backorder.api.schemas.common import (
    NOT_NULL,
    WHOLE,
    Day,
    LocationCode,
    Name,
    NonNegative,
    OutModel,
    Quantity,
    Sku,
    StrictModel,
    Text,
    not_null,
)

ProductStatusName = Literal["in_stock", "low_stock", "backorder", "out_of_stock", "discontinued"]


class ProductIn(StrictModel):
    """Fields left out keep their values on update; `null` clears a nullable field."""

    # Not nullable (a product always has a name; the router refuses a null one), but it may be
    # left out of an update: the default only marks it as not sent (`model_fields_set`).
    name: Name | None = Field(
        default=None, description="Required when creating.", json_schema_extra=not_null
    )
    backorders_allowed: StrictBool = True
    backorder_limit: NonNegative | None = Field(
        default=None, description="Max open backordered units; null = no limit."
    )
    allocation_strategy: Literal["fifo", "priority"] = "fifo"
    discontinued: StrictBool = False
    expected_restock_date: Day | None = None
    reorder_point: NonNegative | None = None
    safety_stock: NonNegative | None = None
    lead_time_days: Annotated[int, Strict(), Field(ge=0, le=3650), WHOLE] | None = None
    max_backorder_days: Annotated[int, Strict(), Field(ge=1, le=3650), WHOLE] | None = Field(
        default=None,
        description="How long (days, 1-3650) an order waits at most for this product: an order "
        "with backordered units of it and no `backorder_deadline` of its own gets `created_at` "
        "+ the smallest such number among its waiting products. Null: no limit.",
    )
    alternatives: Annotated[list[Sku], Field(max_length=50)] = Field(
        default_factory=list,
        description="Other existing products to offer instead (not this one): an unknown SKU "
        "is 422 `unknown_sku`, the product itself 422 `validation_error`.",
    )

    model_config = StrictModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "name": "Trail Runner 42",
                    "backorders_allowed": True,
                    "backorder_limit": 500,
                    "allocation_strategy": "fifo",
                    "expected_restock_date": "2026-12-01",
                    "reorder_point": 20,
                    "safety_stock": 10,
                    "lead_time_days": 14,
                    "alternatives": ["TRAIL-43", "TRAIL-41"],
                }
            ]
        }
    }


class ProductLocationOut(OutModel):
    location: str = Field(description="The location's code.")
    active: bool
    on_hand: int
    allocated: int
    available: int = Field(description="`on_hand - allocated` when active, else 0.")


class ProductOut(OutModel):
    sku: str
    name: str
    backorders_allowed: bool
    backorder_limit: int | None
    allocation_strategy: Literal["fifo", "priority"]
    discontinued: bool
    expected_restock_date: date | None
    reorder_point: int | None
    safety_stock: int | None
    lead_time_days: int | None
    max_backorder_days: int | None = Field(
        description="How long an order waits at most for this product (days); null: no limit."
    )
    alternatives: list[str]
    on_hand: int = Field(description="Physically in stock, at every location.")
    allocated: int = Field(description="Reserved for order lines, not yet shipped.")
    available: int = Field(
        description="What a new order can take now: `on_hand - allocated` at the active "
        "locations (units at an inactive location are not available)."
    )
    backordered: int = Field(description="Open backordered units waiting for stock.")
    incoming: int = Field(
        description="Units on open purchase orders, overdue ones included (still expected)."
    )
    status: ProductStatusName
    locations: list[ProductLocationOut] = Field(
        description="Stock per location, for every location that ever had a stock movement of "
        "this SKU (kept when emptied), by rank then code. `[]` for a new product."
    )
    created_at: datetime
    updated_at: datetime

    model_config = OutModel.model_config | {"json_schema_extra": {"examples": [examples.PRODUCT]}}


class RestockIn(StrictModel):
    quantity: Quantity
    reference: Text | None = None
    location: Annotated[LocationCode | None, NOT_NULL] = Field(
        default=None,
        description="Where the units are (a location's code); left out: `main`. Unknown: 422 "
        "`unknown_location`. Inactive: 409 `location_inactive`.",
        json_schema_extra=not_null,
    )

    model_config = StrictModel.model_config | {
        "json_schema_extra": {"examples": [{"quantity": 50, "reference": "PO-1234"}]}
    }


class AdjustmentIn(StrictModel):
    delta: Annotated[int, Strict(), Field(ge=-1_000_000, le=1_000_000), WHOLE] = Field(
        # The router refuses 0 (422); the schema says so too.
        description="Signed change of on_hand; not zero.",
        json_schema_extra={"not": {"const": 0}},
    )
    reason: Text | None = None
    reference: Text | None = None
    location: Annotated[LocationCode | None, NOT_NULL] = Field(
        default=None,
        description="Where the units are (a location's code); left out: `main`. Unknown: 422 "
        "`unknown_location`. A positive delta at an inactive location: 409 `location_inactive`.",
        json_schema_extra=not_null,
    )

    model_config = StrictModel.model_config | {
        "json_schema_extra": {"examples": [{"delta": -3, "reason": "cycle count"}]}
    }


class AllocationOut(OutModel):
    order_id: str
    line_id: str
    quantity: int


class StockChangeOut(OutModel):
    """What a restock or adjustment did: the units given to waiting lines, in queue order,
    all allocated at its `location` (where the units became available)."""

    id: str
    sku: str
    location: str = Field(description="Where the units were added or removed.")
    quantity: int
    allocations: list[AllocationOut]
    allocated_units: int
    on_hand: int
    allocated: int
    available: int
    backordered: int
    created_at: datetime
    delta: int | None = None
    reason: str | None = None

    model_config = OutModel.model_config | {
        "json_schema_extra": {"examples": [examples.RESTOCK, examples.ADJUSTMENT]}
    }


class MovementOut(OutModel):
    id: str
    sku: str
    kind: Literal["restock", "adjustment", "shipment", "receipt", "transfer"]
    location: str = Field(description="The location whose stock moved.")
    quantity: int = Field(description="Signed: a shipment of 5 is -5.")
    reference: str | None
    reason: str | None
    order_id: str | None
    shipment_id: str | None
    purchase_order_id: str | None
    transfer_id: str | None = Field(description="The transfer a `transfer` row belongs to.")
    created_at: datetime

    model_config = OutModel.model_config | {"json_schema_extra": {"examples": [examples.MOVEMENT]}}


class PromiseOut(OutModel):
    """What an order of `quantity` units placed now (priority 0) would get."""

    sku: str
    quantity: int = Field(description="The units asked about.")
    available_now: int = Field(description="Units the order would be allocated at once.")
    backordered: int = Field(description="Units that would wait in the backorder queue.")
    expected_date: date | None = Field(
        description="When the last waiting unit is expected, by the rule a waiting line's "
        "`expected_date` follows: the open, not overdue purchase orders cover the queue in "
        "date order, these units last; past them, the product's `expected_restock_date`. Null "
        "when nothing would wait, or no date is known."
    )
    lines_ahead: int = Field(
        description="Waiting lines the order would queue behind (0 if none would wait)."
    )
    units_ahead: int = Field(description="Units those lines wait for (0 if none would wait).")
    refused: Literal["discontinued", "insufficient_stock", "backorder_limit_exceeded"] | None = (
        Field(
            description="The code the order would be refused with (409), or null. A refused "
            "order gets nothing: `available_now` and `backordered` are then 0."
        )
    )

    model_config = OutModel.model_config | {
        "json_schema_extra": {"examples": [examples.PROMISE, examples.PROMISE_REFUSED]}
    }
