"""The backorder report and replenishment rows, as the API shows them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from backorder.api.schemas.common import OutModel

# RFC 3339 `date-time`: a full date, a full time and an offset (`Z` or `±hh:mm`). Pydantic's own
# datetime parsing is laxer (Unix seconds, dates alone, no offset), hence this gate in front.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-11-01T00:00:00Z")
    return value


Instant = Annotated[datetime, BeforeValidator(_rfc3339)]


class TopSkuOut(OutModel):
    sku: str
    open_units: int = Field(description="Open backordered units of the window's orders.")
    lines: int = Field(description="Open backordered lines of the window's orders.")


class BackorderReportOut(OutModel):
    since: datetime | None = Field(description="Start of the window (inclusive), as sent.")
    until: datetime | None = Field(description="End of the window (exclusive), as sent.")
    as_of: datetime = Field(description="When the `open_*` figures and ages were taken.")
    orders: int = Field(description="Orders placed in the window (cancelled ones included).")
    backordered_orders: int = Field(
        description="Orders of the window that had a backordered unit when placed."
    )
    backorder_rate: float = Field(
        description="`backordered_orders / orders`; 0.0 when the window has no orders."
    )
    open_backorder_lines: int = Field(description="Lines of the window's orders waiting now.")
    open_backorder_units: int = Field(description="Units of the window's orders waiting now.")
    oldest_open_backorder_at: datetime | None = Field(
        description="Placement time of the oldest line still waiting; null when none waits."
    )
    avg_open_backorder_age_hours: float | None = Field(
        description="Mean age of the waiting lines (per line, not per unit); null when none."
    )
    avg_time_to_fill_hours: float | None = Field(
        description="Mean hours from placement to the last backordered unit of a line being "
        "allocated, over lines that waited and were filled; null when none was."
    )
    fill_rate: float = Field(
        description="Units allocated at placement / units ordered; 0.0 when nothing was ordered."
    )
    top_skus: list[TopSkuOut] = Field(
        description="At most 10 SKUs by `open_units` descending, ties by SKU."
    )

    model_config = OutModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "since": "2026-11-01T00:00:00Z",
                    "until": "2026-12-01T00:00:00Z",
                    "as_of": "2026-11-23T16:00:00Z",
                    "orders": 120,
                    "backordered_orders": 18,
                    "backorder_rate": 0.15,
                    "open_backorder_lines": 9,
                    "open_backorder_units": 140,
                    "oldest_open_backorder_at": "2026-11-03T09:12:44Z",
                    "avg_open_backorder_age_hours": 161.5,
                    "avg_time_to_fill_hours": 52.25,
                    "fill_rate": 0.9625,
                    "top_skus": [
                        {"sku": "TRAIL-42", "open_units": 100, "lines": 5},
                        {"sku": "TRAIL-43", "open_units": 40, "lines": 4},
                    ],
                }
            ]
        }
    }


class ReplenishmentRowOut(OutModel):
    sku: str
    available: int = Field(description="`on_hand - allocated` now.")
    backordered: int = Field(description="Open backordered units now.")
    incoming: int = Field(description="Units on open purchase orders.")
    daily_demand: float = Field(
        description="All units ordered over the trailing `days` (today included, cancelled "
        "and backordered units too) / `days`."
    )
    lead_time_days: int = Field(description="The product's lead time; 0 when unset.")
    safety_stock: int = Field(description="The product's safety stock; 0 when unset.")
    reorder_point: int = Field(
        description="The product's, or `ceil(daily_demand * lead_time_days) + safety_stock`."
    )
    reorder_point_source: Literal["product", "computed"] = Field(
        description="`product` when the product sets its reorder point, else `computed`."
    )
    suggested_order_quantity: int = Field(
        description="`max(0, backordered + reorder_point - available - incoming)`."
    )
    discontinued: bool = Field(
        description="Always false: discontinued products are left out of replenishment (kept "
        "so that existing clients keep their field)."
    )

    model_config = OutModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "sku": "TRAIL-42",
                    "available": 0,
                    "backordered": 30,
                    "incoming": 0,
                    "daily_demand": 1.0667,
                    "lead_time_days": 10,
                    "safety_stock": 5,
                    "reorder_point": 16,
                    "reorder_point_source": "computed",
                    "suggested_order_quantity": 46,
                    "discontinued": False,
                }
            ]
        }
    }
