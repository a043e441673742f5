"""Locations, transfers and pick lists, as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import Field, Strict, StrictBool

from backorder.api.schemas import examples
from backorder.api.schemas.common import (
    WHOLE,
    LocationCode,
    Name,
    OutModel,
    Quantity,
    Sku,
    StrictModel,
    Text,
    not_null,
)
from backorder.api.schemas.products import AllocationOut

Rank = Annotated[int, Strict(), Field(ge=0, le=1000), WHOLE]


class LocationIn(StrictModel):
    """Fields left out keep their values on update (on create: `rank` 100, `active` true).
    None of them may be sent as `null`."""

    # Not nullable (the router refuses null); the default only marks a field as not sent.
    name: Name | None = Field(
        default=None, description="Required when creating.", json_schema_extra=not_null
    )
    rank: Rank | None = Field(
        default=None,
        description="0-1000; a lower rank is preferred when allocating. 100 when created "
        "without one.",
        json_schema_extra=not_null,
    )
    active: StrictBool | None = Field(
        default=None,
        description="An inactive location takes no new stock and its unallocated units are not "
        "available to orders; its allocated units can still ship. Activating it gives those "
        "units to the backorder queues at once. True when created without it.",
        json_schema_extra=not_null,
    )

    model_config = StrictModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {"name": "Leeds DC", "rank": 10, "active": True},
                {"active": False},
            ]
        }
    }


class LocationOut(OutModel):
    code: str
    name: str
    rank: int = Field(description="A lower rank is preferred when allocating.")
    active: bool
    created_at: datetime
    updated_at: datetime

    model_config = OutModel.model_config | {
        "json_schema_extra": {"examples": [examples.LOCATION, examples.LOCATION_MAIN]}
    }


class TransferIn(StrictModel):
    sku: Sku
    # `from` is a Python keyword: the field is `source` in Python, `from` on the wire.
    source: LocationCode = Field(
        alias="from",
        description="The location the units leave; it may be inactive (closing a store).",
    )
    to: LocationCode = Field(
        description="The location the units arrive at: active (else 409 `location_inactive`), "
        "not `from` (else 422 `validation_error`)."
    )
    quantity: Quantity = Field(
        description="At most what `from` holds unallocated (else 409 `insufficient_stock`)."
    )
    reference: Text | None = None

    model_config = StrictModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "sku": "TRAIL-42",
                    "from": "york",
                    "to": "leeds",
                    "quantity": 30,
                    "reference": "closing york",
                }
            ]
        }
    }


class TransferOut(OutModel):
    """The transfer, what its units filled at `to`, and the product's figures after it."""

    id: UUID
    sku: str
    source: str = Field(alias="from", description="Where the units left from.")
    to: str = Field(description="Where they arrived.")
    quantity: int
    reference: str | None
    created_at: datetime
    allocations: list[AllocationOut] = Field(
        description="The waiting lines the units filled at `to`, in queue order (empty when "
        "nobody waited)."
    )
    allocated_units: int
    on_hand: int = Field(description="The product's, over the network (a transfer keeps it).")
    allocated: int
    available: int
    backordered: int

    model_config = OutModel.model_config | {
        "populate_by_name": True,
        "json_schema_extra": {"examples": [examples.TRANSFER]},
    }


class PickLineOut(OutModel):
    order_id: UUID
    line_id: UUID
    sku: str
    customer_id: str
    quantity: int = Field(description="The line's units allocated and unshipped here.")
    priority: int = Field(description="The order's priority (higher is picked first).")
    created_at: datetime = Field(description="When the order was placed.")

    model_config = OutModel.model_config | {"json_schema_extra": {"examples": [examples.PICK_LINE]}}
