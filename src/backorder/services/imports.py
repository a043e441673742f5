"""CSV imports: products (with stock counts) and purchase orders, all or nothing.

**Products.** Columns: `sku` (required), any of `name`, `backorders_allowed`,
`backorder_limit`, `allocation_strategy`, `discontinued`, `expected_restock_date`,
`reorder_point`, `safety_stock`, `lead_time_days`, `max_backorder_days`, `alternatives` (SKUs
separated by spaces or `|`), and stock counts: `on_hand` (at `main`) and `on_hand:<location>`
(one column per location). An empty cell keeps the value (a new product gets the default);
`null` clears a nullable setting. A stock count is what is on the shelf: the import books an
adjustment of the difference at that location (ledger reason `stock count`), which fills the
queue like any positive adjustment; so a second run of the same file changes nothing.

**Purchase orders.** Columns `sku`, `quantity`, `expected_date`, and optionally `reference`
and `location`. A row whose SKU already has a purchase order with the same `reference` is
skipped as already imported, so a second run orders nothing twice.

Every bad cell is reported as (line, column, message), line 1 being the header. When any
row is bad nothing is applied, unless `skip_bad_rows`: then the good rows are. The whole
file is one transaction; rows are applied in batches (set-based SQL for new products and
stock counts, the catalog's own `put_product` for changed ones).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import imports, locations, products, stock
from backorder.domain.errors import DomainError
from backorder.domain.locations import MAIN
from backorder.domain.purchasing import expected_date_refusal
from backorder.services import catalog, inventory, purchasing

BATCH = 500
_CODE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_TRUE, _FALSE = {"true", "yes", "1", "y"}, {"false", "no", "0", "n"}
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


@dataclass(slots=True)
class Summary:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    stock_counts_changed: int = 0
    units_added: int = 0
    units_removed: int = 0
    skipped: int = 0
    applied: bool = False
    errors: list[RowError] = field(default_factory=list)


class _Bad(ValueError):
    pass


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(cell: str) -> int:
        try:
            n = int(cell)
        except ValueError:
            raise _Bad("must be a whole number") from None
        if not lo <= n <= hi:
            raise _Bad(f"must be {lo} to {hi:,}")
        return n

    return parse


def _bool(cell: str) -> bool:
    if cell.lower() in _TRUE:
        return True
    if cell.lower() in _FALSE:
        return False
    raise _Bad("must be true or false")


def _day(cell: str) -> date:
    try:
        return date.fromisoformat(cell)
    except ValueError:
        raise _Bad("must be a date, YYYY-MM-DD") from None


def _name(cell: str) -> str:
    if len(cell) > 255 or "\x00" in cell:
        raise _Bad("must be 1-255 characters")
    return cell


def _strategy(cell: str) -> str:
    if cell not in ("fifo", "priority"):
        raise _Bad("must be fifo or priority")
    return cell


def _skus(cell: str) -> list[str]:
    found = [s for s in re.split(r"[\s|]+", cell) if s]
    bad = [s for s in found if not _CODE.match(s)]
    if bad or len(found) > 50:
        raise _Bad(f"not a list of at most 50 SKUs: {' '.join(bad)}")
    return found


# Each setting: its parser, and whether `null` clears it (the API's nullable fields).
SETTINGS: dict[str, tuple[Callable[[str], Any], bool]] = {
    "name": (_name, False),
    "backorders_allowed": (_bool, False),
    "backorder_limit": (_int(0, 1_000_000_000), True),
    "allocation_strategy": (_strategy, False),
    "discontinued": (_bool, False),
    "expected_restock_date": (_day, True),
    "reorder_point": (_int(0, 1_000_000_000), True),
    "safety_stock": (_int(0, 1_000_000_000), True),
    "lead_time_days": (_int(0, 3650), True),
    "max_backorder_days": (_int(1, 3650), True),
    "alternatives": (_skus, False),
}
_COUNT = _int(0, 1_000_000_000)


def _stock_column(column: str) -> str | None:
    """The location a stock-count column names (`on_hand` is `main`), else None."""
    if column == "on_hand":
        return MAIN
    return column.removeprefix("on_hand:") if column.startswith("on_hand:") else None


@dataclass(slots=True)
class _ProductRow:
    line: int
    sku: str
    values: dict[str, Any]
    counts: dict[str, int]  # location -> units on the shelf


def _parse_products(
    header: list[str], body: Iterable[tuple[int, list[str]]], summary: Summary
) -> list[_ProductRow]:
    bad = summary.errors
    for column in header:
        loc = _stock_column(column)
        if column not in SETTINGS and column != "sku" and (loc is None or not _CODE.match(loc)):
            bad.append(RowError(1, column, "unknown column"))
    if "sku" not in header:
        bad.append(RowError(1, "sku", "the sku column is missing"))
    if len(set(header)) != len(header):
        bad.append(RowError(1, "", "a column is named twice"))
    if bad:
        return []
    out: list[_ProductRow] = []
    seen: dict[str, int] = {}
    for line, cells in body:
        summary.rows += 1
        record = dict(zip(header, cells, strict=False))
        errors: list[RowError] = []
        sku = record.get("sku", "").strip()
        if not _CODE.match(sku):
            errors.append(RowError(line, "sku", "must be 1-64 characters of A-Z a-z 0-9 . _ -"))
        elif sku in seen:
            errors.append(RowError(line, "sku", f"{sku} is on line {seen[sku]} already"))
        seen.setdefault(sku, line)
        values: dict[str, Any] = {}
        counts: dict[str, int] = {}
        for column, raw in record.items():
            cell = raw.strip()
            if column == "sku" or not cell:
                continue
            try:
                loc = _stock_column(column)
                if loc is not None:
                    counts[loc] = _COUNT(cell)
                    continue
                parse, nullable = SETTINGS[column]
                if cell == "null" and nullable:
                    values[column] = None
                elif cell == "null" and column == "alternatives":
                    values[column] = []
                else:
                    values[column] = parse(cell)
            except _Bad as exc:
                errors.append(RowError(line, column, str(exc)))
        if sku in values.get("alternatives", []):
            errors.append(RowError(line, "alternatives", "names the product itself"))
        bad.extend(errors)
        if not errors:
            out.append(_ProductRow(line, sku, values, counts))
    return out


async def _check_products(
    conn: AsyncConnection, rows: list[_ProductRow], header: list[str], summary: Summary
) -> tuple[list[_ProductRow], dict[str, dict[str, Any]], dict[str, Any]]:
    """The checks that need the database: locations, names of new products, alternatives,
    counts below what is allocated. The good rows, the products' settings, the locations."""
    codes = sorted({loc for c in header if (loc := _stock_column(c)) is not None})
    # Held `FOR SHARE` until the import commits (locations before products, as every stock
    # write takes them): no deactivation slips in between these checks and the counts.
    places = {code: await locations.get(conn, code, lock="share") for code in codes}
    for code, place in places.items():
        if place is None:
            column = "on_hand" if code == MAIN else f"on_hand:{code}"
            summary.errors.append(RowError(1, column, f"unknown location {code!r}"))
    if summary.errors and not rows:
        return [], {}, places
    skus = [r.sku for r in rows]
    existing = await imports.current_settings(conn, skus)
    in_file = set(skus)
    wanted = {a for r in rows for a in r.values.get("alternatives", [])} - in_file
    known = await products.existing_skus(conn, sorted(wanted)) if wanted else set()
    levels = await locations.load_levels(conn, [r.sku for r in rows if r.sku in existing])
    good = []
    for r in rows:
        errors = []
        if r.sku not in existing and not r.values.get("name"):
            errors.append(RowError(r.line, "name", "required for a new product"))
        unknown = [a for a in r.values.get("alternatives", []) if a not in in_file | known]
        if unknown:
            errors.append(RowError(r.line, "alternatives", f"unknown SKU {' '.join(unknown)}"))
        for loc, count in r.counts.items():
            column = "on_hand" if loc == MAIN else f"on_hand:{loc}"
            place, level = places.get(loc), levels.get(r.sku, {}).get(loc)
            on_hand, allocated = (level.on_hand, level.allocated) if level else (0, 0)
            if place is None:
                continue  # reported on line 1
            if count > on_hand and not place.active:
                errors.append(RowError(r.line, column, f"location {loc!r} is inactive"))
            if count < allocated:
                errors.append(RowError(r.line, column, f"{allocated} units are allocated there"))
        summary.errors.extend(errors)
        if not errors:
            good.append(r)
    return good, existing, places


