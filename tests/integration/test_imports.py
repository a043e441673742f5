"""CSV imports on real PostgreSQL: products with stock counts (a count, not an addition),
purchase orders, and files with bad rows (nothing applied, each bad cell named)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder import cli
from backorder.db.engine import run_transaction
from backorder.services import imports
from tests.support.api import OPS

LEEDS = "INSERT INTO location (code, name, rank, active) VALUES ('leeds', 'Leeds', 200, true)"


def rows_of(content: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    reader = csv.reader(io.StringIO(content))
    header = next(reader)
    return header, [(reader.line_num, cells) for cells in reader]


async def run_import(engine: AsyncEngine, content: str, **options: Any) -> imports.Summary:
    header, body = rows_of(content)
    return await run_transaction(
        engine, lambda conn: imports.import_products(conn, header, body, **options)
    )


async def scalar(engine: AsyncEngine, sql: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar()


def catalog_csv(n: int, bump: int = 0) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["sku", "name", "reorder_point", "lead_time_days", "on_hand:main",
                     "on_hand:leeds"])  # fmt: skip
    for i in range(n):
        writer.writerow([f"IMP-{i:05d}", f"Import {i}", i % 7, 14, i % 50 + bump, i % 3])
    return out.getvalue()


async def test_ten_thousand_products_with_counts_import_and_again_change_nothing(
    engine: AsyncEngine, database_url: str, clean_db: None
) -> None:
    with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(LEEDS)
    content = catalog_csv(10_000)
    first = await run_import(engine, content)
    assert first.errors == [] and first.applied
    assert (first.rows, first.created, first.updated) == (10_000, 10_000, 0)
    expected_units = sum(i % 50 + i % 3 for i in range(10_000))
    assert first.units_added == expected_units
    assert await scalar(engine, "SELECT sum(on_hand) FROM product") == expected_units
    # The ledger and the per-location levels agree with the product totals.
    assert (
        await scalar(
            engine,
            "SELECT count(*) FROM product p WHERE p.on_hand <> (SELECT COALESCE(sum(quantity), 0) "
            "FROM stock_movement m WHERE m.sku = p.sku) OR p.on_hand <> (SELECT "
            "COALESCE(sum(on_hand), 0) FROM stock_level s WHERE s.sku = p.sku)",
        )
        == 0
    )
    assert await scalar(engine, "SELECT on_hand FROM stock_level WHERE sku = 'IMP-00052' "
                        "AND location = 'leeds'") == 1  # fmt: skip
    movements = await scalar(engine, "SELECT count(*) FROM stock_movement")

    again = await run_import(engine, content)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 10_000)
    assert (again.stock_counts_changed, again.units_added, again.units_removed) == (0, 0, 0)
    assert await scalar(engine, "SELECT count(*) FROM stock_movement") == movements

    recount = await run_import(engine, catalog_csv(3, bump=2))  # 2 more units on 3 shelves
    assert (recount.stock_counts_changed, recount.units_added) == (3, 6)


async def test_a_count_books_the_difference_and_fills_the_queue(
    client: Any, engine: AsyncEngine
) -> None:
    await client.put("/v1/products/IMP-Q", json={"name": "Q"}, headers=OPS)
    await client.post("/v1/products/IMP-Q/restocks", json={"quantity": 4}, headers=OPS)
    body = {"customer_id": "c-wait", "lines": [{"sku": "IMP-Q", "quantity": 7}]}
    order = (await client.post("/v1/orders", json=body, headers=OPS)).json()
    summary = await run_import(engine, "sku,on_hand\nIMP-Q,10\n")
    assert (summary.units_added, summary.unchanged) == (6, 0)
    product = (await client.get("/v1/products/IMP-Q", headers=OPS)).json()
    assert (product["on_hand"], product["allocated"], product["backordered"]) == (10, 7, 0)
    assert (await client.get(f"/v1/orders/{order['id']}", headers=OPS)).json()["status"] == (
        "allocated"
    )
    moves = (await client.get("/v1/products/IMP-Q/movements", headers=OPS)).json()["data"]
    assert [(m["kind"], m["quantity"]) for m in moves] == [("restock", 4), ("adjustment", 6)]
    # A count below what is allocated there would strand allocations: refused, named.
    refused = await run_import(engine, "sku,on_hand\nIMP-Q,3\n")
    assert not refused.applied
    assert [str(e) for e in refused.errors] == [
        "line 2, column on_hand: 7 units are allocated there"
    ]


async def test_a_file_with_one_bad_row_applies_nothing_and_names_it(
    engine: AsyncEngine, database_url: str, clean_db: None, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path = tmp_path / "catalog.csv"
    path.write_text(
        "sku,name,reorder_point,on_hand\n"
        "BAD-1,One,5,10\n"
        "BAD-2,Two,5,10\n"
        "BAD-3,Three,five,10\n"
        "BAD-4,Four,5,10\n"
    )
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await _cli(["import", "products", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: line 4, column reorder_point: must be a whole number" in err
    assert "nothing imported" in err
    assert await scalar(engine, "SELECT count(*) FROM product") == 0

    assert await _cli(["import", "products", str(path), "--skip-bad-rows"]) == 0
    out = capsys.readouterr().out
    assert "4 rows, 3 created" in out and "1 bad rows skipped" in out
    assert await scalar(engine, "SELECT string_agg(sku, ',' ORDER BY sku) FROM product") == (
        "BAD-1,BAD-2,BAD-4"
    )


async def test_every_bad_cell_and_header_is_reported(engine: AsyncEngine, clean_db: None) -> None:
    summary = await run_import(engine, "sku,name,colour\nA,x,red\n")
    assert [str(e) for e in summary.errors] == ["line 1, column colour: unknown column"]
    summary = await run_import(
        engine,
        "sku,name,allocation_strategy,alternatives,on_hand:nowhere\n"
        "ok-1,,fifo,,\n"
        "bad sku,x,fifo,,\n"
        "ok-2,x,lifo,NOPE ok-2,1\n",
    )
    assert [str(e) for e in summary.errors] == [
        "line 1, column on_hand:nowhere: unknown location 'nowhere'",
        "line 2, column name: required for a new product",
        "line 3, column sku: must be 1-64 characters of A-Z a-z 0-9 . _ -",
        "line 4, column allocation_strategy: must be fifo or priority",
        "line 4, column alternatives: names the product itself",
    ]
    assert not summary.applied


async def _cli(argv: list[str]) -> int:
    import asyncio

    # The CLI runs its own event loop: off this test's loop, in a thread.
    return await asyncio.to_thread(cli.main, argv)


async def test_purchase_orders_import_once_and_bad_rows_are_named(
    client: Any, engine: AsyncEngine, database_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    await client.put("/v1/products/IMP-PO", json={"name": "PO"}, headers=OPS)
    day = (datetime.now(UTC).date() + timedelta(days=9)).isoformat()
    path = tmp_path / "pos.csv"
    path.write_text(
        f"sku,quantity,expected_date,reference\nIMP-PO,40,{day},PO-1\nIMP-PO,60,{day},PO-2\n"
    )
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await _cli(["import", "purchase-orders", str(path)]) == 0
    assert "2 rows, 2 created" in capsys.readouterr().out
    assert await _cli(["import", "purchase-orders", str(path)]) == 0
    assert "0 created, 2 already imported" in capsys.readouterr().out
    assert (await client.get("/v1/products/IMP-PO", headers=OPS)).json()["incoming"] == 100

    path.write_text(f"sku,quantity,expected_date\nIMP-PO,5,{day}\nIMP-PO,0,2001-01-01\n")
    assert await _cli(["import", "purchase-orders", str(path)]) == 1
    err = capsys.readouterr().err
    assert "line 3, column quantity: must be 1 to 1,000,000" in err
    assert "line 3, column expected_date:" in err
    assert (await client.get("/v1/products/IMP-PO", headers=OPS)).json()["incoming"] == 100
