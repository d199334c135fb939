"""Domain errors with stable codes; the API renders them as RFC 9457 problem details."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base for expected failures. ``code`` is stable and documented; ``detail`` is for humans."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class Invalid(DomainError):
    status = 422
    code = "validation.invalid"
    title = "Invalid input"


class NotFound(DomainError):
    status = 404
    code = "not_found"
    title = "Not found"


class Forbidden(DomainError):
    status = 403
    code = "auth.forbidden"
    title = "Forbidden"


class Unauthenticated(DomainError):
    status = 401
    code = "auth.required"
    title = "Authentication required"


class Conflict(DomainError):
    status = 409
    code = "conflict"
    title = "Conflict"


class TooManyRequests(DomainError):
    status = 429
    code = "auth.rate_limited"
    title = "Too many requests"


class AccountLocked(DomainError):
    status = 423
    code = "auth.locked"
    title = "Account temporarily locked"
