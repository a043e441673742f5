"""`backorder serve | migrate | api-key create|list|revoke | worker`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

from pydantic import ValidationError

from backorder.config import Settings
from backorder.embedded import DataDirBusy, EmbeddedDatabase, EmbeddedUnsafe, master_key, start
from backorder.logging import configure as configure_logging

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")


@contextmanager
def database(settings: Settings, *, exclusive: bool) -> Iterator[tuple[Settings, bool]]:
    """Settings with a database URL: the configured one, or the embedded server's."""
    if settings.database_url:
        yield settings, False
        return
    embedded: EmbeddedDatabase = start(settings.data_dir, exclusive=exclusive)
    os.environ["DATABASE_URL"] = embedded.url
    try:
        yield Settings(), True
    finally:
        # `serve` owns the embedded server and stops it on exit; one-shot commands leave a
        # server they joined running.
        if exclusive or embedded.started_here:
            embedded.stop()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from backorder.api.protocol import MAX_HEAD_BYTES
    from backorder.db.engine import migrate
    from backorder.metrics import multiprocess_directory

    settings = Settings()
    # uvicorn re-raises SIGTERM once it has shut down; turning it into an exception lets the
    # `finally` blocks run, so the embedded PostgreSQL is stopped cleanly too.
    signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        with database(settings, exclusive=True) as (settings, embedded):
            generated = False
            chosen = settings.master_key_value is not None  # the operator's: never printed
            if not chosen and embedded:
                key, generated = master_key(settings.data_dir)
                os.environ["BACKORDER_MASTER_KEY"] = key
                settings = Settings()
            migrate(settings.require_database_url())
            base = f"http://{args.host}:{args.port}"
            print(f"backorder: Swagger UI at {base}/docs  (ReDoc {base}/redoc)", flush=True)
            if embedded:
                print(
                    f"backorder: embedded PostgreSQL in {settings.data_dir.resolve()}", flush=True
                )
            if chosen:
                print("backorder: master key: the one in BACKORDER_MASTER_KEY", flush=True)
            elif generated:
                # Printed once, when made: later starts' output (often kept in logs) never
                # carries it.
                print(
                    f"backorder: master key (generated now): {settings.master_key_value}",
                    flush=True,
                )
            elif settings.master_key_value:
                where = (settings.data_dir / "master_key").resolve()
                print(f"backorder: master key: the one kept in {where}", flush=True)
            else:
                print(
                    "backorder: no BACKORDER_MASTER_KEY set: create keys with "
                    "`backorder api-key create`",
                    flush=True,
                )
            # Each worker enforces its share of the per-key rate limit, so it must know how
            # many there are (the app reads `worker_processes` in each one).
            os.environ["BACKORDER_WORKER_PROCESSES"] = str(args.workers)
            # Workers are spawned processes: they inherit PROMETHEUS_MULTIPROC_DIR from here
            # and share their metrics through it. `log_config=None`: uvicorn's loggers go
            # through our handler (JSON or text), in this process and in each worker.
            with multiprocess_directory(args.workers):
                uvicorn.run(
                    "backorder.api.app:app_from_env",
                    factory=True,
                    host=args.host,
                    port=args.port,
                    workers=args.workers,
                    log_level=settings.log_level.lower(),
                    log_config=None,
                    access_log=False,
                    loop="uvloop",
                    # httptools with a bound on request heads (httptools has none of its
                    # own), and h11's limit set to the same should anyone switch to it.
                    http="backorder.api.protocol:BoundedHttpToolsProtocol",
                    h11_max_incomplete_event_size=MAX_HEAD_BYTES,
                    # Past this many connections and requests in a worker, uvicorn answers 503
                    # at once instead of queueing without bound on the pool.
                    limit_concurrency=settings.limit_concurrency,
                    server_header=False,
                    timeout_graceful_shutdown=10,
                    # Longer than load balancers' and clients' idle timeouts, so a pooled
                    # connection is never closed under a request that is being sent.
                    timeout_keep_alive=75,
                )
    except (KeyboardInterrupt, _Stopped):
        pass  # uvicorn has shut down gracefully; the embedded server was stopped above
    return 0


