"""The console's product and replenishment pages, and the forms that act on them: restock
(previewed first, if wished), create a purchase order. Each form posts, is checked (CSRF,
fields), runs the same use case as the API in its own transaction, then sends the browser back
with a 303; a refusal shows the page again with the reason. A preview runs the restock as
`?dry_run=true` does and shows the page with what it would do."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.console import session, web
from backorder.console.session import ConsoleUser
from backorder.db import locations, orders, queue
from backorder.db.engine import run_read, run_transaction
from backorder.domain.allocation import AllocationStrategy
from backorder.domain.deadlines import deadline_day
from backorder.domain.errors import DomainError, NotFound
from backorder.domain.locations import MAIN
from backorder.domain.purchasing import expected_date_refusal, latest_expected_date
from backorder.services import catalog, inventory, purchasing, reports
from backorder.services.rehearsal import DryRun, rehearse

router = APIRouter(prefix="/console", include_in_schema=False)

User = Annotated[ConsoleUser, Depends(session.current_user)]
PAGE = 50
DAYS = 30
_CODE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # a SKU's rule, and a location's
_MAX_QUANTITY = 1_000_000


class FormError(Exception):
    """A field of a form that is not right (said in words for the page)."""


def _today() -> date:
    return datetime.now(UTC).date()


def _code(value: str | None, what: str) -> str:
    if value is None or not _CODE.match(value):
        raise FormError(f"{what} must be 1-64 characters of A-Z a-z 0-9 . _ -")
    return value


def _quantity(value: str | None) -> int:
    try:
        n = int(value or "")
    except ValueError:
        raise FormError("Units must be a whole number.") from None
    if not 1 <= n <= _MAX_QUANTITY:
        raise FormError(f"Units must be 1 to {_MAX_QUANTITY:,}.")
    return n


def _text(value: str | None, what: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > web.MAX_FORM_FIELD or "\x00" in value:
        raise FormError(f"{what} must be at most {web.MAX_FORM_FIELD} characters.")
    return value


def _expected_date(value: str | None) -> date:
    try:
        day = date.fromisoformat(value or "")
    except ValueError:
        raise FormError("Expected date must be a date (YYYY-MM-DD).") from None
    refusal = expected_date_refusal(day, _today())
    if refusal is not None:
        raise FormError(f"Expected date: {refusal}.")
    return day


def _notice(request: Request) -> str | None:
    """The sentence a redirect after a form asks for: fixed words, validated numbers."""
    q = request.query_params
    kind = q.get("notice")
    try:
        units = int(q.get("units", "0"))
        allocated = int(q.get("allocated", "0"))
    except ValueError:
        return None
    sku = q.get("sku", "")
    if kind == "restocked":
        return f"Restocked {units:,} units: {allocated:,} went to waiting customers."
    if kind == "po" and _CODE.match(sku):
        return f"Purchase order for {units:,} units of {sku} created."
    return None


# --- Product ----------------------------------------------------------------------------------


def _queue_after(cursor: str | None) -> tuple[int, datetime, UUID, int] | None:
    parts = web.decode_cursor(cursor, 4)
    if parts is None:
        return None
    try:
        return (int(parts[0]), datetime.fromisoformat(parts[1]), UUID(parts[2]), int(parts[3]))
    except ValueError:
        return None


async def _product_page(
    request: Request,
    user: ConsoleUser,
    sku: str,
    cursor: str | None = None,
    *,
    error: str | None = None,
    status_code: int = 200,
    preview: dict[str, Any] | None = None,
) -> Response:
    after = _queue_after(cursor)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        product = await catalog.get_product(conn, sku)
        strategy = AllocationStrategy(product["allocation_strategy"])
        return {
            "product": product,
            "queue": await queue.list_sku_queue(conn, sku, strategy, limit=PAGE + 1, after=after),
            "pos": await purchasing.list_pos(
                conn, sku=sku, status="open", limit=PAGE + 1, after=None
            ),
            "locations": await locations.list_locations(conn, limit=200, after=None),
        }

    try:
        found = await run_read(request.app.state.engine, work)
    except NotFound:
        return web.render(
            request, "base.html", 404, page="missing", user=user, error=f"No product {sku}."
        )
    rows = found["queue"][:PAGE]
    last = rows[-1] if rows else None
    next_cursor = (
        web.encode_cursor(last.priority, last.created_at.isoformat(), last.line_id, last.position)
        if last and len(found["queue"]) > PAGE
        else None
    )
    return web.render(
        request,
        "product.html",
        status_code,
        page="product",
        user=user,
        product=found["product"],
        queue=rows,
        cursor=after is not None,
        next_cursor=next_cursor,
        page_size=PAGE,
        pos=found["pos"][:PAGE],
        more_pos=len(found["pos"]) > PAGE,
        locations=found["locations"],
        today=_today().isoformat(),
        notice=None if error else _notice(request),
        error=error,
        preview=preview,
    )


@router.get("/products")
async def find_product(request: Request, user: User, sku: Annotated[str, Query()] = "") -> Response:
    sku = sku.strip()
    if not _CODE.match(sku):
        return web.redirect("/console")
    return web.redirect(f"/console/products/{sku}")


@router.get("/products/{sku}")
async def product_page(
    request: Request, user: User, sku: str, cursor: Annotated[str | None, Query()] = None
) -> Response:
    if not _CODE.match(sku):
        return web.render(
            request, "base.html", 404, page="missing", user=user, error="No such SKU."
        )
    return await _product_page(request, user, sku, cursor)


def _restock_form(user: ConsoleUser, form: dict[str, str]) -> tuple[int, str, str | None]:
    """A restock form's units, location and reference, its token checked (`FormError`)."""
    if not session.check_csrf(user, form):
        raise FormError("The form had expired: nothing was done. Try again.")
    quantity = _quantity(form.get("quantity"))
    location = _code(form.get("location") or MAIN, "Location")
    return quantity, location, _text(form.get("reference"), "Reference")


