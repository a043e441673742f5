"""The console's sign-in, overview and event pages."""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from backorder.console import charts, session, web
from backorder.console.session import ConsoleUser, SignedOut
from backorder.db import feed
from backorder.db.engine import run_read
from backorder.domain.errors import DomainError
from backorder.services import reports

router = APIRouter(prefix="/console", include_in_schema=False)

User = Annotated[ConsoleUser, Depends(session.current_user)]
DAYS = 30
EVENTS_SHOWN = 100


async def signed_out(request: Request, exc: Exception) -> Response:
    """Any console request without a valid session: pages go to the sign-in page (saying
    why), the feed's JSON answers 401 for its script to do the same."""
    reason = exc.reason if isinstance(exc, SignedOut) else "invalid"
    if request.url.path.endswith(".json"):
        response: Response = Response(
            orjson.dumps({"signed_out": True, "reason": reason}),
            status_code=401,
            media_type="application/json",
            headers=web.HEADERS,
        )
    else:
        response = web.redirect("/console/sign-in" + (f"?reason={reason}" if reason else ""))
    if request.cookies.get(session.COOKIE):
        session.clear_cookie(request, response)
    return response


def _sign_in_page(
    request: Request, error: str | None = None, status_code: int = 200, notice: str | None = None
) -> Response:
    token = secrets.token_urlsafe(24)
    response = web.render(
        request,
        "sign_in.html",
        status_code,
        page="sign-in",
        user=None,
        csrf=token,
        error=error,
        notice=notice,
    )
    session.set_cookie(request, response, session.SIGN_IN_COOKIE, token)
    return response


@router.get("/sign-in")
async def sign_in_page(request: Request, reason: Annotated[str, Query()] = "") -> Response:
    message = session.REASONS.get(reason)
    notice = message if reason == "signed_out" else None
    error = message if reason != "signed_out" else None
    return _sign_in_page(request, error=error, notice=notice)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await web.form(request)
    expected = request.cookies.get(session.SIGN_IN_COOKIE, "")
    if not expected or not hmac.compare_digest(form.get("csrf", ""), expected):
        return _sign_in_page(request, "The sign-in form had expired: try again.", 400)
    key = form.get("key", "").strip()
    if not key:
        return _sign_in_page(request, "Type an API key.", 422)
    try:
        cookie = await session.sign_in(request, key)
    except SignedOut as exc:
        return _sign_in_page(request, exc.message, 403 if exc.reason == "ops_only" else 401)
    except DomainError as exc:  # too many failed attempts from here (429), database away
        return _sign_in_page(request, exc.detail, exc.status)
    response = web.redirect("/console")
    session.set_cookie(request, response, session.COOKIE, cookie)
    session.clear_cookie(request, response, session.SIGN_IN_COOKIE)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, user: User) -> Response:
    form = await web.form(request)
    if not session.check_csrf(user, form):
        return web.redirect("/console")
    response = web.redirect("/console/sign-in?reason=signed_out")
    session.clear_cookie(request, response)
    return response


@router.get("")
async def overview(request: Request, user: User) -> Response:
    found = await run_read(request.app.state.engine, lambda conn: reports.overview(conn, DAYS))
    report, daily, ageing = found["report"], found["daily"], found["ageing"]
    oldest = report["oldest_open_backorder_at"]
    oldest_age = (report["as_of"] - oldest).total_seconds() / 3600 if oldest else None
    return web.render(
        request,
        "overview.html",
        page="overview",
        user=user,
        report=report,
        oldest_age=oldest_age,
        days=DAYS,
        daily_chart=charts.daily_bars(
            [(d.day, d.opened, d.filled) for d in daily],
            f"Backorder lines opened and filled per day, last {DAYS} days",
        ),
        ageing_chart=charts.ageing_bars(
            [(b.label, b.units, b.lines) for b in ageing],
            "Open backordered units by age",
        ),
    )


def _event(row: Any) -> dict[str, Any]:
    created: datetime = row.created_at
    return {
        "id": str(row.id),
        "type": row.type,
        "created_at": created.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "data": orjson.dumps(row.data).decode(),
    }


@router.get("/events")
async def events_page(request: Request, user: User) -> Response:
    rows, after = await run_read(
        request.app.state.engine, lambda conn: feed.newest(conn, EVENTS_SHOWN)
    )
    return web.render(
        request,
        "events.html",
        page="events",
        user=user,
        events=[_event(r) for r in rows],
        after=after,
    )


@router.get("/events.json")
async def events_since(
    request: Request, user: User, after: Annotated[int, Query(ge=0, le=feed.MAX_EVENT_ID)] = 0
) -> Response:
    """The events after `after`, oldest first, for the page's script to put on top; `after`
    in the answer is where to read on from, `more` whether to do so at once."""
    rows, read_on = await run_read(
        request.app.state.engine,
        lambda conn: feed.read_feed(
            conn, after=after, type_=None, prefix=None, channel=None, limit=EVENTS_SHOWN
        ),
    )
    last = rows[-1].id if rows else after
    body = {
        "events": [_event(r) for r in rows],
        "after": str(max(last, read_on or 0)),
        "more": read_on is not None,
    }
    return Response(
        orjson.dumps(body), media_type="application/json", headers={"cache-control": "no-store"}
    )
