"""Purchase orders and receipts, as the API shows them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from backorder.api.schemas import examples
from backorder.api.schemas.common import (
    NOT_NULL,
    Day,
    LocationCode,
    OutModel,
    Quantity,
    Sku,
    StrictModel,
    Text,
    not_null,
)
from backorder.api.schemas.products import StockChangeOut
from backorder.domain.purchasing import expected_date_refusal

PoStatus = Literal["open", "closed", "cancelled"]


def _in_range(value: date) -> date:
    refusal = expected_date_refusal(value, datetime.now(UTC).date())
    if refusal is not None:
        raise PydanticCustomError("expected_date_out_of_range", refusal)
    return value


ExpectedDate = Annotated[
    Day,
    AfterValidator(_in_range),
    Field(
        description="When the units are expected (YYYY-MM-DD): from today (UTC) to today's "
        "date five years on, else 422 `validation_error`. It becomes the promise date of the "
        "waiting lines the PO covers."
    ),
]


class PurchaseOrderIn(StrictModel):
    sku: Sku
    quantity: Quantity
    expected_date: ExpectedDate
    reference: Text | None = Field(default=None, description="Your PO number, e.g. PO-1234.")
    location: Annotated[LocationCode | None, NOT_NULL] = Field(
        default=None,
        description="Where the receipt lands (a location's code); left out: `main`. Unknown: "
        "422 `unknown_location`. Receiving at an inactive location is 409 "
        "`location_inactive`.",
        json_schema_extra=not_null,
    )

    model_config = StrictModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "sku": "TRAIL-42",
                    "quantity": 100,
                    "expected_date": "2027-03-01",
                    "reference": "PO-1234",
                }
            ]
        }
    }


class PurchaseOrderPatch(StrictModel):
    expected_date: ExpectedDate

    model_config = StrictModel.model_config | {
        "json_schema_extra": {"examples": [{"expected_date": "2027-03-15"}]}
    }


class ReceiveIn(StrictModel):
    quantity: Quantity

    model_config = StrictModel.model_config | {
        "json_schema_extra": {"examples": [{"quantity": 60}]}
    }


class PurchaseOrderOut(OutModel):
    id: UUID
    sku: str
    location: str = Field(description="Where the receipt lands.")
    quantity: int
    received: int = Field(description="Units received so far.")
    remaining: int = Field(description="Units still to come; 0 once closed or cancelled.")
    expected_date: date
    reference: str | None
    status: PoStatus = Field(
        description="`open`, `closed` (fully received) or `cancelled`. Only open POs count "
        "in `incoming` and promise dates."
    )
    overdue: bool = Field(
        description="True once an open PO's `expected_date` has passed (UTC) with units still "
        "to come: it no longer drives promise dates (the lines it covered are dated as if it "
        "were not there) but still counts in `incoming` (the units are still expected). "
        "Giving it a new `expected_date` makes it drive dates again."
    )
    created_at: datetime
    updated_at: datetime

    model_config = OutModel.model_config | {
        "json_schema_extra": {"examples": [examples.PURCHASE_ORDER]}
    }


class ReceiptOut(StockChangeOut):
    """The restock a receipt made (units given to waiting lines, in queue order) and the PO."""

    purchase_order: PurchaseOrderOut

    model_config = OutModel.model_config | {"json_schema_extra": {"examples": [examples.RECEIPT]}}