@router.post("/products/{sku}/restocks/preview")
async def preview_restock(request: Request, user: User, sku: str) -> Response:
    """The restock's dry run (`services/rehearsal.py`, as the API's `?dry_run=true`): who it
    would fill, shown on the product page with a button that makes it, nothing written."""
    form = await web.form(request)
    if not _CODE.match(sku):
        return web.redirect("/console")
    try:
        quantity, location, reference = _restock_form(user, form)
        # As the API would answer it (its queue-ordered fills come as ready-made JSON).
        answer = orjson.loads(
            orjson.dumps(
                await rehearse(
                    request.app.state.engine,
                    lambda conn: inventory.restock(conn, sku, quantity, reference, location),
                    DryRun(sku=sku, locations=(location,), creates=("id",)),
                    channel=None,
                    attempts=request.app.state.settings.transaction_attempts,
                )
            )
        )
        shown = answer["allocations"][:PAGE]
        customers = await run_read(
            request.app.state.engine,
            lambda conn: orders.customers_of(conn, [UUID(a["order_id"]) for a in shown]),
        )
    except FormError as exc:
        return await _product_page(request, user, sku, error=str(exc), status_code=422)
    except DomainError as exc:
        return await _product_page(request, user, sku, error=exc.detail, status_code=exc.status)
    status_after = {o["order_id"]: o for o in answer["orders"]}
    preview = {
        "quantity": quantity,
        "location": location,
        "reference": reference or "",
        "answer": answer,
        "fills": [
            {
                **a,
                "customer_id": customers.get(UUID(a["order_id"]), ""),
                "after": status_after.get(a["order_id"]),
            }
            for a in shown
        ],
        "more": len(answer["allocations"]) - len(shown),
        "dates_moved": len(answer["expected_dates"]),
    }
    return await _product_page(request, user, sku, preview=preview)


@router.post("/products/{sku}/restocks")
async def restock(request: Request, user: User, sku: str) -> Response:
    form = await web.form(request)
    if not _CODE.match(sku):
        return web.redirect("/console")
    try:
        quantity, location, reference = _restock_form(user, form)
        answer = await run_transaction(
            request.app.state.engine,
            lambda conn: inventory.restock(conn, sku, quantity, reference, location),
            attempts=request.app.state.settings.transaction_attempts,
        )
    except FormError as exc:
        return await _product_page(request, user, sku, error=str(exc), status_code=422)
    except DomainError as exc:
        return await _product_page(request, user, sku, error=exc.detail, status_code=exc.status)
    return web.redirect(
        f"/console/products/{sku}?notice=restocked&units={quantity}"
        f"&allocated={answer['allocated_units']}"
    )


# --- Replenishment and purchase orders ----------------------------------------------------------


