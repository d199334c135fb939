"""Scoping of registry records: pure rules (tested as tables) and their SQL twins for lists.

The rules for elders and providers live in :mod:`core.authz`; this module adds the ones for
caregivers, devices, guardians and block lists, and turns each rule into a SQL predicate so list
queries return exactly the rows the detail rule admits.

Provider and caregiver users see the elders *served* by their provider. Until service orders
exist, "served" means "lives in a district the provider is contracted to serve"
(``provider_district``); the dispatch domain can narrow :func:`elder_clause` to elders with orders.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, and_, exists, false, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from core.authz import Principal, can_see_elder, sees_all_elders
from core.models import Caregiver, Device, Elder, ElderGuardian, Gateway, Guardian, ProviderDistrict, Role

# --- Pure rules ---------------------------------------------------------------------------------


def can_manage_caregivers(p: Principal, *, provider_id: int) -> bool:
    """Admins manage every provider's caregivers; a provider admin only their own provider's."""
    if p.role == Role.ADMIN:
        return True
    return p.role == Role.PROVIDER_ADMIN and p.provider_id == provider_id


def can_see_device(p: Principal, *, elder_id: int | None, district_id: int | None) -> bool:
    """Call-centre staff and admins see every device; a civil-affairs officer devices of elders in
    their districts; a family member or elder the devices of their elders. Devices not yet
    installed in a home (no elder) are visible to admins and call-centre staff only."""
    if sees_all_elders(p):
        return True
    if elder_id is None:
        return False
    if p.role == Role.CIVIL_AFFAIRS:
        return district_id in p.district_ids
    if p.role in (Role.FAMILY, Role.ELDER):
        return elder_id in p.elder_ids
    return False


def can_edit_device(p: Principal, *, district_id: int | None) -> bool:
    """Admins edit any device; a civil-affairs officer devices installed in their districts."""
    if p.role == Role.ADMIN:
        return True
    return p.role == Role.CIVIL_AFFAIRS and district_id is not None and district_id in p.district_ids


def can_manage_blocklist(p: Principal, *, elder_id: int, district_id: int) -> bool:
    """An elder, their family, the district's civil-affairs officer or an admin may block caregivers."""
    if p.role == Role.ADMIN:
        return True
    if p.role == Role.CIVIL_AFFAIRS:
        return district_id in p.district_ids
    if p.role in (Role.FAMILY, Role.ELDER):
        return elder_id in p.elder_ids
    return False


def can_see_guardian(p: Principal, *, guardian_id: int, elder_district_ids: Iterable[int]) -> bool:
    """Admins and call-centre staff (who phone families on alarms) see every guardian; a
    civil-affairs officer guardians of elders in their districts; a family member themself."""
    if sees_all_elders(p):
        return True
    if p.role == Role.CIVIL_AFFAIRS:
        return bool(p.district_ids.intersection(elder_district_ids))
    if p.role == Role.FAMILY:
        return p.guardian_id == guardian_id
    return False


# --- Loading the facts the rules need -----------------------------------------------------------


async def providers_serving(session: AsyncSession, district_id: int) -> list[int]:
    rows = await session.scalars(
        select(ProviderDistrict.provider_id).where(ProviderDistrict.district_id == district_id)
    )
    return list(rows)


async def sees_elder(session: AsyncSession, p: Principal, elder: Elder) -> bool:
    """:func:`core.authz.can_see_elder` with the providers serving the elder's district loaded."""
    served_by: list[int] = []
    if p.role in (Role.PROVIDER_ADMIN, Role.CAREGIVER):
        served_by = await providers_serving(session, elder.district_id)
    return can_see_elder(
        p, elder_id=elder.id, district_id=elder.district_id, served_by_provider_ids=served_by
    )


# --- SQL twins of the rules, for lists ----------------------------------------------------------


def elder_clause(p: Principal) -> ColumnElement[bool]:
    """Rows of ``elder`` that :func:`core.authz.can_see_elder` admits for ``p``."""
    if sees_all_elders(p):
        return true()
    if p.role == Role.CIVIL_AFFAIRS:
        return Elder.district_id.in_(sorted(p.district_ids)) if p.district_ids else false()
    if p.role in (Role.FAMILY, Role.ELDER):
        return Elder.id.in_(sorted(p.elder_ids)) if p.elder_ids else false()
    if p.role in (Role.PROVIDER_ADMIN, Role.CAREGIVER) and p.provider_id is not None:
        return Elder.district_id.in_(
            select(ProviderDistrict.district_id).where(ProviderDistrict.provider_id == p.provider_id)
        )
    return false()


def caregiver_clause(p: Principal) -> ColumnElement[bool]:
    """Rows of ``caregiver`` that :func:`core.authz.can_see_provider` admits for their provider."""
    if p.role in (Role.PROVIDER_ADMIN, Role.CAREGIVER):
        return Caregiver.provider_id == p.provider_id if p.provider_id is not None else false()
    if p.role in (Role.ADMIN, Role.OPERATOR, Role.SUPERVISOR, Role.CIVIL_AFFAIRS):
        return true()
    return false()


def _owned_by_visible_elder(elder_fk: InstrumentedAttribute[int | None], p: Principal) -> ColumnElement[bool]:
    if p.role == Role.CIVIL_AFFAIRS:
        if not p.district_ids:
            return false()
        return elder_fk.in_(select(Elder.id).where(Elder.district_id.in_(sorted(p.district_ids))))
    if p.role in (Role.FAMILY, Role.ELDER):
        return elder_fk.in_(sorted(p.elder_ids)) if p.elder_ids else false()
    return false()


def device_clause(p: Principal) -> ColumnElement[bool]:
    """Rows of ``device`` that :func:`can_see_device` admits."""
    return true() if sees_all_elders(p) else _owned_by_visible_elder(Device.elder_id, p)


def gateway_clause(p: Principal) -> ColumnElement[bool]:
    """Rows of ``gateway`` that :func:`can_see_device` admits."""
    return true() if sees_all_elders(p) else _owned_by_visible_elder(Gateway.elder_id, p)


def guardian_clause(p: Principal) -> ColumnElement[bool]:
    """Rows of ``guardian`` that :func:`can_see_guardian` admits."""
    if sees_all_elders(p):
        return true()
    if p.role == Role.CIVIL_AFFAIRS and p.district_ids:
        return exists(
            select(ElderGuardian.elder_id)
            .join(Elder, Elder.id == ElderGuardian.elder_id)
            .where(
                and_(ElderGuardian.guardian_id == Guardian.id, Elder.district_id.in_(sorted(p.district_ids)))
            )
        )
    if p.role == Role.FAMILY and p.guardian_id is not None:
        return Guardian.id == p.guardian_id
    return false()
