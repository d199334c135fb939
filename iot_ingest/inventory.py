"""The device inventory: listing, reading, reassigning and deactivating home devices and gateways.

Registration with MQTT credentials and revocation are :mod:`iot_ingest.provisioning`, which checks
scope with the guards here. Scoping rules are the registry's (the only copy):
:func:`registry.scope.can_see_device` / :func:`~registry.scope.can_edit_device` — a
civil-affairs officer sees and edits devices installed with elders of their districts and may move
them only to such elders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.crud import MAX_BIGINT, Paged, Window, in_key_range, page_of, unknown_reference, update_and_audit
from core.errors import Conflict, Forbidden, NotFound
from core.identity.authz import Principal
from iot_ingest.models import Device, Gateway
from registry.models import District, Elder
from registry.scope import can_edit_device, can_see_device, device_clause
from registry.service.elders import visible_elder

Item = TypeVar("Item", Device, Gateway)


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    elder_id: int | None = None
    gateway_id: int | None = None
    kind: str | None = None
    status: str | None = None
    online: bool | None = None
    district_code: str | None = None


async def _district_of_elder(session: AsyncSession, elder_id: int | None) -> int | None:
    if elder_id is None:
        return None
    return await session.scalar(select(Elder.district_id).where(Elder.id == elder_id))


async def visible(session: AsyncSession, actor: Principal, model: type[Item], key: int) -> Item:
    """The device or gateway ``key`` if the actor may see it; 404 otherwise (never 403: no leak)."""
    what = "device" if model is Device else "gateway"
    row = await session.get(model, key) if in_key_range(key, limit=MAX_BIGINT) else None
    if row is not None:
        district_id = await _district_of_elder(session, row.elder_id)
        if not can_see_device(actor, elder_id=row.elder_id, district_id=district_id):
            row = None
    if row is None:
        raise NotFound(f"No {what} with id {key}.", code=f"{what}.not_found")
    return row


async def editable(session: AsyncSession, actor: Principal, model: type[Item], key: int) -> Item:
    """The device or gateway ``key`` if the actor may change it (403 outside their districts)."""
    row = await visible(session, actor, model, key)
    if not can_edit_device(actor, district_id=await _district_of_elder(session, row.elder_id)):
        raise Forbidden("You may change devices only in your own districts.", code="scope.district")
    return row


async def check_new_elder(session: AsyncSession, actor: Principal, elder_id: int | None) -> None:
    """The new home must be an elder the actor may see and edit (unknown → 422, not 404)."""
    if elder_id is None:
        if not can_edit_device(actor, district_id=None):
            raise Forbidden("Only admins may take a device out of a home.", code="scope.district")
        return
    try:
        elder = await visible_elder(session, actor, elder_id)
    except NotFound:
        raise unknown_reference("elder_id", elder_id, "elder") from None
    if not can_edit_device(actor, district_id=elder.district_id):
        raise Forbidden("You may install devices only in your own districts.", code="scope.district")


def _apply_filters(stmt: Any, model: type[Device] | type[Gateway], f: DeviceFilter) -> Any:
    if f.elder_id is not None:
        stmt = stmt.where(model.elder_id == f.elder_id)
    if f.status is not None:
        stmt = stmt.where(model.status == f.status)
    if f.district_code is not None:
        stmt = stmt.where(
            model.elder_id.in_(
                select(Elder.id)
                .join(District, District.id == Elder.district_id)
                .where(District.code == f.district_code)
            )
        )
    return stmt


async def list_devices(
    *, session: AsyncSession, actor: Principal, filters: DeviceFilter, window: Window
) -> Paged[Device]:
    stmt = _apply_filters(
        select(Device).where(device_clause(actor, Device.elder_id)).order_by(Device.id), Device, filters
    )
    if filters.gateway_id is not None:
        stmt = stmt.where(Device.gateway_id == filters.gateway_id)
    if filters.kind is not None:
        stmt = stmt.where(Device.kind == filters.kind)
    if filters.online is not None:
        stmt = stmt.where(Device.online.is_(filters.online))
    return await page_of(session, stmt, window)


async def get_device(*, session: AsyncSession, actor: Principal, device_id: int) -> Device:
    device: Device = await visible(session, actor, Device, device_id)
    return device


async def update_device(
    *, session: AsyncSession, actor: Principal, device_id: int, changes: Mapping[str, Any]
) -> Device:
    """Edit model, home, gateway, Zigbee friendly name, power or status (``uid``, ``serial`` and
    ``kind`` identify the device and do not change)."""
    device: Device = await editable(session, actor, Device, device_id)
    if "elder_id" in changes and changes["elder_id"] != device.elder_id:
        await check_new_elder(session, actor, changes["elder_id"])
    gateway_id = changes.get("gateway_id", device.gateway_id)
    if "gateway_id" in changes and gateway_id is not None:
        gateway = await visible_gateway_ref(session, actor, gateway_id)
        elder_id = changes.get("elder_id", device.elder_id)
        if gateway.elder_id is not None and elder_id is not None and gateway.elder_id != elder_id:
            raise Conflict("The gateway is installed in another home.", code="device.gateway_home_mismatch")
    friendly = changes.get("friendly_name", device.friendly_name)
    if gateway_id is not None and friendly is not None and ({"gateway_id", "friendly_name"} & changes.keys()):
        clash = await session.scalar(
            select(Device.id).where(
                Device.gateway_id == gateway_id, Device.friendly_name == friendly, Device.id != device.id
            )
        )
        if clash is not None:
            raise Conflict(
                "Another device on this gateway has this friendly name.", code="conflict.duplicate"
            )
    return await update_and_audit(session, device, changes, actor=actor, entity="device")


async def visible_gateway_ref(session: AsyncSession, actor: Principal, gateway_id: int) -> Gateway:
    """A gateway named in a request body: one the actor cannot see is an unknown reference (422)."""
    try:
        gateway: Gateway = await visible(session, actor, Gateway, gateway_id)
    except NotFound:
        raise unknown_reference("gateway_id", gateway_id, "gateway") from None
    return gateway


async def list_gateways(
    *, session: AsyncSession, actor: Principal, filters: DeviceFilter, window: Window
) -> Paged[Gateway]:
    stmt = _apply_filters(
        select(Gateway).where(device_clause(actor, Gateway.elder_id)).order_by(Gateway.id), Gateway, filters
    )
    return await page_of(session, stmt, window)


async def get_gateway(*, session: AsyncSession, actor: Principal, gateway_id: int) -> Gateway:
    gateway: Gateway = await visible(session, actor, Gateway, gateway_id)
    return gateway


async def update_gateway(
    *, session: AsyncSession, actor: Principal, gateway_id: int, changes: Mapping[str, Any]
) -> Gateway:
    gateway: Gateway = await editable(session, actor, Gateway, gateway_id)
    if "elder_id" in changes and changes["elder_id"] != gateway.elder_id:
        await check_new_elder(session, actor, changes["elder_id"])
    return await update_and_audit(session, gateway, changes, actor=actor, entity="gateway")
