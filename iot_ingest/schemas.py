"""Wire types of the IoT HTTP edge: the device and gateway inventory, registration with MQTT
credentials, revocation, vitals charts and device history. Times are UTC (``timestamptz``); clients
show them in Asia/Shanghai."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec

from core.http import Page, component_key
from core.types import NO_NUL, UNSET, Id64, Input, Unset
from iot_ingest.models import Device, DeviceKind, Gateway

# The uid is the MQTT username and a topic level (``eldercare/v1/dev/{uid}/…``): no wildcards, no
# slashes, nothing the ACL's %u substitution could misread.
Uid = Annotated[str, msgspec.Meta(min_length=3, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Model = Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=NO_NUL)]
Serial = Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=NO_NUL)]
FriendlyName = Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=r"^[^\x00/#+]*$")]
DeviceStatus = Literal["active", "inactive", "revoked"]
GatewayStatus = Literal["active", "inactive", "revoked"]
Power = Literal["mains", "battery"]


# --- Inventory -------------------------------------------------------------------------------------


class DeviceUpdate(Input):
    """``elder_id`` moves the device to another home (null: back to stock, admins only)."""

    model: Model | Unset = UNSET
    elder_id: Id64 | Unset | None = UNSET
    gateway_id: Id64 | Unset | None = UNSET
    friendly_name: FriendlyName | Unset | None = UNSET
    power: Power | Unset = UNSET
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


# Pinned component names: those they had when the types lived in api/schemas/devices.py (clients see
# them; see core.http.component_key).
DevicePage = Annotated[Page[DeviceRead], component_key("Page_api.schemas.devices.DeviceRead_")]
GatewayPage = Annotated[Page[GatewayRead], component_key("Page_api.schemas.devices.GatewayRead_")]


# --- Registration and revocation -------------------------------------------------------------------


class DeviceCreate(Input):
    """A device to install. A Zigbee device behind a gateway (``gateway_id`` + ``friendly_name``)
    publishes through the gateway's account and gets no MQTT credentials of its own."""

    uid: Uid
    kind: DeviceKind
    model: Model
    serial: Serial
    elder_id: Id64 | None = None
    gateway_id: Id64 | None = None
    friendly_name: FriendlyName | None = None
    power: Power = "battery"


class GatewayCreate(Input):
    uid: Uid
    model: Model
    serial: Serial
    elder_id: Id64 | None = None


class MqttCredentialRead(msgspec.Struct):
    """Shown once: the platform keeps only a hash of ``password``."""

    username: str
    password: str
    topic_prefix: str


class RegisteredDeviceRead(msgspec.Struct):
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
    created_at: dt.datetime


class RegisteredGatewayRead(msgspec.Struct):
    id: int
    uid: str
    elder_id: int | None
    model: str
    serial: str
    status: str
    created_at: dt.datetime


class DeviceRegistered(msgspec.Struct):
    """``broker_updated`` is false when no broker password file is configured (the credential is then
    recorded in the database only) or when the device has no account of its own (``credential`` null)."""

    device: RegisteredDeviceRead
    credential: MqttCredentialRead | None
    broker_updated: bool
    broker_reloaded: bool


class GatewayRegistered(msgspec.Struct):
    gateway: RegisteredGatewayRead
    credential: MqttCredentialRead
    broker_updated: bool
    broker_reloaded: bool


class DeviceRevoked(msgspec.Struct):
    id: int
    uid: str
    status: str
    credential_revoked: bool
    broker_updated: bool
    broker_reloaded: bool


class VitalsPoint(msgspec.Struct):
    """One bucket starting at ``at``: mean, extremes and number of readings in the metric's unit."""

    at: dt.datetime
    avg: float
    min: float
    max: float
    count: int


class VitalsRead(msgspec.Struct):
    """``source`` is ``raw`` or the rollup table serving buckets before ``rollup_until`` (raw after)."""

    elder_id: int
    metric: str
    unit: str
    bucket: str
    bucket_seconds: int
    from_: dt.datetime = msgspec.field(name="from")
    to: dt.datetime = msgspec.field()
    source: str = "raw"
    rollup_until: dt.datetime | None = None
    points: list[VitalsPoint] = msgspec.field(default_factory=list)


class HistoryItem(msgspec.Struct):
    """A telemetry reading (``metric``/``value``; ``unit`` the SenML unit it came with, None for the
    metric's own unit) or an event (``type``/``data``)."""

    at: dt.datetime
    kind: Literal["telemetry", "event"]
    seq: int | None
    metric: str | None = None
    value: float | None = None
    unit: str | None = None
    type: str | None = None
    data: dict[str, Any] | None = None


class DeviceHistoryRead(msgspec.Struct):
    """Newest first; ``truncated`` when more rows matched than ``limit``."""

    device_id: int
    from_: dt.datetime = msgspec.field(name="from")
    to: dt.datetime = msgspec.field()
    limit: int = 200
    truncated: bool = False
    items: list[HistoryItem] = msgspec.field(default_factory=list)


def registered_device_read(d: Device) -> RegisteredDeviceRead:
    return RegisteredDeviceRead(
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
        created_at=d.created_at,
    )


def registered_gateway_read(g: Gateway) -> RegisteredGatewayRead:
    return RegisteredGatewayRead(
        id=g.id,
        uid=g.uid,
        elder_id=g.elder_id,
        model=g.model,
        serial=g.serial,
        status=g.status,
        created_at=g.created_at,
    )
