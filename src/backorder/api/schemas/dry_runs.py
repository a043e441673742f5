"""The answers of `?dry_run=true`: the call's own answer (records it would create have a null
id), plus what would move for every other order and waiting line."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from uuid import UUID

from fastapi import Query
from pydantic import Field

from backorder.api.schemas import examples
from backorder.api.schemas.common import OutModel
from backorder.api.schemas.locations import TransferOut
from backorder.api.schemas.orders import OrderOut, OrderStatusName, ShipmentOut
from backorder.api.schemas.products import StockChangeOut
from backorder.api.schemas.purchasing import ReceiptOut

DryRunQuery = Annotated[
    bool,
    Query(
        description="`true`: do nothing, answer 200 with what the call would do now: its own "
        "answer (without the ids of records it would create), plus `dry_run`, `orders` and "
        "`expected_dates`. A refusal is the one the real call would give. Nothing is written: "
        "no ledger row, no event, no counter, no idempotency key.",
        examples=[True],
    ),
]


class OrderChangeOut(OutModel):
    order_id: UUID
    status: OrderStatusName = Field(description="The order's status after the call.")
    ready_to_ship: bool = Field(description="`ready_to_ship` after the call.")


class DateMoveOut(OutModel):
    line_id: UUID
    before: date | None = Field(description="The waiting line's `expected_date` now.")
    after: date | None = Field(
        description="Its date after the call: null when its wait would end (filled or cancelled)."
    )


class DryRunChanges(OutModel):
    """What a dry run adds to the call's own answer."""

    dry_run: bool = Field(description="Always `true`: nothing was written.")
    orders: list[OrderChangeOut] = Field(
        description="Every order whose status, `ready_to_ship` or line units would change, "
        "oldest first (a storefront's dry run lists its own channel's only)."
    )
    expected_dates: list[DateMoveOut] = Field(
        description="Every waiting line whose `expected_date` would change, oldest first."
    )


class StockChangeDryRunOut(StockChangeOut, DryRunChanges):
    id: str | None = Field(description="Null: a dry run creates no ledger entry.")  # type: ignore[assignment]

    model_config = OutModel.model_config | {
        "json_schema_extra": {"examples": [examples.RESTOCK_DRY_RUN]}
    }


class ReceiptDryRunOut(ReceiptOut, DryRunChanges):
    id: str | None = Field(description="Null: a dry run creates no ledger entry.")  # type: ignore[assignment]

    model_config = OutModel.model_config | {
        "json_schema_extra": {"examples": [examples.RECEIPT_DRY_RUN]}
    }


class TransferDryRunOut(TransferOut, DryRunChanges):
    id: UUID | None = Field(description="Null: a dry run creates no transfer.")  # type: ignore[assignment]

    model_config = OutModel.model_config | {
        "json_schema_extra": {"examples": [examples.TRANSFER_DRY_RUN]}
    }


class ShipmentDryRunOut(ShipmentOut, DryRunChanges):
    id: UUID | None = Field(description="Null: a dry run creates no shipment.")  # type: ignore[assignment]

    model_config = OutModel.model_config | {
        "json_schema_extra": {"examples": [examples.SHIPMENT_DRY_RUN]}
    }


class OrderDryRunOut(OrderOut, DryRunChanges):
    """A cancel's dry run: the order as the cancel would leave it, and what would move."""

    model_config = OutModel.model_config | {
        "json_schema_extra": {"examples": [examples.ORDER_CANCEL_DRY_RUN]}
    }
