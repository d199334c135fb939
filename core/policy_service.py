"""The policy API's use cases: reading the policy in effect on a day and a key's history, and adding,
ending and deleting dated rows under the rules of :mod:`core.policy_rules`.

Every change is audited (``core.audit``, entity ``policy_value``, before/after) and announced with
``pg_notify(POLICY_CHANGED, key)`` in the same transaction, so listeners hear it only once it commits.
Services only flush; the request owns the transaction. Two admins adding the same (key, scope,
valid_from) at once: the unique constraint lets one in, the other gets 409 ``policy.duplicate``. Ending
and deleting lock the row first.

The seeded defaults and the editors' grants come from the caller (the composition root gathers them
from the domains' seeds); this module names no domain.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.crud import in_key_range, like_prefix, not_found
from core.errors import Conflict, NotFound
from core.identity.authz import Principal
from core.policy import POLICY_CHANGED, PolicyDefault, PolicyEntry, PolicyValue, snapshot_from_rows, valid_on
from core.policy_rules import (
    PolicyChecks,
    PolicyEditors,
    RowStatus,
    check_delete,
    check_end,
    check_may_edit,
    check_new_row,
    checked_value,
    row_status,
)
from core.policy_schemas import PolicyCreate, PolicyEnd

ENTITY = "policy_value"
UNIQUE = "uq_policy_value_key_scope_from"


@dataclass(frozen=True, slots=True)
class InEffect:
    """The entry the reader applies for one (key, scope) on the day, with its row id (``None`` for a
    seeded default) and source."""

    entry: PolicyEntry
    row_id: int | None
    source: str


@dataclass(frozen=True, slots=True)
class RowView:
    row: PolicyValue
    status: RowStatus


async def in_effect(
    *, session: AsyncSession, day: dt.date, prefix: str, defaults: Iterable[PolicyDefault]
) -> list[InEffect]:
    """The policy in effect on ``day`` for the keys starting with ``prefix`` (``""``: all), by key and
    scope: the row the reader applies, else the seeded default. The same choice as
    :func:`core.policy.load_policy` (it is the same :func:`snapshot_from_rows`)."""
    stmt = select(PolicyValue).where(PolicyValue.key.like(like_prefix(prefix)), *valid_on(day))
    rows = list((await session.scalars(stmt)).all())
    seeded = [d for d in defaults if d.key.startswith(prefix)]
    snapshot = snapshot_from_rows(
        day, [(r.key, r.scope, r.value, r.valid_from, r.valid_to) for r in rows], seeded
    )
    by_start = {(r.key, r.scope, r.valid_from): r for r in rows}
    sources = {(d.key, d.scope): d.source for d in seeded}
    out: list[InEffect] = []
    for key, scope in sorted(snapshot.rows.keys() | snapshot.defaults.keys()):
        entry = snapshot.entry(key, scope)
        if entry.origin == "row":
            row = by_start[(key, scope, entry.valid_from)]
            out.append(InEffect(entry, row.id, row.source))
        else:
            out.append(InEffect(entry, None, sources[(key, scope)]))
    return out


async def history(
    *,
    session: AsyncSession,
    key: str,
    scope: str | None,
    today: dt.date,
    defaults: Iterable[PolicyDefault],
) -> list[RowView]:
    """Every row of ``key`` (of ``scope`` only, if given), oldest ``valid_from`` first, each with its
    status today. A key with neither rows nor a seeded default is a 404 ``policy.unknown_key``."""
    stmt = select(PolicyValue).where(PolicyValue.key == key)
    if scope is not None:
        stmt = stmt.where(PolicyValue.scope == scope)
    rows = list((await session.scalars(stmt.order_by(PolicyValue.valid_from, PolicyValue.scope))).all())
    if not rows and not any(d.key == key for d in defaults):
        raise NotFound(f"No policy {key!r}.", code="policy.unknown_key")
    return _statuses(rows, today)


def _statuses(rows: Sequence[PolicyValue], today: dt.date) -> list[RowView]:
    """Each row with its status today, among ``rows`` (all the rows of their key and scope)."""
    applied = snapshot_from_rows(today, [(r.key, r.scope, r.value, r.valid_from, r.valid_to) for r in rows])
    out: list[RowView] = []
    for r in rows:
        current = applied.rows.get((r.key, r.scope))
        applies = current is not None and current.valid_from == r.valid_from
        status = row_status(today=today, valid_from=r.valid_from, valid_to=r.valid_to, applies=applies)
        out.append(RowView(r, status))
    return out


async def _with_status(session: AsyncSession, row: PolicyValue, today: dt.date) -> RowView:
    stmt = select(PolicyValue).where(PolicyValue.key == row.key, PolicyValue.scope == row.scope)
    siblings = list((await session.scalars(stmt)).all())
    return next(h for h in _statuses(siblings, today) if h.row.id == row.id)


async def get_row(*, session: AsyncSession, row_id: int, today: dt.date) -> RowView:
    """The row ``row_id`` with its status today, or a 404 ``policy.not_found``."""
    return await _with_status(session, await _row(session, row_id, lock=False), today)


async def _row(session: AsyncSession, row_id: int, *, lock: bool) -> PolicyValue:
    row = None
    if in_key_range(row_id):
        stmt = select(PolicyValue).where(PolicyValue.id == row_id)
        row = await session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise not_found("policy", row_id)
    return row


async def add_row(
    *,
    session: AsyncSession,
    actor: Principal,
    data: PolicyCreate,
    today: dt.date,
    defaults: Sequence[PolicyDefault],
    editors: Iterable[PolicyEditors],
    checks: Iterable[PolicyChecks] = (),
) -> RowView:
    """Add a dated row: the caller may change the key, the key has a seeded default whose shape the
    value has, the owning domain's ``checks`` pass, the row starts today or later, and no row of the
    key and scope starts that day."""
    check_may_edit(actor.role, data.key, editors)
    value = checked_value(
        [d.value for d in defaults if d.key == data.key],
        data.key,
        data.value,
        scope=data.scope,
        checks=checks,
    )
    check_new_row(today=today, valid_from=data.valid_from, valid_to=data.valid_to)
    row = PolicyValue(
        key=data.key,
        scope=data.scope,
        value=value,
        valid_from=data.valid_from,
        valid_to=data.valid_to,
        source=data.source,
    )
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError as exc:
        if UNIQUE not in str(exc.orig):
            raise
        raise Conflict(
            f"{data.key}[{data.scope}] already has a row from {data.valid_from.isoformat()}.",
            code="policy.duplicate",
        ) from None
    audit.record(
        session, actor=actor, action="create", entity=ENTITY, entity_id=row.id, after=audit.snapshot(row)
    )
    await _announce(session, row.key)
    return await _with_status(session, row, today)


async def end_row(
    *,
    session: AsyncSession,
    actor: Principal,
    row_id: int,
    data: PolicyEnd,
    today: dt.date,
    editors: Iterable[PolicyEditors],
) -> RowView:
    """Set (or clear) a row's ``valid_to``, today or later, on a row that has not ended."""
    row = await _row(session, row_id, lock=True)
    check_may_edit(actor.role, row.key, editors)
    check_end(today=today, valid_from=row.valid_from, valid_to=row.valid_to, new_valid_to=data.valid_to)
    if row.valid_to == data.valid_to:
        return await _with_status(session, row, today)
    before = audit.snapshot(row)
    row.valid_to = data.valid_to
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="update",
        entity=ENTITY,
        entity_id=row.id,
        before=before,
        after={**audit.snapshot(row), "reason": data.reason},
    )
    await _announce(session, row.key)
    return await _with_status(session, row, today)


async def delete_row(
    *,
    session: AsyncSession,
    actor: Principal,
    row_id: int,
    reason: str | None,
    today: dt.date,
    editors: Iterable[PolicyEditors],
) -> None:
    """Delete a row that is not yet in effect (its ``valid_from`` after today)."""
    row = await _row(session, row_id, lock=True)
    check_may_edit(actor.role, row.key, editors)
    check_delete(today=today, valid_from=row.valid_from)
    before = audit.snapshot(row)
    await session.delete(row)
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="delete",
        entity=ENTITY,
        entity_id=before["id"],
        before=before,
        after={"reason": reason} if reason else None,
    )
    await _announce(session, before["key"])


async def _announce(session: AsyncSession, key: str) -> None:
    """``NOTIFY policy_changed, key`` in the caller's transaction: delivered when it commits."""
    await session.execute(select(func.pg_notify(POLICY_CHANGED, key)))
