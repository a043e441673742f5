"""Purchase orders and receipts, as the API shows them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import Field

from backorder.api.schemas import examples
from backorder.api.schemas.common import Day, OutModel, Quantity, Sku, StrictModel, Text
from backorder.api.schemas.products import StockChangeOut

PoStatus = Literal["open", "closed", "cancelled"]


class PurchaseOrderIn(StrictModel):
    sku: Sku
    quantity: Quantity
    expected_date: Day = Field(description="When the units are expected (YYYY-MM-DD).")
    reference: Text | None = Field(default=None, description="Your PO number, e.g. PO-1234.")

    model_config = StrictModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "sku": "TRAIL-42",
                    "quantity": 100,
                    "expected_date": "2026-12-01",
                    "reference": "PO-1234",
                }
            ]
        }
    }


class PurchaseOrderPatch(StrictModel):
    expected_date: Day

    model_config = StrictModel.model_config | {
        "json_schema_extra": {"examples": [{"expected_date": "2026-12-15"}]}
    }


class ReceiveIn(StrictModel):
    quantity: Quantity

    model_config = StrictModel.model_config | {
        "json_schema_extra": {"examples": [{"quantity": 60}]}
    }


class PurchaseOrderOut(OutModel):
    id: UUID
    sku: str
    quantity: int
    received: int = Field(description="Units received so far.")
    remaining: int = Field(description="Units still to come; 0 once closed or cancelled.")
    expected_date: date
    reference: str | None
    status: PoStatus = Field(
        description="`open`, `closed` (fully received) or `cancelled`. Only open POs count "
        "in `incoming` and promise dates."
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
