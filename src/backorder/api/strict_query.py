"""Strict queries: a query parameter the route does not declare is a 422, not silently ignored,
and so is a NUL character in any of them (PostgreSQL's text cannot hold one).

A misspelt or unsupported filter (`?external_reff=`, `?customer=`) that answered the whole
list looked like an empty filter result to a caller; now it names the parameter. One
app-wide dependency does it for every route: what a route takes is read once from its
declared parameters (its own and its dependencies'), so a request costs one set lookup per
query key, nothing when it has no query string. On a route behind a key the refusal waits
for the key's check (`deps.authenticate` raises it), so that a caller without a valid key
gets 401 whatever its query string says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError

from backorder.api.deps import QUERY_PROBLEM, authenticate

_ATTRIBUTE = "_backorder_query_rule"


@dataclass(frozen=True, slots=True)
class QueryRule:
    names: frozenset[str]  # the query parameters the route declares
    keyed: bool  # the route checks an API key


def _walk(dependant: Dependant, names: set[str]) -> bool:
    """Collect `dependant`'s query names into `names`; whether it depends on the key check."""
    names.update(field.alias for field in dependant.query_params)
    keyed = dependant.call is authenticate
    for sub in dependant.dependencies:
        keyed = _walk(sub, names) or keyed
    return keyed


def rule_of(route: object) -> QueryRule:
    """What `route` takes, kept on the route (routes never change once built)."""
    rule: QueryRule | None = getattr(route, _ATTRIBUTE, None)
    if rule is None:
        dependant = getattr(route, "dependant", None)
        names: set[str] = set()
        keyed = _walk(dependant, names) if dependant else False
        rule = QueryRule(frozenset(names), keyed)
        setattr(route, _ATTRIBUTE, rule)
    return rule


def known_parameters(route: object) -> frozenset[str]:
    return rule_of(route).names


def _errors(request: Request, rule: QueryRule) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    takes = ", ".join(sorted(rule.names)) or "none"
    for key in dict.fromkeys(request.query_params.keys()):
        if key not in rule.names:
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


async def check_query_string(request: Request) -> None:
    """The app-wide dependency (`FastAPI(dependencies=...)`), run before the route's own."""
    if not request.scope.get("query_string"):
        return
    rule = rule_of(request.scope.get("route"))
    errors = _errors(request, rule)
    if not errors:
        return
    problem = RequestValidationError(errors)
    if rule.keyed:
        setattr(request.state, QUERY_PROBLEM, problem)
        return
    raise problem
