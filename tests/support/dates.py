"""Dates relative to today (UTC), for tests that must keep passing as the calendar moves on:
a purchase order's `expected_date` may only run from today to five years on."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def today() -> date:
    return datetime.now(UTC).date()


def days_ahead(days: int) -> str:
    """Today plus `days` (negative: in the past), as YYYY-MM-DD."""
    return (today() + timedelta(days=days)).isoformat()


WRITTEN_IN = 2026  # the year the tests' literal dates were written in (on 6 December)


def years_on(day: str) -> str:
    """A literal date of a test written in 2026 (from 2027-01-01 to 2030-12-06), moved on by the
    whole years passed since: it stays ahead of today and within five years, and the dates of
    one test keep their order and gaps (in days, give or take a leap day)."""
    moved = date.fromisoformat(day)
    return moved.replace(year=moved.year + today().year - WRITTEN_IN).isoformat()
