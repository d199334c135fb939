"""``/api/v1/elders/{elder_id}/monitoring``: an elder's monitoring settings, one resource.

``GET`` answers the settings in effect (the elder's own where set, else the dated default), part by
part with where each came from; ``PUT`` replaces the elder's own settings. The call centre reads and
changes them, the elder's family reads them; scoping is the service's (:mod:`registry.scope`)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, put
from litestar.params import FromPath, JSONBody, QueryParameter

from core.http import CurrentPrincipal, Db, Now
from core.identity.authz import allow
from core.identity.models import Role
from core.types import parse_day
from iot_ingest.monitoring import service
from iot_ingest.monitoring.rules import EffectiveVital, Part, hhmm
from iot_ingest.monitoring.schemas import (
    CircleRead,
    DaytimeRead,
    MonitoringIn,
    MonitoringRead,
    NightRead,
    SafeZoneRead,
    VitalRead,
    VitalsRead,
)

# Reading: the call centre (in its districts) and the elder's family; changing: the call centre.
READING = allow(Role.OPERATOR, Role.SUPERVISOR, Role.FAMILY)
CHANGING = allow(Role.OPERATOR, Role.SUPERVISOR)
OnDay = Annotated[
    str | None,
    QueryParameter(
        name="on",
        max_length=40,
        description="The settings in effect on this local date (YYYY-MM-DD); default today",
    ),
]


class MonitoringController(Controller):
    path = "/api/v1/elders/{elder_id:int}/monitoring"
    tags = ["monitoring"]  # noqa: RUF012

    @get("/", opt=READING, summary="An elder's monitoring settings in effect, and where each part comes from")
    async def get_monitoring(
        self, db: Db, principal: CurrentPrincipal, now: Now, elder_id: FromPath[int], on_day: OnDay = None
    ) -> MonitoringRead:
        day = None if on_day is None else parse_day(on_day, field="on", code="monitoring.date_invalid")
        m = await service.get_monitoring(session=db, actor=principal, elder_id=elder_id, now=now, on=day)
        return monitoring_read(m)

    @put("/", opt=CHANGING, summary="Replace an elder's own monitoring settings (audited)")
    async def put_monitoring(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        elder_id: FromPath[int],
        data: JSONBody[MonitoringIn],
    ) -> MonitoringRead:
        m = await service.put_monitoring(session=db, actor=principal, elder_id=elder_id, data=data, now=now)
        return monitoring_read(m)


def _vital(v: EffectiveVital) -> VitalRead:
    return VitalRead(v.part.source, v.part.policy, v.value, v.spec.unit, v.reason)


def _zone(zone: object, part: Part) -> SafeZoneRead:
    if not isinstance(zone, dict):
        return SafeZoneRead(part.source, None, None)
    circle = zone.get("circle")
    polygon = zone.get("polygon")
    return SafeZoneRead(
        part.source,
        CircleRead(circle["lat"], circle["lon"], circle["radius_m"]) if isinstance(circle, dict) else None,
        [(p[0], p[1]) for p in polygon] if isinstance(polygon, list) else None,
    )


def monitoring_read(m: service.Monitoring) -> MonitoringRead:
    e = m.effective
    d = e.daytime
    vitals = {v.spec.name: _vital(v) for v in e.vitals}
    return MonitoringRead(
        elder_id=m.elder_id,
        living_situation=m.living_situation,
        has_dementia=m.has_dementia,
        on=e.day,
        daytime=DaytimeRead(
            e.daytime_from.source,
            e.daytime_from.policy,
            None if d is None else hhmm(d.start_minute),
            None if d is None else hhmm(d.end_minute),
            None if d is None else d.inactivity_hours,
        ),
        night=NightRead(e.night_from.source, e.night_from.policy, hhmm(e.night[0]), hhmm(e.night[1])),
        safe_zone=_zone(e.safe_zone, e.safe_zone_from),
        vitals=VitalsRead(**vitals),
        updated_at=None if m.own is None else m.own.updated_at,
        updated_by=None if m.own is None else m.own.updated_by,
        reason=None if m.own is None else m.own.reason,
    )


CONTROLLERS = (MonitoringController,)
