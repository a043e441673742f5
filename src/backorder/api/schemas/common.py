"""Field types shared by every request schema: strict, bounded, no NUL characters."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)
from pydantic.config import JsonDict

# No NUL character (PostgreSQL's text cannot hold one), and for names not whitespace alone:
# said in the schema as patterns, so that clients and generated tests know it too (a refusal
# the schema did not announce is a schema that lies).
NO_NUL = r"^[^\x00]*$"
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"

Text = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=255, pattern=NO_NUL)]
# Something to show a person, so not whitespace alone.
Name = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=255, pattern=NOT_BLANK)
]
OptionalText = Annotated[str, StringConstraints(strict=True, max_length=255, pattern=NO_NUL)]
Sku = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$"),
]
# A location's code follows the rule of a SKU.
LocationCode = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$"),
    Field(examples=["leeds"]),
]


def _whole_number(value: Any) -> Any:
    # JSON has one kind of number, and the schema's `integer` (JSON Schema) includes 2.0: it is
    # the integer 2. A fraction, a string or a boolean is still refused (strict).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Last in an `Annotated[int, Strict(), Field(ge=..., le=...), WHOLE]`, so that it runs first
# and the bounds still reach the schema as `minimum` and `maximum`.
WHOLE = BeforeValidator(_whole_number)
Quantity = Annotated[int, Strict(), Field(ge=1, le=1_000_000), WHOLE]
NonNegative = Annotated[int, Strict(), Field(ge=0, le=1_000_000_000), WHOLE]
Priority = Annotated[int, Strict(), Field(ge=0, le=9), WHOLE]

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_date(value: Any) -> Any:
    # Pydantic's own date parsing is laxer than the schema's `format: date` (it takes Unix
    # timestamps, so `0` would be 1970-01-01): only `YYYY-MM-DD` gets through.
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
        return value
    raise ValueError("must be a date as YYYY-MM-DD")


Day = Annotated[date, BeforeValidator(_iso_date)]
"""A calendar date in a request body, `YYYY-MM-DD`."""

SKU_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"

# The `channel` filter of the lists that hold several channels' records (orders, events).
ChannelQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=255,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Ops keys: only this channel's records (a key's name; `master` for the "
        "master key). Storefront keys: their own channel only (the default), else 403.",
        examples=["web-shop"],
    ),
]


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields."""

    model_config = ConfigDict(extra="forbid")


class OutModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


T = TypeVar("T")


def _page_examples(schema: JsonDict, cls: type[Any]) -> None:
    """`Page[Item]`'s example: the envelope around the item model's own examples (the last page,
    so `next_cursor` is null)."""
    args = getattr(cls, "__pydantic_generic_metadata__", {}).get("args", ())
    item = args[0] if len(args) == 1 else None
    if not (isinstance(item, type) and issubclass(item, BaseModel)):
        return
    extra = item.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    if isinstance(examples, list):
        schema["examples"] = [{"data": list(examples), "next_cursor": None}]


class Page(BaseModel, Generic[T]):
    """A page of a list; pass `next_cursor` back as `cursor` for the next one."""

    data: list[T]
    next_cursor: str | None = Field(
        description="Opaque cursor of the next page; null at the end of the list."
    )

    model_config = ConfigDict(json_schema_extra=_page_examples)

    @classmethod
    def model_parametrized_name(cls, params: tuple[Any, ...]) -> str:
        """`OrderPage`, not `Page_OrderOut_`: the schema's name (see `openapi.py`) becomes a
        generated client's class name."""
        (item,) = params
        return str(getattr(item, "__name__", item)).removesuffix("Out") + "Page"


def page(data: list[Any], next_cursor: str | None) -> dict[str, Any]:
    return {"data": data, "next_cursor": next_cursor}


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may be left out, but not sent as null")
    return value


# A body field that may be left out but not sent as null (its schema: `not_null`): a `null`
# is refused by name, where pydantic would take it for "left out". Only a value sent is
# checked; the default (None: left out) is not.
NOT_NULL = BeforeValidator(_refuse_null)


def not_null(schema: dict[str, Any]) -> None:
    """The schema of a field that may be left out but not sent as null: its non-null branch."""
    schema.pop("default", None)
    branches = [branch for branch in schema.pop("anyOf", []) if branch.get("type") != "null"]
    if branches:
        schema.update(branches[0])
