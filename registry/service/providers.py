"""Home-care providers (服务机构) and the districts they are contracted to serve.

Staff see every provider; a provider admin or caregiver only their own
(:func:`registry.scope.can_see_provider`). Only admins change providers (route rules).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from sqlalchemy import delete, false, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.crud import (
    MAX_INT,
    Paged,
    Window,
    check_range,
    delete_and_audit,
    in_key_range,
    like_prefix,
    page_of,
    unknown_reference,
    update_and_audit,
)
from core.errors import Conflict, NotFound
from core.identity.authz import STAFF, Principal
from core.identity.models import Role
from core.phone import normalise_phone
from core.types import Unset, given_or
from registry.models import District, Provider, ProviderDistrict
from registry.schemas.providers import ProviderCreate, ProviderUpdate
from registry.scope import can_see_provider


@dataclass(frozen=True, slots=True)
class ProviderView:
    provider: Provider
    district_ids: list[int]


async def _districts_of(session: AsyncSession, provider_ids: Sequence[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {pid: [] for pid in provider_ids}
    if out:
        rows = await session.execute(
            select(ProviderDistrict.provider_id, ProviderDistrict.district_id)
            .where(ProviderDistrict.provider_id.in_(out))
            .order_by(ProviderDistrict.district_id)
        )
        for provider_id, district_id in rows.all():
            out[provider_id].append(district_id)
    return out


async def visible_provider(session: AsyncSession, actor: Principal, provider_id: int) -> Provider:
    provider = await session.get(Provider, provider_id) if in_key_range(provider_id, limit=MAX_INT) else None
    if provider is None or not can_see_provider(actor, provider_id=provider.id):
        raise NotFound(f"No provider with id {provider_id}.", code="provider.not_found")
    return provider


async def list_providers(
    *,
    session: AsyncSession,
    actor: Principal,
    district_id: int | None,
    is_active: bool | None,
    name_prefix: str | None,
    window: Window,
) -> Paged[ProviderView]:
    if actor.role in (Role.PROVIDER_ADMIN, Role.CAREGIVER):
        scope = Provider.id == actor.provider_id if actor.provider_id is not None else false()
    else:
        scope = true() if actor.role in STAFF else false()
    stmt = select(Provider).where(scope).order_by(Provider.id)
    if district_id is not None:
        stmt = stmt.where(
            Provider.id.in_(
                select(ProviderDistrict.provider_id).where(ProviderDistrict.district_id == district_id)
            )
        )
    if is_active is not None:
        stmt = stmt.where(Provider.is_active.is_(is_active))
    if name_prefix:
        stmt = stmt.where(Provider.name.like(like_prefix(name_prefix)))
    page = await page_of(session, stmt, window)
    districts = await _districts_of(session, [p.id for p in page.items])
    return Paged(
        items=[ProviderView(p, districts[p.id]) for p in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


async def get_provider(*, session: AsyncSession, actor: Principal, provider_id: int) -> ProviderView:
    provider = await visible_provider(session, actor, provider_id)
    return ProviderView(provider, (await _districts_of(session, [provider.id]))[provider.id])


async def _unique(session: AsyncSession, field: str, value: str, except_id: int | None = None) -> None:
    column = getattr(Provider, field)
    existing = await session.scalar(select(Provider.id).where(column == value))
    if existing is not None and existing != except_id:
        raise Conflict(f"Another provider already has this {field}.", code="conflict.duplicate", field=field)


async def _check_districts(session: AsyncSession, district_ids: Sequence[int]) -> list[int]:
    wanted = sorted(set(district_ids))
    valid = [i for i in wanted if in_key_range(i, limit=MAX_INT)]
    found = (
        set((await session.scalars(select(District.id).where(District.id.in_(valid)))).all())
        if valid
        else set()
    )
    missing = [i for i in wanted if i not in found]
    if missing:
        raise unknown_reference("district_ids", missing[0], "district")
    return wanted


async def create_provider(
    *, session: AsyncSession, actor: Principal, data: ProviderCreate, now: dt.datetime
) -> ProviderView:
    district_ids = await _check_districts(session, data.district_ids)
    check_range(data.contract_from, data.contract_to, field="contract_to")
    await _unique(session, "name", data.name)
    await _unique(session, "licence_no", data.licence_no)
    provider = Provider(
        name=data.name,
        licence_no=data.licence_no,
        contract_no=data.contract_no,
        contract_from=data.contract_from,
        contract_to=data.contract_to,
        phone=normalise_phone(data.phone),
        address=data.address,
        is_active=data.is_active,
        created_at=now,
    )
    session.add(provider)
    await session.flush()
    for district_id in district_ids:
        session.add(ProviderDistrict(provider_id=provider.id, district_id=district_id))
    await session.flush()
    after = audit.snapshot(provider) | {"district_ids": district_ids}
    audit.record(session, actor=actor, action="create", entity="provider", entity_id=provider.id, after=after)
    return ProviderView(provider, district_ids)


async def update_provider(
    *, session: AsyncSession, actor: Principal, provider_id: int, changes: ProviderUpdate
) -> ProviderView:
    """Change the fields sent; the others keep their value."""
    provider = await visible_provider(session, actor, provider_id)
    if not isinstance(changes.name, Unset):
        await _unique(session, "name", changes.name, except_id=provider.id)
    if not isinstance(changes.licence_no, Unset):
        await _unique(session, "licence_no", changes.licence_no, except_id=provider.id)
    if not isinstance(changes.phone, Unset):
        changes = msgspec.structs.replace(changes, phone=normalise_phone(changes.phone))
    check_range(
        given_or(changes.contract_from, provider.contract_from),
        given_or(changes.contract_to, provider.contract_to),
        field="contract_to",
    )
    await update_and_audit(session, provider, changes, actor=actor, entity="provider")
    return ProviderView(provider, (await _districts_of(session, [provider.id]))[provider.id])


async def set_districts(
    *, session: AsyncSession, actor: Principal, provider_id: int, district_ids: Sequence[int]
) -> ProviderView:
    """Replace the districts a provider is contracted to serve."""
    provider = await visible_provider(session, actor, provider_id)
    wanted = await _check_districts(session, district_ids)
    before = (await _districts_of(session, [provider.id]))[provider.id]
    await session.execute(delete(ProviderDistrict).where(ProviderDistrict.provider_id == provider.id))
    for district_id in wanted:
        session.add(ProviderDistrict(provider_id=provider.id, district_id=district_id))
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="update",
        entity="provider_district",
        entity_id=provider.id,
        before={"district_ids": before},
        after={"district_ids": wanted},
    )
    return ProviderView(provider, wanted)


async def delete_provider(*, session: AsyncSession, actor: Principal, provider_id: int) -> None:
    provider = await visible_provider(session, actor, provider_id)
    await delete_and_audit(session, provider, actor=actor, entity="provider")
