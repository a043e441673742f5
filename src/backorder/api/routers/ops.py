"""Health and readiness probes (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy import text
from starlette.responses import Response

from backorder.api.docs import example, problems
from backorder.api.execute import json_response
from backorder.api.problems import problem_body, problem_response, request_id_of
from backorder.api.schemas import examples
from backorder.api.strict_query import check_query_string
from backorder.db.engine import current_revision

# No key here, so no `authenticate` to judge the query string: the router does.
router = APIRouter(tags=["Operations"], dependencies=[Depends(check_query_string)])


@router.get(
    "/healthz",
    responses=example(200, examples.HEALTHZ, "The process is up."),
    summary="Liveness: the process is up",
    description="Answers 200 while the process runs; touches no database.",
)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _without_body(response: Response) -> Response:
    """A HEAD answer: the GET's status and headers (its Content-Length included), no body."""
    return Response(status_code=response.status_code, headers=dict(response.headers))


@router.head(
    "/healthz",
    response_class=Response,
    summary="Liveness, headers only",
    description="As `GET /healthz` without the body: for probes that send `HEAD`.",
    responses={200: {"description": "The process is up."}},
)
async def healthz_head() -> Response:
    return _without_body(json_response(await healthz()))


@router.get(
    "/readyz",
    summary="Readiness: database reachable, migrations current",
    description="200 when PostgreSQL answers and the schema is at the newest migration; "
    "503 `retry_later` otherwise, so a load balancer stops sending traffic.",
    responses={
        **example(200, examples.READYZ, "Ready: `migration` is the schema's revision."),
        **problems(503, always=()),  # no key, no parameters: only "not ready" can go wrong
    },
)
async def readyz(request: Request) -> Response:
    engine = request.app.state.engine
    expected = request.app.state.head_revision
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            revision = await current_revision(conn)
    except Exception as exc:
        body = problem_body(
            503,
            "retry_later",
            f"database unreachable: {type(exc).__name__}",
            request_id=request_id_of(request),
        )
        return problem_response(body, {"Retry-After": "2"})
    if revision != expected:
        body = problem_body(
            503,
            "retry_later",
            f"schema at {revision}, expected {expected}: run `backorder migrate`",
            request_id=request_id_of(request),
        )
        return problem_response(body, {"Retry-After": "5"})
    return json_response({"status": "ready", "database": "ok", "migration": revision})


@router.head(
    "/readyz",
    response_class=Response,
    summary="Readiness, headers only",
    description="As `GET /readyz` without the body: 200 when ready, 503 (with `Retry-After`) "
    "when not.",
    # The headers of a HEAD describe the body a GET would have: a problem's, when not ready.
    responses={200: {"description": "Ready."}, **problems(503, always=())},
)
async def readyz_head(request: Request) -> Response:
    return _without_body(await readyz(request))
