"""HTTP edge of the IoT domain: device and gateway registration with MQTT credentials, revocation,
vitals charts and device history. Handlers parse, call one service function and serialise; scoping
lives in the services (which reuse :mod:`registry.scope`'s device and elder rules)."""

from __future__ import annotations

import datetime as dt
import os
from typing import Annotated, TypeAlias

from litestar import Controller, get, post
from litestar.datastructures import CacheControlHeader, State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from core.http import CurrentPrincipal, Db, Now
from core.identity.authz import allow
from core.identity.models import Role
from core.types import check_day
from iot_ingest import provisioning, queries
from iot_ingest.models import Device, Gateway
from iot_ingest.provisioning import BrokerFiles, IssuedCredential, NewDevice, broker_from_env
from iot_ingest.schemas import (
    DeviceCreate,
    DeviceHistoryRead,
    DeviceRegistered,
    DeviceRevoked,
    GatewayCreate,
    GatewayRegistered,
    HistoryItem,
    MqttCredentialRead,
    VitalsPoint,
    VitalsRead,
    registered_device_read,
    registered_gateway_read,
)
from iot_ingest.wire import account_prefix

R = Role
PROVISIONING = allow(R.ADMIN, R.CIVIL_AFFAIRS)
# Device history: whoever may read the device record (registry.scope.can_see_device).
DEVICE_READ = allow(R.ADMIN, R.OPERATOR, R.SUPERVISOR, R.CIVIL_AFFAIRS, R.FAMILY, R.ELDER)
# Vitals: whoever may read the elder record (registry.scope.can_see_elder), including provider admins
# for the elders of their orders and caregivers for the elders of their visits.
ELDER_READ = allow(*Role)

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


BROKER = {"broker": Provide(provide_broker, sync_to_thread=False)}


# POST /devices and /gateways share their paths with the registry's DeviceController (GET lists).
# Litestar gives every Controller its own automatic OPTIONS handler per path, so two controllers on
# one path clash; plain handlers merge into the existing route. They must be registered after
# DeviceController (api.routes lists the IoT handlers last).
@post(
    "/api/v1/devices",
    opt=PROVISIONING,
    cache_control=NO_STORE,
    dependencies=BROKER,
    tags=["devices"],
    summary="Register a device; returns its MQTT password once",
)
async def register_device(
    db: Db, principal: CurrentPrincipal, broker: Broker, data: JSONBody[DeviceCreate]
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


@post(
    "/api/v1/gateways",
    opt=PROVISIONING,
    cache_control=NO_STORE,
    dependencies=BROKER,
    tags=["devices"],
    summary="Register a Zigbee2MQTT gateway; returns its MQTT password once",
)
async def register_gateway(
    db: Db, principal: CurrentPrincipal, broker: Broker, data: JSONBody[GatewayCreate]
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


def _revoked(row: Device | Gateway, revoked: provisioning.RevokedCredential) -> DeviceRevoked:
    return DeviceRevoked(
        id=row.id,
        uid=row.uid,
        status=row.status,
        credential_revoked=revoked.known,
        broker_updated=revoked.broker_updated,
        broker_reloaded=revoked.broker_reloaded,
    )


class RevocationController(Controller):
    path = "/api/v1"
    tags = ["devices"]  # noqa: RUF012
    dependencies = BROKER

    @post(
        "/devices/{device_id:int}/revoke",
        opt=PROVISIONING,
        status_code=200,
        summary="Lock a device out of the broker",
    )
    async def revoke_device(
        self, db: Db, principal: CurrentPrincipal, now: Now, broker: Broker, device_id: FromPath[int]
    ) -> DeviceRevoked:
        device, revoked = await provisioning.revoke_device(
            session=db, actor=principal, broker=broker, device_id=device_id, now=now
        )
        return _revoked(device, revoked)

    @post(
        "/gateways/{gateway_id:int}/revoke",
        opt=PROVISIONING,
        status_code=200,
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
    path = "/api/v1"
    tags = ["telemetry"]  # noqa: RUF012

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

    @get("/devices/{device_id:int}/history", opt=DEVICE_READ, summary="Raw readings and events, newest first")
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
                    type=r.type,
                    data=r.data,
                )
                for r in h.rows
            ],
        )


def _instant(value: dt.datetime | None, field: str) -> dt.datetime | None:
    return None if value is None else check_day(value, field=field)


CONTROLLERS = (register_device, register_gateway, RevocationController, TelemetryController)
