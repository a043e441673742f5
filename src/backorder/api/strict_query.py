"""Strict queries: a query parameter the route does not declare is a 422, not silently ignored,
and so is a NUL character in any of them (PostgreSQL's text cannot hold one).

A misspelt or unsupported filter (`?external_reff=`, `?customer=`) that answered the whole
list looked like an empty filter result to a caller; now it names the parameter, on every
route: what a route takes is read once from its declared parameters (its own and its
dependencies'), so a request costs one set lookup per query key, nothing when it has no
query string. A route behind a key checks its query
string in `deps.authenticate`, once the key is known, so that a caller without a valid key
gets 401 whatever its query string says; the routes that need no key (probes, metrics)
depend on `check_query_string` through their routers. No app-wide dependency: each one costs
every request, the hot ones included, a round of FastAPI's dependency solving.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError

_ATTRIBUTE = "_backorder_query_rule"


def _walk(dependant: Dependant, names: set[str]) -> set[str]:
    names.update(field.alias for field in dependant.query_params)
    for sub in dependant.dependencies:
        _walk(sub, names)
    return names


def known_parameters(route: object) -> frozenset[str]:
    """The query names `route` declares, kept on the route (routes never change once built)."""
    names: frozenset[str] | None = getattr(route, _ATTRIBUTE, None)
    if names is None:
        dependant = getattr(route, "dependant", None)
        names = frozenset(_walk(dependant, set())) if dependant else frozenset()
        setattr(route, _ATTRIBUTE, names)
    return names


def _errors(request: Request, known: frozenset[str]) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    takes = ", ".join(sorted(known)) or "none"
    for key in dict.fromkeys(request.query_params.keys()):
        if key not in known:
            errors.append(
                {
                    "loc": ("query", key),
                    "msg": f"unknown query parameter; this route takes: {takes}",
                    "type": "unknown_parameter",
                }
            )
    nul = {name for name, value in request.query_params.multi_items() if "\x00" in value}
    errors.extend(
        {"loc": ("query", name), "msg": "must not contain NUL characters", "type": "string_nul"}
        for name in sorted(nul)
    )
    return errors


def check_query_string(request: Request) -> None:
    """Refuse (422) a query parameter the matched route does not declare, or a NUL in any."""
    if not request.scope.get("query_string"):
        return
    errors = _errors(request, known_parameters(request.scope.get("route")))
    if errors:
        raise RequestValidationError(errors)
