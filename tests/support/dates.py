"""Dates relative to today (UTC), for tests that must keep passing as the calendar moves on:
a purchase order's `expected_date` may only run from today to five years on."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def today() -> date:
    return datetime.now(UTC).date()


def days_ahead(days: int) -> str:
    """Today plus `days` (negative: in the past), as YYYY-MM-DD."""
    return (today() + timedelta(days=days)).isoformat()
