"""Places: districts (区/县/市) → streets/townships (街道/乡镇) → communities/villages (社区/村).

Everyone signed in reads them; only admins change them (route rules enforce the latter).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.crud import (
    Paged,
    Window,
    add_and_audit,
    delete_and_audit,
    get_or_404,
    like_prefix,
    page_of,
    require_ref,
    update_and_audit,
)
from core.errors import Conflict
from core.identity.authz import Principal
from core.types import Unset, given
from registry.models import Community, District, Elder, Street
from registry.schemas.places import (
    CommunityCreate,
    CommunityUpdate,
    DistrictCreate,
    DistrictUpdate,
    StreetCreate,
    StreetUpdate,
)


@dataclass(frozen=True, slots=True)
class PlaceFilter:
    district_id: int | None = None
    district_code: str | None = None
    street_id: int | None = None
    name_prefix: str | None = None


# --- Districts ----------------------------------------------------------------------------------


async def list_districts(*, session: AsyncSession, window: Window) -> Paged[District]:
    return await page_of(session, select(District).order_by(District.code), window)


async def get_district(*, session: AsyncSession, district_id: int) -> District:
    return await get_or_404(session, District, district_id, what="district")


async def _unique_code(session: AsyncSession, model: type[District | Street | Community], code: str) -> None:
    if await session.scalar(select(model.id).where(model.code == code)) is not None:
        raise Conflict(f"Code {code} is already used.", code="conflict.duplicate", field="code")


async def create_district(*, session: AsyncSession, actor: Principal, data: DistrictCreate) -> District:
    await _unique_code(session, District, data.code)
    return await add_and_audit(session, District(**given(data)), actor=actor, entity="district")


async def update_district(
    *, session: AsyncSession, actor: Principal, district_id: int, changes: DistrictUpdate
) -> District:
    district = await get_or_404(session, District, district_id, what="district")
    if not isinstance(changes.code, Unset) and changes.code != district.code:
        await _unique_code(session, District, changes.code)
    return await update_and_audit(session, district, changes, actor=actor, entity="district")


async def delete_district(*, session: AsyncSession, actor: Principal, district_id: int) -> None:
    district = await get_or_404(session, District, district_id, what="district")
    await delete_and_audit(session, district, actor=actor, entity="district")


# --- Streets ------------------------------------------------------------------------------------


async def list_streets(*, session: AsyncSession, filters: PlaceFilter, window: Window) -> Paged[Street]:
    stmt = select(Street).order_by(Street.code)
    if filters.district_id is not None:
        stmt = stmt.where(Street.district_id == filters.district_id)
    if filters.district_code is not None:
        stmt = stmt.join(District, District.id == Street.district_id).where(
            District.code == filters.district_code
        )
    if filters.name_prefix:
        stmt = stmt.where(Street.name.like(like_prefix(filters.name_prefix)))
    return await page_of(session, stmt, window)


async def get_street(*, session: AsyncSession, street_id: int) -> Street:
    return await get_or_404(session, Street, street_id, what="street")


async def create_street(*, session: AsyncSession, actor: Principal, data: StreetCreate) -> Street:
    await require_ref(session, District, data.district_id, field="district_id", what="district")
    await _unique_code(session, Street, data.code)
    return await add_and_audit(session, Street(**given(data)), actor=actor, entity="street")


async def update_street(
    *, session: AsyncSession, actor: Principal, street_id: int, changes: StreetUpdate
) -> Street:
    street = await get_or_404(session, Street, street_id, what="street")
    if not isinstance(changes.district_id, Unset):
        await require_ref(session, District, changes.district_id, field="district_id", what="district")
    if not isinstance(changes.code, Unset) and changes.code != street.code:
        await _unique_code(session, Street, changes.code)
    await update_and_audit(session, street, changes, actor=actor, entity="street")
    if not isinstance(changes.district_id, Unset):
        # Elders carry their district (denormalised for scoping): keep it in step.
        await session.execute(
            update(Elder)
            .where(Elder.community_id.in_(select(Community.id).where(Community.street_id == street.id)))
            .values(district_id=street.district_id)
        )
    return street


async def delete_street(*, session: AsyncSession, actor: Principal, street_id: int) -> None:
    street = await get_or_404(session, Street, street_id, what="street")
    await delete_and_audit(session, street, actor=actor, entity="street")


# --- Communities --------------------------------------------------------------------------------


async def list_communities(
    *, session: AsyncSession, filters: PlaceFilter, window: Window
) -> Paged[Community]:
    stmt = select(Community).order_by(Community.code)
    if filters.street_id is not None:
        stmt = stmt.where(Community.street_id == filters.street_id)
    if filters.district_id is not None or filters.district_code is not None:
        stmt = stmt.join(Street, Street.id == Community.street_id)
        if filters.district_id is not None:
            stmt = stmt.where(Street.district_id == filters.district_id)
        if filters.district_code is not None:
            stmt = stmt.join(District, District.id == Street.district_id).where(
                District.code == filters.district_code
            )
    if filters.name_prefix:
        stmt = stmt.where(Community.name.like(like_prefix(filters.name_prefix)))
    return await page_of(session, stmt, window)


async def get_community(*, session: AsyncSession, community_id: int) -> Community:
    return await get_or_404(session, Community, community_id, what="community")


async def district_of_community(session: AsyncSession, community: Community) -> int:
    district_id = await session.scalar(select(Street.district_id).where(Street.id == community.street_id))
    if district_id is None:  # the foreign key makes this impossible
        raise AssertionError("community without a street")
    return district_id


async def create_community(*, session: AsyncSession, actor: Principal, data: CommunityCreate) -> Community:
    await require_ref(session, Street, data.street_id, field="street_id", what="street")
    await _unique_code(session, Community, data.code)
    return await add_and_audit(session, Community(**given(data)), actor=actor, entity="community")


async def update_community(
    *, session: AsyncSession, actor: Principal, community_id: int, changes: CommunityUpdate
) -> Community:
    community = await get_or_404(session, Community, community_id, what="community")
    if not isinstance(changes.street_id, Unset):
        await require_ref(session, Street, changes.street_id, field="street_id", what="street")
    if not isinstance(changes.code, Unset) and changes.code != community.code:
        await _unique_code(session, Community, changes.code)
    await update_and_audit(session, community, changes, actor=actor, entity="community")
    if not isinstance(changes.street_id, Unset):
        district_id = await district_of_community(session, community)
        await session.execute(
            update(Elder).where(Elder.community_id == community.id).values(district_id=district_id)
        )
    return community


async def delete_community(*, session: AsyncSession, actor: Principal, community_id: int) -> None:
    community = await get_or_404(session, Community, community_id, what="community")
    await delete_and_audit(session, community, actor=actor, entity="community")
