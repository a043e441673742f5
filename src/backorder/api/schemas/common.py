"""Field types shared by every request schema: strict, bounded, no NUL characters."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=255), AfterValidator(_no_nul)
]
OptionalText = Annotated[
    str, StringConstraints(strict=True, max_length=255), AfterValidator(_no_nul)
]
Sku = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$"),
]
Quantity = Annotated[StrictInt, Field(ge=1, le=1_000_000)]
NonNegative = Annotated[StrictInt, Field(ge=0, le=1_000_000_000)]

SKU_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields."""

    model_config = ConfigDict(extra="forbid")


class OutModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of a list; pass `next_cursor` back as `cursor` for the next one."""

    data: list[T]
    next_cursor: str | None = Field(
        description="Opaque cursor of the next page; null at the end of the list."
    )


def page(data: list[Any], next_cursor: str | None) -> dict[str, Any]:
    return {"data": data, "next_cursor": next_cursor}
