'''Notifications: webhook endpoints and their signed deliveries, the event feed, and
back-in-stock subscriptions.

Every event is a row written in the transaction that caused it (`db/events.py`). The
delivery worker (`workers/webhooks.py`) turns each into one delivery per matching endpoint
and POSTs it, at least once, with retries and exponential backoff. A delivery is

    POST <endpoint url>
    Content-Type: application/json
    Webhook-Id: 1234                               (the event id: deduplicate on it)
    Webhook-Signature: t=1795449600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff5...

    {"id": "1234", "type": "order.backordered", "created_at": "2026-11-23T16:03:13.123456Z",
     "data": {...}}

`v1` is the hex HMAC-SHA256, keyed with the endpoint's whole secret (`whsec_...`, as UTF-8),
of `"<t>.<body>"`, where `t` is the Unix time of signing and `body` the raw request body,
byte for byte. Any 2xx answer within the timeout is a success; anything else is retried.

How a receiver verifies a delivery (Python, standard library only)::

    import hashlib
    import hmac
    import time

    def verify(secret: str, signature_header: str, body: bytes, tolerance_s: int = 300) -> bool:
        """True if `body` was signed with `secret` less than `tolerance_s` seconds ago."""
        try:
            pairs = [part.split("=", 1) for part in signature_header.split(",")]
            timestamp = int(next(value for key, value in pairs if key == "t"))
        except (StopIteration, ValueError):
            return False
        if abs(time.time() - timestamp) > tolerance_s:
            return False  # an old, replayed request
        signed = f"{timestamp}.".encode() + body
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        # One v1 per secret in use (two while a rotation overlaps): any may match.
        return any(hmac.compare_digest(expected, value) for key, value in pairs if key == "v1")

    # e.g. in a Starlette/FastAPI handler: verify(SECRET, request.headers["Webhook-Signature"],
    #                                             await request.body())

Verify against the raw body before parsing it: re-serialised JSON will not match.

**Rotation.** `rotate-secret` with `overlap_seconds` keeps the old secret signing beside the
new one until the overlap ends: the header then carries one `v1` per secret,
`t=...,v1=<new>,v1=<old>`, and a receiver holding either secret accepts the delivery (so it
can switch at its own pace). After the overlap (at once, without one) only the new secret
signs, retries of older events included.

**Order.** Deliveries are not ordered across events: retries, several workers and the
deliveries in flight to one endpoint at once all reorder them, and rarely one arrives twice.
Deduplicate on `Webhook-Id` and order by ids (event ids increase), never by arrival.
'''

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import stock, subscriptions, webhooks
from backorder.domain.errors import Conflict, NotFound

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SIGNATURE_TOLERANCE_S = 300
MAX_MANUAL_RETRIES = 5  # per delivery: a retry by hand makes the service send a request


