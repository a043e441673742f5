"""One hierarchy of domain errors, each with the stable `code` of the HTTP contract.

The API maps them to problem+json in one place (`api/problems.py`); nothing here knows HTTP
beyond the status each error stands for.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal the caller can act on. `extra` members are merged into the problem body."""

    code = "conflict"
    status = 409
    title = "Conflict"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class ValidationFailed(DomainError):
    code = "validation_error"
    status = 422
    title = "Validation error"

    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail, errors=errors or [{"loc": [], "msg": detail}])


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class NotFound(DomainError):
    code = "not_found"
    status = 404
    title = "Not found"


class UnknownSku(DomainError):
    code = "unknown_sku"
    status = 422
    title = "Unknown SKU"


class UnknownLocation(DomainError):
    """A location named in a body (`location`, `from`, `to`, `preferred_location`) that does
    not exist; in a path it is a plain 404."""

    code = "unknown_location"
    status = 422
    title = "Unknown location"


class LocationInactive(DomainError):
    """New stock (a restock, positive adjustment, receipt or transfer in) for a location
    that is not active."""

    code = "location_inactive"
    title = "Location inactive"


class Conflict(DomainError):
    code = "conflict"


class Discontinued(DomainError):
    code = "discontinued"
    title = "Product discontinued"


class InsufficientStock(DomainError):
    code = "insufficient_stock"
    title = "Insufficient stock"


class BackorderLimitExceeded(DomainError):
    code = "backorder_limit_exceeded"
    title = "Backorder limit exceeded"


class AlreadyShipped(DomainError):
    code = "already_shipped"
    title = "Already shipped"


class NotAllocated(DomainError):
    code = "not_allocated"
    title = "Not allocated"


class OrderIncomplete(DomainError):
    code = "order_incomplete"
    title = "Order incomplete"


class WouldStrandAllocations(DomainError):
    code = "would_strand_allocations"
    title = "Would strand allocations"


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    status = 422
    title = "Idempotency key reused"


class IdempotencyKeyInUse(DomainError):
    code = "idempotency_key_in_use"
    title = "Idempotency key in use"


class RateLimited(DomainError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class RetryLater(DomainError):
    """A lock wait, a deadlock that kept recurring, or the database briefly unavailable."""

    code = "retry_later"
    status = 503
    title = "Service busy, retry later"

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