async def _replenishment_page(
    request: Request,
    user: ConsoleUser,
    *,
    cursor: str | None = None,
    show_all: bool = False,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    after = web.decode_cursor(cursor, 1)
    found = await run_read(
        request.app.state.engine,
        lambda conn: reports.replenishment(
            conn,
            days=DAYS,
            needs_order=not show_all,
            after=after[0] if after else None,
            limit=PAGE + 1,
        ),
    )
    rows = found[:PAGE]
    today = _today()
    latest = latest_expected_date(today)
    for row in rows:
        # When a PO placed today would arrive: the product's lead time on.
        row["expected_by"] = min(today + timedelta(days=row["lead_time_days"]), latest)
    return web.render(
        request,
        "replenishment.html",
        status_code,
        page="replenishment",
        user=user,
        rows=rows,
        days=DAYS,
        needs_order=not show_all,
        cursor=after is not None,
        next_cursor=web.encode_cursor(rows[-1]["sku"]) if len(found) > PAGE else None,
        page_size=PAGE,
        today=today.isoformat(),
        notice=None if error else _notice(request),
        error=error,
    )


@router.get("/replenishment")
async def replenishment_page(
    request: Request,
    user: User,
    cursor: Annotated[str | None, Query()] = None,
    all: Annotated[str | None, Query()] = None,
) -> Response:
    return await _replenishment_page(request, user, cursor=cursor, show_all=bool(all))


# --- At risk --------------------------------------------------------------------------------------


@router.get("/at-risk")
async def at_risk_page(
    request: Request, user: User, cursor: Annotated[str | None, Query()] = None
) -> Response:
    """The waiting lines at risk of missing their order's deadline, the soonest first: what
    to chase (a purchase order, a transfer) or to tell the customer about."""
    parts = web.decode_cursor(cursor, 2)
    after = None
    if parts is not None:
        try:
            after = (datetime.fromisoformat(parts[0]), UUID(parts[1]))
        except ValueError:
            after = None

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        return {
            "rows": await orders.at_risk_lines(conn, limit=PAGE + 1, after=after),
            "totals": await orders.at_risk_totals(conn),
        }

    found = await run_read(request.app.state.engine, work)
    rows = found["rows"][:PAGE]
    today = _today()
    lines = []
    for r in rows:
        due = deadline_day(r.deadline)
        lines.append(
            {
                "row": r,
                "due": due,
                "days_left": (due - today).days,
                # How late the promise is against the deadline; None when nothing is promised.
                "late_by": (r.expected_date - due).days if r.expected_date else None,
            }
        )
    last = rows[-1] if rows else None
    next_cursor = (
        web.encode_cursor(last.deadline.isoformat(), last.line_id)
        if last and len(found["rows"]) > PAGE
        else None
    )
    return web.render(
        request,
        "at_risk.html",
        page="at-risk",
        user=user,
        lines=lines,
        totals=found["totals"],
        cursor=after is not None,
        next_cursor=next_cursor,
        page_size=PAGE,
    )


@router.post("/purchase-orders")
async def create_purchase_order(request: Request, user: User) -> Response:
    form = await web.form(request)
    back = form.get("back")
    sku = form.get("sku") or ""
    try:
        if not session.check_csrf(user, form):
            raise FormError("The form had expired: nothing was done. Try again.")
        sku = _code(sku, "SKU")
        quantity = _quantity(form.get("quantity"))
        expected = _expected_date(form.get("expected_date"))
        location = _code(form.get("location") or MAIN, "Location")
        reference = _text(form.get("reference"), "Reference")
        await run_transaction(
            request.app.state.engine,
            lambda conn: purchasing.create(conn, sku, quantity, expected, reference, location),
            attempts=request.app.state.settings.transaction_attempts,
        )
    except (FormError, DomainError) as exc:
        message = str(exc) if isinstance(exc, FormError) else exc.detail
        status = 422 if isinstance(exc, FormError) else exc.status
        if back == "product" and _CODE.match(sku):
            return await _product_page(request, user, sku, error=message, status_code=status)
        return await _replenishment_page(request, user, error=message, status_code=status)
    notice = f"notice=po&units={quantity}&sku={sku}"
    if back == "product":
        return web.redirect(f"/console/products/{sku}?{notice}")
    return web.redirect(f"/console/replenishment?{notice}")
