"""Properties of the fill rule (`domain.allocation`), against the words of the contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from backorder.domain.allocation import (
    AllocationStrategy,
    WaitingLine,
    fill,
    queue_order,
    take_now,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def waiting_lines(draw: st.DrawFn) -> list[WaitingLine]:
    n = draw(st.integers(0, 12))
    ids = draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
    return [
        WaitingLine(
            line_id=UUID(int=i),
            order_id=UUID(int=10**6 + i),
            backordered=draw(st.integers(1, 20)),
            priority=draw(st.integers(0, 9)),
            created_at=T0 + timedelta(seconds=draw(st.integers(0, 4))),  # many ties
        )
        for i in ids
    ]


strategies = st.sampled_from(list(AllocationStrategy))


def _contract_order(lines: list[WaitingLine], strategy: AllocationStrategy) -> list[WaitingLine]:
    """Queue order in the words of docs/reference.md ("The queue and the fill rule"), written
    independently of `queue_key`."""
    if strategy == AllocationStrategy.FIFO:
        return sorted(lines, key=lambda x: (x.created_at, x.line_id))
    return sorted(lines, key=lambda x: (-x.priority, x.created_at, x.line_id))


@given(waiting_lines(), st.integers(0, 300), strategies)
def test_fill_gives_units_to_the_head_first_and_only_the_last_line_reached_partly(
    lines: list[WaitingLine], units: int, strategy: AllocationStrategy
) -> None:
    allocations = fill(lines, units, strategy)
    ordered = _contract_order(lines, strategy)
    waiting = sum(x.backordered for x in lines)
    assert sum(a.quantity for a in allocations) == min(units, waiting)
    # allocations are a prefix of the queue, in queue order
    assert [a.line_id for a in allocations] == [x.line_id for x in ordered[: len(allocations)]]
    for a, line in zip(allocations, ordered, strict=False):
        assert a.order_id == line.order_id
        assert 0 < a.quantity <= line.backordered
    # every line but the last reached is filled whole
    for a, line in zip(allocations[:-1], ordered, strict=False):
        assert a.quantity == line.backordered


@given(waiting_lines(), strategies)
def test_queue_order_follows_the_contract(
    lines: list[WaitingLine], strategy: AllocationStrategy
) -> None:
    assert queue_order(lines, strategy) == _contract_order(lines, strategy)


@given(waiting_lines(), st.integers(0, 100), st.integers(0, 100), strategies)
def test_filling_in_two_steps_equals_filling_at_once(
    lines: list[WaitingLine], first: int, second: int, strategy: AllocationStrategy
) -> None:
    step1 = fill(lines, first, strategy)
    took = {a.line_id: a.quantity for a in step1}
    rest = [
        WaitingLine(
            x.line_id, x.order_id, x.backordered - took.get(x.line_id, 0), x.priority, x.created_at
        )
        for x in lines
        if x.backordered > took.get(x.line_id, 0)
    ]
    step2 = fill(rest, second, strategy)
    combined: dict[UUID, int] = {}
    for a in [*step1, *step2]:
        combined[a.line_id] = combined.get(a.line_id, 0) + a.quantity
    once = {a.line_id: a.quantity for a in fill(lines, first + second, strategy)}
    assert combined == once


@given(st.integers(1, 1_000_000), st.integers(-50, 1_000_000))
def test_take_now_splits_a_line_into_available_and_backordered(
    requested: int, available: int
) -> None:
    allocated, backordered = take_now(requested, available)
    assert allocated + backordered == requested
    assert allocated == max(0, min(requested, available))
    assert backordered >= 0


def test_a_hundred_with_eighty_available_is_eighty_and_twenty() -> None:
    assert take_now(100, 80) == (80, 20)
    assert take_now(5, 0) == (0, 5)
    assert take_now(5, -3) == (0, 5)
