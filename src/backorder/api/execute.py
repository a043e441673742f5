"""Running a use case for a request: its transaction, its retries, and idempotency keys.

A write answers from inside the transaction that made it. With an `Idempotency-Key`, the key
is claimed (advisory lock), looked up and stored in that same transaction, so a retried
request after a crash either replays the first answer or redoes the work, never both.
Refusals (any answer below 500) are stored and replayed too; a 5xx stores nothing.

What is stored is not always the whole answer: a secret shown once (a new API key, a webhook
signing secret) is stored redacted, so the table never holds one and a replay never shows it;
and an answer over `MAX_STORED_ANSWER_BYTES` is kept as a short note that the request was done
(the table's rows stay bounded whatever a request makes the service answer).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api.deps import Principal
from backorder.api.problems import domain_problem, problem_response, request_id_of, retry_headers
from backorder.db import idempotency
from backorder.db.engine import run_read, run_transaction
from backorder.domain.errors import (
    DomainError,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    ValidationFailed,
)
from backorder.services.rehearsal import DryRun, rehearse

Work = Callable[[AsyncConnection], Awaitable[Any]]
JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC

MAX_STORED_ANSWER_BYTES = 1_000_000
REDACTED_SECRET = "[redacted: shown only in the first answer]"  # noqa: S105 (a placeholder)

# `openapi_extra` of every route that answers through `write`: it marks the route for the
# exception handlers, so that a refusal made before the route ran (FastAPI's validation of the
# body, a route's own check) is stored under the Idempotency-Key like any other answer.
HONOURS_IDEMPOTENCY_KEY: dict[str, Any] = {"x-honours-idempotency-key": True}


class _Refused(Exception):
    """A refusal already made into a problem body, handed to `write` to store and answer."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, option=JSON_OPTIONS)


def json_response(
    body: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        dumps(body), status_code=status_code, media_type="application/json", headers=headers
    )


async def read(request: Request, work: Work) -> Response:
    """A read, in autocommit (no BEGIN/COMMIT round trips); the result as JSON."""
    body = await run_read(request.app.state.engine, work)
    return json_response(body)


def fields_sent(body: BaseModel, *, not_null: tuple[str, ...]) -> dict[str, Any]:
    """A PUT body's fields as sent (a field left out keeps its value); 422 naming a field of
    `not_null` sent as null (it may be left out, not cleared)."""
    values = body.model_dump(include=body.model_fields_set)
    for field in not_null:
        if field in values and values[field] is None:
            raise ValidationFailed(
                f"{field} cannot be null",
                [{"loc": ["body", field], "field": field, "msg": "may not be null"}],
            )
    return values


def storable(status: int, body: Any, payload: bytes, secret_fields: tuple[str, ...]) -> bytes:
    """The copy of an answer kept under its Idempotency-Key: secrets redacted, size bounded."""
    if secret_fields and isinstance(body, dict) and any(f in body for f in secret_fields):
        payload = dumps({k: REDACTED_SECRET if k in secret_fields else v for k, v in body.items()})
    if len(payload) > MAX_STORED_ANSWER_BYTES:
        payload = dumps(
            {
                "detail": f"the first answer ({len(payload)} bytes, status {status}) was too "
                "large to keep; the request was done once: read the resources it changed",
                "replay_truncated": True,
            }
        )
    return payload