async def import_products(
    conn: AsyncConnection,
    header: list[str],
    body: Iterable[tuple[int, list[str]]],
    *,
    skip_bad_rows: bool = False,
    source: str = "import",
    progress: Progress | None = None,
) -> Summary:
    """Check every row, then (all good, or `skip_bad_rows`) apply them in `conn`'s
    transaction. `body`: (line number, cells) per data row."""
    summary = Summary()
    rows = _parse_products(header, body, summary)
    rows, existing, places = await _check_products(conn, rows, header, summary)
    summary.errors.sort(key=lambda e: (e.line, e.column))
    summary.skipped = len({e.line for e in summary.errors if e.line > 1})
    if summary.errors and (not skip_bad_rows or any(e.line == 1 for e in summary.errors)):
        return summary
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        await _apply_batch(conn, batch, existing, places, summary, source)
        if progress is not None:
            progress(len(batch))
    summary.applied = True
    return summary


async def _apply_batch(
    conn: AsyncConnection,
    batch: list[_ProductRow],
    existing: dict[str, dict[str, Any]],
    places: dict[str, Any],
    summary: Summary,
    source: str,
) -> None:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in batch:
        if r.sku not in existing:
            groups.setdefault(tuple(sorted(r.values)), []).append({"sku": r.sku, **r.values})
    created: set[str] = set()
    for group in groups.values():
        created |= await imports.insert_products(conn, group)
    summary.created += len(created)
    quiet = set()  # rows that changed nothing (so far)
    for r in batch:
        if r.sku in created:
            continue
        current = existing.get(r.sku, {})
        changed = {k: v for k, v in r.values.items() if current.get(k) != v}
        if changed or r.sku not in existing:  # (not in existing: created meanwhile)
            await catalog.put_product(conn, r.sku, changed or r.values)
            summary.updated += 1
        else:
            quiet.add(r.sku)
    counted = [r for r in batch if r.counts]
    locked = await stock.lock_products(conn, [r.sku for r in counted]) if counted else {}
    moves = []
    for r in counted:
        product = locked[r.sku]
        for loc, count in sorted(r.counts.items()):
            place = places[loc]
            delta = count - product.level(place).on_hand
            if count < product.levels[loc].allocated:  # allocated since the check
                raise DomainError(f"line {r.line}: {r.sku} has more allocated at {loc} now")
            if delta:
                moves.append((product, loc, delta))
                quiet.discard(r.sku)
                summary.stock_counts_changed += 1
                summary.units_added += max(delta, 0)
                summary.units_removed += max(-delta, 0)
    summary.unchanged += len(quiet)
    if not moves:
        return
    await imports.record_counts(conn, moves, reference=source, reason="stock count")
    touched = list({id(p): p for p, _, _ in moves}.values())
    await inventory.fill_queues(conn, touched)


