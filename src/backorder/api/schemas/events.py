"""Events, webhook endpoints and deliveries, back-in-stock subscriptions, as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import AfterValidator, Field, Strict, StrictBool, StringConstraints

from backorder.api.schemas.common import WHOLE, OutModel, StrictModel, Text

EventType = Literal[
    "order.created", "order.backordered", "order.line_allocated", "order.ready_to_ship",
    "order.shipped", "order.line_cancelled", "order.cancelled", "order.backorder_expired",
    "backorder.expected_date_changed", "backorder.deadline_at_risk",
    "product.low_stock", "product.back_in_stock", "purchase_order.overdue",
]  # fmt: skip
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
EventTypeOrAll = EventType | Literal["*"]

URL_MAX_LENGTH = 2048
# What a webhook URL may be, said in the schema too (so that a client, and Schemathesis, can
# tell a good one): http(s), an optional user-info, a host name or IPv4 address, an optional
# port of 1-65535 (spelled out: five digits alone let 99999 through, which nothing can reach),
# then printable ASCII only (percent-encode the rest; no whitespace or control characters).
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
URL_PATTERN = (
    r"^https?://([A-Za-z0-9._~%!$&'()*+,;=:-]+@)?[A-Za-z0-9._~-]+"
    rf"(:{_PORT})?([/?#][!-~]*)?$"
)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError("must not contain whitespace or control characters")
    return value


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


Url = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=URL_MAX_LENGTH, pattern=URL_PATTERN),
    AfterValidator(_http_url),
]
EventTypes = Annotated[
    list[EventTypeOrAll], Field(min_length=1, max_length=20), AfterValidator(_unique)
]


class EventOut(OutModel):
    id: str = Field(description="Increasing; pass the last one you saw as `after`.")
    type: str = Field(description="One of: " + ", ".join(f"`{t}`" for t in EVENT_TYPES) + ".")
    created_at: datetime
    data: dict[str, Any] = Field(
        description="What happened; ids, SKU and quantities. Events about an order "
        "(`order.*`, `backorder.*`) carry its `channel`. `order.line_cancelled` (one per line "
        "a cancellation touches: `order_id`, `line_id`, `sku`, `quantity`, `reason` = "
        "`request` or `short_stock`, `note`) precedes `order.cancelled`, which is written "
        "only when the order becomes `cancelled`. `order.line_allocated` (one per line and "
        "location a fill reaches) and `order.shipped` carry the `location` of the units."
    )

    model_config = OutModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "id": "1234",
                    "type": "order.backordered",
                    "created_at": "2026-11-23T16:03:13.123456Z",
                    "data": {
                        "order_id": "5b1d3c52-8f0e-4a77-9d61-2f0b1c9e4a10",
                        "customer_id": "c-1001",
                        "channel": "web-shop",
                        "lines": [
                            {
                                "line_id": "9e0c6a41-1d2f-4c8b-a7e3-0f5d6b2c8a91",
                                "sku": "TRAIL-42",
                                "backordered": 20,
                            }
                        ],
                    },
                }
            ]
        }
    }


class WebhookEndpointIn(StrictModel):
    url: Url = Field(
        description="Where to POST deliveries: an absolute http(s) URL in printable ASCII "
        f"(percent-encode the rest), up to {URL_MAX_LENGTH} characters."
    )
    event_types: EventTypes = Field(
        description="The event types to deliver; `*` for all (including types added later)."
    )
    description: Text | None = None
    channel: Text | None = Field(
        default=None,
        description="Ops: receive only this channel's view of the feed (its orders' events, "
        "`product.low_stock`, `product.back_in_stock` naming its subscribers); left out, "
        "everything. A storefront's endpoint always receives its own channel (another name "
        "is 403).",
    )

    model_config = StrictModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "url": "https://shop.example.com/hooks/backorder",
                    "event_types": ["order.backordered", "order.ready_to_ship"],
                    "description": "web shop notifications",
                },
                {
                    "url": "https://ops.example.com/hooks/web-shop",
                    "event_types": ["*"],
                    "channel": "web-shop",
                },
            ]
        }
    }


class WebhookEndpointPatch(StrictModel):
    """Fields left out keep their values; `description: null` clears it."""

    url: Url | None = None
    event_types: EventTypes | None = None
    description: Text | None = None
    enabled: StrictBool | None = Field(
        default=None, description="false pauses deliveries: they wait, and go out when true again."
    )
    channel: Text | None = Field(
        default=None,
        description="Ops endpoints: one channel's view, or null for everything. A storefront "
        "cannot change its endpoint's channel.",
    )

    model_config = StrictModel.model_config | {
        "json_schema_extra": {"examples": [{"enabled": False}]}
    }


_ENDPOINT_EXAMPLE: dict[str, Any] = {
    "id": "3f2b8c1e-6a4d-4e9b-8f7a-1c2d3e4f5a6b",
    "url": "https://shop.example.com/hooks/backorder",
    "event_types": ["order.backordered", "order.ready_to_ship"],
    "description": "web shop notifications",
    "enabled": True,
    "created_at": "2026-11-23T16:03:13Z",
    "channel": "web-shop",
    "owner": "storefront",
    "previous_secret_expires_at": None,
    "consecutive_failures": 0,
    "circuit_open_until": None,
}


class WebhookEndpointOut(OutModel):
    id: UUID
    url: str
    event_types: list[str]
    description: str | None
    enabled: bool
    created_at: datetime
    channel: str | None = Field(
        description="The channel whose view of the feed it receives; null: every event."
    )
    owner: Literal["ops", "storefront"] = Field(
        description="Who manages it: a storefront key of its channel, or ops keys."
    )
    previous_secret_expires_at: datetime | None = Field(
        description="While a rotation overlaps: when the previous secret stops signing."
    )
    consecutive_failures: int = Field(description="Failed attempts in a row (0 after a success).")
    circuit_open_until: datetime | None = Field(
        description="Set after repeated failures: deliveries wait until then, then one probes."
    )

    model_config = OutModel.model_config | {"json_schema_extra": {"examples": [_ENDPOINT_EXAMPLE]}}


MAX_OVERLAP_S = 7 * 24 * 3600


class RotateSecretIn(StrictModel):
    overlap_seconds: Annotated[int, Strict(), Field(ge=0, le=MAX_OVERLAP_S), WHOLE] = Field(
        default=0,
        description="How long the old secret keeps signing beside the new one (both `v1` in "
        "`Webhook-Signature`), up to 7 days; 0: it stops at once.",
    )

    model_config = StrictModel.model_config | {
        "json_schema_extra": {"examples": [{"overlap_seconds": 86400}]}
    }


class PingOut(OutModel):
    endpoint_id: UUID
    ping_id: str = Field(description="The test delivery's `Webhook-Id` (and body `id`).")
    delivered: bool = Field(description="The receiver answered 2xx within the timeout.")
    status_code: int | None
    error: str | None = Field(description='Why not, coarsely: "timeout", "HTTP 503", ...')

    model_config = OutModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "endpoint_id": "3f2b8c1e-6a4d-4e9b-8f7a-1c2d3e4f5a6b",
                    "ping_id": "ping_0f8e4b1c9a7d4c2e8b6a5d3c1e0f9a8b",
                    "delivered": True,
                    "status_code": 200,
                    "error": None,
                }
            ]
        }
    }


class WebhookEndpointWithSecret(WebhookEndpointOut):
    secret: str = Field(
        description="The signing secret (`whsec_...`), shown only here: on create and rotate."
    )

    model_config = OutModel.model_config | {
        "json_schema_extra": {
            "examples": [{**_ENDPOINT_EXAMPLE, "secret": "whsec_4Zr0cXkU0d6q1m1o0yWm2b3Qm8n9Zt"}]
        }
    }


class DeliveryOut(OutModel):
    id: str
    endpoint_id: UUID
    event_id: str
    event_type: str
    status: Literal["pending", "succeeded", "failed"] = Field(
        description="`pending` (due at `next_attempt_at`), `succeeded`, or `failed` after the "
        "last allowed attempt."
    )
    attempts: int = Field(description="Attempts made so far.")
    next_attempt_at: datetime | None = Field(
        description="When a pending delivery is next tried; null once it succeeded or failed."
    )
    last_attempt_at: datetime | None
    last_status_code: int | None = Field(description="HTTP status of the last attempt, if any.")
    last_error: str | None = Field(description="Why the last attempt failed, if it did.")
    delivered_at: datetime | None
    created_at: datetime
    manual_retries: int = Field(description="Retries by hand so far (at most 5).")

    model_config = OutModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "id": "88",
                    "endpoint_id": "3f2b8c1e-6a4d-4e9b-8f7a-1c2d3e4f5a6b",
                    "event_id": "1234",
                    "event_type": "order.backordered",
                    "status": "pending",
                    "attempts": 2,
                    "next_attempt_at": "2026-11-23T16:03:33Z",
                    "last_attempt_at": "2026-11-23T16:03:18Z",
                    "last_status_code": 503,
                    "last_error": "HTTP 503",
                    "delivered_at": None,
                    "created_at": "2026-11-23T16:03:13Z",
                    "manual_retries": 0,
                }
            ]
        }
    }


class SubscriptionIn(StrictModel):
    customer_id: Text
    contact: Text | None = Field(
        default=None, description="How to reach the customer, e.g. an email address."
    )

    model_config = StrictModel.model_config | {
        "json_schema_extra": {"examples": [{"customer_id": "c-1001", "contact": "ana@example.com"}]}
    }


class SubscriptionOut(OutModel):
    id: UUID
    sku: str
    customer_id: str
    contact: str | None
    channel: str
    status: Literal["waiting", "notified"]
    created_at: datetime
    notified_at: datetime | None = Field(
        description="When a `product.back_in_stock` event named it (then it is used up)."
    )

    model_config = OutModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "id": "6d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6",
                    "sku": "TRAIL-42",
                    "customer_id": "c-1001",
                    "contact": "ana@example.com",
                    "channel": "web-shop",
                    "status": "waiting",
                    "created_at": "2026-11-23T16:03:13Z",
                    "notified_at": None,
                }
            ]
        }
    }
