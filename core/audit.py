"""Audit trail: every state change and every read of unmasked personal data."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import functools
import ipaddress
import uuid
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, insert, inspect
from sqlalchemy.dialects.postgresql import INET, JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.db import STANDALONE, Base, now_column
from core.identity.authz import Principal


class AuditLog(Base):
    """Every state change and every read of unmasked personal data: who, when, what, before/after."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_entity", "entity", "entity_id"),
        Index("ix_audit_log_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[dt.datetime] = now_column()
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    actor_role: Mapped[str | None] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(30))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str | None] = mapped_column(String(40))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    ip: Mapped[str | None] = mapped_column(INET)
    request_id: Mapped[str | None] = mapped_column(String(40))


# The current request's client address and id, bound by the HTTP middleware, so every audit row
# written while serving it carries them without each service passing them along.
_REQUEST: ContextVar[tuple[str | None, str | None]] = ContextVar("audit_request", default=(None, None))


def bind_request(*, ip: str | None, request_id: str | None) -> Token[tuple[str | None, str | None]]:
    return _REQUEST.set((_valid_ip(ip) if ip else None, request_id))


@functools.lru_cache(maxsize=4096)
def _valid_ip(ip: str) -> str | None:
    """The address in its canonical form, or ``None`` when it is none (e.g. an in-process test
    client's pseudo address). Cached: a server sees the same few addresses (its proxies) again and
    again."""
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


def unbind_request(token: Token[tuple[str | None, str | None]]) -> None:
    _REQUEST.reset(token)


# Columns whose values never go into the audit trail in clear.
_REDACTED = frozenset({"password_hash", "id_number"})


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def snapshot(obj: Base) -> dict[str, Any]:
    """Column values of an ORM object, with secrets redacted, ready for JSONB."""
    state = inspect(obj)
    out: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        key = attr.key
        out[key] = "<redacted>" if key in _REDACTED else _jsonable(getattr(obj, key))
    return out


def record(
    session: AsyncSession,
    *,
    actor: Principal | None,
    action: str,
    entity: str,
    entity_id: object = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    ip: str | None = None,
    request_id: str | None = None,
    system_role: str | None = None,
) -> None:
    """Add an audit row to the caller's unit of work (committed with the change it describes).

    ``ip`` and ``request_id`` default to those of the HTTP request being served, if any. A change the
    platform makes by itself (a scheduled job) has no principal: ``system_role`` (e.g. ``"system"``)
    is then recorded as the actor's role."""
    bound_ip, bound_request_id = _REQUEST.get()
    session.add(
        AuditLog(
            actor_user_id=actor.user_id if actor else None,
            actor_role=actor.role.value if actor else system_role,
            action=action,
            entity=entity,
            entity_id=None if entity_id is None else str(entity_id),
            before=_jsonable(before) if before is not None else None,
            after=_jsonable(after) if after is not None else None,
            ip=ip or bound_ip,
            request_id=request_id or bound_request_id,
        )
    )


async def record_read(
    session: AsyncSession,
    *,
    actor: Principal | None,
    entity: str,
    entity_id: object,
    fields: list[str],
    action: str = "read_unmasked",
) -> None:
    """Record a read of personal data (``fields`` of the entity, shown unmasked) at once, in one
    INSERT. In a request that has written nothing it commits by itself (no BEGIN/COMMIT round trips):
    the data was read whatever happens to the rest of the request; in a transaction it joins it."""
    ip, request_id = _REQUEST.get()
    await session.execute(
        insert(AuditLog).values(
            actor_user_id=actor.user_id if actor else None,
            actor_role=actor.role.value if actor else None,
            action=action,
            entity=entity,
            entity_id=None if entity_id is None else str(entity_id),
            after={"fields": fields},
            ip=ip,
            request_id=request_id,
        ),
        execution_options={STANDALONE: True},
    )
