"""Settings, read once from the environment and passed into `create_app`."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MAX_ORDER_LINES = 500
MAX_ORDER_LINES_CEILING = 10_000
MIN_MASTER_KEY_LENGTH = 32


class Settings(BaseSettings):
    """Every setting of the service; `.env.example` documents each one."""

    model_config = SettingsConfigDict(
        env_prefix="BACKORDER_", extra="ignore", populate_by_name=True
    )

    database_url: str | None = Field(
        default=None,
        validation_alias="DATABASE_URL",
        description="PostgreSQL URL; unset means an embedded server in data_dir.",
    )
    master_key: SecretStr | None = Field(default=None, description="Acts as an ops key.")
    data_dir: Path = Field(default=Path(".backorder"), description="Embedded database home.")
    pool_size: int = Field(default=8, ge=1, le=200)
    # No overflow by default: SQLAlchemy closes an overflow connection as soon as it is
    # returned to a full pool, so sustained load opened and closed one per burst (a backend
    # start each); a fixed pool queues waiters cheaply (measured: +7 % orders/s).
    max_overflow: int = Field(default=0, ge=0, le=200)
    pool_timeout_s: float = Field(default=10.0, gt=0)
    read_pool_size: int = Field(
        default=4,
        ge=1,
        le=200,
        description="Connections per worker of the product read's own pool (psycopg, no "
        "SQLAlchemy), besides pool_size.",
    )
    order_pool_size: int = Field(
        default=4,
        ge=1,
        le=200,
        description="Connections per worker of the order placement's own pool (psycopg, no "
        "SQLAlchemy), besides pool_size and read_pool_size.",
    )
    lock_timeout_ms: int = Field(default=5000, ge=1)
    statement_timeout_ms: int = Field(default=30000, ge=1)
    transaction_attempts: int = Field(default=5, ge=1, le=20)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_order_lines: int = Field(
        default=DEFAULT_MAX_ORDER_LINES,
        ge=1,
        le=MAX_ORDER_LINES_CEILING,
        description="Lines per order (and per shipment); more is 422 validation_error.",
    )
    rate_limit_per_minute: int = Field(
        default=6_000,
        ge=0,
        description="Requests per minute per API key (100 a second by default), shared out "
        "among the worker processes; 0 disables.",
    )
    rate_limit_burst_s: int = Field(
        default=5,
        ge=1,
        le=60,
        description="A key may send this many seconds' worth of its rate at once.",
    )
    auth_failures_per_minute: int = Field(
        default=60,
        ge=0,
        description="Failed authentications per minute per client address (as many at once) "
        "before its next attempts get 429; 0 disables.",
    )
    worker_processes: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Worker processes serving the API, each enforcing its share of the rate "
        "limit; `backorder serve --workers N` sets it for its workers.",
    )
    limit_concurrency: int = Field(
        default=1000,
        ge=1,
        description="Connections and requests a `serve` worker holds at once; past it, 503.",
    )
    metrics_cache_s: float = Field(
        default=5.0,
        ge=0,
        description="How long a process reuses the SQL figures of /metrics (0: every scrape).",
    )
    idempotency_ttl_hours: int = Field(default=48, ge=24)
    webhook_worker: bool = Field(default=True, description="Run webhook delivery in `serve`.")
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_poll_interval_s: float = Field(default=0.5, gt=0)
    overdue_worker: bool = Field(
        default=True, description="Watch for overdue purchase orders in `serve`."
    )
    overdue_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="Seconds between looks for purchase orders past their date.",
    )
    expiry_worker: bool = Field(
        default=True, description="Expire backorders past their order's deadline in `serve`."
    )
    expiry_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between looks for orders whose backorder_deadline has passed.",
    )
    webhook_allow_private_networks: bool = Field(
        default=False,
        description="Let webhook URLs reach loopback, private and link-local addresses "
        "(tests, private deployments); otherwise such URLs are refused and never delivered to.",
    )
    webhook_max_endpoints_per_channel: int = Field(
        default=16,
        ge=1,
        le=1000,
        description="Live webhook endpoints each storefront channel (and ops) may have.",
    )
    webhook_endpoint_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Deliveries in flight to one endpoint, per worker process.",
    )

    console_secret: SecretStr | None = Field(
        default=None,
        description="Signs the ops console's session cookies (32+ characters), the same in "
        "every process and host; unset: derived from the master key, else random per process "
        "(sessions then end with the process and hold in one worker only).",
    )

    @field_validator("master_key", "console_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # A short master key is an ops key that can be guessed (a short console secret, a forged
        # session): refuse to start with one.
        if value is not None and len(value.get_secret_value()) < MIN_MASTER_KEY_LENGTH:
            name = f"BACKORDER_{(info.field_name or '').upper()}"
            raise ValueError(
                f"{name} must be at least {MIN_MASTER_KEY_LENGTH} characters "
                "(e.g. `openssl rand -hex 32`)"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @cached_property
    def master_key_value(self) -> str | None:
        return self.master_key.get_secret_value() if self.master_key else None

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError("DATABASE_URL is not set and no embedded server was started")
        return self.database_url
