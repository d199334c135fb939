"""HTTP helpers for any edge or domain route: typed markers for the request dependencies that
``create_app`` provides, offset pagination, the session cookie and the client's address.

Use ``db: Db`` (the request's AsyncSession; the framework commits), ``principal: CurrentPrincipal``
(the signed-in user; 401 if anonymous) and ``now: Now`` (the app clock, aware UTC).

Pagination: ``?limit=`` (1-200, default 50) and ``?offset=`` (≥ 0), answered with the page's items,
the total number of matching rows and whether more follow (``has_more``). A list handler declares
``dependencies=PAGINATION`` and takes ``window: PageWindow``; the service answers a
:class:`core.crud.Paged` and :func:`page` converts it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeAlias, TypeVar

import msgspec
from litestar import Request
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.params import KwargDefinition, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.crud import MAX_LIMIT, Paged, Window
from core.identity.authz import Principal

Db: TypeAlias = NamedDependency[AsyncSession]
CurrentPrincipal: TypeAlias = NamedDependency[Principal]
Now: TypeAlias = NamedDependency[dt.datetime]

# The web pages' session: the same token as the API's bearer token, in an HttpOnly cookie.
SESSION_COOKIE = "ec_session"


def session_cookie(token: str, *, max_age: int, secure: bool) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=token,
        httponly=True,
        samesite="lax",
        secure=secure,
        max_age=max_age,
        path="/",
    )


def client_ip(request: Request[Any, Any, Any]) -> str | None:
    """The peer address, or ``None`` when it is not an IP address (e.g. an in-process test client)."""
    host = request.client.host if request.client else None
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None


# --- Pagination ----------------------------------------------------------------------------------

T = TypeVar("T")
S = TypeVar("S")

# Offsets beyond this are refused: no list is that long, and it keeps OFFSET cheap.
MAX_OFFSET = 1_000_000


class Page(msgspec.Struct, Generic[T]):
    """One page: its ``items``, the ``total`` of matching rows, the window asked for, and
    ``has_more``, whether rows follow it (always ``offset + len(items) < total``; set on creation)."""

    items: list[T]
    total: int
    limit: int
    offset: int
    has_more: bool = False

    def __post_init__(self) -> None:
        self.has_more = self.offset + len(self.items) < self.total


def provide_window(
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Rows per page (1-200)")] = 50,
    offset: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET, description="Rows to skip")] = 0,
) -> Window:
    return Window(limit=limit, offset=offset)


def page(result: Paged[S], convert: Callable[[S], T]) -> Page[T]:
    return Page(
        items=[convert(x) for x in result.items], total=result.total, limit=result.limit, offset=result.offset
    )


def component_key(name: str) -> KwargDefinition:
    """``Annotated`` metadata that pins the OpenAPI component name of a response type, e.g.
    ``Annotated[Page[StreetRead], component_key("Page_api.schemas.places.StreetRead_")]``.

    Litestar names the component of a generic such as ``Page[StreetRead]`` after the module path of
    its argument, so moving ``StreetRead`` to another module would rename it for every client; a
    pinned name keeps the published document stable across such moves."""
    return KwargDefinition(schema_component_key=name)


# The page request, injected into list handlers as ``window``.
PageWindow = NamedDependency[Window]

PAGINATION = {"window": Provide(provide_window, sync_to_thread=False)}
