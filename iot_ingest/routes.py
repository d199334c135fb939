"""HTTP edge of the IoT domain: devices and gateways as one resource each (inventory, registration
with MQTT credentials, revocation, history), and an elder's vitals charts. Handlers parse, call one
service function and serialise; scoping lives in the services, which apply the registry's device and
elder rules (:mod:`registry.scope`, the only copy)."""

from __future__ import annotations

import datetime as dt
import os
from typing import Annotated, TypeAlias

from litestar import Controller, get, patch, post
from litestar.datastructures import CacheControlHeader, State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from core.http import PAGINATION, CurrentPrincipal, Db, Now, PageWindow, page
from core.identity.authz import allow
from core.identity.models import Role
from core.types import Id64Query, check_day, given
from iot_ingest import inventory, provisioning, queries
from iot_ingest.inventory import DeviceFilter
from iot_ingest.models import Device, DeviceKind, Gateway
from iot_ingest.provisioning import BrokerFiles, IssuedCredential, NewDevice, broker_from_env
from iot_ingest.schemas import (
    DeviceCreate,
    DeviceHistoryRead,
    DevicePage,
    DeviceRead,
    DeviceRegistered,
    DeviceRevoked,
    DeviceStatus,
    DeviceUpdate,
    GatewayCreate,
    GatewayPage,
    GatewayRead,
    GatewayRegistered,
    GatewayUpdate,
    HistoryItem,
    MqttCredentialRead,
    VitalsPoint,
    VitalsRead,
    device_read,
    gateway_read,
    registered_device_read,
    registered_gateway_read,
)
from iot_ingest.wire import account_prefix
from registry.routes.params import DistrictCode

R = Role
# Registering, changing and revoking devices and gateways (registry.scope.can_edit_device).
PROVISIONING = allow(R.ADMIN, R.CIVIL_AFFAIRS)
# The inventory and device history: whoever may read the device record (registry.scope.can_see_device).
DEVICE_READ = allow(R.ADMIN, R.OPERATOR, R.SUPERVISOR, R.CIVIL_AFFAIRS, R.FAMILY, R.ELDER)
# Vitals: whoever may read the elder record (registry.scope.can_see_elder), including provider admins
# for the elders of their orders and caregivers for the elders of their visits.
ELDER_READ = allow(*Role)

# Tags per handler, not per controller: Litestar adds up the tags of every layer, and a device's
# history is documented under "telemetry".
DEVICES = ["devices"]
TELEMETRY = ["telemetry"]

BROKER_STATE_KEY = "broker_files"
Broker: TypeAlias = NamedDependency[BrokerFiles | None]
Since = Annotated[
    dt.datetime | None,
    QueryParameter(
        name="from", description="Start, inclusive (ISO 8601 with offset); default: a day/week back"
    ),
]
Until = Annotated[
    dt.datetime | None,
    QueryParameter(name="to", description="End, exclusive (ISO 8601 with offset); default: now"),
]
Metric = Annotated[
    str, QueryParameter(min_length=1, max_length=40, description="hr, spo2, body_temp, bp_sys…")
]
BucketWidth = Annotated[
    str, QueryParameter(min_length=2, max_length=8, description="30s, 5m, 1h, 1d (10s-7d)")
]
HistoryLimit = Annotated[int, QueryParameter(ge=1, le=1000, description="Rows (1-1000), newest first")]
NO_STORE = CacheControlHeader(no_store=True)


def provide_broker(state: State) -> BrokerFiles | None:
    """The broker's password file: ``app.state["broker_files"]`` when set (tests, embedding), else
    ``ELDERCARE_MOSQUITTO_PASSWORD_FILE`` / ``ELDERCARE_MOSQUITTO_PID_FILE``; None = database only."""
    if BROKER_STATE_KEY in state:
        configured: BrokerFiles | None = state[BROKER_STATE_KEY]
        return configured
    return broker_from_env(os.environ)


def _credential(issued: IssuedCredential, *, gateway: bool) -> MqttCredentialRead:
    return MqttCredentialRead(
        username=issued.username,
        password=issued.password,
        topic_prefix=account_prefix(uid=issued.username, gateway=gateway),
    )


def _revoked(row: Device | Gateway, revoked: provisioning.RevokedCredential) -> DeviceRevoked:
    return DeviceRevoked(
        id=row.id,
        uid=row.uid,
        status=row.status,
        credential_revoked=revoked.known,
        broker_updated=revoked.broker_updated,
        broker_reloaded=revoked.broker_reloaded,
    )


