"""Home devices and gateways (inventory; registration with credentials is the IoT domain's)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from core.types import NO_NUL, UNSET, Id64, Input, Unset
from iot_ingest.models import Device, Gateway

Model = Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=NO_NUL)]
FriendlyName = Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=r"^[^\x00/#+]*$")]
DeviceStatus = Literal["active", "inactive", "revoked"]
GatewayStatus = Literal["active", "inactive", "revoked"]


class DeviceUpdate(Input):
    """``elder_id`` moves the device to another home (null: back to stock, admins only)."""

    model: Model | Unset = UNSET
    elder_id: Id64 | Unset | None = UNSET
    gateway_id: Id64 | Unset | None = UNSET
    friendly_name: FriendlyName | Unset | None = UNSET
    power: Literal["mains", "battery"] | Unset = UNSET
    status: DeviceStatus | Unset = UNSET


class DeviceRead(msgspec.Struct):
    id: int
    uid: str
    kind: str
    model: str
    serial: str
    elder_id: int | None
    gateway_id: int | None
    friendly_name: str | None
    power: str
    status: str
    online: bool | None
    last_seen_at: dt.datetime | None
    created_at: dt.datetime


class GatewayUpdate(Input):
    model: Model | Unset = UNSET
    elder_id: Id64 | Unset | None = UNSET
    status: GatewayStatus | Unset = UNSET


class GatewayRead(msgspec.Struct):
    id: int
    uid: str
    elder_id: int | None
    model: str
    serial: str
    status: str
    last_seen_at: dt.datetime | None
    created_at: dt.datetime


def device_read(d: Device) -> DeviceRead:
    return DeviceRead(
        id=d.id,
        uid=d.uid,
        kind=d.kind,
        model=d.model,
        serial=d.serial,
        elder_id=d.elder_id,
        gateway_id=d.gateway_id,
        friendly_name=d.friendly_name,
        power=d.power,
        status=d.status,
        online=d.online,
        last_seen_at=d.last_seen_at,
        created_at=d.created_at,
    )


def gateway_read(g: Gateway) -> GatewayRead:
    return GatewayRead(
        id=g.id,
        uid=g.uid,
        elder_id=g.elder_id,
        model=g.model,
        serial=g.serial,
        status=g.status,
        last_seen_at=g.last_seen_at,
        created_at=g.created_at,
    )
