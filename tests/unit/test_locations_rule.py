"""Properties of the cross-location rules (`domain.locations`), against the words of the
contract (API.md, "Wave 2: locations"): where a new line's units are taken, how a fill's
units are handed out per location, and which location a partly cancelled line gives back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from backorder.domain.locations import (
    LocationStock,
    allocate_line,
    fill_segments,
    release_order,
    split_fill,
)
from tests.support.network import naive_allocation, naive_segments, naive_split

CODES = ["a", "b", "c", "main", "z"]


@st.composite
def networks(draw: st.DrawFn) -> list[LocationStock]:
    """One SKU's stock at a few locations: ranks with ties, some inactive, some empty."""
    codes = draw(st.lists(st.sampled_from(CODES), min_size=0, max_size=5, unique=True))
    out = []
    for code in codes:
        on_hand = draw(st.integers(0, 12))
        out.append(
            LocationStock(
                location=code,
                rank=draw(st.sampled_from([0, 10, 100, 100, 1000])),
                active=draw(st.booleans() | st.just(True)),
                on_hand=on_hand,
                allocated=draw(st.integers(0, on_hand)),
            )
        )
    return out


preferences = st.none() | st.sampled_from([*CODES, "elsewhere"])


@given(stock=networks(), quantity=st.integers(0, 40), preferred=preferences)
def test_a_line_takes_exactly_what_it_can_and_never_more_than_a_location_has(
    stock: list[LocationStock], quantity: int, preferred: str | None
) -> None:
    taken = allocate_line(quantity, stock, preferred)
    by_code = {s.location: s for s in stock}
    assert sum(n for _, n in taken) == min(quantity, sum(s.available for s in stock))
    assert len({c for c, _ in taken}) == len(taken)  # each location once
    for code, n in taken:
        assert n > 0
        assert by_code[code].active
        assert n <= by_code[code].available


@given(stock=networks(), quantity=st.integers(1, 40), preferred=st.sampled_from(CODES))
def test_the_preferred_location_gives_first_when_it_is_active(
    stock: list[LocationStock], quantity: int, preferred: str
) -> None:
    taken = allocate_line(quantity, stock, preferred)
    own = next((s for s in stock if s.location == preferred), None)
    if own is not None and own.available > 0:
        assert taken[0] == (preferred, min(quantity, own.available))
    else:
        assert preferred not in {c for c, _ in taken}
        assert taken == allocate_line(quantity, stock, None)


@given(stock=networks(), quantity=st.integers(1, 40))
def test_one_location_serves_a_line_it_can_cover_the_best_ranked_of_them(
    stock: list[LocationStock], quantity: int
) -> None:
    covering = sorted(
        (s for s in stock if s.available >= quantity), key=lambda s: (s.rank, s.location)
    )
    taken = allocate_line(quantity, stock)
    if covering:
        assert taken == [(covering[0].location, quantity)]
    else:
        # No location covers it: by rank, then code, each taking all it has but the last.
        ranked = sorted((s for s in stock if s.available > 0), key=lambda s: (s.rank, s.location))
        assert [c for c, _ in taken] == [s.location for s in ranked][: len(taken)]
        assert all(n == ranked[i].available for i, (_, n) in enumerate(taken[:-1]))


@given(stock=networks(), quantity=st.integers(0, 40), preferred=preferences)
def test_allocate_line_is_the_contracts_sentence(
    stock: list[LocationStock], quantity: int, preferred: str | None
) -> None:
    assert allocate_line(quantity, stock, preferred) == naive_allocation(quantity, stock, preferred)


@given(stock=networks(), data=st.data())
def test_a_fill_hands_out_active_units_by_rank_then_code_head_first(
    stock: list[LocationStock], data: st.DataObject
) -> None:
    segments = fill_segments(stock)
    assert segments == naive_segments(stock)
    total = sum(n for _, n in segments)
    takes = data.draw(st.lists(st.integers(1, 9)).filter(lambda t: sum(t) <= total))
    split = split_fill(takes, segments)
    assert split == naive_split(takes, segments)
    assert [sum(n for _, n in parts) for parts in split] == takes
    given_out: dict[str, int] = {}
    for parts in split:
        for code, n in parts:
            given_out[code] = given_out.get(code, 0) + n
    assert all(given_out[code] <= n for code, n in segments if code in given_out)


@given(
    held=st.lists(
        st.tuples(st.sampled_from(CODES), st.sampled_from([0, 10, 100]), st.integers(1, 5)),
        unique_by=lambda t: t[0],
    )
)
def test_a_partly_cancelled_line_gives_back_its_least_preferred_units_first(
    held: list[tuple[str, int, int]],
) -> None:
    order = release_order(held)
    assert order == [c for c, _, _ in sorted(held, key=lambda t: (t[1], t[0]))][::-1]
