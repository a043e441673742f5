"""What every console page shares: its templates, its headers, forms and page cursors."""

from __future__ import annotations

import base64
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, Response

from backorder import __version__

HERE = Path(__file__).parent
STATIC = HERE / "static"

# The console's pages run only this origin's scripts and styles (no inline ones) and post
# forms only to it; the app's middleware keeps a page's own CSP.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    # Pages show orders and customers: no cache may keep them, and Back shows a fresh page.
    "cache-control": "no-store",
}
MAX_FORM_FIELD = 255


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _hours(value: float | None) -> str:
    if value is None:
        return "\N{EN DASH}"
    if value < 1:
        return f"{value * 60:.0f} min"
    if value < 48:
        return f"{value:.1f} h"
    return f"{value / 24:.1f} d"


def _percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "\N{EN DASH}"
    if isinstance(value, str):
        return value
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _day(value: date | None) -> str:
    return value.isoformat() if value else "\N{EN DASH}"


templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters.update(number=_number, hours=_hours, percent=_percent, when=_when, day=_day)
templates.globals.update(version=__version__)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def redirect(url: str) -> Response:
    """303: the browser follows with a GET, so Reload never posts a form again."""
    return Response(status_code=303, headers={"location": url, **HEADERS})


async def form(request: Request) -> dict[str, str]:
    """An urlencoded form (the only kind the console's pages send); the last of repeated
    fields, each cut to a sane length (the app's body limit bounds the whole)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    raw = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[: MAX_FORM_FIELD * 4] for k, v in parse_qsl(raw, keep_blank_values=True)}


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([str(p) for p in parts])).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[str] | None:
    """A cursor's parts, or None (the first page) for none or one that is not ours."""
    if not cursor or len(cursor) > 512:
        return None
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(parts, list) or len(parts) != arity:
        return None
    return [str(p) for p in parts]
