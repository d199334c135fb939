"""Families and guardians (家属/监护人) and their links to elders.

Admins and call-centre staff see every guardian (operators phone families on alarms); a
civil-affairs officer sees guardians of elders in their districts and may create guardians only
together with a link to such an elder; a family member sees their own record.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.crud import (
    MAX_BIGINT,
    Paged,
    Window,
    delete_and_audit,
    in_key_range,
    like_prefix,
    page_of,
    require_ref,
    update_and_audit,
)
from core.errors import Conflict, Invalid, NotFound
from core.identity.authz import Principal
from core.identity.models import Role
from core.phone import normalise_phone
from core.types import Unset
from registry.models import Elder, ElderGuardian, Guardian
from registry.schemas.guardians import GuardianCreate, GuardianUpdate
from registry.scope import can_see_guardian, guardian_clause
from registry.service.elders import editable_elder, visible_elder


@dataclass(frozen=True, slots=True)
class GuardianView:
    guardian: Guardian
    elder_ids: list[int]


@dataclass(frozen=True, slots=True)
class LinkView:
    guardian: Guardian
    relation: str
    is_primary: bool


async def _elder_ids(session: AsyncSession, guardian_id: int) -> list[int]:
    rows = await session.scalars(
        select(ElderGuardian.elder_id)
        .where(ElderGuardian.guardian_id == guardian_id)
        .order_by(ElderGuardian.elder_id)
    )
    return list(rows)


async def _visible(session: AsyncSession, actor: Principal, guardian_id: int) -> Guardian:
    guardian = (
        await session.get(Guardian, guardian_id) if in_key_range(guardian_id, limit=MAX_BIGINT) else None
    )
    if guardian is not None:
        districts = await session.scalars(
            select(Elder.district_id)
            .join(ElderGuardian, ElderGuardian.elder_id == Elder.id)
            .where(ElderGuardian.guardian_id == guardian.id)
        )
        if not can_see_guardian(actor, guardian_id=guardian.id, elder_district_ids=list(districts)):
            guardian = None
    if guardian is None:
        raise NotFound(f"No guardian with id {guardian_id}.", code="guardian.not_found")
    return guardian


async def list_guardians(
    *, session: AsyncSession, actor: Principal, name_prefix: str | None, phone: str | None, window: Window
) -> Paged[GuardianView]:
    stmt = select(Guardian).where(guardian_clause(actor)).order_by(Guardian.id)
    if name_prefix:
        stmt = stmt.where(Guardian.name.like(like_prefix(name_prefix)))
    if phone:
        stmt = stmt.where(Guardian.phone == normalise_phone(phone))
    page = await page_of(session, stmt, window)
    links: dict[int, list[int]] = {g.id: [] for g in page.items}
    if links:
        rows = await session.execute(
            select(ElderGuardian.guardian_id, ElderGuardian.elder_id)
            .where(ElderGuardian.guardian_id.in_(links))
            .order_by(ElderGuardian.elder_id)
        )
        for guardian_id, elder_id in rows.all():
            links[guardian_id].append(elder_id)
    return Paged(
        items=[GuardianView(g, links[g.id]) for g in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


async def get_guardian(*, session: AsyncSession, actor: Principal, guardian_id: int) -> GuardianView:
    guardian = await _visible(session, actor, guardian_id)
    return GuardianView(guardian, await _elder_ids(session, guardian.id))


async def create_guardian(
    *, session: AsyncSession, actor: Principal, data: GuardianCreate, now: dt.datetime
) -> GuardianView:
    """Create a guardian, optionally linked at once to ``elder_id`` (required for civil-affairs
    officers, whose guardians must belong to an elder in their districts)."""
    elder_id = data.elder_id
    if elder_id is None and actor.role != Role.ADMIN:
        raise Invalid(
            "elder_id is required: link the guardian to one of your elders.",
            code="validation.required",
            field="elder_id",
        )
    elder = await editable_elder(session, actor, elder_id) if elder_id is not None else None
    guardian = Guardian(name=data.name, phone=normalise_phone(data.phone), created_at=now)
    session.add(guardian)
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="guardian",
        entity_id=guardian.id,
        after=audit.snapshot(guardian),
    )
    if elder is not None:
        await _link(
            session,
            actor,
            elder,
            guardian,
            relation=data.relation or "family",
            is_primary=data.is_primary,
        )
    return GuardianView(guardian, await _elder_ids(session, guardian.id))


async def update_guardian(
    *, session: AsyncSession, actor: Principal, guardian_id: int, changes: GuardianUpdate
) -> GuardianView:
    """Change the fields sent; the others keep their value."""
    guardian = await _visible(session, actor, guardian_id)
    if not isinstance(changes.phone, Unset):
        changes = msgspec.structs.replace(changes, phone=normalise_phone(changes.phone))
    await update_and_audit(session, guardian, changes, actor=actor, entity="guardian")
    return GuardianView(guardian, await _elder_ids(session, guardian.id))


async def delete_guardian(*, session: AsyncSession, actor: Principal, guardian_id: int) -> None:
    guardian = await _visible(session, actor, guardian_id)
    await delete_and_audit(session, guardian, actor=actor, entity="guardian")


# --- Links to elders ----------------------------------------------------------------------------


async def list_links(*, session: AsyncSession, actor: Principal, elder_id: int) -> list[LinkView]:
    elder = await visible_elder(session, actor, elder_id)
    rows = await session.execute(
        select(Guardian, ElderGuardian.relation, ElderGuardian.is_primary)
        .join(ElderGuardian, ElderGuardian.guardian_id == Guardian.id)
        .where(ElderGuardian.elder_id == elder.id)
        .order_by(ElderGuardian.is_primary.desc(), Guardian.id)
    )
    return [LinkView(g, relation, primary) for g, relation, primary in rows.all()]


async def _link(
    session: AsyncSession,
    actor: Principal,
    elder: Elder,
    guardian: Guardian,
    *,
    relation: str,
    is_primary: bool,
) -> LinkView:
    if await session.get(ElderGuardian, (elder.id, guardian.id)) is not None:
        raise Conflict("This guardian is already linked to this elder.", code="conflict.duplicate")
    if is_primary:
        # One primary guardian per elder: the new one replaces the old.
        await session.execute(
            update(ElderGuardian).where(ElderGuardian.elder_id == elder.id).values(is_primary=False)
        )
    link = ElderGuardian(elder_id=elder.id, guardian_id=guardian.id, relation=relation, is_primary=is_primary)
    session.add(link)
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="elder_guardian",
        entity_id=f"{elder.id}/{guardian.id}",
        after=audit.snapshot(link),
    )
    return LinkView(guardian, relation, is_primary)


async def link_guardian(
    *,
    session: AsyncSession,
    actor: Principal,
    elder_id: int,
    guardian_id: int,
    relation: str,
    is_primary: bool,
) -> LinkView:
    elder = await editable_elder(session, actor, elder_id)
    guardian = await require_ref(session, Guardian, guardian_id, field="guardian_id", what="guardian")
    return await _link(session, actor, elder, guardian, relation=relation, is_primary=is_primary)


async def unlink_guardian(
    *, session: AsyncSession, actor: Principal, elder_id: int, guardian_id: int
) -> None:
    elder = await editable_elder(session, actor, elder_id)
    link = await session.get(ElderGuardian, (elder.id, guardian_id)) if in_key_range(guardian_id) else None
    if link is None:
        raise NotFound("This guardian is not linked to this elder.", code="elder_guardian.not_found")
    await delete_and_audit(session, link, actor=actor, entity="elder_guardian")
