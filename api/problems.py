"""RFC 9457 problem details for every error, each with a stable ``code``.

Body: ``{"type", "title", "status", "detail", "code", "instance", ...extra}`` served as
``application/problem+json``. Unexpected errors become a 500 ``internal`` problem with no internals.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import DBAPIError, IntegrityError

from core.errors import DomainError

log = structlog.get_logger()
PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://eldercare.example.org/problems/"


class Problem(msgspec.Struct):
    """An RFC 9457 problem as this API serves it (``application/problem+json``). Some codes add
    members: ``errors`` (validation), ``field`` (the offending input), ``retry_after_s``…"""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str


def problem(
    request: Request[Any, Any, Any],
    *,
    status: int,
    code: str,
    title: str,
    detail: str = "",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.url.path,
    }
    body.update(extra)
    return Response(content=body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _domain(request: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, Any]]:
    # A problem that says when to come back (``retry_after_s``, whole seconds) says it in the
    # standard header too, so clients and proxies need not read the body.
    retry = exc.extra.get("retry_after_s")
    headers = {"Retry-After": str(retry)} if isinstance(retry, int) else None
    return problem(
        request,
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        headers=headers,
        **exc.extra,
    )


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    errors = exc.extra if isinstance(exc.extra, list) else [exc.extra] if exc.extra else []
    return problem(
        request,
        status=422,
        code="validation.invalid",
        title="Invalid input",
        detail=str(exc.detail),
        errors=errors,
    )


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    codes = {
        401: "auth.required",
        403: "auth.forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        429: "rate_limited",
    }
    code = codes.get(exc.status_code, f"http.{exc.status_code}")
    if isinstance(exc, PermissionDeniedException) and "CSRF" in str(exc.detail):
        code = "auth.csrf"
    if exc.status_code == 400 and "malformed" in str(exc.detail).lower():
        code = "validation.json"
    return problem(
        request, status=exc.status_code, code=code, title=str(exc.detail), headers=exc.headers or None
    )


def _integrity(request: Request[Any, Any, Any], exc: IntegrityError) -> Response[dict[str, Any]]:
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(
        getattr(exc.orig, "__cause__", None), "sqlstate", None
    )
    if sqlstate == "23503":
        return problem(
            request,
            status=422,
            code="reference.unknown",
            title="Unknown reference",
            detail="A referenced record does not exist.",
        )
    if sqlstate == "23505":
        return problem(
            request,
            status=409,
            code="conflict.duplicate",
            title="Duplicate",
            detail="A record with the same unique value already exists.",
        )
    if sqlstate == "23514":
        return problem(
            request,
            status=422,
            code="validation.constraint",
            title="Invalid input",
            detail="A value violates a data rule.",
        )
    return _internal(request, exc)


def _dbapi(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[dict[str, Any]]:
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(
        getattr(exc.orig, "__cause__", None), "sqlstate", None
    )
    if sqlstate in (
        "22001",
        "22003",
        "22007",
        "22008",
        "22021",
        "22P02",
    ):  # too long, out of range, bad datetime, a character text cannot hold (NUL), bad text
        return problem(
            request,
            status=422,
            code="validation.value",
            title="Invalid input",
            detail="A value is out of range or too long.",
        )
    return _internal(request, exc)


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.error("http.unhandled_error", path=request.url.path, error=type(exc).__name__, exc_info=exc)
    return problem(request, status=500, code="internal", title="Internal error", detail="Please retry later.")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DomainError: _domain,
    ValidationException: _validation,
    NotAuthorizedException: _http,
    PermissionDeniedException: _http,
    NotFoundException: _http,
    HTTPException: _http,
    IntegrityError: _integrity,
    DBAPIError: _dbapi,
    Exception: _internal,
}
