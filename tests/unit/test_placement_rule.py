"""The placement rule (`domain.placement.split_lines`) without a database: the split of each
line and which refusal wins when several apply."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from backorder.domain.errors import (
    BackorderLimitExceeded,
    Discontinued,
    DomainError,
    InsufficientStock,
    UnknownSku,
)
from backorder.domain.placement import LineRequest, LineSplit, split_lines


@dataclass
class Product:
    available: int = 0
    backordered: int = 0
    backorders_allowed: bool = True
    backorder_limit: int | None = None
    discontinued: bool = False


def test_a_line_takes_what_is_available_and_the_rest_waits() -> None:
    splits = split_lines([LineRequest("A", 5)], {"A": Product(available=3)})
    assert splits == [LineSplit("A", 5, allocated=3, backordered=2)]


def test_cancel_rest_cancels_what_stock_cannot_cover_even_without_backorders() -> None:
    product = Product(available=1, backorders_allowed=False)
    splits = split_lines([LineRequest("A", 4)], {"A": product}, backorder="cancel_rest")
    assert splits == [LineSplit("A", 4, allocated=1, backordered=0, cancelled=3)]


@pytest.mark.parametrize(
    ("products", "refusal"),
    [
        ({"B": Product(discontinued=True, backorders_allowed=False)}, UnknownSku),
        (
            {"A": Product(discontinued=True), "B": Product(backorders_allowed=False)},
            Discontinued,
        ),
        (
            {"A": Product(backorders_allowed=False), "B": Product(backorder_limit=0)},
            InsufficientStock,
        ),
        ({"A": Product(backorder_limit=1), "B": Product(available=9)}, BackorderLimitExceeded),
    ],
)
def test_the_first_refusal_in_precedence_turns_the_order_away_whole(
    products: dict[str, Product], refusal: type[DomainError]
) -> None:
    with pytest.raises(DomainError) as raised:
        split_lines([LineRequest("A", 2), LineRequest("B", 2)], products)
    assert type(raised.value) is refusal


def test_a_limit_refusal_says_how_much_room_is_left_in_the_backorder() -> None:
    product = Product(available=0, backordered=3, backorder_limit=4)
    with pytest.raises(BackorderLimitExceeded) as raised:
        split_lines([LineRequest("A", 2)], {"A": product})
    assert raised.value.extra["lines"] == [
        {"sku": "A", "requested": 2, "available": 0, "backorder_capacity": 1}
    ]
