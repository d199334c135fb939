"""Reading and changing an elder's monitoring settings.

Who may: operators and supervisors in their area read and change them, the elder's family reads them
(:func:`registry.scope.can_see_monitoring` / :func:`~registry.scope.can_edit_monitoring`, the only
copy of the rules). An elder the actor may not see at all is a 404, as everywhere; an elder the
call-centre actor sees but who lives outside their districts is a 403 ``scope.district``.

A change replaces the elder's own settings under a row lock (the first one inserts the row; two
first changes at once meet on the primary key, and the second then waits for the lock), records
who and why, and is audited with the settings before and after. The settings in effect are
resolved against the policy valid on the local date (:mod:`iot_ingest.monitoring.rules`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from callcentre.seed import POLICY_DEFAULTS
from core import audit
from core.clock import local_date
from core.errors import Forbidden, Invalid
from core.geo import haversine_m, polygon_problem
from core.identity.authz import Principal
from core.policy import PolicySnapshot, load_policy
from iot_ingest.models import ElderMonitoring
from iot_ingest.monitoring.rules import (
    POLICY_PREFIXES,
    VITALS,
    Effective,
    OwnSettings,
    effective,
    parse_hhmm,
)
from iot_ingest.monitoring.schemas import MonitoringIn, SafeZoneIn, VitalsIn
from iot_ingest.rules import DaySchedule
from registry.models import Elder
from registry.scope import MONITORING_STAFF, can_edit_monitoring, can_see_monitoring
from registry.service.elders import visible_elder

ENTITY: Final = "elder_monitoring"
# A sanity bound on input, not a domain rule: a safe zone is a neighbourhood, and the planar
# geometry of the geofence (core.geo) is only good at that scale.
MAX_ZONE_SPAN_M: Final = 50_000.0


@dataclass(frozen=True, slots=True)
class Monitoring:
    """An elder, their own settings (if any) and the settings in effect."""

    elder_id: int
    living_situation: str
    has_dementia: bool
    own: ElderMonitoring | None
    effective: Effective


def own_settings(row: ElderMonitoring | None) -> OwnSettings | None:
    """The pure view of a stored row."""
    return None if row is None else _own(_settings_of(row))


def _own(c: Mapping[str, Any]) -> OwnSettings:
    daytime = None
    if c["day_start_minute"] is not None:
        daytime = DaySchedule(c["day_start_minute"], c["day_end_minute"], c["inactivity_hours"])
    night = None
    if c["night_start_minute"] is not None:
        night = (c["night_start_minute"], c["night_end_minute"])
    vitals = {
        name: (float(item["value"]), str(item.get("reason", "")))
        for name, item in (c["vital_overrides"] or {}).items()
        if isinstance(item, Mapping) and isinstance(item.get("value"), int | float)
    }
    return OwnSettings(daytime=daytime, night=night, safe_zone=c["safe_zone"], vitals=vitals)


async def _policy(session: AsyncSession, day: dt.date) -> PolicySnapshot:
    return await load_policy(session, day=day, prefixes=POLICY_PREFIXES, defaults=POLICY_DEFAULTS)


async def _elder(session: AsyncSession, actor: Principal, elder_id: int, *, change: bool) -> Elder:
    elder = await visible_elder(session, actor, elder_id)  # 404 when the actor may not see the elder
    allowed = (
        can_edit_monitoring(actor, district_id=elder.district_id)
        if change
        else can_see_monitoring(actor, elder_id=elder.id, district_id=elder.district_id)
    )
    if not allowed:
        if actor.role in MONITORING_STAFF:
            raise Forbidden("This elder lives outside your districts.", code="scope.district")
        raise Forbidden("You may not see this elder's monitoring settings.", code="auth.forbidden")
    return elder


async def get_monitoring(
    *, session: AsyncSession, actor: Principal, elder_id: int, now: dt.datetime, on: dt.date | None = None
) -> Monitoring:
    """The elder's settings in effect on ``on`` (default: the local date of ``now``)."""
    elder = await _elder(session, actor, elder_id, change=False)
    row = await session.get(ElderMonitoring, elder.id)
    snapshot = await _policy(session, on or local_date(now))
    return Monitoring(
        elder.id,
        elder.living_situation,
        elder.has_dementia,
        row,
        effective(own_settings(row), elder.living_situation, snapshot),
    )