async def write(
    request: Request,
    principal: Principal,
    work: Work,
    *,
    status_code: int = 201,
    secret_fields: tuple[str, ...] = (),
    prepare: Callable[[], Awaitable[None]] | None = None,
    dry_run: DryRun | None = None,
) -> Response:
    """A write; honours `Idempotency-Key` when the request carries one. Answer with what this
    returns, whatever `status_code`: a refusal stored under the key, or a replay, is not it.
    `secret_fields`: the answer's top-level fields that hold a secret shown once (never stored
    for a replay). `prepare`: a check too slow for a transaction (a DNS lookup), made before
    the work and outside it, but never for a replay: a stored answer does not depend on it.
    `dry_run` (the request's `?dry_run=true`): the work is rehearsed and rolled back, 200
    with what it would do; an `Idempotency-Key` is neither looked up nor kept."""
    request.state.in_write = True  # its own refusals are stored here, not by the handlers
    engine = request.app.state.engine
    attempts = request.app.state.settings.transaction_attempts
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:  # refused as the real call refuses it
        raise ValidationFailed(
            "Idempotency-Key must be 1-255 characters",
            [
                {
                    "loc": ["header", "Idempotency-Key"],
                    "field": "Idempotency-Key",
                    "msg": "must be 1-255 characters",
                }
            ],
        )
    if dry_run is not None:
        answer = await rehearse(
            engine, work, dry_run, channel=principal.channel_filter, attempts=attempts
        )
        return json_response(answer)
    prepared = _Prepared(prepare, work) if prepare is not None else None
    if prepared is not None:
        work = prepared
    if key is None:
        if prepared is not None:
            await prepared.ensure()
        body = await run_transaction(engine, work, attempts=attempts)
        return Response(status_code=204) if status_code == 204 else json_response(body, status_code)
    fingerprint = await _fingerprint(request)
    ttl = request.app.state.settings.idempotency_ttl_hours
    request_id = request_id_of(request)
    if prepared is not None:
        # Found: `guarded` replays it (or refuses a reused key) without the check. Should the
        # answer be gone by then (it expired), the work makes the check itself.
        found = await run_read(
            engine, lambda conn: idempotency.find(conn, principal.scope, key, ttl)
        )
        if found is None:
            try:
                await prepared.ensure()
            except DomainError as exc:
                if exc.status >= 500:
                    raise
                work = _refusing(exc)  # stored under the key like any other refusal

    def replay(stored: idempotency.StoredResponse) -> tuple[int, bytes, bool]:
        same = (stored.method, stored.path, stored.request_hash) == (
            request.method,
            request.url.path,
            fingerprint,
        )
        if not same:
            raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
        return stored.status_code, stored.body, True

    async def guarded(conn: AsyncConnection) -> tuple[int, bytes, bool]:
        # A finished request replays without the key's lock, so simultaneous retries of it
        # all replay; only a request that is still running makes its key "in use".
        stored, locked = await idempotency.find_or_lock(conn, principal.scope, key, ttl)
        if stored is not None:
            return replay(stored)
        if not locked:
            raise IdempotencyKeyInUse("a request with this Idempotency-Key is still running")
        # Read again, in a new snapshot: the request that held the key may have committed
        # between the lookup's snapshot and the lock.
        stored = await idempotency.find(conn, principal.scope, key, ttl)
        if stored is not None:
            return replay(stored)
        try:
            async with conn.begin_nested():
                body: Any = await work(conn)
                status, payload = status_code, dumps(body)
        except DomainError as exc:
            if exc.status >= 500:
                raise
            body = domain_problem(exc, request_id)
            status, payload = exc.status, dumps(body)
        except _Refused as refused:
            body = refused.body
            status, payload = refused.status, dumps(body)
        kept = storable(status, body, payload, secret_fields)
        stored_now = await idempotency.store(
            conn,
            principal.scope,
            key,
            idempotency.StoredResponse(request.method, request.url.path, fingerprint, status, kept),
            ttl,
        )
        if not stored_now:
            raise IdempotencyKeyInUse("a request with this Idempotency-Key ran meanwhile")
        return status, payload, False

    status, payload, replayed = await run_transaction(engine, guarded, attempts=attempts)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    if status == 204:  # no content, not the `null` the work answered
        return Response(status_code=204, headers=headers)
    media = "application/json" if status < 400 else "application/problem+json"
    return Response(payload, status_code=status, media_type=media, headers=headers)


def _refusing(exc: DomainError) -> Work:
    async def refuse(conn: AsyncConnection) -> Any:
        raise exc

    return refuse


class _Prepared:
    """`work` after `check`, which runs once per request: before the transaction when `write`
    can tell that the work will run, else (rarely) inside it."""

    def __init__(self, check: Callable[[], Awaitable[None]], work: Work) -> None:
        self.check = check
        self.work = work
        self.done = False

    async def ensure(self) -> None:
        if not self.done:
            await self.check()
            self.done = True

    async def __call__(self, conn: AsyncConnection) -> Any:
        await self.ensure()
        return await self.work(conn)


async def remember_refusal(request: Request, status: int, body: dict[str, Any]) -> Response | None:
    """The answer to a keyed request refused before its route ran (FastAPI's validation of
    the body, a route's own check), on a route that honours Idempotency-Key: stored like every
    other answer below 500, so a retry replays it and the key cannot then be used for another
    body. None when the request is not such a write (no key, no principal, another route)."""
    route = request.scope.get("route")
    marked = bool((getattr(route, "openapi_extra", None) or {}).get("x-honours-idempotency-key"))
    principal = getattr(request.state, "principal", None)
    if (
        not marked
        or is_dry_run(request)
        or status >= 500
        or principal is None
        or "idempotency-key" not in request.headers
        or getattr(request.state, "in_write", False)
    ):
        return None

    async def refuse(conn: AsyncConnection) -> Any:
        raise _Refused(status, body)

    try:
        return await write(request, principal, refuse)
    except DomainError as exc:  # the key reused or in use, or the database away (503)
        return problem_response(domain_problem(exc, request_id_of(request)), retry_headers(exc))


def is_dry_run(request: Request) -> bool:
    """`?dry_run=true` as FastAPI reads a bool (`1`, `yes`, `on`...): such a request, refused
    before its route ran, keeps nothing under its Idempotency-Key."""
    return request.query_params.get("dry_run", "").lower() in {"1", "true", "on", "yes", "t", "y"}


async def _fingerprint(request: Request) -> str:
    return fingerprint(await request.body())


def fingerprint(raw: bytes) -> str:
    """What a replay's request is compared by: its JSON body with sorted keys, hashed."""
    try:
        canonical = orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS) if raw else b""
    except orjson.JSONDecodeError:
        canonical = raw
    return hashlib.sha256(canonical).hexdigest()
