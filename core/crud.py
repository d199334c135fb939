"""Shared helpers of the domain services: paging, lookups with clear errors, change auditing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import msgspec
from sqlalchemy import BigInteger, Select, func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.db import Base
from core.errors import Conflict, Invalid, NotFound
from core.identity.authz import Principal
from core.types import given

T = TypeVar("T")
M = TypeVar("M", bound=Base)

# Largest key PostgreSQL's bigint holds; larger ids cannot exist, so they are simply "not found".
MAX_BIGINT: Final = 2**63 - 1
MAX_INT: Final = 2**31 - 1
MAX_LIMIT: Final = 200


@dataclass(frozen=True, slots=True)
class Window:
    """A page request: at most ``limit`` rows (1-200) after skipping ``offset`` rows."""

    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Paged(Generic[T]):
    """One page of results and the total number of rows matching the filters."""

    items: list[T]
    total: int
    limit: int
    offset: int

    @property
    def has_more(self) -> bool:
        """Whether rows follow this page."""
        return self.offset + len(self.items) < self.total


async def count_of(session: AsyncSession, stmt: Select[Any]) -> int:
    total = await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    return int(total or 0)


async def total_of(session: AsyncSession, stmt: Select[Any], window: Window, fetched: int) -> int:
    """The number of rows ``stmt`` matches, given that its page ``window`` asked for ``limit + 1``
    rows and got ``fetched``: a page that is the last one (fewer rows than asked for, and not past
    the end) tells the total by itself, without a count over every matching row."""
    if fetched <= window.limit and (fetched > 0 or window.offset == 0):
        return window.offset + fetched
    return await count_of(session, stmt)


async def page_of(session: AsyncSession, stmt: Select[M], window: Window) -> Paged[M]:
    """Run ``stmt`` (already ordered) for one page, with the total count of matching rows (counted
    only when more rows follow the page, see :func:`total_of`)."""
    rows = list((await session.scalars(stmt.limit(window.limit + 1).offset(window.offset))).all())
    total = await total_of(session, stmt, window, len(rows))
    return Paged(items=rows[: window.limit], total=total, limit=window.limit, offset=window.offset)


def in_key_range(key: int, *, limit: int = MAX_BIGINT) -> bool:
    return 0 < key <= limit


async def get_or_404(session: AsyncSession, model: type[M], key: int, *, what: str) -> M:
    """The row with primary key ``key`` or :class:`NotFound` (also for keys outside the column range)."""
    obj = await session.get(model, key) if in_key_range(key, limit=_max_key(model)) else None
    if obj is None:
        raise not_found(what, key)
    return obj


def not_found(what: str, key: object) -> NotFound:
    """The 404 ``<what>.not_found`` of a missing row; also the answer for a row outside the caller's
    scope, so that its existence is not revealed (the same body either way)."""
    return NotFound(f"No {what} with id {key}.", code=f"{what}.not_found")


def unknown_reference(field: str, key: object, what: str) -> Invalid:
    return Invalid(
        f"{field} {key} does not refer to an existing {what}.",
        code="reference.unknown",
        field=field,
    )


async def require_ref(session: AsyncSession, model: type[M], key: int, *, field: str, what: str) -> M:
    """The referenced row, or a 422 ``reference.unknown`` naming the field."""
    obj = await session.get(model, key) if in_key_range(key, limit=_max_key(model)) else None
    if obj is None:
        raise unknown_reference(field, key, what)
    return obj


def check_range(valid_from: dt.date, valid_to: dt.date | None, *, field: str = "valid_to") -> None:
    """Date ranges are inclusive; ``valid_to`` (if any) may not precede ``valid_from``."""
    if valid_to is not None and valid_to < valid_from:
        raise Invalid(
            f"{field} ({valid_to.isoformat()}) is before the start ({valid_from.isoformat()}).",
            code="date_range.invalid",
            field=field,
        )


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching values that start with ``prefix`` literally (wildcards escaped)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def apply_changes(obj: Base, changes: msgspec.Struct | Mapping[str, Any]) -> None:
    """Set the columns ``changes`` names: a partial update's fields that were sent (see
    :func:`core.types.given`), or a mapping of column to value."""
    values = given(changes) if isinstance(changes, msgspec.Struct) else changes
    for key, value in values.items():
        setattr(obj, key, value)


async def add_and_audit(session: AsyncSession, obj: M, *, actor: Principal, entity: str) -> M:
    """Insert ``obj`` and record an audit row with its state after the insert."""
    session.add(obj)
    await session.flush()
    audit.record(
        session, actor=actor, action="create", entity=entity, entity_id=_key(obj), after=audit.snapshot(obj)
    )
    return obj


async def update_and_audit(
    session: AsyncSession,
    obj: M,
    changes: msgspec.Struct | Mapping[str, Any],
    *,
    actor: Principal,
    entity: str,
) -> M:
    """Apply ``changes`` and record before/after (no row when nothing changed)."""
    before = audit.snapshot(obj)
    apply_changes(obj, changes)
    await session.flush()
    after = audit.snapshot(obj)
    if after != before:
        audit.record(
            session,
            actor=actor,
            action="update",
            entity=entity,
            entity_id=_key(obj),
            before=before,
            after=after,
        )
    return obj


async def delete_and_audit(session: AsyncSession, obj: M, *, actor: Principal, entity: str) -> None:
    """Delete ``obj``; a row still referenced elsewhere gives 409 ``conflict.in_use``, not a 500."""
    before = audit.snapshot(obj)
    key = _key(obj)
    try:
        async with session.begin_nested():
            await session.delete(obj)
            await session.flush()
    except IntegrityError:
        raise Conflict(
            f"This {entity} is still referenced by other records; deactivate it instead.",
            code="conflict.in_use",
        ) from None
    audit.record(session, actor=actor, action="delete", entity=entity, entity_id=key, before=before)


def _max_key(model: type[Base]) -> int:
    column = inspect(model).primary_key[0]
    return MAX_BIGINT if isinstance(column.type, BigInteger) else MAX_INT


def _key(obj: Base) -> str:
    identity: Sequence[Any] | None = inspect(obj).identity
    if not identity:
        return ""
    return "/".join(str(v) for v in identity)
