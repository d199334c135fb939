"""``/api/v1/devices`` and ``/api/v1/gateways``: list, read, change. Registration (POST, with MQTT
credentials) is added by the IoT domain."""

from __future__ import annotations

from litestar import Controller, get, patch
from litestar.params import FromPath, FromQuery, JSONBody

from api.schemas.devices import (
    DeviceRead,
    DeviceStatus,
    DeviceUpdate,
    GatewayRead,
    GatewayUpdate,
    device_read,
    gateway_read,
)
from core.http import PAGINATION, CurrentPrincipal, Db, Page, PageWindow, page
from core.identity.authz import allow
from core.identity.models import Role
from core.registry import devices
from core.registry.devices import DeviceFilter
from core.types import given
from iot_ingest.models import DeviceKind
from registry.routes.params import DistrictCode, Id64Query

READ = allow(Role.ADMIN, Role.OPERATOR, Role.SUPERVISOR, Role.CIVIL_AFFAIRS, Role.FAMILY, Role.ELDER)
WRITE = allow(Role.ADMIN, Role.CIVIL_AFFAIRS)


class DeviceController(Controller):
    path = "/api/v1"
    tags = ["devices"]  # noqa: RUF012
    dependencies = PAGINATION

    @get("/devices", opt=READ, summary="List the devices you may see")
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
    ) -> Page[DeviceRead]:
        filters = DeviceFilter(
            elder_id=elder_id,
            gateway_id=gateway_id,
            kind=kind.value if kind else None,
            status=status,
            online=online,
            district_code=district_code,
        )
        return page(
            await devices.list_devices(session=db, actor=principal, filters=filters, window=window),
            device_read,
        )

    @get("/devices/{device_id:int}", opt=READ, summary="One device")
    async def get_device(self, db: Db, principal: CurrentPrincipal, device_id: FromPath[int]) -> DeviceRead:
        return device_read(await devices.get_device(session=db, actor=principal, device_id=device_id))

    @patch("/devices/{device_id:int}", opt=WRITE, summary="Change a device (home, gateway, status…)")
    async def update_device(
        self, db: Db, principal: CurrentPrincipal, device_id: FromPath[int], data: JSONBody[DeviceUpdate]
    ) -> DeviceRead:
        row = await devices.update_device(
            session=db, actor=principal, device_id=device_id, changes=given(data)
        )
        return device_read(row)

    @get("/gateways", opt=READ, summary="List the gateways you may see")
    async def list_gateways(
        self,
        db: Db,
        principal: CurrentPrincipal,
        window: PageWindow,
        elder_id: Id64Query = None,
        status: FromQuery[DeviceStatus | None] = None,
        district_code: DistrictCode = None,
    ) -> Page[GatewayRead]:
        filters = DeviceFilter(elder_id=elder_id, status=status, district_code=district_code)
        return page(
            await devices.list_gateways(session=db, actor=principal, filters=filters, window=window),
            gateway_read,
        )

    @get("/gateways/{gateway_id:int}", opt=READ, summary="One gateway")
    async def get_gateway(
        self, db: Db, principal: CurrentPrincipal, gateway_id: FromPath[int]
    ) -> GatewayRead:
        return gateway_read(await devices.get_gateway(session=db, actor=principal, gateway_id=gateway_id))

    @patch("/gateways/{gateway_id:int}", opt=WRITE, summary="Change a gateway")
    async def update_gateway(
        self, db: Db, principal: CurrentPrincipal, gateway_id: FromPath[int], data: JSONBody[GatewayUpdate]
    ) -> GatewayRead:
        row = await devices.update_gateway(
            session=db, actor=principal, gateway_id=gateway_id, changes=given(data)
        )
        return gateway_read(row)
