"""Rules of purchase orders that need no database: which expected dates a PO may carry.

A PO's date becomes customers' promise dates, so a date in the past (a promise already broken)
or absurdly far ahead (year 9999, a typo) is refused. "5 years ahead" is calendar years: the
latest accepted date is today's date five years on (29 February five years on, which does not
exist, is 28 February).
"""

from __future__ import annotations

from datetime import date

YEARS_AHEAD = 5


def latest_expected_date(today: date) -> date:
    try:
        return today.replace(year=today.year + YEARS_AHEAD)
    except ValueError:  # 29 February, and the year five on is not a leap year
        return today.replace(year=today.year + YEARS_AHEAD, day=28)


def expected_date_refusal(value: date, today: date) -> str | None:
    """Why `value` may not be a PO's expected date on `today` (UTC), or None if it may."""
    if value < today:
        return f"must not be before today ({today.isoformat()}, UTC)"
    latest = latest_expected_date(today)
    if value > latest:
        return f"must be at most {YEARS_AHEAD} years ahead (latest {latest.isoformat()})"
    return None
