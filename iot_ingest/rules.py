"""Pure alarm rules (DOMAIN §7): plain data and ``now`` in, alarm candidates out. No I/O, no clock.

Every function returns :class:`callcentre.contract.AlarmCandidate` values, which the call centre's
contract writes as ``alarm`` rows (one active alarm per device and type; a repeat increments its
counter). The thresholds and each alarm type's severity are dated policy (``alarm.*`` rows, seeded by
:mod:`callcentre.seed`): :func:`thresholds_from` turns the policy valid on a day into
:class:`AlarmThresholds`, and every alarm raised names the policy rows it applied (``details.policy``,
:meth:`core.policy.PolicyEntry.ref`). There is no threshold or severity in this module.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from callcentre.contract import AlarmCandidate, AlarmType, Severity
from core.clock import SHANGHAI, local_date
from core.geo import distance_to_boundary_m, haversine_m, point_in_polygon
from core.policy import PolicyEntry, PolicySnapshot
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

# The policy keys the rules read (prefix ``alarm.``; scopes as seeded in :mod:`callcentre.seed`).
POLICY_PREFIXES: Final = ("alarm.",)
HEART_RATE_KEY: Final = "alarm.vitals.heart_rate"
SPO2_KEY: Final = "alarm.vitals.spo2"
TEMPERATURE_KEY: Final = "alarm.vitals.temperature"
LOW_BATTERY_KEY: Final = "alarm.low_battery"
DOOR_OPEN_NIGHT_KEY: Final = "alarm.door_open_night"
DEVICE_OFFLINE_KEY: Final = "alarm.device_offline"  # scopes "mains" and "battery"
SEVERITY_KEY: Final = "alarm.severity"  # scope: the alarm type


@dataclass(frozen=True, slots=True)
class SeverityRule:
    """The severity of one alarm type (``alarm.severity[TYPE]``), and the one it takes when the elder
    has dementia, if the policy raises it (WANDERING as seeded)."""

    severity: str
    dementia_severity: str | None
    ref: str  # the policy row applied, ``alarm.severity[TYPE]@valid_from``

    def for_elder(self, has_dementia: bool) -> str:
        if has_dementia and self.dementia_severity is not None:
            return self.dementia_severity
        return self.severity


@dataclass(frozen=True, slots=True)
class AlarmThresholds:
    """The alarm policy valid on one day, as the pure rules take it. Units: bpm, %, °C, seconds,
    local (Asia/Shanghai) clock times. Build it with :func:`thresholds_from`; each ``*_ref`` names the
    policy row a value came from, so an alarm can record it (an elder's own override replaces the
    value and its ref with :func:`dataclasses.replace`)."""

    hr_low: float
    hr_high: float
    hr_hold_s: float
    hr_ref: str
    spo2_low: float
    spo2_hold_s: float
    spo2_ref: str
    body_temp_high: float
    body_temp_hold_s: float
    body_temp_ref: str
    battery_low_pct: float
    battery_ref: str
    offline_mains_s: float
    offline_mains_ref: str
    offline_battery_s: float
    offline_battery_ref: str
    night_start: dt.time
    night_end: dt.time
    night_ref: str
    severity: Mapping[str, SeverityRule]  # by alarm type


def _number(snapshot: PolicySnapshot, entry: PolicyEntry, name: str) -> float:
    """``entry``'s field ``name``; a row written before the field was seeded falls back to the seeded
    default's field (never to a number typed here)."""
    if name not in entry.value:
        seeded = snapshot.defaults.get((entry.key, entry.scope))
        if seeded is not None:
            return seeded.number(name)
    return entry.number(name)


def _on_scale(entry: PolicyEntry, value: object) -> str:
    if value not in set(Severity):
        raise ValueError(
            f"policy {entry.ref()}: severity {value!r} is not one of {[s.value for s in Severity]}"
        )
    return str(value)


def _severity_rule(entry: PolicyEntry) -> SeverityRule:
    dementia = entry.value.get("dementia_severity")
    return SeverityRule(
        _on_scale(entry, entry.text("severity")),
        None if dementia is None else _on_scale(entry, dementia),
        entry.ref(),
    )


