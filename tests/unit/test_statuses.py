"""Order status, backorder type and readiness against the formulas of docs/reference.md
("Statuses")."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from backorder.domain.orders import (
    ShipPolicy,
    Units,
    backorder_type_of,
    ready_to_ship,
    status_of,
    total,
)
from backorder.domain.products import product_status


@st.composite
def units(draw: st.DrawFn) -> Units:
    a, o, s, c = (draw(st.integers(0, 5)) for _ in range(4))
    if a + o + s + c == 0:
        c = 1
    return Units(a + o + s + c, a, o, s, c)


policies = st.sampled_from(list(ShipPolicy))


def contract_status(u: Units) -> str:
    o, a, s = u.backordered, u.allocated, u.shipped
    if u.cancelled == u.quantity:
        return "cancelled"
    if s > 0 and o == 0 and a == 0:
        return "shipped"
    if s > 0:
        return "partially_shipped"
    if o == 0 and a > 0:
        return "allocated"
    if o > 0 and a > 0:
        return "partially_backordered"
    return "backordered"


def contract_backorder_type(u: Units, policy: ShipPolicy) -> str:
    o, a, s = u.backordered, u.allocated, u.shipped
    if o == 0:
        return "none"
    if a + s == 0 or (policy == ShipPolicy.COMPLETE and s == 0):
        return "full"
    return "partial"


@given(units())
def test_status_follows_the_contract(u: Units) -> None:
    assert status_of(u).value == contract_status(u)


@given(units(), policies)
def test_backorder_type_follows_the_contract(u: Units, policy: ShipPolicy) -> None:
    assert backorder_type_of(u, policy).value == contract_backorder_type(u, policy)


@given(units(), policies)
def test_ready_to_ship_follows_the_contract(u: Units, policy: ShipPolicy) -> None:
    expected = u.allocated > 0 and (policy == ShipPolicy.PARTIAL or u.backordered == 0)
    assert ready_to_ship(u, policy) is expected


@given(st.lists(units(), min_size=1, max_size=5), policies)
def test_order_figures_are_line_sums(lines: list[Units], policy: ShipPolicy) -> None:
    t = total(lines)
    assert t.quantity == t.allocated + t.backordered + t.shipped + t.cancelled
    assert t.backordered == sum(x.backordered for x in lines)
    assert status_of(t).value == contract_status(t)
    assert backorder_type_of(t, policy).value == contract_backorder_type(t, policy)


def test_the_examples_of_the_contract() -> None:
    partial = Units(100, 80, 20, 0, 0)
    assert status_of(partial).value == "partially_backordered"
    assert backorder_type_of(partial, ShipPolicy.PARTIAL).value == "partial"
    assert ready_to_ship(partial, ShipPolicy.PARTIAL)
    assert backorder_type_of(partial, ShipPolicy.COMPLETE).value == "full"
    assert not ready_to_ship(partial, ShipPolicy.COMPLETE)
    shipped_some = Units(10, 0, 2, 8, 0)
    assert backorder_type_of(shipped_some, ShipPolicy.COMPLETE).value == "partial"


@given(
    st.integers(-5, 30),
    st.one_of(st.none(), st.integers(0, 20)),
    st.booleans(),
    st.booleans(),
)
def test_product_status_follows_the_contract(
    available: int, reorder_point: int | None, allowed: bool, discontinued: bool
) -> None:
    if discontinued:
        expected = "discontinued"
    elif available > (reorder_point if reorder_point is not None else 0):
        expected = "in_stock"
    elif available > 0:
        expected = "low_stock"
    else:
        expected = "backorder" if allowed else "out_of_stock"
    got = product_status(
        available=available,
        reorder_point=reorder_point,
        backorders_allowed=allowed,
        discontinued=discontinued,
    )
    assert got.value == expected
