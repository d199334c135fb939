"""Pure alarm rules (DOMAIN §7): plain data and ``now`` in, alarm candidates out. No I/O, no clock.

Every function returns :class:`callcentre.contract.AlarmCandidate` values, which the call centre's
contract writes as ``alarm`` rows (one active alarm per device and type; a repeat increments its
counter). Alarm types and their default severities are the contract's too. Thresholds are data
(:class:`AlarmThresholds`) so they can come from dated ``policy_value`` rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import msgspec

from callcentre.contract import DEMENTIA_SEVERITY, SEVERITY, AlarmCandidate, AlarmType
from core.clock import SHANGHAI, local_date
from core.geo import haversine_m
from iot_ingest.normalise import Event, Reading

# Canonical event type → alarm type for events that are alarms by themselves.
EVENT_ALARMS: Final[Mapping[str, str]] = {
    "sos": "SOS",
    "fall": "FALL",
    "smoke": "SMOKE",
    "gas": "GAS",
    "water_leak": "WATER_LEAK",
    "tamper": "TAMPER",
    "low_battery": "LOW_BATTERY",
}


@dataclass(frozen=True, slots=True)
class AlarmThresholds:
    """Alarm thresholds (DOMAIN §7 defaults). Units: bpm, %, °C, seconds, local clock times."""

    hr_low: float = 40
    hr_high: float = 130
    hr_hold_s: float = 120
    spo2_low: float = 90
    spo2_hold_s: float = 0
    body_temp_high: float = 38.5
    body_temp_hold_s: float = 0
    battery_low_pct: float = 15
    offline_mains_s: float = 10 * 60
    offline_battery_s: float = 25 * 3600
    night_start: dt.time = dt.time(0, 0)
    night_end: dt.time = dt.time(5, 0)

    @classmethod
    def from_policy(cls, values: Mapping[str, Any]) -> AlarmThresholds:
        """Overrides from a ``policy_value`` JSON object (unknown keys are ignored; times as ``HH:MM``)."""
        known = set(cls.__dataclass_fields__)
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                continue
            changes[key] = dt.time.fromisoformat(value) if key.startswith("night_") else float(value)
        return replace(cls(), **changes)


@dataclass(frozen=True, slots=True)
class DeviceContext:
    """What the rules need to know about the device and its elder."""

    device_id: int
    elder_id: int | None
    kind: str
    power: str = "battery"  # mains | battery
    elder_has_dementia: bool = False


def _candidate(
    alarm_type: str, ctx: DeviceContext, at: dt.datetime, severity: str | None = None, **details: Any
) -> AlarmCandidate:
    return AlarmCandidate(
        alarm_type, severity or SEVERITY[alarm_type], ctx.device_id, ctx.elder_id, at, details
    )


# --- Explicit events -------------------------------------------------------------------------------


def is_night(at: dt.datetime, th: AlarmThresholds) -> bool:
    """Whether ``at`` (UTC) falls in the night window in Asia/Shanghai local time."""
    local = at.astimezone(SHANGHAI).time()
    if th.night_start <= th.night_end:
        return th.night_start <= local < th.night_end
    return local >= th.night_start or local < th.night_end


def alarms_for_event(event: Event, ctx: DeviceContext, th: AlarmThresholds) -> list[AlarmCandidate]:
    """Explicit device events (SOS, fall, smoke, gas, leak, tamper, low battery); a door opened at night."""
    out: list[AlarmCandidate] = []
    alarm_type = EVENT_ALARMS.get(event.type)
    if alarm_type is not None:
        out.append(_candidate(alarm_type, ctx, event.at, event=event.type))
    if event.type == "door_open" and ctx.elder_has_dementia and is_night(event.at, th):
        out.append(_candidate("DOOR_OPEN_NIGHT", ctx, event.at, event=event.type))
    return out


def alarms_for_readings(
    readings: Iterable[Reading], ctx: DeviceContext, th: AlarmThresholds
) -> list[AlarmCandidate]:
    """Immediate reading rules: battery below the threshold (percent)."""
    out: list[AlarmCandidate] = []
    for r in readings:
        if r.metric == "battery" and r.value < th.battery_low_pct:
            out.append(_candidate("LOW_BATTERY", ctx, r.at, battery=r.value))
            break
    return out


# --- Vital signs held for a duration ---------------------------------------------------------------


class VitalsTrack(msgspec.Struct, frozen=True):  # one per reading on the hot path: cheap to build
    """Per (device, metric) state: when the current breach began, and whether it already alarmed."""

    last_at: dt.datetime
    breach_since: dt.datetime | None = None
    raised: bool = False


def vitals_breach(metric: str, value: float, th: AlarmThresholds) -> tuple[bool, float]:
    """Whether a vital-sign reading is out of range, and how long (seconds) it must hold to alarm."""
    if metric == "hr":
        return (value < th.hr_low or value > th.hr_high), th.hr_hold_s
    if metric == "spo2":
        return value < th.spo2_low, th.spo2_hold_s
    if metric == "body_temp":
        return value > th.body_temp_high, th.body_temp_hold_s
    return False, 0.0


VITAL_METRICS: Final = frozenset({"hr", "spo2", "body_temp"})


def vitals_step(
    track: VitalsTrack | None, reading: Reading, ctx: DeviceContext, th: AlarmThresholds
) -> tuple[VitalsTrack | None, AlarmCandidate | None]:
    """Advance the breach tracker with one reading; raise VITALS once per breach that held long enough.

    Readings older than the last one seen are ignored (out of order). A normal reading ends the breach.
    """
    if reading.metric not in VITAL_METRICS:
        return track, None
    if track is not None and reading.at < track.last_at:
        return track, None
    breached, hold_s = vitals_breach(reading.metric, reading.value, th)
    if not breached:
        return VitalsTrack(last_at=reading.at), None
    since = track.breach_since if track is not None and track.breach_since is not None else reading.at
    held = (reading.at - since).total_seconds()
    if held >= hold_s and not (track is not None and track.raised):
        alarm = _candidate("VITALS", ctx, reading.at, metric=reading.metric, value=reading.value, held_s=held)
        return VitalsTrack(reading.at, since, raised=True), alarm
    raised = track.raised if track is not None and track.breach_since is not None else False
    return VitalsTrack(reading.at, since, raised), None


# --- Device offline --------------------------------------------------------------------------------


def offline_alarm(
    ctx: DeviceContext, last_seen_at: dt.datetime | None, now: dt.datetime, th: AlarmThresholds
) -> AlarmCandidate | None:
    """DEVICE_OFFLINE after 10 min (mains) or 25 h (battery) without any message.

    A device never seen since provisioning is not reported (it may not be installed yet).
    """
    if last_seen_at is None:
        return None
    limit = th.offline_mains_s if ctx.power == "mains" else th.offline_battery_s
    silent = (now - last_seen_at).total_seconds()
    if silent > limit:
        return _candidate(
            "DEVICE_OFFLINE", ctx, now, silent_s=round(silent), last_seen_at=last_seen_at.isoformat()
        )
    return None


# --- Inactivity ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DaySchedule:
    """The elder's waking day in local minutes after midnight, and the allowed quiet time (hours)."""

    start_minute: int = 7 * 60
    end_minute: int = 22 * 60
    inactivity_hours: float = 12


