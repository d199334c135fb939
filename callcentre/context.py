"""An alarm's context in one call: what an operator needs on screen to handle it (issue #11).

* the alarm and its timeline;
* the elder's record as the registry reads it (:mod:`registry.service.elder_reads`: emergency
  contacts in calling order, medical notes, ability level…), with the resident ID number masked for
  every reader: handling an alarm never needs it, and the registry's own detail read is where an
  officer asks for it explicitly (and is audited);
* the devices of the elder's home (and the alarm's own device) with their state: inventory status,
  online, last message, latest battery reading;
* the last 24 h of vital signs (the ingest's bucketed chart read, :func:`iot_ingest.queries.elder_vitals`)
  and of activity (motion and door events per hour, and the latest);
* the elder's previous alarms (or the device's, for a device in no home);
* the nearest caregivers on shift who could go now, with travel estimates: dispatch's own candidate
  search and matching (:func:`dispatch.candidates.nearest_candidates`, :func:`dispatch.matching.match`)
  for an urgent visit of the service named by policy ``alarm.responders``.

Each part is a bounded read (a window, a limit); the whole is a dozen small statements.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callcentre import seed
from callcentre.alarms import alarm_state, raw_connection, timeline_of, visible
from callcentre.schemas import (
    Activity,
    ActivityBucket,
    AlarmContext,
    DeviceState,
    NearbyCaregiver,
    PreviousAlarm,
    VitalPoint,
    VitalSeries,
)
from core.clock import local_date
from core.identity.authz import Principal
from core.policy import load_policy
from dispatch.candidates import DispatchFacts, build_request, nearest_candidates
from dispatch.common import contracted, load_policies
from dispatch.matching import match
from dispatch.models import ServiceOrder
from iot_ingest.jobs import ACTIVITY_EVENTS
from iot_ingest.queries import DEFAULT_VITALS_RANGE, VITAL_UNITS, elder_vitals
from registry.models import ProviderDistrict
from registry.schemas.elders import ElderRead
from registry.scope import can_see_elder
from registry.service import elder_reads

# The window of vital signs and activity shown: the ingest's default chart range (24 h).
WINDOW: Final = DEFAULT_VITALS_RANGE
VITALS_BUCKET: Final = "10m"  # 144 points per vital sign over 24 h
ACTIVITY_BUCKET: Final = dt.timedelta(hours=1)
PREVIOUS_ALARMS: Final = 20
# A battery reading older than this is not "the battery's state".
BATTERY_FRESH: Final = dt.timedelta(days=7)
RESPONDERS_KEY: Final = "alarm.responders"

_DEVICES: Final = """SELECT d.id, d.uid, d.kind, d.model, d.power, d.status, d.online, d.last_seen_at,
       b.value AS battery_pct, b.at AS battery_at
FROM device d
LEFT JOIN LATERAL (
    SELECT t.value, t.at FROM telemetry t
    WHERE t.device_id = d.id AND t.metric = 'battery' AND t.at >= $3 AND t.at <= $4
    ORDER BY t.at DESC LIMIT 1
) b ON true
WHERE d.elder_id = $1 OR d.id = $2
ORDER BY d.id"""

_ACTIVITY: Final = """SELECT date_bin($3::interval, ev.at, '2000-01-01 00:00:00+00'::timestamptz) AS bucket,
       count(*) FILTER (WHERE ev.type = 'motion') AS motion,
       count(*) FILTER (WHERE ev.type = 'door_open') AS door_open
FROM device_event ev JOIN device d ON d.id = ev.device_id
WHERE d.elder_id = $1 AND ev.type = ANY($2::text[]) AND ev.at >= $4 AND ev.at < $5
GROUP BY 1 ORDER BY 1"""
_LAST_ACTIVITY: Final = """SELECT max(ev.at) FROM device_event ev JOIN device d ON d.id = ev.device_id
WHERE d.elder_id = $1 AND ev.type = ANY($2::text[]) AND ev.at >= $3 AND ev.at < $4"""

_PREVIOUS: Final = """SELECT a.id, a.type, a.severity, a.count, a.received_at, a.acknowledged_at,
       a.cleared_at, a.outcome
