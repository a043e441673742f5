"""Strict queries: a query parameter the route does not declare is a 422, not silently ignored.

A misspelt or unsupported filter (`?external_reff=`, `?customer=`) that answered the whole
list looked like an empty filter result to a caller; now it names the parameter. One
app-wide dependency does it for every route: the names a route takes are read once from its
declared parameters (its own and its dependencies'), so a request costs one set lookup per
query key, nothing when it has no query string.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError

_ATTRIBUTE = "_backorder_query_names"


def _query_names(dependant: Dependant, out: set[str]) -> set[str]:
    out.update(field.alias for field in dependant.query_params)
    for sub in dependant.dependencies:
        _query_names(sub, out)
    return out


def known_parameters(route: object) -> frozenset[str]:
    """The query names `route` declares, kept on the route (routes never change once built)."""
    names: frozenset[str] | None = getattr(route, _ATTRIBUTE, None)
    if names is None:
        dependant = getattr(route, "dependant", None)
        names = frozenset(_query_names(dependant, set())) if dependant else frozenset()
        setattr(route, _ATTRIBUTE, names)
    return names


async def refuse_unknown_query_parameters(request: Request) -> None:
    """The app-wide dependency (`FastAPI(dependencies=...)`). It runs before the route's own
    dependencies, the key's check included: the list of parameters a route takes is public
    (it is in the OpenAPI document), so naming them to anyone gives nothing away."""
    if not request.scope.get("query_string"):
        return
    known = known_parameters(request.scope.get("route"))
    unknown = [key for key in dict.fromkeys(request.query_params.keys()) if key not in known]
    if not unknown:
        return
    takes = ", ".join(sorted(known)) or "none"
    raise RequestValidationError(
        [
            {
                "loc": ("query", key),
                "msg": f"unknown query parameter; this route takes: {takes}",
                "type": "unknown_parameter",
            }
            for key in unknown
        ]
    )
