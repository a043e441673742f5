"""/v1/webhook-endpoints: where events are delivered, signed, and how each delivery went."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api import cursors
from backorder.api.deps import OpsKey
from backorder.api.docs import problems
from backorder.api.execute import HONOURS_IDEMPOTENCY_KEY, read, write
from backorder.api.schemas.common import Page, page
from backorder.api.schemas.events import (
    DeliveryOut,
    WebhookEndpointIn,
    WebhookEndpointOut,
    WebhookEndpointPatch,
    WebhookEndpointWithSecret,
)
from backorder.db import webhooks as webhook_rows
from backorder.domain.errors import NotFound
from backorder.services import webhooks

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["Webhooks"])

DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A delivery's id.")]

SIGNING = (
    "Each delivery is a `POST` of the event as JSON (`{id, type, created_at, data}`, as in "
    "the feed) with headers `Webhook-Id` (the event id: deduplicate on it) and "
    '`Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the '
    "secret>`. Verify it on the raw body and refuse old timestamps. A 2xx answer within the "
    "timeout is a success; anything else is retried with exponential backoff and jitter, "
    "at least once, until the attempts run out (then `failed`)."
)


@router.post(
    "",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=201,
    response_model=WebhookEndpointWithSecret,
    responses=problems(403),
    summary="Register a webhook endpoint",
    description="Events of the listed `event_types` (`*` for all) created from now on are "
    "delivered to `url`. The answer carries the signing `secret`, shown only here and on "
    "rotation.\n\n" + SIGNING + " Honours `Idempotency-Key`.",
)
async def create_endpoint(
    request: Request, principal: OpsKey, body: Annotated[WebhookEndpointIn, Body()]
) -> Response:
    return await write(
        request,
        principal,
        lambda conn: webhooks.create_endpoint(
            conn, body.url, list(body.event_types), body.description
        ),
        secret_fields=("secret",),  # a replay shows it redacted: it is never stored
    )


@router.get(
    "",
    response_model=Page[WebhookEndpointOut],
    responses=problems(403),
    summary="List webhook endpoints",
    description="Oldest first; deleted endpoints are not listed. Secrets are not shown.",
)
async def list_endpoints(
    request: Request,
    principal: OpsKey,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    after = cursors.decode(cursor, datetime.fromisoformat, UUID)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        rows = await webhook_rows.list_endpoints(
            conn, limit=limit + 1, after=(after[0], after[1]) if after else None
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
    description="Without its secret (rotate it if it was lost).",
)
async def get_endpoint(request: Request, principal: OpsKey, endpoint_id: UUID) -> Response:
    return await read(request, lambda conn: webhooks.get_endpoint(conn, endpoint_id))


@router.patch(
    "/{endpoint_id}",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    response_model=WebhookEndpointOut,
    responses=problems(403, 404),
    summary="Change a webhook endpoint",
    description="Change `url`, `event_types`, `description`, or pause it with "
    "`enabled: false`: its deliveries, including those of events created meanwhile, wait "
    "and go out when it is enabled again. Fields left out keep their values.",
)
async def patch_endpoint(
    request: Request,
    principal: OpsKey,
    endpoint_id: UUID,
    body: Annotated[WebhookEndpointPatch, Body()],
) -> Response:
    changes = body.model_dump(include=body.model_fields_set)
    for field in ("url", "event_types", "enabled"):
        if field in changes and changes[field] is None:
            del changes[field]  # not nullable: null means "keep"
    return await write(
        request,
        principal,
        lambda conn: webhooks.update_endpoint(conn, endpoint_id, changes),
        status_code=200,
    )


@router.delete(
    "/{endpoint_id}",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=204,
    responses=problems(403, 404),
    summary="Delete a webhook endpoint",
    description="No more deliveries: pending ones are marked `failed` (`endpoint deleted`). "
    "Its delivery history stays readable.",
)
async def delete_endpoint(request: Request, principal: OpsKey, endpoint_id: UUID) -> Response:
    async def work(conn: AsyncConnection) -> None:
        await webhooks.delete_endpoint(conn, endpoint_id)

    await write(request, principal, work, status_code=204)
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/rotate-secret",
    openapi_extra=HONOURS_IDEMPOTENCY_KEY,
    status_code=200,
    response_model=WebhookEndpointWithSecret,
    responses=problems(403, 404),
    summary="Rotate an endpoint's signing secret",
    description="A new `secret` signs every delivery attempt from now on, retries of older "
    "events included; the old one stops at once. The answer shows the new secret once.",
)
async def rotate_secret(request: Request, principal: OpsKey, endpoint_id: UUID) -> Response:
    return await write(
        request,
        principal,
        lambda conn: webhooks.rotate_secret(conn, endpoint_id),
        status_code=200,
        secret_fields=("secret",),  # a replay shows it redacted: it is never stored
    )


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=Page[DeliveryOut],
    responses=problems(403, 404),
    summary="Deliveries to an endpoint",
    description="Newest event first: each delivery's `status` (`pending`, `succeeded`, "
    "`failed`), `attempts`, `last_status_code`, `last_error` and times.\n\n" + SIGNING,
)
async def list_deliveries(
    request: Request,
    principal: OpsKey,
    endpoint_id: UUID,
    status: Annotated[Literal["pending", "succeeded", "failed"] | None, Query()] = None,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    before = cursors.decode(cursor, int)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        if await webhook_rows.get_endpoint(conn, endpoint_id) is None:
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
    responses=problems(403, 404),
    summary="Retry a delivery now",
    description="Makes a `failed` (or waiting) delivery due at once, for one more attempt "
    "(e.g. after fixing the receiver). A delivery that already succeeded is answered as is.",
)
async def retry_delivery(
    request: Request, principal: OpsKey, endpoint_id: UUID, delivery_id: DeliveryId
) -> Response:
    return await write(
        request,
        principal,
        lambda conn: webhooks.retry_delivery(conn, endpoint_id, delivery_id),
        status_code=200,
    )