FROM alarm a
WHERE (CASE WHEN $2::bigint IS NOT NULL THEN a.elder_id = $2 ELSE a.device_id = $3 END) AND a.id <> $1
ORDER BY a.received_at DESC, a.id DESC LIMIT $4"""

_CAREGIVERS: Final = """SELECT c.id, c.name, c.phone, c.provider_id, p.name AS provider_name
FROM caregiver c JOIN provider p ON p.id = c.provider_id WHERE c.id = ANY($1::bigint[])"""


async def alarm_context(
    session: AsyncSession, principal: Principal, alarm_id: int, *, now: dt.datetime
) -> AlarmContext:
    """The alarm (404 outside the reader's districts) and everything about it an operator needs, as
    of ``now``: see the module docstring."""
    conn = await raw_connection(session)
    row = await visible(conn, principal, alarm_id)
    alarm = alarm_state(row)
    start, end = now - WINDOW, now
    elder = await _elder(session, principal, alarm.elder_id, now=now)
    elder_id = elder.id if elder is not None else None
    devices = [
        DeviceState(**dict(r))
        for r in await conn.fetch(_DEVICES, elder_id, alarm.device_id, now - BATTERY_FRESH, now)
    ]
    vitals: list[VitalSeries] = []
    activity: Activity | None = None
    caregivers: list[NearbyCaregiver] = []
    if elder is not None:
        vitals = await _vitals(session, principal, elder.id, start=start, end=end, now=now)
        activity = await _activity(conn, elder.id, start=start, end=end)
        caregivers = await nearby_caregivers(session, elder.id, elder.district_id, now=now)
    previous = [
        PreviousAlarm(**dict(r))
        for r in await conn.fetch(_PREVIOUS, alarm.id, alarm.elder_id, alarm.device_id, PREVIOUS_ALARMS)
    ]
    return AlarmContext(
        alarm=alarm,
        elder=elder,
        devices=devices,
        window_start=start,
        window_end=end,
        vitals=vitals,
        activity=activity,
        previous_alarms=previous,
        caregivers=caregivers,
        timeline=await timeline_of(conn, alarm.id),
    )


async def _elder(
    session: AsyncSession, principal: Principal, elder_id: int | None, *, now: dt.datetime
) -> ElderRead | None:
    """The elder's full record, ID number masked, if there is one and the reader may see it (an
    elder who moved out of the reader's districts since the alarm is no longer theirs to read)."""
    if elder_id is None:
        return None
    today = local_date(now)
    row = await elder_reads.one_row(session, elder_id, today, care_only=False)
    if row is None or not can_see_elder(principal, elder_id=row.id, district_id=row.district_id):
        return None
    read = elder_reads.reads_of([row], care_only=False)[0]
    assert isinstance(read, ElderRead)
    return read


async def _vitals(
    session: AsyncSession,
    principal: Principal,
    elder_id: int,
    *,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
) -> list[VitalSeries]:
    """Each vital sign with readings in the window, bucketed as the ingest's chart read gives it."""
    series: list[VitalSeries] = []
    for metric in VITAL_UNITS:
        read = await elder_vitals(
            session=session,
            actor=principal,
            elder_id=elder_id,
            metric=metric,
            start=start,
            end=end,
            bucket=VITALS_BUCKET,
            now=now,
        )
        if read.points:
            series.append(
                VitalSeries(
                    metric=metric,
                    unit=read.unit,
                    bucket_s=int(read.bucket.total_seconds()),
                    points=[VitalPoint(p.at, p.avg, p.min, p.max, p.count) for p in read.points],
                )
            )
    return series


async def _activity(
    conn: asyncpg.Connection, elder_id: int, *, start: dt.datetime, end: dt.datetime
) -> Activity:
    """Motion and door events of the elder's devices per bucket of the window, and the latest."""
    kinds = list(ACTIVITY_EVENTS)
    rows = await conn.fetch(_ACTIVITY, elder_id, kinds, ACTIVITY_BUCKET, start, end)
    last = await conn.fetchval(_LAST_ACTIVITY, elder_id, kinds, start, end)
    return Activity(
        bucket_s=int(ACTIVITY_BUCKET.total_seconds()),
        last_activity_at=last,
        buckets=[ActivityBucket(r["bucket"], r["motion"], r["door_open"]) for r in rows],
    )


async def nearby_caregivers(
    session: AsyncSession, elder_id: int, district_id: int, *, now: dt.datetime
) -> list[NearbyCaregiver]:
    """The caregivers on shift who could visit the elder now, best first, with distance and travel
    time: dispatch's matching for an urgent visit of policy ``alarm.responders`` (service, length,
    how many), among providers serving the elder's district and contracted for that service today.
    Nobody when no provider qualifies or nobody is in reach."""
    day = local_date(now)
    snapshot = await load_policy(session, day=day, prefixes=(RESPONDERS_KEY,), defaults=seed.POLICY_DEFAULTS)
    responders = snapshot.entry(RESPONDERS_KEY)
    service_code = responders.text("service_code")
    count = max(0, round(responders.number("count")))
    minutes = max(1, round(responders.number("visit_minutes")))
    if count == 0:
        return []
    # The visit dispatch would match: never stored, only described to the matching views.
    visit = ServiceOrder(
        elder_id=elder_id,
        service_code=service_code,
        asap=True,
        urgent=True,
        window_start_at=now,
        window_end_at=now,
        duration_s=minutes * 60,
    )
    policies = await load_policies(session=session, day=day)
    request = await build_request(session=session, order=visit, now=now, policies=policies)
    provider_ids = frozenset(
        await session.scalars(
            select(ProviderDistrict.provider_id).where(
                ProviderDistrict.district_id == district_id,
                contracted(ProviderDistrict.provider_id, service_code, day),
            )
        )
    )
    if not provider_ids:
        return []
    facts = DispatchFacts(
        request=request,
        district_id=district_id,
        provider_ids=provider_ids,
        policies=policies,
        state="created",
        attempts=0,
        asked=frozenset(),
    )
    index, profiles = await nearest_candidates(session, facts, now=now)
    found = match(request, index=index, profiles=profiles, policy=policies.match, now=now, limit=count)
    if not found.candidates:
        return []
    conn = await raw_connection(session)
    people: dict[int, Any] = {
        r["id"]: r for r in await conn.fetch(_CAREGIVERS, [c.caregiver_id for c in found.candidates])
    }
    return [
        NearbyCaregiver(
            caregiver_id=c.caregiver_id,
            name=people[c.caregiver_id]["name"],
            phone=people[c.caregiver_id]["phone"],
            provider_id=people[c.caregiver_id]["provider_id"],
            provider_name=people[c.caregiver_id]["provider_name"],
            distance_m=round(c.distance_m),
            eta_s=c.eta_s,
            score=round(c.score, 4),
        )
        for c in found.candidates
    ]