class _Stopped(Exception):
    """SIGTERM, re-raised by uvicorn after its graceful shutdown."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped


def cmd_migrate(args: argparse.Namespace) -> int:
    from backorder.db.engine import migrate

    with database(Settings(), exclusive=False) as (settings, _):
        migrate(settings.require_database_url())
        print("backorder: schema is at the newest migration")
    return 0


def _in_transaction(work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work` in one transaction on the configured (or embedded) database, migrated."""
    from backorder.db.engine import make_engine, migrate, run_transaction

    with database(Settings(), exclusive=False) as (settings, _):
        migrate(settings.require_database_url())

        async def run() -> T:
            engine = make_engine(settings)
            try:
                return await run_transaction(engine, work)
            finally:
                await engine.dispose()

        return asyncio.run(run())


def _name(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be blank")
    return value


def cmd_api_key_create(args: argparse.Namespace) -> int:
    from backorder.db import keys

    row, secret = _in_transaction(lambda conn: keys.create_key(conn, args.name, args.role))
    print(f"id:   {row.id}\nname: {row.name}\nrole: {row.role}\nkey:  {secret}")
    print("(the key is shown once; it is stored only as a hash)", file=sys.stderr)
    return 0


def cmd_api_key_list(args: argparse.Namespace) -> int:
    """Active keys, oldest id first, as a table (never their secrets)."""
    from backorder.db import keys

    async def every_key(conn: AsyncConnection) -> list[keys.ApiKeyRow]:
        rows: list[keys.ApiKeyRow] = []
        while batch := await keys.list_keys(conn, 500, rows[-1].id if rows else None):
            rows.extend(batch)
        return rows

    rows = _in_transaction(every_key)
    table = [("ID", "NAME", "ROLE", "PREFIX", "CREATED", "LAST USED")]
    for row in rows:
        used = row.last_used_at.isoformat(timespec="seconds") if row.last_used_at else "never"
        created = row.created_at.isoformat(timespec="seconds")
        table.append((str(row.id), row.name, row.role, row.prefix, created, used))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0


def cmd_api_key_revoke(args: argparse.Namespace) -> int:
    from backorder.db import keys

    if not _in_transaction(lambda conn: keys.revoke(conn, args.id)):
        print(f"backorder: no active API key {args.id}", file=sys.stderr)
        return 1
    print(f"revoked {args.id}: it answers 401 from now on")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """The background work without the API: webhook delivery, the overdue purchase-order watch,
    the expiry of backorders past their deadline and the purge of expired idempotency keys
    (then run `serve` with BACKORDER_WEBHOOK_WORKER=false, BACKORDER_OVERDUE_WORKER=false and
    BACKORDER_EXPIRY_WORKER=false, or alongside it: every loop claims its work, so any number
    of processes share it safely)."""
    from backorder.db.engine import make_engine, migrate
    from backorder.workers import deadlines as deadline_watch
    from backorder.workers import housekeeping, webhooks
    from backorder.workers import purchase_orders as overdue_watch

    with database(Settings(), exclusive=False) as (settings, _):
        migrate(settings.require_database_url())

        async def work() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            engine = make_engine(settings)
            try:
                print(
                    "backorder: delivering webhooks, watching purchase-order dates and "
                    "backorder deadlines, purging expired idempotency keys (Ctrl-C stops)",
                    flush=True,
                )
                await asyncio.gather(
                    webhooks.run(engine, settings, stop),
                    overdue_watch.run(engine, settings, stop),
                    deadline_watch.run(engine, settings, stop),
                    housekeeping.run(engine, settings, stop),
                )
            finally:
                await engine.dispose()

        asyncio.run(work())
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """`backorder import products|purchase-orders FILE.csv`: check every row, then apply the
    file in one transaction (nothing of it when a row is bad, unless --skip-bad-rows)."""
    import csv

    from rich.progress import Progress

    from backorder.services import imports

    try:
        with open(args.file, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [c.strip() for c in next(reader, [])]
            body = [(reader.line_num, cells) for cells in reader if any(c.strip() for c in cells)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        print(f"backorder: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    with Progress(disable=not sys.stderr.isatty(), transient=True) as bar:
        task = bar.add_task(f"importing {args.file}", total=len(body))

        def advance(n: int) -> None:
            bar.advance(task, n)

        def work(conn: AsyncConnection) -> Awaitable[imports.Summary]:
            bar.reset(task)  # a rerun of the transaction starts the bar again
            if args.what == "products":
                return imports.import_products(
                    conn, header, body, skip_bad_rows=args.skip_bad_rows,
                    source=os.path.basename(args.file)[:255], progress=advance,
                )  # fmt: skip
            return imports.import_purchase_orders(
                conn, header, body, skip_bad_rows=args.skip_bad_rows, progress=advance
            )

        summary = _in_transaction(work)
    for error in summary.errors:
        print(f"{args.file}: {error}", file=sys.stderr)
    if not summary.applied:
        print(f"backorder: {len(summary.errors)} problem(s) in {args.file}: nothing imported "
              "(fix them, or run again with --skip-bad-rows)", file=sys.stderr)  # fmt: skip
        return 1
    figures = [f"{summary.rows} rows", f"{summary.created} created"]
    if args.what == "products":
        figures += [
            f"{summary.updated} updated",
            f"{summary.unchanged} unchanged",
            f"{summary.stock_counts_changed} stock counts changed "
            f"(+{summary.units_added} / -{summary.units_removed} units)",
        ]
    else:
        figures.append(f"{summary.unchanged} already imported")
    if summary.skipped:
        figures.append(f"{summary.skipped} bad rows skipped")
    print(f"backorder: imported {args.file}: " + ", ".join(figures))
    return 0


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backorder", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate, then serve the API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=_positive, default=1, help="worker processes (they share the rate limit)"
    )
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="bring the schema to the newest migration")
    migrate.set_defaults(func=cmd_migrate)

    worker = sub.add_parser(
        "worker",
        help="webhooks, overdue purchase orders, backorder deadlines, key purge: without "
        "serving the API",
    )
    worker.set_defaults(func=cmd_worker)

    api_key = sub.add_parser("api-key", help="manage API keys")
    key_sub = api_key.add_subparsers(dest="key_command", required=True)
    create = key_sub.add_parser("create", help="create a key and print its secret once")
    create.add_argument("--role", choices=["ops", "storefront"], required=True)
    create.add_argument("--name", type=_name, required=True)
    create.set_defaults(func=cmd_api_key_create)
    listing = key_sub.add_parser("list", help="list the active keys (never their secrets)")
    listing.set_defaults(func=cmd_api_key_list)
    revoke = key_sub.add_parser("revoke", help="revoke a key: it answers 401 at once")
    revoke.add_argument("id", type=UUID, help="the key's id, as `api-key list` shows it")
    revoke.set_defaults(func=cmd_api_key_revoke)

    importing = sub.add_parser("import", help="import a CSV file (all rows or none)")
    what = importing.add_subparsers(dest="what", required=True)
    for name, text in (
        ("products", "sku, name, settings, on_hand / on_hand:<location> stock counts"),
        ("purchase-orders", "sku, quantity, expected_date, reference, location"),
    ):
        command = what.add_parser(name, help=f"columns: {text}")
        command.add_argument("file", help="a CSV file with a header row")
        command.add_argument(
            "--skip-bad-rows",
            action="store_true",
            help="import the good rows even when some are bad (those are reported and skipped)",
        )
        command.set_defaults(func=cmd_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        # A setting that would run the service unsafely (or not at all): say which, no trace.
        for error in exc.errors():
            print(f"backorder: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        code: int = args.func(args)
    except (DataDirBusy, EmbeddedUnsafe) as exc:
        print(f"backorder: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
