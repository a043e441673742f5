"""/v1/webhook-endpoints: where events are delivered, signed, and how each delivery went.

Ops keys manage every endpoint; a storefront key manages the endpoints it registered, which
receive its channel's view of the feed only (another channel's endpoints answer 404). URLs
are vetted before anything is written (`services/webhook_egress.py`): outside any
transaction, since a DNS lookup may take seconds, and never for an idempotent replay, whose
stored answer must not depend on what DNS says now (`write`'s `prepare`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api import cursors
from backorder.api.deps import AnyKey, Principal, get_settings
from backorder.api.docs import problems
from backorder.api.execute import HONOURS_IDEMPOTENCY_KEY, json_response, read, write
from backorder.api.schemas.common import Page, page
from backorder.api.schemas.events import (
    DeliveryOut,
    PingOut,
    RotateSecretIn,
    WebhookEndpointIn,
    WebhookEndpointOut,
    WebhookEndpointPatch,
    WebhookEndpointWithSecret,
)
from backorder.db import webhooks as webhook_rows
from backorder.db.engine import run_read
from backorder.domain.errors import Forbidden, NotFound
from backorder.services import webhook_egress, webhooks

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["Webhooks"])

DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A delivery's id.")]

SIGNING = (
    "Each delivery is a `POST` of the event as JSON (`{id, type, created_at, data}`, as in "
    "the feed) with headers `Webhook-Id` (the event id: deduplicate on it) and "
    '`Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the '
    "secret>` (while a rotation overlaps, a second `v1` by the previous secret: accept "
    "either). Verify it on the raw body and refuse old timestamps. A 2xx answer within the "
    "timeout is a success; anything else is retried with exponential backoff and jitter, "
    "at least once, until the attempts run out (then `failed`). Deliveries are not ordered "
    "across events: order by ids, never by arrival."
)
REACH = (
    "\n\nOps keys see every endpoint; a storefront key sees only those it registered "
    "(another's: 404)."
)
URLS = (
    " The URL's host must be, and resolve only to, public addresses (not loopback, private, "
    "link-local or otherwise reserved): else 422 `validation_error` naming `url`. It is "
    "checked again at each delivery, which a redirect never follows."
)


def owner_of(principal: Principal) -> str | None:
    """Whose endpoints a key manages: a storefront its channel's; ops (None) all."""
    return None if principal.is_ops else principal.channel


@router.post(
    "",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=201,
    response_model=WebhookEndpointWithSecret,
    responses=problems(403, 409),
    summary="Register a webhook endpoint",
    description="Events of the listed `event_types` (`*` for all) created from now on are "
    "delivered to `url`. The answer carries the signing `secret`, shown only here and on "
    "rotation.\n\nA storefront key's endpoint receives its channel's view of the feed (as "
    "`GET /v1/events` shows it to that key); an ops endpoint everything, or one channel's "
    "view with `channel`. Each storefront channel, and ops, may have 16 live endpoints "
    "(409 `conflict` past that, with `limit`)." + URLS + "\n\n" + SIGNING + " Honours "
    "`Idempotency-Key`.",
)
async def create_endpoint(
    request: Request, principal: AnyKey, body: Annotated[WebhookEndpointIn, Body()]
) -> Response:
    owner = owner_of(principal)
    if owner is not None and body.channel not in (None, owner):
        raise Forbidden("a storefront key's endpoints receive its own channel only")
    settings = get_settings(request)
    allow = settings.webhook_allow_private_networks
    vet = None if allow else lambda: webhook_egress.vet_url(body.url, allow_private=False)
    return await write(
        request,
        principal,
        lambda conn: webhooks.create_endpoint(
            conn,
            owner=owner,
            url=body.url,
            event_types=list(body.event_types),
            description=body.description,
            channel=body.channel,
            cap=settings.webhook_max_endpoints_per_channel,
        ),
        secret_fields=("secret",),  # a replay shows it redacted: it is never stored
        prepare=vet,
    )