def thresholds_from(snapshot: PolicySnapshot) -> AlarmThresholds:
    """The alarm policy valid on ``snapshot.day`` (rows, else the seeded defaults the snapshot carries).

    A key missing from both is :class:`core.policy.PolicyMissing`; a malformed value a
    :class:`TypeError` or :class:`ValueError` naming it: the caller keeps the policy it had."""
    hr = snapshot.entry(HEART_RATE_KEY)
    spo2 = snapshot.entry(SPO2_KEY)
    temp = snapshot.entry(TEMPERATURE_KEY)
    battery = snapshot.entry(LOW_BATTERY_KEY)
    night = snapshot.entry(DOOR_OPEN_NIGHT_KEY)
    mains = snapshot.entry(DEVICE_OFFLINE_KEY, "mains")
    on_battery = snapshot.entry(DEVICE_OFFLINE_KEY, "battery")
    return AlarmThresholds(
        hr_low=_number(snapshot, hr, "low_bpm"),
        hr_high=_number(snapshot, hr, "high_bpm"),
        hr_hold_s=_number(snapshot, hr, "sustain_seconds"),
        hr_ref=hr.ref(),
        spo2_low=_number(snapshot, spo2, "low_pct"),
        spo2_hold_s=_number(snapshot, spo2, "sustain_seconds"),
        spo2_ref=spo2.ref(),
        body_temp_high=_number(snapshot, temp, "high_centi_c") / 100,
        body_temp_hold_s=_number(snapshot, temp, "sustain_seconds"),
        body_temp_ref=temp.ref(),
        battery_low_pct=_number(snapshot, battery, "pct"),
        battery_ref=battery.ref(),
        offline_mains_s=_number(snapshot, mains, "seconds"),
        offline_mains_ref=mains.ref(),
        offline_battery_s=_number(snapshot, on_battery, "seconds"),
        offline_battery_ref=on_battery.ref(),
        night_start=dt.time.fromisoformat(night.text("start")),
        night_end=dt.time.fromisoformat(night.text("end")),
        night_ref=night.ref(),
        severity={t.value: _severity_rule(snapshot.entry(SEVERITY_KEY, t.value)) for t in AlarmType},
    )


@dataclass(frozen=True, slots=True)
class DeviceContext:
    """What the rules need to know about the device and its elder."""

    device_id: int
    elder_id: int | None
    kind: str
    power: str = "battery"  # mains | battery
    elder_has_dementia: bool = False