async def put_monitoring(
    *, session: AsyncSession, actor: Principal, elder_id: int, data: MonitoringIn, now: dt.datetime
) -> Monitoring:
    """Replace the elder's own settings (audited); answers the settings now in effect."""
    elder = await _elder(session, actor, elder_id, change=True)
    columns = _columns(data)
    snapshot = await _policy(session, local_date(now))
    _check_vitals_together(effective(_own(columns), elder.living_situation, snapshot))

    inserted = await session.scalar(
        pg_insert(ElderMonitoring)
        .values(elder_id=elder.id)
        .on_conflict_do_nothing(index_elements=[ElderMonitoring.elder_id])
        .returning(ElderMonitoring.elder_id)
    )
    row = await session.scalar(
        select(ElderMonitoring)
        .where(ElderMonitoring.elder_id == elder.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None  # inserted above or already there; rows go only with their elder
    before = None if inserted is not None else audit.snapshot(row)
    if before is None or _settings_of(row) != columns:
        for key, value in columns.items():
            setattr(row, key, value)
        row.reason = data.reason.strip()
        row.updated_by = actor.user_id
        row.updated_at = now
        await session.flush()
        audit.record(
            session,
            actor=actor,
            action="create" if before is None else "update",
            entity=ENTITY,
            entity_id=elder.id,
            before=before,
            after=audit.snapshot(row),
        )
    own = own_settings(row)
    return Monitoring(
        elder.id,
        elder.living_situation,
        elder.has_dementia,
        row,
        effective(own, elder.living_situation, snapshot),
    )


# --- Checking and storing a change -----------------------------------------------------------------

_SETTING_COLUMNS: Final = (
    "day_start_minute",
    "day_end_minute",
    "inactivity_hours",
    "night_start_minute",
    "night_end_minute",
    "safe_zone",
    "vital_overrides",
)


def _settings_of(row: ElderMonitoring) -> dict[str, Any]:
    return {c: getattr(row, c) for c in _SETTING_COLUMNS}


def _columns(data: MonitoringIn) -> dict[str, Any]:
    """The stored columns of a change, checked (422s with stable codes naming the field)."""
    out: dict[str, Any] = dict.fromkeys(_SETTING_COLUMNS)
    if data.daytime is not None:
        start, end = parse_hhmm(data.daytime.start), parse_hhmm(data.daytime.end, allow_end_of_day=True)
        if end <= start:
            raise Invalid(
                "The daytime window must end after it starts (use 24:00 for the end of the day).",
                code="monitoring.window_invalid",
                field="daytime",
            )
        out |= {
            "day_start_minute": start,
            "day_end_minute": end,
            "inactivity_hours": data.daytime.inactivity_hours,
        }
    if data.night is not None:
        start, end = parse_hhmm(data.night.start), parse_hhmm(data.night.end)
        if start == end:
            raise Invalid(
                "The night window must not start and end at the same time.",
                code="monitoring.window_invalid",
                field="night",
            )
        out |= {"night_start_minute": start, "night_end_minute": end}
    if data.safe_zone is not None:
        out["safe_zone"] = _safe_zone(data.safe_zone)
    out["vital_overrides"] = _vitals(data.vitals)
    return out


def _safe_zone(zone: SafeZoneIn) -> dict[str, Any]:
    if (zone.circle is None) == (zone.polygon is None):
        raise Invalid(
            "A safe zone is either a circle or a polygon: give exactly one.",
            code="monitoring.safe_zone_shape",
            field="safe_zone",
        )
    if zone.circle is not None:
        c = zone.circle
        return {"circle": {"lat": c.lat, "lon": c.lon, "radius_m": c.radius_m}}
    assert zone.polygon is not None
    ring = [[lat, lon] for lat, lon in zone.polygon]
    if len(ring) > 3 and ring[0] == ring[-1]:
        ring.pop()  # the closing vertex
    if len(ring) > 200:
        raise Invalid(
            "A polygon has at most 200 vertices.",
            code="monitoring.polygon_invalid",
            field="safe_zone.polygon",
            reason="too_many_vertices",
        )
    problem = polygon_problem(ring)
    if problem is not None:
        raise Invalid(
            f"The polygon is not a simple polygon ({problem.replace('_', ' ')}).",
            code="monitoring.polygon_invalid",
            field="safe_zone.polygon",
            reason=problem,
        )
    lat0, lon0 = ring[0]
    if max(haversine_m(lat0, lon0, lat, lon) for lat, lon in ring) > MAX_ZONE_SPAN_M:
        raise Invalid(
            f"A safe zone must lie within {MAX_ZONE_SPAN_M / 1000:.0f} km of its first vertex.",
            code="monitoring.safe_zone_too_large",
            field="safe_zone.polygon",
        )
    return {"polygon": ring}


def _vitals(vitals: VitalsIn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in VITALS:
        item = getattr(vitals, spec.name)
        if item is None:
            continue
        field = f"vitals.{spec.name}"
        if not math.isfinite(item.value) or not spec.low <= item.value <= spec.high:
            raise Invalid(
                f"{spec.name} must lie between {spec.low:g} and {spec.high:g} {spec.unit}.",
                code="monitoring.vital_out_of_range",
                field=field,
            )
        if not item.reason.strip():
            raise Invalid(
                f"An override of {spec.name} needs a reason.", code="monitoring.reason_required", field=field
            )
        out[spec.name] = {"value": item.value, "reason": item.reason.strip()}
    return out


def _check_vitals_together(eff: Effective) -> None:
    """The heart-rate band, with the elder's own bounds and the policy's, must not be empty."""
    by_name = {v.spec.name: v for v in eff.vitals}
    low, high = by_name["heart_rate_low_bpm"], by_name["heart_rate_high_bpm"]
    if low.value >= high.value:
        raise Invalid(
            f"The heart-rate low bound ({low.value:g}) must be below the high bound ({high.value:g}).",
            code="monitoring.vitals_inconsistent",
            field="vitals",
        )
