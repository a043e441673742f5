"""What a cancellation announces, and how a cancel that cannot be done is refused.

Shared by the cancels of `ordering` and by placement with `backorder: cancel_rest`, so that
every cancellation of units reads the same in the feed.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from backorder.domain.errors import AlreadyShipped, Conflict


def cancel_refusal(shipped: int, detail: str, reason: str, **extra: Any) -> Exception:
    """409 for a cancel that cannot be done; `reason` tells the cases apart for machines
    (the contract keeps `code`: `already_shipped` when shipped units stand in the way)."""
    if shipped:
        return AlreadyShipped(
            detail + "; shipped units cannot be cancelled", reason=reason, **extra
        )
    return Conflict(detail, reason=reason, **extra)


def cancellation_events(
    order_id: UUID,
    channel: str,
    cancelled: list[dict[str, Any]],
    *,
    reason: str,
    note: str | None,
    order_cancelled: bool,
) -> list[tuple[str, dict[str, Any]]]:
    """One `order.line_cancelled` per line touched (`cancelled`: `{line_id, sku, quantity}`,
    one entry per line), then `order.cancelled` if the order thereby became `cancelled`.

    `reason` says why units went (`request`: a cancel call; `short_stock`: an order placed
    with `backorder: cancel_rest`); `note` is the caller's own words, if any."""
    announced: list[tuple[str, dict[str, Any]]] = [
        (
            "order.line_cancelled",
            {
                "order_id": order_id,
                "line_id": x["line_id"],
                "sku": x["sku"],
                "quantity": x["quantity"],
                "reason": reason,
                "note": note,
                "channel": channel,
            },
        )
        for x in cancelled
    ]
    if order_cancelled:
        announced.append(
            (
                "order.cancelled",
                {
                    "order_id": order_id,
                    "channel": channel,
                    "reason": note,
                    "lines": cancelled,
                },
            )
        )
    return announced
