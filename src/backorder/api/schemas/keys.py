"""API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from backorder.api.schemas.common import OutModel, StrictModel, Text


class ApiKeyIn(StrictModel):
    name: Text
    role: Literal["ops", "storefront"]

    model_config = StrictModel.model_config | {
        "json_schema_extra": {"examples": [{"name": "web-shop", "role": "storefront"}]}
    }


class ApiKeyOut(OutModel):
    id: UUID
    name: str
    role: Literal["ops", "storefront"]
    prefix: str
    created_at: datetime


class ApiKeyCreatedOut(ApiKeyOut):
    key: str
