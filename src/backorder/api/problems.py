"""problem+json (RFC 9457): the one place where errors become HTTP answers."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from backorder.api.schemas.common import NO_NUL, NOT_BLANK, SKU_PATTERN
from backorder.api.schemas.events import URL_PATTERN
from backorder.db.engine import is_unavailable
from backorder.domain.errors import DomainError, RateLimited, RetryLater

log = logging.getLogger("backorder.api")

PROBLEM_TYPE_BASE = "https://backorder.dev/problems/"
_HTTP_CODES = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "retry_later",
}


# A body of many bad items must not buy an answer many times its size (nor a stored copy of
# it under an Idempotency-Key): the first errors name the problem, the rest are counted.
MAX_ERRORS = 50


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def problem_body(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    request_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id,
    }
    body.update(extra)
    return body


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=int(body["status"]),
        media_type="application/problem+json",
        headers=headers,
    )


def domain_problem(exc: DomainError, request_id: str | None) -> dict[str, Any]:
    extra = exc.extra
    errors = extra.get("errors")
    if isinstance(errors, list) and len(errors) > MAX_ERRORS:
        extra = {**extra, "errors": errors[:MAX_ERRORS], "errors_omitted": len(errors) - MAX_ERRORS}
    return problem_body(
        exc.status, exc.code, exc.detail, title=exc.title, request_id=request_id, **extra
    )


def retry_headers(exc: DomainError) -> dict[str, str] | None:
    if isinstance(exc, RetryLater | RateLimited):
        return {"Retry-After": str(exc.retry_after)}
    return None


# Pydantic names the branch of a union an error came from in its `loc` ("literal['a','b']",
# "function-after[...]", "str"): Python's words, not the caller's field.
_BRANCH = re.compile(r"^[a-z-]+\[.*\]$", re.DOTALL)
_SCALAR_BRANCHES = {"str", "int", "float", "bool", "none", "constrained-str", "constrained-int"}
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")

# What each pattern of the schemas means, said to a person instead of the regular expression.
_PATTERNS = {
    NOT_BLANK: "must not be blank or contain NUL characters",
    NO_NUL: "must not contain NUL characters",
    SKU_PATTERN: "must be 1-64 characters of A-Z a-z 0-9 . _ -",
    r"^[A-Za-z0-9._-]+$": "must be 1-64 characters of A-Z a-z 0-9 . _ -",
    URL_PATTERN: "must be an absolute http:// or https:// URL of printable ASCII characters "
    "(percent-encode the rest), with a port (if any) of 1-65535",
    r"^\d+$": "must be a whole number (digits only)",
    r"^[a-z_]+(\.([a-z_]+|\*))?$": "must be an event type (order.created) or a family (order.*)",
}


def _is_branch(part: Any) -> bool:
    return isinstance(part, str) and (part in _SCALAR_BRANCHES or bool(_BRANCH.match(part)))


def _allowed(err: dict[str, Any]) -> list[str]:
    return _QUOTED.findall(str(err.get("ctx", {}).get("expected", "")))


def _message(err: dict[str, Any]) -> str:
    kind = err.get("type")
    ctx = err.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        return _PATTERNS.get(str(ctx.get("pattern")), "is not in the form the schema gives")
    return str(err.get("msg", ""))


def _jsonable_errors(errors: Any) -> list[dict[str, Any]]:
    """Errors as the caller can read them: one per field, the field named by its path in the
    request, enumerations listing their allowed values once, patterns said in words."""
    out: list[dict[str, Any]] = []
    choices: dict[tuple[Any, ...], dict[str, Any]] = {}
    for err in errors:
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ()) if not _is_branch(p)]
        item: dict[str, Any] = {
            "loc": loc,
            "field": ".".join(str(p) for p in loc if p not in ("body", "query", "path")),
            "msg": _message(err),
            "type": str(err.get("type", "")),
        }
        if item["type"] == "literal_error":
            # A union of enumerations fails once per branch: one error, every allowed value.
            key = tuple(loc)
            if key in choices:
                merged = choices[key]["allowed"]
                merged.extend(v for v in _allowed(err) if v not in merged)
                choices[key]["msg"] = "must be one of: " + ", ".join(merged)
                continue
            item["allowed"] = _allowed(err)
            item["msg"] = "must be one of: " + ", ".join(item["allowed"])
            choices[key] = item
        out.append(item)
    return out


def validation_problem(errors: Any, request_id: str | None) -> dict[str, Any]:
    errors = list(errors)
    errs = _jsonable_errors(errors[:MAX_ERRORS])
    if len(errs) <= 3:
        detail = "; ".join(f"{e['field'] or 'body'}: {e['msg']}" for e in errs)
    else:
        detail = ", ".join(sorted({e["field"] or "body" for e in errs}))
    extra: dict[str, Any] = {}
    if len(errors) > MAX_ERRORS:
        extra["errors_omitted"] = len(errors) - MAX_ERRORS
    return problem_body(
        422,
        "validation_error",
        f"invalid request: {detail}",
        title="Validation error",
        request_id=request_id,
        errors=errs,
        **extra,
    )


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def body_problem(exc: RequestValidationError, request: Request) -> dict[str, Any] | None:
    """A request whose body could not be read as JSON at all, said as such: where the JSON
    breaks, or that the Content-Type is missing or not JSON (FastAPI then does not parse the
    body, and the field errors that follow would only confuse)."""
    errors = list(exc.errors())
    broken = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if broken is not None:
        doc = exc.body if isinstance(exc.body, str) else ""
        pos = broken["loc"][-1] if isinstance(broken["loc"][-1], int) else 0
        line = doc.count("\n", 0, pos) + 1
        column = pos - doc.rfind("\n", 0, pos)
        reason = str((broken.get("ctx") or {}).get("error", "")).lower()
        msg = f"the body is not valid JSON (line {line}, column {column})" + (
            f": {reason}" if reason else ""
        )
        return _whole_body_problem(msg, "json_invalid", request)
    content_type = request.headers.get("content-type")
    whole_body = any(list(e.get("loc", ())) == ["body"] for e in errors)
    if whole_body and _is_json(content_type):  # empty, null, a list, a number...
        return _whole_body_problem("the body must be a JSON object", "object_expected", request)
    if whole_body and not _is_json(content_type) and request.method in ("POST", "PUT", "PATCH"):
        got = f"it is {content_type}" if content_type else "it has none"
        msg = f"send the body as JSON with Content-Type: application/json ({got})"
        return _whole_body_problem(msg, "content_type", request)
    return None


def _whole_body_problem(msg: str, kind: str, request: Request) -> dict[str, Any]:
    return problem_body(
        422,
        "validation_error",
        msg,
        title="Validation error",
        request_id=request_id_of(request),
        errors=[{"loc": ["body"], "field": "", "msg": msg, "type": kind}],
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> str:
    """Every method the requested path answers, for a 405's `Allow` (RFC 9110 15.5.6).

    The router names only the methods of the first route whose path matched, but a resource is
    often several routes (`GET` and `POST /v1/orders`, each its own), so ask the router, for
    each method, whether a route would take the request."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


