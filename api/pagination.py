"""Offset pagination: ``?limit=`` (1-200, default 50) and ``?offset=`` (≥ 0), answered with the page's
items and the total number of matching rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Generic, TypeVar

import msgspec
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter

from core.registry.common import MAX_LIMIT, Paged, Window

T = TypeVar("T")
S = TypeVar("S")

# Offsets beyond this are refused: no list is that long, and it keeps OFFSET cheap.
MAX_OFFSET = 1_000_000


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def provide_window(
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Rows per page (1-200)")] = 50,
    offset: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET, description="Rows to skip")] = 0,
) -> Window:
    return Window(limit=limit, offset=offset)


def page(result: Paged[S], convert: Callable[[S], T]) -> Page[T]:
    return Page(
        items=[convert(x) for x in result.items], total=result.total, limit=result.limit, offset=result.offset
    )


# The page request, injected into list handlers as ``window``.
PageWindow = NamedDependency[Window]

PAGINATION = {"window": Provide(provide_window, sync_to_thread=False)}