def daytime_seconds_between(start: dt.datetime, end: dt.datetime, schedule: DaySchedule) -> float:
    """Seconds of the interval [start, end) (UTC) that fall inside the local waking day windows."""
    if end <= start:
        return 0.0
    total = 0.0
    day = local_date(start) - dt.timedelta(days=1)
    last_day = local_date(end)
    while day <= last_day:
        midnight = dt.datetime.combine(day, dt.time(0), SHANGHAI)
        w0 = midnight + dt.timedelta(minutes=schedule.start_minute)
        w1 = midnight + dt.timedelta(minutes=schedule.end_minute)
        lo, hi = max(start, w0), min(end, w1)
        if hi > lo:
            total += (hi - lo).total_seconds()
        day += dt.timedelta(days=1)
    return total


def inactivity_alarm(
    *,
    elder_id: int,
    last_activity_at: dt.datetime | None,
    monitored_since: dt.datetime,
    schedule: DaySchedule,
    now: dt.datetime,
) -> AlarmCandidate | None:
    """INACTIVITY when no motion or door event for ``inactivity_hours`` of waking-day time.

    ``last_activity_at`` is the latest motion/door event of any of the elder's devices;
    ``monitored_since`` bounds the count when there has never been one (e.g. a new installation).
    """
    since = max(last_activity_at or monitored_since, monitored_since)
    quiet = daytime_seconds_between(since, now, schedule)
    if quiet >= schedule.inactivity_hours * 3600:
        return AlarmCandidate(
            "INACTIVITY",
            SEVERITY["INACTIVITY"],
            None,
            elder_id,
            now,
            {"quiet_daytime_s": round(quiet), "since": since.isoformat()},
        )
    return None


# --- Geofence --------------------------------------------------------------------------------------


def point_in_polygon(lat: float, lon: float, polygon: Sequence[Sequence[float]]) -> bool:
    """Ray casting on (lat, lon) vertices; fine for neighbourhood-sized zones away from the antimeridian."""
    inside = False
    n = len(polygon)
    for i in range(n):
        y1, x1 = polygon[i][0], polygon[i][1]
        y2, x2 = polygon[(i + 1) % n][0], polygon[(i + 1) % n][1]
        if (y1 > lat) != (y2 > lat):
            x_cross = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
            if lon < x_cross:
                inside = not inside
    return inside


def outside_safe_zone(lat: float, lon: float, accuracy_m: float, zone: Mapping[str, Any]) -> bool | None:
    """Whether a position is certainly outside the zone (``None`` if the zone is malformed).

    For a circle the fix's accuracy radius (metres) is given the benefit of the doubt: the position
    is outside only if even its nearest possible point is beyond the radius.
    """
    circle = zone.get("circle")
    if isinstance(circle, Mapping):
        try:
            d = haversine_m(lat, lon, float(circle["lat"]), float(circle["lon"]))
            return d - max(accuracy_m, 0.0) > float(circle["radius_m"])
        except (KeyError, TypeError, ValueError):
            return None
    polygon = zone.get("polygon")
    if isinstance(polygon, Sequence) and len(polygon) >= 3:
        return not point_in_polygon(lat, lon, polygon)
    return None


def geofence_alarm(
    ctx: DeviceContext, readings: Sequence[Reading], zone: Mapping[str, Any] | None
) -> AlarmCandidate | None:
    """WANDERING when a position (lat/lon readings of one fix) leaves the elder's safe zone."""
    if not zone:
        return None
    values = {r.metric: r for r in readings}
    if "lat" not in values or "lon" not in values:
        return None
    lat, lon = values["lat"].value, values["lon"].value
    acc = values["acc"].value if "acc" in values else 0.0
    if outside_safe_zone(lat, lon, acc, zone):
        severity = DEMENTIA_SEVERITY[AlarmType.WANDERING] if ctx.elder_has_dementia else None
        return _candidate("WANDERING", ctx, values["lat"].at, severity, lat=lat, lon=lon, acc=acc)
    return None
