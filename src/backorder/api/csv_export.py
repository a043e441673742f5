"""`Accept: text/csv` on list routes: every page of the list, streamed as one CSV with a
header row, for the spreadsheets ops staff live in.

A list route hands `listing` one function that reads a page from a cursor (the very one its
JSON answer uses) and, for CSV, its columns and how one item of the page becomes rows.
The JSON path is unchanged. The CSV is the JSON pages walked to the end, each page read in
its own statement as a client paging through them would (not one snapshot), and each cell
is the item's JSON value: strings and numbers as they are, `true`/`false`, null as an empty
cell, an object or array as compact JSON. A bad filter or cursor is refused (problem+json)
before the first byte, as in JSON.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response, StreamingResponse

from backorder.api.execute import JSON_OPTIONS, read
from backorder.db.engine import run_read

# The page a CSV export reads at a time (the list's `limit` applies to JSON pages only).
CSV_PAGE = 1000

FetchPage = Callable[[AsyncConnection, str | None, int], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class CsvShape:
    """A list's CSV: its file name, its columns, and the rows of one JSON item (by
    default one row, the item's own fields by column name)."""

    name: str
    columns: tuple[str, ...]
    rows: Callable[[dict[str, Any]], Iterable[dict[str, Any]]] | None = None

    def rows_of(self, item: dict[str, Any]) -> Iterable[dict[str, Any]]:
        return self.rows(item) if self.rows is not None else (item,)


def csv_response_doc(shape: CsvShape) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entry that declares the CSV beside the JSON."""
    return {
        200: {
            "description": "The page as JSON; with `Accept: text/csv`, every page of the list "
            "as one CSV (header row: " + ", ".join(f"`{c}`" for c in shape.columns) + ").",
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": ",".join(shape.columns) + "\n",
                }
            },
        }
    }


def wants_csv(request: Request) -> bool:
    """Whether the Accept header prefers `text/csv` to JSON (a wildcard never chooses CSV)."""
    accept = request.headers.get("accept", "")
    csv_q = json_q = 0.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media == "text/csv":
            csv_q = max(csv_q, q)
        elif media == "application/json":
            json_q = max(json_q, q)
    return csv_q > 0 and csv_q >= json_q


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _lines(shape: CsvShape, items: list[Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    # The values exactly as the JSON answer has them (times, ids, nested objects).
    for item in orjson.loads(orjson.dumps(items, option=JSON_OPTIONS)):
        for row in shape.rows_of(item):
            writer.writerow([_cell(row.get(c)) for c in shape.columns])
    return out.getvalue()


def _page_at(fetch: FetchPage, cursor: str) -> Callable[[AsyncConnection], Awaitable[Any]]:
    return lambda conn: fetch(conn, cursor, CSV_PAGE)


async def listing(
    request: Request, fetch: FetchPage, cursor: str | None, limit: int, shape: CsvShape
) -> Response:
    """The list's answer: the page at `cursor` as JSON, or every page from it on as CSV."""
    if not wants_csv(request):
        return await read(request, lambda conn: fetch(conn, cursor, limit))
    engine = request.app.state.engine
    first = await run_read(engine, lambda conn: fetch(conn, cursor, CSV_PAGE))

    async def stream() -> AsyncIterator[str]:
        header = io.StringIO()
        csv.writer(header, lineterminator="\r\n").writerow(shape.columns)
        yield header.getvalue()
        page = first
        while True:
            yield _lines(shape, page["data"])
            following = page["next_cursor"]
            if following is None:
                return
            page = await run_read(engine, _page_at(fetch, following))

    return StreamingResponse(
        stream(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{shape.name}.csv"'},
    )