BROKER = {"broker": Provide(provide_broker, sync_to_thread=False)}


class DeviceController(Controller):
    path = "/api/v1/devices"
    dependencies = {**PAGINATION, **BROKER}  # noqa: RUF012

    @get("/", opt=DEVICE_READ, tags=DEVICES, summary="List the devices you may see")
    async def list_devices(
        self,
        db: Db,
        principal: CurrentPrincipal,
        window: PageWindow,
        elder_id: Id64Query = None,
        gateway_id: Id64Query = None,
        kind: FromQuery[DeviceKind | None] = None,
        status: FromQuery[DeviceStatus | None] = None,
        online: FromQuery[bool | None] = None,
        district_code: DistrictCode = None,
    ) -> DevicePage:
        filters = DeviceFilter(
            elder_id=elder_id,
            gateway_id=gateway_id,
            kind=kind.value if kind else None,
            status=status,
            online=online,
            district_code=district_code,
        )
        return page(
            await inventory.list_devices(session=db, actor=principal, filters=filters, window=window),
            device_read,
        )

    @post(
        "/",
        opt=PROVISIONING,
        cache_control=NO_STORE,
        tags=DEVICES,
        summary="Register a device; returns its MQTT password once",
    )
    async def register_device(
        self, db: Db, principal: CurrentPrincipal, broker: Broker, data: JSONBody[DeviceCreate]
    ) -> DeviceRegistered:
        device, issued = await provisioning.register_device(
            session=db,
            actor=principal,
            broker=broker,
            new=NewDevice(
                uid=data.uid,
                kind=data.kind.value,
                model=data.model,
                serial=data.serial,
                elder_id=data.elder_id,
                gateway_id=data.gateway_id,
                friendly_name=data.friendly_name,
                power=data.power,
            ),
        )
        return DeviceRegistered(
            device=registered_device_read(device),
            credential=None if issued is None else _credential(issued, gateway=False),
            broker_updated=issued is not None and issued.broker_updated,
            broker_reloaded=issued is not None and issued.broker_reloaded,
        )

    @get("/{device_id:int}", opt=DEVICE_READ, tags=DEVICES, summary="One device")
    async def get_device(self, db: Db, principal: CurrentPrincipal, device_id: FromPath[int]) -> DeviceRead:
        return device_read(await inventory.get_device(session=db, actor=principal, device_id=device_id))

    @patch(
        "/{device_id:int}", opt=PROVISIONING, tags=DEVICES, summary="Change a device (home, gateway, status…)"
    )
    async def update_device(
        self, db: Db, principal: CurrentPrincipal, device_id: FromPath[int], data: JSONBody[DeviceUpdate]
    ) -> DeviceRead:
        row = await inventory.update_device(
            session=db, actor=principal, device_id=device_id, changes=given(data)
        )
        return device_read(row)

    @post(
        "/{device_id:int}/revoke",
        opt=PROVISIONING,
        status_code=200,
        tags=DEVICES,
        summary="Lock a device out of the broker",
    )
    async def revoke_device(
        self, db: Db, principal: CurrentPrincipal, now: Now, broker: Broker, device_id: FromPath[int]
    ) -> DeviceRevoked:
        device, revoked = await provisioning.revoke_device(
            session=db, actor=principal, broker=broker, device_id=device_id, now=now
        )
        return _revoked(device, revoked)

    @get(
        "/{device_id:int}/history",
        opt=DEVICE_READ,
        tags=TELEMETRY,
        summary="Raw readings and events, newest first",
    )
    async def device_history(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        device_id: FromPath[int],
        since: Since = None,
        until: Until = None,
        limit: HistoryLimit = 200,
    ) -> DeviceHistoryRead:
        h = await queries.device_history(
            session=db,
            actor=principal,
            device_id=device_id,
            start=_instant(since, "from"),
            end=_instant(until, "to"),
            limit=limit,
            now=now,
        )
        return DeviceHistoryRead(
            device_id=h.device_id,
            from_=h.start,
            to=h.end,
            limit=h.limit,
            truncated=h.truncated,
            items=[
                HistoryItem(
                    at=r.at,
                    kind="event" if r.kind == "event" else "telemetry",
                    seq=r.seq,
                    metric=r.metric,
                    value=r.value,
                    unit=r.unit,
                    type=r.type,
                    data=r.data,
                )
                for r in h.rows
            ],
        )