def _candidate(
    alarm_type: str,
    ctx: DeviceContext,
    at: dt.datetime,
    th: AlarmThresholds,
    *refs: str,
    **details: Any,
) -> AlarmCandidate:
    """An alarm with the severity the policy gives its type (and the elder), naming in
    ``details.policy`` the threshold rows ``refs`` and the severity row applied."""
    rule = th.severity[alarm_type]
    details["policy"] = [*refs, rule.ref]
    return AlarmCandidate(
        alarm_type, rule.for_elder(ctx.elder_has_dementia), ctx.device_id, ctx.elder_id, at, details
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
        out.append(_candidate(alarm_type, ctx, event.at, th, event=event.type))
    if event.type == "door_open" and ctx.elder_has_dementia and is_night(event.at, th):
        out.append(_candidate("DOOR_OPEN_NIGHT", ctx, event.at, th, th.night_ref, event=event.type))
    return out


def battery_alarm(reading: Reading, ctx: DeviceContext, th: AlarmThresholds) -> AlarmCandidate | None:
    """LOW_BATTERY when a battery reading (percent) is below the threshold."""
    if reading.metric == "battery" and reading.value < th.battery_low_pct:
        return _candidate("LOW_BATTERY", ctx, reading.at, th, th.battery_ref, battery=reading.value)
    return None


# --- Vital signs held for a duration ---------------------------------------------------------------


class VitalsTrack(msgspec.Struct, frozen=True):  # one per reading on the hot path: cheap to build
    """Per (device, metric) state: when the current breach began, and whether it already alarmed."""

    last_at: dt.datetime
    breach_since: dt.datetime | None = None
    raised: bool = False


def vitals_breach(metric: str, value: float, th: AlarmThresholds) -> tuple[bool, float, str]:
    """Whether a vital-sign reading is out of range, how long (seconds) it must hold to alarm, and
    the policy row that says so (``""`` for a metric that is not a vital sign)."""
    if metric == "hr":
        return (value < th.hr_low or value > th.hr_high), th.hr_hold_s, th.hr_ref
    if metric == "spo2":
        return value < th.spo2_low, th.spo2_hold_s, th.spo2_ref
    if metric == "body_temp":
        return value > th.body_temp_high, th.body_temp_hold_s, th.body_temp_ref
    return False, 0.0, ""


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
    breached, hold_s, ref = vitals_breach(reading.metric, reading.value, th)
    if not breached:
        return VitalsTrack(last_at=reading.at), None
    since = track.breach_since if track is not None and track.breach_since is not None else reading.at
    held = (reading.at - since).total_seconds()
    if held >= hold_s and not (track is not None and track.raised):
        alarm = _candidate(
            "VITALS", ctx, reading.at, th, ref, metric=reading.metric, value=reading.value, held_s=held
        )
        return VitalsTrack(reading.at, since, raised=True), alarm
    raised = track.raised if track is not None and track.breach_since is not None else False
    return VitalsTrack(reading.at, since, raised), None


# --- Device offline --------------------------------------------------------------------------------


def offline_alarm(
    ctx: DeviceContext, last_seen_at: dt.datetime | None, now: dt.datetime, th: AlarmThresholds
) -> AlarmCandidate | None:
    """DEVICE_OFFLINE after the policy's silence (``alarm.device_offline[mains|battery]``, seconds).

    A device never seen since provisioning is not reported (it may not be installed yet).
    """
    if last_seen_at is None:
        return None
    if ctx.power == "mains":
        limit, ref = th.offline_mains_s, th.offline_mains_ref
    else:
        limit, ref = th.offline_battery_s, th.offline_battery_ref
    silent = (now - last_seen_at).total_seconds()
    if silent > limit:
        return _candidate(
            "DEVICE_OFFLINE", ctx, now, th, ref, silent_s=round(silent), last_seen_at=last_seen_at.isoformat()
        )
    return None


# --- Inactivity ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DaySchedule:
    """The elder's waking day in local minutes after midnight (``end_minute`` up to 1440, after
    ``start_minute``), and the quiet time it allows (hours of waking day). The values are the elder's
    own monitoring settings or the dated living-alone default (:mod:`iot_ingest.monitoring.rules`)."""

    start_minute: int
    end_minute: int
    inactivity_hours: float


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
    th: AlarmThresholds,
    policy: Sequence[str] = (),
) -> AlarmCandidate | None:
    """INACTIVITY when no motion or door event for ``inactivity_hours`` of waking-day time.

    ``last_activity_at`` is the latest motion/door event of any of the elder's devices;
    ``monitored_since`` bounds the count when there has never been one (e.g. a new installation).
    ``policy`` names the dated policy the schedule came from (empty: the elder's own settings); the
    alarm's details record it with the severity row applied (from ``th``).
    """
    since = max(last_activity_at or monitored_since, monitored_since)
    # Counting further back than the allowance needs changes nothing but the loop's length.
    day_s = max(schedule.end_minute - schedule.start_minute, 1) * 60
    enough = dt.timedelta(days=math.ceil(schedule.inactivity_hours * 3600 / day_s) + 2)
    quiet = daytime_seconds_between(max(since, now - enough), now, schedule)
    if quiet >= schedule.inactivity_hours * 3600:
        rule = th.severity["INACTIVITY"]
        details: dict[str, Any] = {"quiet_daytime_s": round(quiet), "since": since.isoformat()}
        if not policy:
            details["settings"] = "elder"
        details["policy"] = [*policy, rule.ref]
        return AlarmCandidate("INACTIVITY", rule.severity, None, elder_id, now, details)
    return None


# --- Geofence --------------------------------------------------------------------------------------


def outside_safe_zone(lat: float, lon: float, accuracy_m: float, zone: Mapping[str, Any]) -> bool | None:
    """Whether a position is certainly outside the zone (``None`` if the zone is malformed).

    The fix's accuracy radius (metres) is given the benefit of the doubt: the position is outside
    only if even its nearest possible point is outside (beyond a circle's radius, or outside a
    polygon and farther than the accuracy from its boundary). A point on the fence is inside.
    """
    slack = max(accuracy_m, 0.0)
    circle = zone.get("circle")
    if isinstance(circle, Mapping):
        try:
            d = haversine_m(lat, lon, float(circle["lat"]), float(circle["lon"]))
            return d - slack > float(circle["radius_m"])
        except (KeyError, TypeError, ValueError):
            return None
    polygon = zone.get("polygon")
    if isinstance(polygon, Sequence) and len(polygon) >= 3:
        try:
            if point_in_polygon(lat, lon, polygon):
                return False
            return slack == 0.0 or distance_to_boundary_m(lat, lon, polygon) > slack
        except (IndexError, TypeError, ValueError):
            return None
    return None


def geofence_alarm(
    ctx: DeviceContext, readings: Sequence[Reading], zone: Mapping[str, Any] | None, th: AlarmThresholds
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
        return _candidate("WANDERING", ctx, values["lat"].at, th, lat=lat, lon=lon, acc=acc)
    return None