@router.get(
    "",
    response_model=Page[WebhookEndpointOut],
    responses=problems(403),
    summary="List webhook endpoints",
    description="Oldest first; deleted endpoints are not listed. Secrets are not shown." + REACH,
)
async def list_endpoints(
    request: Request,
    principal: AnyKey,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    after = cursors.decode(cursor, datetime.fromisoformat, UUID)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        rows = await webhook_rows.list_endpoints(
            conn,
            owner=owner_of(principal),
            limit=limit + 1,
            after=(after[0], after[1]) if after else None,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = cursors.encode(rows[-1].created_at.isoformat(), rows[-1].id) if more else None
        return page([webhooks.endpoint_view(r) for r in rows], next_cursor)

    return await read(request, work)


@router.get(
    "/{endpoint_id}",
    response_model=WebhookEndpointOut,
    responses=problems(403, 404),
    summary="Get a webhook endpoint",
    description="Without its secret (rotate it if it was lost)." + REACH,
)
async def get_endpoint(request: Request, principal: AnyKey, endpoint_id: UUID) -> Response:
    owner = owner_of(principal)
    return await read(request, lambda conn: webhooks.get_endpoint(conn, endpoint_id, owner))


@router.patch(
    "/{endpoint_id}",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    response_model=WebhookEndpointOut,
    responses=problems(403, 404),
    summary="Change a webhook endpoint",
    description="Change `url`, `event_types`, `description`, an ops endpoint's `channel` "
    "(null: every channel), or pause it with `enabled: false`: its deliveries, including "
    "those of events created meanwhile, wait and go out when it is enabled again. Fields "
    "left out keep their values." + URLS + REACH,
)
async def patch_endpoint(
    request: Request,
    principal: AnyKey,
    endpoint_id: UUID,
    body: Annotated[WebhookEndpointPatch, Body()],
) -> Response:
    owner = owner_of(principal)
    changes = body.model_dump(include=body.model_fields_set)
    for field in ("url", "event_types", "enabled"):
        if field in changes and changes[field] is None:
            del changes[field]  # not nullable: null means "keep"
    if owner is not None and "channel" in changes:
        if changes["channel"] != owner:
            raise Forbidden("a storefront key's endpoints receive its own channel only")
        del changes["channel"]
    allow = get_settings(request).webhook_allow_private_networks
    url = changes.get("url")
    vet = None if url is None or allow else lambda: webhook_egress.vet_url(url, allow_private=False)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        if "channel" in changes:
            # An ops endpoint may change channel; a storefront's (ops changing it) may not.
            row = await webhook_rows.get_endpoint(conn, endpoint_id, owner)
            mine = row.owner_channel if row is not None else None
            if mine is not None and changes["channel"] != mine:
                raise Forbidden("a storefront's endpoint receives its own channel only")
        return await webhooks.update_endpoint(conn, endpoint_id, owner, changes)

    return await write(request, principal, work, status_code=200, prepare=vet)


@router.delete(
    "/{endpoint_id}",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=204,
    responses=problems(403, 404),
    summary="Delete a webhook endpoint",
    description="No more deliveries: pending ones are marked `failed` (`endpoint deleted`). "
    "Its delivery history stays readable to ops." + REACH,
)
async def delete_endpoint(request: Request, principal: AnyKey, endpoint_id: UUID) -> Response:
    owner = owner_of(principal)

    async def work(conn: AsyncConnection) -> None:
        await webhooks.delete_endpoint(conn, endpoint_id, owner)

    return await write(request, principal, work, status_code=204)


@router.post(
    "/{endpoint_id}/rotate-secret",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=200,
    response_model=WebhookEndpointWithSecret,
    responses=problems(403, 404),
    summary="Rotate an endpoint's signing secret",
    description="A new `secret` signs every delivery attempt from now on, retries of older "
    "events included. With `overlap_seconds` (up to 7 days) the old secret keeps signing "
    "beside it until `previous_secret_expires_at`: `Webhook-Signature` then carries both, "
    "`t=...,v1=<new>,v1=<old>`, so receivers can switch secrets without missing a delivery. "
    "Without a body (or with 0) the old secret stops at once. The answer shows the new "
    "secret once." + REACH,
)
async def rotate_secret(
    request: Request,
    principal: AnyKey,
    endpoint_id: UUID,
    body: Annotated[RotateSecretIn | None, Body()] = None,
) -> Response:
    owner = owner_of(principal)
    overlap = body.overlap_seconds if body is not None else 0
    return await write(
        request,
        principal,
        lambda conn: webhooks.rotate_secret(conn, endpoint_id, owner, overlap),
        status_code=200,
        secret_fields=("secret",),  # a replay shows it redacted: it is never stored
    )


@router.post(
    "/{endpoint_id}/ping",
    status_code=200,
    response_model=PingOut,
    responses=problems(403, 404),
    summary="Send a test delivery",
    description="POSTs a signed test delivery to the endpoint now, as the worker would (same "
    "headers and signatures, address checks and timeout), and answers how it went. Its body "
    'is shaped like an event: `{"id": "ping_...", "type": "webhook.ping", "created_at", '
    '"data": {"endpoint_id"}}`. It is in no feed, writes nothing, and works on a paused '
    "endpoint too." + REACH,
)
async def ping_endpoint(request: Request, principal: AnyKey, endpoint_id: UUID) -> Response:
    owner = owner_of(principal)
    settings = get_settings(request)
    found = await run_read(
        request.app.state.engine,
        lambda conn: webhook_rows.get_secrets(conn, endpoint_id, owner),
    )
    if found is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    ping_id, body = webhooks.ping_body(endpoint_id)
    async with webhook_egress.client(
        allow_private=settings.webhook_allow_private_networks,
        timeout_s=settings.webhook_timeout_s,
    ) as client:
        outcome = await webhook_egress.post(
            client,
            found.url,
            body,
            webhook_id=ping_id,
            signature=webhooks.sign(found.secret, body, previous=found.previous_secret),
            timeout_s=settings.webhook_timeout_s,
        )
    return json_response(
        {
            "endpoint_id": endpoint_id,
            "ping_id": ping_id,
            "delivered": outcome.ok,
            "status_code": outcome.status_code,
            "error": outcome.error,
        }
    )


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=Page[DeliveryOut],
    responses=problems(403, 404),
    summary="Deliveries to an endpoint",
    description="Newest event first: each delivery's `status` (`pending`, `succeeded`, "
    "`failed`), `attempts`, `last_status_code`, `last_error` (coarse: `timeout`, "
    "`connection failed`, `HTTP 503`, `refused: not a public address` ...) and times; "
    "`next_attempt_at` only while pending.\n\n" + SIGNING + REACH,
)
async def list_deliveries(
    request: Request,
    principal: AnyKey,
    endpoint_id: UUID,
    status: Annotated[Literal["pending", "succeeded", "failed"] | None, Query()] = None,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    before = cursors.decode(cursor, int)
    owner = owner_of(principal)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        if await webhook_rows.get_endpoint(conn, endpoint_id, owner) is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        rows = await webhook_rows.list_deliveries(
            conn,
            endpoint_id,
            status=status,
            limit=limit + 1,
            before_event=before[0] if before else None,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = cursors.encode(rows[-1].event_id) if more else None
        return page([webhooks.delivery_view(r) for r in rows], next_cursor)

    return await read(request, work)


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/retry",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=200,
    response_model=DeliveryOut,
    responses=problems(403, 404, 409),
    summary="Retry a delivery now",
    description="Makes a `failed` (or waiting) delivery due at once, for one more attempt "
    "(e.g. after fixing the receiver), up to 5 times per delivery (then 409 `conflict`). A "
    "delivery that already succeeded is answered as is." + REACH,
)
async def retry_delivery(
    request: Request, principal: AnyKey, endpoint_id: UUID, delivery_id: DeliveryId
) -> Response:
    owner = owner_of(principal)
    return await write(
        request,
        principal,
        lambda conn: webhooks.retry_delivery(conn, endpoint_id, owner, delivery_id),
        status_code=200,
    )
