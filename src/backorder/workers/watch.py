"""The loop of a watch over the clock (overdue purchase orders, passed deadlines): a pass at
start, so a service that was down catches up at once, then one every interval, until stopped.

A failed pass (the database away, a bug in one pass) is logged and the next one waits twice as
long as the last, up to `ERROR_PAUSE_CAP_S`; a pass that succeeds resets the pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

ERROR_PAUSE_CAP_S = 300.0


async def watch(
    stop: asyncio.Event,
    interval_s: float,
    one_pass: Callable[[], Awaitable[int]],
    *,
    log: logging.Logger,
    done: str,
    figure: str,
    failed: str,
) -> None:
    """Run `one_pass` until `stop` is set (returns promptly once it is). A pass that did
    something logs `done` with its count as `figure`; a pass that raised logs `failed`."""
    errors = 0
    while not stop.is_set():
        pause = interval_s
        try:
            count = await one_pass()
            errors = 0
            if count:
                log.info(done, extra={figure: count})
        except Exception:  # the loop outlives a database outage or a bug in one pass
            errors += 1
            log.exception(failed)
            pause = min(ERROR_PAUSE_CAP_S, pause * 2**errors)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=pause)
