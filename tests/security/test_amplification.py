"""A request cannot buy an answer (or a stored copy of one) many times its own size."""

from __future__ import annotations

import time
from typing import Any

import orjson
import psycopg
from httpx import AsyncClient

from backorder.api import execute
from backorder.api.problems import MAX_ERRORS
from tests.conftest import _plain
from tests.support.api import OPS, assert_problem


def bad_lines(count: int) -> list[dict[str, Any]]:
    return [{"sku": "!", "quantity": 0}] * count


async def test_a_38000_line_body_is_refused_cheaply(client: AsyncClient, database_url: str) -> None:
    body = orjson.dumps({"customer_id": "c-1", "lines": bad_lines(38_000)})
    assert 900_000 < len(body) < 1_000_000  # under the body limit: it reaches validation
    headers = {**OPS, "Idempotency-Key": "amplify-1", "Content-Type": "application/json"}
    started = time.process_time()
    r = await client.post("/v1/orders", content=body, headers=headers)
    cpu_s = time.process_time() - started
    problem = assert_problem(r, 422, "validation_error")
    assert [e["field"] for e in problem["errors"]] == ["lines"]
    # At most the cap of this process's apps (500 here; the largest any test configured).
    assert problem["errors"][0]["msg"].endswith("lines, not 38000")
    assert len(r.content) < 2_000
    assert cpu_s < 0.25, f"{cpu_s:.2f} s of CPU to refuse it"  # was 0.5 s and 76,000 errors
    with psycopg.connect(_plain(database_url)) as conn:
        row = conn.execute("SELECT length(response_body) FROM idempotency_key").fetchone()
    assert row is not None and row[0] < 2_000


async def test_errors_are_capped_with_a_count_of_the_rest(client: AsyncClient) -> None:
    r = await client.post(
        "/v1/orders", json={"customer_id": "c-1", "lines": bad_lines(400)}, headers=OPS
    )
    problem = assert_problem(r, 422, "validation_error")
    assert len(problem["errors"]) == MAX_ERRORS == 50
    assert problem["errors_omitted"] == 400 * 2 - 50  # a bad SKU and a bad quantity a line
    assert len(r.content) < 12_000


def test_an_idempotent_answer_over_the_cap_is_stored_as_a_short_note() -> None:
    body = {"allocations": [{"order_id": "o", "quantity": 1}] * 60_000}
    payload = execute.dumps(body)
    assert len(payload) > execute.MAX_STORED_ANSWER_BYTES
    kept = execute.storable(201, body, payload, ())
    assert len(kept) < 1_000
    assert orjson.loads(kept)["replay_truncated"] is True
    small = {"id": "k", "key": "bo_secret"}
    assert execute.storable(201, small, execute.dumps(small), ()) == execute.dumps(small)
