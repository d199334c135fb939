"""Pure monitoring rules: which settings apply to an elder, and where each part came from.

An elder's own settings (``elder_monitoring``) win part by part. A part the elder has not set falls
back to dated policy, read through :mod:`core.policy` with the call centre's seeded defaults:

- daytime window and inactivity allowance: ``alarm.monitoring_default`` with the elder's living
  situation as its scope (seeded for ``alone``: living-alone elders are watched out of the box; a
  scope not in the policy means no inactivity watch unless the elder has their own window);
- night window for doors and vital-sign thresholds: the alarm policy the ingest's rules apply
  (:func:`iot_ingest.rules.thresholds_from`: ``alarm.door_open_night``,
  ``alarm.vitals.heart_rate|spo2|temperature``);
- safe zone: the elder's own only (there is no default zone).

The ingest applies an elder's own thresholds on top of the policy's with :func:`apply_overrides`.
Times of day are local (Asia/Shanghai) minutes after midnight; ``HH:MM`` on the wire and in policy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from core.policy import PolicyEntry, PolicySnapshot
from iot_ingest.rules import POLICY_PREFIXES as ALARM_POLICY_PREFIXES
from iot_ingest.rules import AlarmThresholds, DaySchedule, thresholds_from

DEFAULT_KEY: Final = "alarm.monitoring_default"  # scope: a living situation (registry.LivingSituation)
# What a reader of the effective settings loads (one query): the alarm policy, which holds the default.
POLICY_PREFIXES: Final = ALARM_POLICY_PREFIXES
MINUTES_PER_DAY: Final = 24 * 60

Source = Literal["elder", "policy", "none"]


def parse_hhmm(text: str, *, allow_end_of_day: bool = False) -> int:
    """Minutes after midnight of ``HH:MM`` (``24:00`` too when ``allow_end_of_day``); ValueError else."""
    if len(text) != 5 or text[2] != ":" or not (text[:2] + text[3:]).isdigit():
        raise ValueError(f"not a time of day (HH:MM): {text!r}")
    hours, minutes = int(text[:2]), int(text[3:])
    if allow_end_of_day and (hours, minutes) == (24, 0):
        return MINUTES_PER_DAY
    if hours > 23 or minutes > 59:
        raise ValueError(f"not a time of day (HH:MM): {text!r}")
    return hours * 60 + minutes


def hhmm(minute: int) -> str:
    """``HH:MM`` of minutes after midnight (1440 is ``24:00``)."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def minute_time(minute: int) -> dt.time:
    """The clock time of minutes after midnight (1440, the end of the day, is midnight)."""
    return dt.time((minute // 60) % 24, minute % 60)


# --- Vital-sign overrides --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VitalSpec:
    """One overridable vital-sign threshold: its wire name, the :class:`AlarmThresholds` field it
    replaces (and the one naming the policy row it comes from), its unit and the range an override
    may take."""

    name: str
    threshold: str
    ref: str  # the AlarmThresholds field naming the policy row of the threshold
    unit: str
    low: float
    high: float


VITALS: Final[tuple[VitalSpec, ...]] = (
    VitalSpec("heart_rate_low_bpm", "hr_low", "hr_ref", "bpm", 20, 100),
    VitalSpec("heart_rate_high_bpm", "hr_high", "hr_ref", "bpm", 60, 220),
    VitalSpec("spo2_low_pct", "spo2_low", "spo2_ref", "%", 70, 99),
    VitalSpec("temperature_high_c", "body_temp_high", "body_temp_ref", "°C", 37, 41),
)
VITALS_BY_THRESHOLD: Final[Mapping[str, VitalSpec]] = {v.threshold: v for v in VITALS}
# How an alarm's ``details.policy`` names an elder's own setting it applied.
OWN_REF: Final = "elder_monitoring"
VITALS_BY_NAME: Final[Mapping[str, VitalSpec]] = {v.name: v for v in VITALS}


@dataclass(frozen=True, slots=True)
class ThresholdOverrides:
    """An elder's own values for some of the rules' thresholds (``None``: the policy's applies)."""

    hr_low: float | None = None
    hr_high: float | None = None
    spo2_low: float | None = None
    body_temp_high: float | None = None
    night_start: dt.time | None = None
    night_end: dt.time | None = None

    def changes(self) -> dict[str, Any]:
        return {f: v for f in self.__dataclass_fields__ if (v := getattr(self, f)) is not None}


def apply_overrides(th: AlarmThresholds, overrides: ThresholdOverrides | None) -> AlarmThresholds:
    """The policy's thresholds with the elder's own values in place of those they set. The refs an
    alarm records say so: a vital threshold's becomes ``<policy ref>+elder_monitoring.<name>`` (the
    policy row still gives the rest, e.g. how long a breach must hold), the night window's
    ``elder_monitoring.night`` (both ends are the elder's)."""
    if overrides is None:
        return th
    changes = overrides.changes()
    if not changes:
        return th
    refs: dict[str, Any] = {}
    for threshold in list(changes):
        spec = VITALS_BY_THRESHOLD.get(threshold)
        if spec is None:
            refs["night_ref"] = f"{OWN_REF}.night"
        else:
            refs[spec.ref] = f"{refs.get(spec.ref, getattr(th, spec.ref))}+{OWN_REF}.{spec.name}"
    return replace(th, **(changes | refs))


def overrides_from_row(
    vitals: Mapping[str, Any] | None, night_start_minute: int | None, night_end_minute: int | None
) -> ThresholdOverrides | None:
    """The thresholds an ``elder_monitoring`` row overrides (``vital_overrides`` JSON as stored:
    ``{name: {"value", "reason"}}``, unknown names ignored), or ``None`` when it overrides none."""
    changes: dict[str, Any] = {}
    for name, item in (vitals or {}).items():
        spec = VITALS_BY_NAME.get(name)
        if spec is not None and isinstance(item, Mapping) and isinstance(item.get("value"), int | float):
            changes[spec.threshold] = float(item["value"])
    if night_start_minute is not None and night_end_minute is not None:
        changes["night_start"] = minute_time(night_start_minute)
        changes["night_end"] = minute_time(night_end_minute)
    return ThresholdOverrides(**changes) if changes else None


# --- The effective settings ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OwnSettings:
    """An elder's own settings as stored; ``None`` parts are not set (the default applies)."""

    daytime: DaySchedule | None = None
    night: tuple[int, int] | None = None  # (start, end) minutes; may span midnight
    safe_zone: Mapping[str, Any] | None = None
    vitals: Mapping[str, tuple[float, str]] = field(default_factory=dict)  # name -> (value, reason)


@dataclass(frozen=True, slots=True)
class Part:
    """Where one part of the effective settings came from: the elder's own row, a policy entry
    (``policy`` is its ``key[scope]@valid_from``), or nowhere (``none``: the part does not apply)."""

    source: Source
    policy: str | None = None

    @classmethod
    def of(cls, entry: PolicyEntry) -> Part:
        return cls("policy", entry.ref())


ELDER: Final = Part("elder")
NONE: Final = Part("none")


@dataclass(frozen=True, slots=True)
class EffectiveVital:
    spec: VitalSpec
    value: float
    part: Part
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Effective:
    """The settings that apply to an elder on ``day``, part by part, each with its origin."""

    day: dt.date
    daytime: DaySchedule | None
    daytime_from: Part
    night: tuple[int, int]
    night_from: Part
    safe_zone: Mapping[str, Any] | None
    safe_zone_from: Part
    vitals: tuple[EffectiveVital, ...]


def _minute(t: dt.time) -> int:
    return t.hour * 60 + t.minute


def default_daytime(
    snapshot: PolicySnapshot, living_situation: str
) -> tuple[DaySchedule, PolicyEntry] | None:
    """The dated default daytime watch for elders in this living situation, if the policy has one."""
    entry = snapshot.find(DEFAULT_KEY, living_situation)
    if entry is None:
        return None
    return daytime_of(entry), entry


def daytime_of(entry: PolicyEntry) -> DaySchedule:
    """The :class:`DaySchedule` an ``alarm.monitoring_default`` value describes
    (``{"day_start": "HH:MM", "day_end": "HH:MM", "inactivity_hours": n}``); a value that is not one
    (a window ending before it starts, no hours) is a :class:`ValueError` naming the row."""
    schedule = DaySchedule(
        parse_hhmm(entry.text("day_start")),
        parse_hhmm(entry.text("day_end"), allow_end_of_day=True),
        entry.number("inactivity_hours"),
    )
    if schedule.end_minute <= schedule.start_minute or schedule.inactivity_hours <= 0:
        raise ValueError(f"policy {entry.ref()}: not a daytime window with an allowance: {dict(entry.value)}")
    return schedule


def effective(own: OwnSettings | None, living_situation: str, snapshot: PolicySnapshot) -> Effective:
    """Each part from the elder's own settings when set, else from the policy valid on the
    snapshot's day (see the module docstring)."""
    own = own or OwnSettings()
    daytime: DaySchedule | None = own.daytime
    daytime_from = ELDER
    if daytime is None:
        found = default_daytime(snapshot, living_situation)
        daytime, daytime_from = (found[0], Part.of(found[1])) if found else (None, NONE)
    th = thresholds_from(snapshot)  # the alarm policy of the day: the night window, the vital signs
    if own.night is not None:
        night, night_from = own.night, ELDER
    else:
        night = (_minute(th.night_start), _minute(th.night_end))
        night_from = Part("policy", th.night_ref)
    vitals: list[EffectiveVital] = []
    for spec in VITALS:
        mine = own.vitals.get(spec.name)
        if mine is not None:
            vitals.append(EffectiveVital(spec, mine[0], ELDER, mine[1]))
        else:
            value = round(float(getattr(th, spec.threshold)), 2)
            vitals.append(EffectiveVital(spec, value, Part("policy", getattr(th, spec.ref))))
    return Effective(
        day=snapshot.day,
        daytime=daytime,
        daytime_from=daytime_from,
        night=night,
        night_from=night_from,
        safe_zone=own.safe_zone,
        safe_zone_from=ELDER if own.safe_zone is not None else NONE,
        vitals=tuple(vitals),
    )