# --- Purchase orders ---------------------------------------------------------------------------

PO_COLUMNS = ("sku", "quantity", "expected_date", "reference", "location")


async def import_purchase_orders(
    conn: AsyncConnection,
    header: list[str],
    body: Iterable[tuple[int, list[str]]],
    *,
    skip_bad_rows: bool = False,
    progress: Progress | None = None,
) -> Summary:
    summary = Summary()
    bad = summary.errors
    for column in header:
        if column not in PO_COLUMNS:
            bad.append(RowError(1, column, "unknown column"))
    for column in PO_COLUMNS[:3]:
        if column not in header:
            bad.append(RowError(1, column, "the column is missing"))
    if bad:
        return summary
    today = datetime.now(UTC).date()
    parsed = []
    for line, cells in body:
        summary.rows += 1
        rec = {k: v.strip() for k, v in zip(header, cells, strict=False)}
        errors = []
        try:
            quantity = _int(1, 1_000_000)(rec.get("quantity", ""))
        except _Bad as exc:
            errors.append(RowError(line, "quantity", str(exc)))
        try:
            expected = _day(rec.get("expected_date", ""))
            refusal = expected_date_refusal(expected, today)
            if refusal:
                errors.append(RowError(line, "expected_date", refusal))
        except _Bad as exc:
            errors.append(RowError(line, "expected_date", str(exc)))
        for column in ("sku", "location"):
            if rec.get(column) and not _CODE.match(rec[column]):
                errors.append(RowError(line, column, "must be 1-64 of A-Z a-z 0-9 . _ -"))
        if not rec.get("sku"):
            errors.append(RowError(line, "sku", "required"))
        if len(rec.get("reference", "")) > 255 or "\x00" in rec.get("reference", ""):
            errors.append(RowError(line, "reference", "must be at most 255 characters"))
        bad.extend(errors)
        if not errors:
            parsed.append((line, rec["sku"], quantity, expected, rec.get("reference") or None,
                           rec.get("location") or MAIN))  # fmt: skip
    skus = sorted({p[1] for p in parsed})
    known = await products.existing_skus(conn, skus)
    codes = {p[5] for p in parsed}
    places = {c for c in codes if await locations.exists(conn, c)}
    done = await imports.purchase_order_references(
        conn, skus, sorted({p[4] for p in parsed if p[4]})
    )
    good = []
    for p in parsed:
        if p[1] not in known:
            bad.append(RowError(p[0], "sku", f"unknown SKU {p[1]}"))
        elif p[5] not in places:
            bad.append(RowError(p[0], "location", f"unknown location {p[5]!r}"))
        elif p[4] and (p[1], p[4]) in done:
            summary.unchanged += 1  # imported before: a second run orders nothing twice
        else:
            good.append(p)
    bad.sort(key=lambda e: (e.line, e.column))
    summary.skipped = len({e.line for e in bad})
    if bad and not skip_bad_rows:
        return summary
    for i, (_, sku, quantity, expected, reference, location) in enumerate(good, 1):
        await purchasing.create(conn, sku, quantity, expected, reference, location)
        summary.created += 1
        if progress is not None and (i % 100 == 0 or i == len(good)):
            progress(100 if i % 100 == 0 else i % 100)
    summary.applied = True
    return summary
