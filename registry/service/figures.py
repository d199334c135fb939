"""Headline figures of an area — the whole city or some districts — for civil-affairs officers,
call-centre staff and admins: ``GET /api/v1/figures`` and the web home page both read them here.

The area is the actor's: city-wide for those who see every elder (admins, call-centre staff), the
officer's own districts for civil affairs; ``district_id`` narrows it to one district inside it
(one outside it is a 404, as for any record out of scope). Elders and devices are counted through
the scoping rules of :mod:`registry.scope`, so the figures never count a row the lists hide.

What is counted, all on the actor's local date ``on``:
- elders: active elders (status ``active``), split by living situation, and by subsidy category
  held on that date (an elder with two categories counts under both; one with none under neither);
- providers: active providers whose contract runs on that date and who serve a district of the
  area (city-wide: all of them); caregivers: the active caregivers of those providers;
- devices: active devices installed in the homes of the area's elders, and how many are online
  (the ingest's ``device`` table, read through :data:`registry.scope.device_t`: the registry imports
  no other domain).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sqlalchemy import ColumnElement, and_, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import local_date
from core.crud import get_or_404
from core.errors import Forbidden, NotFound
from core.identity.authz import STAFF, Principal
from registry.models import (
    Caregiver,
    District,
    Elder,
    ElderCategory,
    ElderStatus,
    LivingSituation,
    Provider,
    ProviderDistrict,
    SubsidyCategory,
)
from registry.scope import device_clause, device_t, elder_clause, sees_all_elders


@dataclass(frozen=True, slots=True)
class Figures:
    """Counts of one area on one date. ``district_ids`` is ``None`` for the whole city. Every
    living situation and every category appears in its mapping, with 0 where there is none."""

    on: dt.date
    district_ids: tuple[int, ...] | None
    elders: int
    elders_by_living_situation: Mapping[LivingSituation, int]
    elders_by_category: Mapping[SubsidyCategory, int]
    providers: int
    caregivers: int
    devices: int
    devices_online: int


async def _area(session: AsyncSession, actor: Principal, district_id: int | None) -> tuple[int, ...] | None:
    """The districts the figures cover (``None`` = the whole city)."""
    if actor.role not in STAFF:
        raise Forbidden("Figures are for civil-affairs officers, call-centre staff and admins.")
    own: frozenset[int] | None = None if sees_all_elders(actor) else actor.district_ids
    if district_id is None:
        return None if own is None else tuple(sorted(own))
    if own is not None and district_id not in own:  # out of scope reads as missing
        raise NotFound(f"No district with id {district_id}.", code="district.not_found")
    await get_or_404(session, District, district_id, what="district")
    return (district_id,)


async def area_figures(
    *, session: AsyncSession, actor: Principal, now: dt.datetime, district_id: int | None = None
) -> Figures:
    """The figures of the actor's area (or of ``district_id`` within it) on the local date of ``now``."""
    area = await _area(session, actor, district_id)
    on = local_date(now)
    in_area: ColumnElement[bool] = true() if area is None else Elder.district_id.in_(area)
    elders_in_area = and_(elder_clause(actor), in_area)
    active = and_(elders_in_area, Elder.status == ElderStatus.ACTIVE.value)

    living = dict.fromkeys(LivingSituation, 0)
    for situation, n in await session.execute(
        select(Elder.living_situation, func.count()).where(active).group_by(Elder.living_situation)
    ):
        living[LivingSituation(situation)] = n

    categories = dict.fromkeys(SubsidyCategory, 0)
    held_on = and_(
        ElderCategory.valid_from <= on, or_(ElderCategory.valid_to.is_(None), ElderCategory.valid_to >= on)
    )
    for category, n in await session.execute(
        select(ElderCategory.category, func.count(func.distinct(ElderCategory.elder_id)))
        .join(Elder, Elder.id == ElderCategory.elder_id)
        .where(active, held_on)
        .group_by(ElderCategory.category)
    ):
        categories[SubsidyCategory(category)] = n

    serving = and_(
        Provider.is_active,
        Provider.contract_from <= on,
        or_(Provider.contract_to.is_(None), Provider.contract_to >= on),
    )
    if area is not None:
        serving = and_(
            serving,
            Provider.id.in_(
                select(ProviderDistrict.provider_id).where(ProviderDistrict.district_id.in_(area))
            ),
        )
    provider_ids = select(Provider.id).where(serving)
    providers = await session.scalar(select(func.count()).select_from(Provider).where(serving))
    caregivers = await session.scalar(
        select(func.count())
        .select_from(Caregiver)
        .where(Caregiver.is_active, Caregiver.provider_id.in_(provider_ids))
    )

    device_counts = (
        await session.execute(
            select(func.count(), func.count().filter(device_t.c.online.is_(True)))
            .select_from(device_t)
            .join(Elder, Elder.id == device_t.c.elder_id)
            .where(device_clause(actor, device_t.c.elder_id), elders_in_area, device_t.c.status == "active")
        )
    ).one()

    return Figures(
        on=on,
        district_ids=area,
        elders=sum(living.values()),
        elders_by_living_situation=MappingProxyType(living),
        elders_by_category=MappingProxyType(categories),
        providers=int(providers or 0),
        caregivers=int(caregivers or 0),
        devices=int(device_counts[0]),
        devices_online=int(device_counts[1]),
    )