# --- Signatures ----------------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _digest(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(
    secret: str, body: bytes, timestamp: int | None = None, *, previous: str | None = None
) -> str:
    """The `Webhook-Signature` header value for `body`, signed now (or at `timestamp`), with
    a second `v1` by the `previous` secret while a rotation overlaps."""
    t = int(time.time()) if timestamp is None else timestamp
    header = f"t={t},v1={_digest(secret, t, body)}"
    return header if previous is None else f"{header},v1={_digest(previous, t, body)}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance_s: int = SIGNATURE_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """The check a receiver makes (the docstring above shows it standalone)."""
    try:
        pairs = [part.split("=", 1) for part in header.split(",")]
        timestamp = int(next(v for k, v in pairs if k == "t"))
    except (StopIteration, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = _digest(secret, timestamp, body)
    return any(hmac.compare_digest(expected, v) for k, v in pairs if k == "v1")


def event_body(event_id: int | str, type_: str, created_at: datetime, data: Any) -> bytes:
    """The delivery body: the event as the feed shows it."""
    return orjson.dumps(
        {"id": str(event_id), "type": type_, "created_at": created_at, "data": data},
        option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC,
    )


def ping_body(endpoint_id: UUID) -> tuple[str, bytes]:
    """A test delivery: shaped like an event, of type `webhook.ping`, in no feed."""
    ping_id = f"ping_{uuid4().hex}"
    now = datetime.now(UTC)
    return ping_id, event_body(ping_id, "webhook.ping", now, {"endpoint_id": str(endpoint_id)})


# --- Endpoints -----------------------------------------------------------------------------


def endpoint_view(row: Any, secret: str | None = None) -> dict[str, Any]:
    out = dict(row._mapping)
    out["event_types"] = list(row.event_types)
    out["owner"] = "ops" if out.pop("owner_channel") is None else "storefront"
    if secret is not None:
        out["secret"] = secret
    return out


async def create_endpoint(
    conn: AsyncConnection,
    *,
    owner: str | None,
    url: str,
    event_types: list[str],
    description: str | None,
    channel: str | None,
    cap: int,
) -> dict[str, Any]:
    """Register an endpoint for `owner` (a storefront's channel; None: ops). A storefront's
    endpoint receives its own channel; at most `cap` live endpoints per owner."""
    if await webhooks.count_owned(conn, owner) >= cap:
        raise Conflict(
            f"{'this channel' if owner else 'ops'} already has {cap} webhook endpoints, the "
            "most allowed: delete one first",
            limit=cap,
        )
    secret = new_secret()
    row = await webhooks.insert_endpoint(
        conn,
        endpoint_id=uuid4(),
        url=url,
        event_types=event_types,
        secret=secret,
        description=description,
        channel=owner if owner is not None else channel,
        owner=owner,
    )
    return endpoint_view(row, secret)


async def get_endpoint(
    conn: AsyncConnection, endpoint_id: UUID, owner: str | None
) -> dict[str, Any]:
    row = await webhooks.get_endpoint(conn, endpoint_id, owner)
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint_view(row)


async def update_endpoint(
    conn: AsyncConnection, endpoint_id: UUID, owner: str | None, changes: dict[str, Any]
) -> dict[str, Any]:
    row = await webhooks.update_endpoint(conn, endpoint_id, owner, changes)
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint_view(row)


async def rotate_secret(
    conn: AsyncConnection, endpoint_id: UUID, owner: str | None, overlap_s: int
) -> dict[str, Any]:
    secret = new_secret()
    row = await webhooks.rotate_secret(conn, endpoint_id, owner, secret, overlap_s)
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint_view(row, secret)


async def delete_endpoint(conn: AsyncConnection, endpoint_id: UUID, owner: str | None) -> None:
    if not await webhooks.delete_endpoint(conn, endpoint_id, owner):
        raise NotFound(f"no webhook endpoint {endpoint_id}")


async def retry_delivery(
    conn: AsyncConnection, endpoint_id: UUID, owner: str | None, delivery_id: int
) -> dict[str, Any]:
    if await webhooks.get_endpoint(conn, endpoint_id, owner) is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    row = await webhooks.retry_delivery(conn, endpoint_id, delivery_id, MAX_MANUAL_RETRIES)
    if row is None:
        found = await webhooks.get_delivery(conn, endpoint_id, delivery_id)
        if found is None:
            raise NotFound(f"no delivery {delivery_id} for endpoint {endpoint_id}")
        if found.status != "succeeded":
            raise Conflict(
                f"delivery {delivery_id} was retried by hand {MAX_MANUAL_RETRIES} times, the "
                "most allowed",
                limit=MAX_MANUAL_RETRIES,
            )
        return delivery_view(found)  # already delivered: nothing to retry
    return delivery_view(row)


def delivery_view(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["id"] = str(row.id)
    out["event_id"] = str(row.event_id)
    return out


# --- Back-in-stock subscriptions -----------------------------------------------------------


def subscription_view(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["status"] = "waiting" if row.notified_at is None else "notified"
    return out


async def subscribe(
    conn: AsyncConnection, sku: str, channel: str, customer_id: str, contact: str | None
) -> dict[str, Any]:
    """Subscribe a customer to the SKU's next `product.back_in_stock`.

    Takes the SKU lock, so a subscription either lands before a restock's transition (and is
    named in its event) or after it (and waits for the next one); never lost in between. A
    customer already waiting keeps one subscription (its contact updated).
    """
    if not await stock.lock_products(conn, [sku]):
        raise NotFound(f"no product with SKU {sku!r}")
    row = await subscriptions.waiting_subscription(
        conn, sku=sku, channel=channel, customer_id=customer_id, contact=contact
    )
    if row is None:
        row = await subscriptions.insert_subscription(
            conn,
            subscription_id=uuid4(),
            sku=sku,
            channel=channel,
            customer_id=customer_id,
            contact=contact,
        )
    return subscription_view(row)