class GatewayController(Controller):
    path = "/api/v1/gateways"
    dependencies = {**PAGINATION, **BROKER}  # noqa: RUF012

    @get("/", opt=DEVICE_READ, tags=DEVICES, summary="List the gateways you may see")
    async def list_gateways(
        self,
        db: Db,
        principal: CurrentPrincipal,
        window: PageWindow,
        elder_id: Id64Query = None,
        status: FromQuery[DeviceStatus | None] = None,
        district_code: DistrictCode = None,
    ) -> GatewayPage:
        filters = DeviceFilter(elder_id=elder_id, status=status, district_code=district_code)
        return page(
            await inventory.list_gateways(session=db, actor=principal, filters=filters, window=window),
            gateway_read,
        )

    @post(
        "/",
        opt=PROVISIONING,
        cache_control=NO_STORE,
        tags=DEVICES,
        summary="Register a Zigbee2MQTT gateway; returns its MQTT password once",
    )
    async def register_gateway(
        self, db: Db, principal: CurrentPrincipal, broker: Broker, data: JSONBody[GatewayCreate]
    ) -> GatewayRegistered:
        gateway, issued = await provisioning.register_gateway(
            session=db,
            actor=principal,
            broker=broker,
            uid=data.uid,
            model=data.model,
            serial=data.serial,
            elder_id=data.elder_id,
        )
        return GatewayRegistered(
            gateway=registered_gateway_read(gateway),
            credential=_credential(issued, gateway=True),
            broker_updated=issued.broker_updated,
            broker_reloaded=issued.broker_reloaded,
        )

    @get("/{gateway_id:int}", opt=DEVICE_READ, tags=DEVICES, summary="One gateway")
    async def get_gateway(
        self, db: Db, principal: CurrentPrincipal, gateway_id: FromPath[int]
    ) -> GatewayRead:
        return gateway_read(await inventory.get_gateway(session=db, actor=principal, gateway_id=gateway_id))

    @patch("/{gateway_id:int}", opt=PROVISIONING, tags=DEVICES, summary="Change a gateway")
    async def update_gateway(
        self, db: Db, principal: CurrentPrincipal, gateway_id: FromPath[int], data: JSONBody[GatewayUpdate]
    ) -> GatewayRead:
        row = await inventory.update_gateway(
            session=db, actor=principal, gateway_id=gateway_id, changes=given(data)
        )
        return gateway_read(row)

    @post(
        "/{gateway_id:int}/revoke",
        opt=PROVISIONING,
        status_code=200,
        tags=DEVICES,
        summary="Lock a gateway (and the Zigbee devices behind it) out of the broker",
    )
    async def revoke_gateway(
        self, db: Db, principal: CurrentPrincipal, now: Now, broker: Broker, gateway_id: FromPath[int]
    ) -> DeviceRevoked:
        gateway, revoked = await provisioning.revoke_gateway(
            session=db, actor=principal, broker=broker, gateway_id=gateway_id, now=now
        )
        return _revoked(gateway, revoked)


class TelemetryController(Controller):
    """An elder's vital signs (a device's raw history is :meth:`DeviceController.device_history`)."""

    path = "/api/v1"
    tags = TELEMETRY

    @get("/elders/{elder_id:int}/vitals", opt=ELDER_READ, summary="Bucketed vital signs of an elder")
    async def elder_vitals(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        elder_id: FromPath[int],
        metric: Metric = "hr",
        since: Since = None,
        until: Until = None,
        bucket: BucketWidth = "5m",
    ) -> VitalsRead:
        v = await queries.elder_vitals(
            session=db,
            actor=principal,
            elder_id=elder_id,
            metric=metric,
            start=_instant(since, "from"),
            end=_instant(until, "to"),
            bucket=bucket,
            now=now,
        )
        return VitalsRead(
            elder_id=v.elder_id,
            metric=v.metric,
            unit=v.unit,
            bucket=bucket,
            bucket_seconds=int(v.bucket.total_seconds()),
            from_=v.plan.start,
            to=v.plan.end,
            source=v.plan.table or "raw",
            rollup_until=v.plan.rollup_until,
            points=[VitalsPoint(p.at, p.avg, p.min, p.max, p.count) for p in v.points],
        )


def _instant(value: dt.datetime | None, field: str) -> dt.datetime | None:
    return None if value is None else check_day(value, field=field)


CONTROLLERS = (DeviceController, GatewayController, TelemetryController)
