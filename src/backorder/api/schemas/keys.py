"""API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import Field

from backorder.api.schemas import examples
from backorder.api.schemas.common import Name, OutModel, StrictModel


class ApiKeyIn(StrictModel):
    name: Name
    role: Literal["ops", "storefront"]

    model_config = StrictModel.model_config | {
        "json_schema_extra": {"examples": [{"name": "web-shop", "role": "storefront"}]}
    }


class ApiKeyOut(OutModel):
    id: UUID
    name: str
    role: Literal["ops", "storefront"]
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    created_at: datetime
    last_used_at: datetime | None = Field(
        description="When the key was last used, to the minute (written at most once a minute); "
        "null if never."
    )

    model_config = OutModel.model_config | {"json_schema_extra": {"examples": [examples.API_KEY]}}


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(description="The secret, shown in this answer only; stored as a hash.")

    model_config = OutModel.model_config | {
        "json_schema_extra": {"examples": [examples.API_KEY_CREATED]}
    }
