"""Backorder deadlines: when a waiting line is at risk of missing its order's deadline.

A line is at risk while it waits (backordered units) and its promise date is unknown or later
than the deadline's date in UTC: the customer was told "not after the deadline", and nothing
promised keeps that. `db/promises.py` applies the same rule in SQL (`AT_RISK_SQL`; a test keeps
the two equal) to announce the lines that become at risk.
"""

from __future__ import annotations

from datetime import UTC, date, datetime


def deadline_day(deadline: datetime) -> date:
    """The date a deadline falls on, in UTC (what promise dates are compared with)."""
    return deadline.astimezone(UTC).date()


def at_risk(backordered: int, expected_date: date | None, deadline: datetime | None) -> bool:
    if deadline is None or backordered <= 0:
        return False
    return expected_date is None or expected_date > deadline_day(deadline)
