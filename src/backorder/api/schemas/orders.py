"""Orders, shipments and the backorder queue, as the API shows them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from backorder.api.schemas import examples
from backorder.api.schemas.common import (
    NOT_NULL,
    LocationCode,
    OutModel,
    Priority,
    Quantity,
    Sku,
    StrictModel,
    Text,
    not_null,
)
from backorder.api.schemas.reports import Instant
from backorder.config import DEFAULT_MAX_ORDER_LINES, MAX_ORDER_LINES_CEILING


# The cap on `lines`, checked before a single line is validated: a body of 38,000 bad lines
# then costs one comparison, not 76,000 errors. `create_app` admits its deployment's cap; a
# served process has one app, so this is exactly its cap (several apps in one process, as in
# tests, share the largest, and each route still holds its own app to its own cap).
class _LineCap:
    value: int | None = None


def admit_line_cap(cap: int) -> None:
    _LineCap.value = cap if _LineCap.value is None else max(_LineCap.value, cap)


def _within_line_cap(value: Any) -> Any:
    cap = _LineCap.value or MAX_ORDER_LINES_CEILING
    if isinstance(value, list) and len(value) > cap:
        raise PydanticCustomError(
            "too_long", "at most {cap} lines, not {count}", {"cap": cap, "count": len(value)}
        )
    return value


# Last in the `Annotated`, so that it runs before the list and its items are validated.
WITHIN_LINE_CAP = BeforeValidator(_within_line_cap)

OrderStatusName = Literal[
    "cancelled",
    "shipped",
    "partially_shipped",
    "allocated",
    "partially_backordered",
    "backordered",
]


class LineIn(StrictModel):
    sku: Sku
    quantity: Quantity


class OrderIn(StrictModel):
    customer_id: Text
    priority: Priority = Field(
        default=0, description="0-9, higher goes first in priority queues; storefronts 0-4."
    )
    ship_policy: Literal["partial", "complete"] = Field(
        default="partial",
        description="partial: ship what is allocated now; complete: ship when all is.",
    )
    backorder: Literal["allow", "cancel_rest"] = Field(
        default="allow",
        description="What to do with units stock cannot cover now. `allow`: they wait "
        "(backordered). `cancel_rest`: they are cancelled at once (the line shows them as "
        "`cancelled`), so the order never waits, and no `backorders_allowed` or "
        "`backorder_limit` refusal applies.",
    )
    external_ref: Text | None = Field(
        default=None,
        description="Your reference (e.g. the web shop's order number), unique per channel: "
        "a second order with it is 409 `conflict` naming the first as `order_id`.",
    )
    preferred_location: LocationCode | None = Field(
        default=None,
        description="Serve from this location first (if it is active); the rest of each line "
        "from the best-ranked location that can cover all of it, else from the active "
        "locations by rank, then code. Unknown: 422 `unknown_location`.",
    )
    backorder_deadline: Instant | None = Field(
        default=None,
        description="RFC 3339, in the future: the customer waits for backordered units until "
        "then, not longer. Past it, what still waits is cancelled by the service (`partial`: "
        "the backordered units; `complete`: every unshipped unit) with one "
        "`order.backorder_expired` event. Left out: `created_at` + the smallest "
        "`max_backorder_days` of the products it waits for, if any.",
        examples=["2026-12-24T00:00:00Z"],
    )
    # The cap is the deployment's `max_order_lines`, checked by the route (a model cannot read
    # settings); the app's OpenAPI shows the configured value as `maxItems`.
    lines: Annotated[
        list[LineIn],
        Field(
            min_length=1,
            description="One line per SKU, at most `maxItems` of them (the service's "
            f"`BACKORDER_MAX_ORDER_LINES`, {DEFAULT_MAX_ORDER_LINES} by default).",
            json_schema_extra={"maxItems": DEFAULT_MAX_ORDER_LINES},
        ),
        WITHIN_LINE_CAP,
    ]

    @field_validator("backorder_deadline")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        """The deadline in UTC, in the future. An offset can carry a date-time past the last
        one UTC can hold (9999-12-31T23:00:00-14:00): PostgreSQL would store it, and no order
        list could then be read back, so it is refused here."""
        if value is None:
            return None
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("must be no later than 9999-12-31T23:59:59Z") from None
        if value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value

    @model_validator(mode="after")
    def _one_line_per_sku(self) -> OrderIn:
        skus = [line.sku for line in self.lines]
        if len(set(skus)) != len(skus):
            raise ValueError("each SKU may appear on one line only")
        return self

    model_config = StrictModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "customer_id": "c-1001",
                    "priority": 0,
                    "ship_policy": "partial",
                    "backorder": "allow",
                    "external_ref": "web-88812",
                    "lines": [{"sku": "TRAIL-42", "quantity": 100}],
                },
                {
                    "customer_id": "c-1002",
                    "backorder": "cancel_rest",
                    "external_ref": "web-88813",
                    "lines": [{"sku": "TRAIL-42", "quantity": 3}],
                },
            ]
        }
    }


class LineAllocationOut(OutModel):
    location: str
    allocated: int = Field(description="Allocated at this location, not yet shipped.")
    shipped: int = Field(description="Shipped from this location.")


class LineOut(OutModel):
    id: UUID
    sku: str
    quantity: int
    allocated: int
    backordered: int
    shipped: int
    cancelled: int
    status: OrderStatusName
    expected_date: date | None
    at_risk: bool = Field(
        description="The line waits (backordered units) and its `expected_date` is null or "
        "after the order's `backorder_deadline` (its UTC date); false without a deadline."
    )
    allocations: list[LineAllocationOut] = Field(
        description="Where the line's allocated and shipped units are, per location that holds "
        "any, by rank then code; they sum to the line's `allocated` and `shipped`."
    )


class OrderOut(OutModel):
    id: UUID
    customer_id: str
    channel: str
    priority: int
    ship_policy: Literal["partial", "complete"]
    external_ref: str | None
    backorder_deadline: datetime | None = Field(
        description="Until when the customer waits for backordered units (its own, or from "
        "its products' `max_backorder_days`); null: as long as it takes."
    )
    status: OrderStatusName
    backorder_type: Literal["none", "partial", "full"]
    ready_to_ship: bool
    quantity: int
    allocated: int
    backordered: int
    shipped: int
    cancelled: int
    created_at: datetime
    updated_at: datetime
    lines: list[LineOut]

    model_config = OutModel.model_config | {"json_schema_extra": {"examples": [examples.ORDER]}}


class CancelIn(StrictModel):
    reason: Text | None = None


class LineCancelIn(StrictModel):
    quantity: Quantity | None = Field(
        default=None, description="Units to cancel; all unshipped units when left out."
    )
    reason: Text | None = None

    model_config = StrictModel.model_config | {"json_schema_extra": {"examples": [{"quantity": 5}]}}


class PriorityIn(StrictModel):
    priority: Priority

    model_config = StrictModel.model_config | {"json_schema_extra": {"examples": [{"priority": 7}]}}


class ShipLineIn(StrictModel):
    line_id: UUID
    quantity: Quantity


class ShipmentIn(StrictModel):
    lines: Annotated[
        list[ShipLineIn],
        Field(
            min_length=1,
            description="At most `maxItems` lines, the same cap as an order's "
            f"(`BACKORDER_MAX_ORDER_LINES`, {DEFAULT_MAX_ORDER_LINES} by default).",
            json_schema_extra={"maxItems": DEFAULT_MAX_ORDER_LINES},
        ),
        WITHIN_LINE_CAP,
    ]
    location: Annotated[LocationCode | None, NOT_NULL] = Field(
        default=None,
        description="The location shipped from. May be left out when every listed line's "
        "unshipped allocated units are at one and the same location (that one); otherwise "
        "422 `validation_error` naming `location`. Unknown: 422 `unknown_location`. More "
        "than a line has allocated there: 409 `not_allocated`.",
        json_schema_extra=not_null,
    )


class ShippedLineOut(OutModel):
    line_id: UUID
    sku: str
    quantity: int


class ShipmentOut(OutModel):
    id: UUID
    order_id: UUID
    location: str = Field(description="Where the shipment left from.")
    lines: list[ShippedLineOut]
    created_at: datetime
    order: OrderOut

    model_config = OutModel.model_config | {"json_schema_extra": {"examples": [examples.SHIPMENT]}}


class BackorderOut(OutModel):
    order_id: UUID
    line_id: UUID
    sku: str
    customer_id: str
    quantity: int = Field(description="Open backordered units of the line.")
    priority: int
    created_at: datetime
    position: int = Field(description="1 for the next line to be filled within its SKU.")
    expected_date: date | None

    model_config = OutModel.model_config | {"json_schema_extra": {"examples": [examples.BACKORDER]}}