def install(app: FastAPI) -> None:
    """Map every error the service can raise to problem+json; nothing escapes as a 500 page."""

    # Imported here: `execute` answers through this module's problem bodies.
    from backorder.api.execute import remember_refusal

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        body = domain_problem(exc, request_id_of(request))
        if retry_headers(exc) is None and (
            stored := await remember_refusal(request, exc.status, body)
        ):
            return stored
        return problem_response(body, retry_headers(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        request_id = request_id_of(request)
        body = body_problem(exc, request) or validation_problem(exc.errors(), request_id)
        if stored := await remember_refusal(request, 422, body):
            return stored
        return problem_response(body)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:
            # FastAPI's "error parsing the body" (e.g. bytes that are not UTF-8): the contract
            # makes every malformed request a 422 validation_error.
            detail = exc.detail if isinstance(exc.detail, str) else "the body cannot be parsed"
            errors = [{"loc": ["body"], "msg": detail, "type": "body_invalid"}]
            return problem_response(validation_problem(errors, request_id_of(request)))
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        body = problem_body(exc.status_code, code, detail, request_id=request_id_of(request))
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405 and (allow := allowed_methods(request)):
            headers["Allow"] = allow
        return problem_response(body, headers or None)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> Response:
        if isinstance(exc, DataError):
            # A value PostgreSQL cannot take (a NUL character, a number out of range) that got
            # past validation: the request is at fault, not the server. Logged, as the
            # validation that should have caught it is missing somewhere.
            # PostgreSQL's own text (which may quote the value or name internals) is logged,
            # never sent: the client gets a fixed message.
            log.warning("data error reached the database: %s", exc.orig)
            msg = "a value in the request cannot be stored (e.g. a NUL character)"
            errors = [{"loc": [], "msg": msg, "type": "data_error"}]
            return problem_response(validation_problem(errors, request_id_of(request)))
        if is_unavailable(exc):
            body = problem_body(
                503,
                "retry_later",
                "the database is briefly unavailable",
                request_id=request_id_of(request),
            )
            return problem_response(body, {"Retry-After": "2"})
        log.exception("unexpected database error", exc_info=exc)
        body = problem_body(
            500, "internal_error", "unexpected error", request_id=request_id_of(request)
        )
        return problem_response(body)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        if isinstance(exc, OSError | TimeoutError | PoolTimeout):
            body = problem_body(
                503,
                "retry_later",
                "the database is briefly unavailable",
                request_id=request_id_of(request),
            )
            return problem_response(body, {"Retry-After": "2"})
        log.exception("unhandled error", exc_info=exc)
        body = problem_body(
            500, "internal_error", "unexpected error", request_id=request_id_of(request)
        )
        return problem_response(body)
