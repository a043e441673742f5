"""Concurrency tests run against a real `backorder serve --workers 2` over TCP."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import truncate_all
from tests.support.live import live_server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("BACKORDER_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="slow soak test: set BACKORDER_SOAK=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def live_url(database_url: str) -> Iterator[str]:
    with live_server(database_url, workers=2) as url:
        yield url


@pytest.fixture(autouse=True)
def _clean_tables(database_url: str) -> None:
    truncate_all(database_url)


@pytest.fixture
def soak(request: pytest.FixtureRequest) -> bool:
    """Whether this run is a soak variant (marked slow): its seed and size then come from
    BACKORDER_SOAK_SEED and BACKORDER_SOAK_SCALE (`tests/support/figures.py`)."""
    return request.node.get_closest_marker("slow") is not None
