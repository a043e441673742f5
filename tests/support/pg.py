"""Waiting on PostgreSQL's own views (`pg_stat_activity`) in tests, rather than on guessed
sleeps: a query is polled until its rows say the awaited state has been reached."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

Rows = list[dict[str, Any]]


def wait_until(
    database_url: str,
    sql: str,
    params: Sequence[Any] = (),
    *,
    done: Callable[[Rows], bool],
    timeout_s: float = 15.0,
    interval_s: float = 0.1,
) -> None:
    """Poll `sql` until `done(rows)`; past `timeout_s`, fail showing the last rows."""
    plain = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(plain, autocommit=True, row_factory=dict_row) as conn:
        while True:
            rows = conn.execute(sql, params).fetchall()
            if done(rows):
                return
            assert time.monotonic() < deadline, rows
            time.sleep(interval_s)
