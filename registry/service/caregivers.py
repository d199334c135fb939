"""Caregivers (护理员) of a provider and their certificates.

Staff see every caregiver; provider admins and caregivers only their own provider's. Admins and the
provider's admin manage them (:func:`registry.scope.can_manage_caregivers`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.crud import (
    MAX_BIGINT,
    Paged,
    Window,
    apply_changes,
    check_range,
    delete_and_audit,
    in_key_range,
    like_prefix,
    page_of,
    require_ref,
)
from core.errors import Forbidden, Invalid, NotFound
from core.identity.authz import Principal
from core.phone import normalise_phone
from core.types import Unset, given_or
from registry.models import Caregiver, Certificate, Provider
from registry.schemas.caregivers import CaregiverCreate, CaregiverUpdate, CertificateIn
from registry.scope import can_manage_caregivers, can_see_provider, caregiver_clause


@dataclass(frozen=True, slots=True)
class CaregiverFilter:
    provider_id: int | None = None
    skill: str | None = None
    is_active: bool | None = None
    gender: str | None = None
    name_prefix: str | None = None


async def visible_caregiver(session: AsyncSession, actor: Principal, caregiver_id: int) -> Caregiver:
    row = await session.get(Caregiver, caregiver_id) if in_key_range(caregiver_id, limit=MAX_BIGINT) else None
    if row is None or not can_see_provider(actor, provider_id=row.provider_id):
        raise NotFound(f"No caregiver with id {caregiver_id}.", code="caregiver.not_found")
    return row


async def _managed(session: AsyncSession, actor: Principal, caregiver_id: int) -> Caregiver:
    row = await visible_caregiver(session, actor, caregiver_id)
    if not can_manage_caregivers(actor, provider_id=row.provider_id):
        raise Forbidden("You may manage only your own provider's caregivers.", code="scope.provider")
    return row


def _snapshot(row: Caregiver) -> dict[str, Any]:
    return audit.snapshot(row) | {"certificates": [audit.snapshot(c) for c in row.certificates]}


def _check_shift(start: dt.time, end: dt.time) -> None:
    if end <= start:
        raise Invalid(
            "shift_end must be after shift_start (same day).", code="caregiver.shift_order", field="shift_end"
        )


def _certificate(data: CertificateIn) -> Certificate:
    check_range(data.issued_on, data.expires_on, field="expires_on")
    if data.kind == "eldercare_worker" and data.level is None:
        raise Invalid(
            "An elder-care worker (养老护理员) certificate needs its level (1-5).",
            code="certificate.level_required",
            field="level",
        )
    return Certificate(
        kind=data.kind,
        level=data.level,
        number=data.number,
        issued_on=data.issued_on,
        expires_on=data.expires_on,
    )


async def list_caregivers(
    *, session: AsyncSession, actor: Principal, filters: CaregiverFilter, window: Window
) -> Paged[Caregiver]:
    stmt = select(Caregiver).where(caregiver_clause(actor)).order_by(Caregiver.id)
    f = filters
    if f.provider_id is not None:
        stmt = stmt.where(Caregiver.provider_id == f.provider_id)
    if f.skill is not None:
        stmt = stmt.where(Caregiver.skills.contains([f.skill]))
    if f.is_active is not None:
        stmt = stmt.where(Caregiver.is_active.is_(f.is_active))
    if f.gender is not None:
        stmt = stmt.where(Caregiver.gender == f.gender)
    if f.name_prefix:
        stmt = stmt.where(Caregiver.name.like(like_prefix(f.name_prefix)))
    return await page_of(session, stmt, window)


async def get_caregiver(*, session: AsyncSession, actor: Principal, caregiver_id: int) -> Caregiver:
    return await visible_caregiver(session, actor, caregiver_id)


async def create_caregiver(
    *, session: AsyncSession, actor: Principal, data: CaregiverCreate, now: dt.datetime
) -> Caregiver:
    """Register a caregiver; a provider admin's caregivers always belong to their own provider."""
    provider_id = data.provider_id or actor.provider_id
    if provider_id is None:
        raise Invalid("provider_id is required.", code="validation.required", field="provider_id")
    await require_ref(session, Provider, provider_id, field="provider_id", what="provider")
    if not can_manage_caregivers(actor, provider_id=provider_id):
        raise Forbidden("You may register caregivers only for your own provider.", code="scope.provider")
    _check_shift(data.shift_start, data.shift_end)
    certificates = [_certificate(c) for c in data.certificates]
    row = Caregiver(
        provider_id=provider_id,
        name=data.name,
        gender=data.gender.value,
        phone=normalise_phone(data.phone),
        skills=sorted(set(data.skills)),
        shift_start=data.shift_start,
        shift_end=data.shift_end,
        work_days=sorted(set(data.work_days)),
        home_lat=data.home_lat,
        home_lon=data.home_lon,
        daily_capacity=data.daily_capacity,
        is_active=data.is_active,
        certificates=certificates,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    audit.record(
        session, actor=actor, action="create", entity="caregiver", entity_id=row.id, after=_snapshot(row)
    )
    return row


async def update_caregiver(
    *, session: AsyncSession, actor: Principal, caregiver_id: int, changes: CaregiverUpdate
) -> Caregiver:
    """Change the fields sent; the others keep their value. Moving a caregiver to another provider
    needs the right to manage that provider's caregivers too."""
    row = await _managed(session, actor, caregiver_id)
    if not isinstance(changes.provider_id, Unset) and changes.provider_id != row.provider_id:
        await require_ref(session, Provider, changes.provider_id, field="provider_id", what="provider")
        if not can_manage_caregivers(actor, provider_id=changes.provider_id):
            raise Forbidden("You may move caregivers only within your own provider.", code="scope.provider")
    _check_shift(given_or(changes.shift_start, row.shift_start), given_or(changes.shift_end, row.shift_end))
    if not isinstance(changes.phone, Unset):
        changes = msgspec.structs.replace(changes, phone=normalise_phone(changes.phone))
    if not isinstance(changes.skills, Unset):
        changes = msgspec.structs.replace(changes, skills=sorted(set(changes.skills)))
    if not isinstance(changes.work_days, Unset):
        changes = msgspec.structs.replace(changes, work_days=sorted(set(changes.work_days)))
    before = _snapshot(row)
    apply_changes(row, changes)
    await session.flush()
    after = _snapshot(row)
    if after != before:
        audit.record(
            session,
            actor=actor,
            action="update",
            entity="caregiver",
            entity_id=row.id,
            before=before,
            after=after,
        )
    return row


async def delete_caregiver(*, session: AsyncSession, actor: Principal, caregiver_id: int) -> None:
    """Erase a caregiver with no history; one with orders or a login gets 409 — deactivate instead."""
    row = await _managed(session, actor, caregiver_id)
    await delete_and_audit(session, row, actor=actor, entity="caregiver")


async def add_certificate(
    *, session: AsyncSession, actor: Principal, caregiver_id: int, data: CertificateIn
) -> Certificate:
    row = await _managed(session, actor, caregiver_id)
    cert = _certificate(data)
    row.certificates.append(cert)
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="certificate",
        entity_id=cert.id,
        after=audit.snapshot(cert),
    )
    return cert


async def delete_certificate(
    *, session: AsyncSession, actor: Principal, caregiver_id: int, certificate_id: int
) -> None:
    row = await _managed(session, actor, caregiver_id)
    cert = next((c for c in row.certificates if c.id == certificate_id), None)
    if cert is None:
        raise NotFound(
            f"Caregiver {caregiver_id} has no certificate with id {certificate_id}.",
            code="certificate.not_found",
        )
    before = audit.snapshot(cert)
    row.certificates.remove(cert)
    await session.flush()
    audit.record(
        session, actor=actor, action="delete", entity="certificate", entity_id=certificate_id, before=before
    )
