"""Wire types of an elder's monitoring settings: what ``PUT`` takes (the elder's own settings) and
what ``GET`` answers (the settings in effect, each part with where it came from)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from core.types import NO_NUL, Input, Lat, Lon

HHMM = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="Local time HH:MM", examples=["07:00"]
    ),
]
HHMM_END = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$",
        description="Local time HH:MM; 24:00 is the end of the day",
        examples=["22:00"],
    ),
]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
ChangeNote = Annotated[str, msgspec.Meta(max_length=200, pattern=NO_NUL)]
RadiusM = Annotated[float, msgspec.Meta(ge=20, le=20_000, description="Metres (20-20,000)")]
Vertex = tuple[Lat, Lon]
# 3 to 200 vertices, plus a closing vertex equal to the first if the client sends one.
Polygon = Annotated[
    list[Vertex], msgspec.Meta(min_length=3, max_length=201, description="[lat, lon] vertices, 3-200")
]
Source = Literal["elder", "policy", "none"]


# --- What a PUT takes: the elder's own settings -----------------------------------------------------


class DaytimeIn(Input):
    """The waking day (local times, ``end`` after ``start``) and the hours of it without motion or
    door events that raise INACTIVITY."""

    start: HHMM
    end: HHMM_END
    inactivity_hours: Annotated[int, msgspec.Meta(ge=1, le=168)]


class NightIn(Input):
    """The night window for doors (local times; may span midnight, e.g. 22:00-06:00)."""

    start: HHMM
    end: HHMM


class CircleIn(Input):
    lat: Lat
    lon: Lon
    radius_m: RadiusM


class SafeZoneIn(Input):
    """Exactly one of ``circle`` (centre and radius) and ``polygon`` (a simple polygon, not crossing
    itself, within 50 km of its first vertex)."""

    circle: CircleIn | None = None
    polygon: Polygon | None = None


class VitalOverrideIn(Input):
    """An elder's own threshold and why it departs from the policy (required)."""

    value: float
    reason: Reason


class VitalsIn(Input):
    """Vital-sign thresholds of the elder's own; a threshold not given is the policy's."""

    heart_rate_low_bpm: VitalOverrideIn | None = None
    heart_rate_high_bpm: VitalOverrideIn | None = None
    spo2_low_pct: VitalOverrideIn | None = None
    temperature_high_c: VitalOverrideIn | None = None


class MonitoringIn(Input):
    """The elder's own settings, replacing those stored. A part left out (or null) is not the
    elder's own: the dated default applies to it (for the daytime watch: only to elders living
    alone)."""

    daytime: DaytimeIn | None = None
    night: NightIn | None = None
    safe_zone: SafeZoneIn | None = None
    vitals: VitalsIn = msgspec.field(default_factory=VitalsIn)
    reason: ChangeNote = ""


# --- What a GET answers: the settings in effect ----------------------------------------------------


class DaytimeRead(msgspec.Struct):
    """``source`` ``none``: the elder is not watched for inactivity (no window of their own, and no
    default for their living situation); the values are then null."""

    source: Source
    policy: str | None
    start: str | None
    end: str | None
    inactivity_hours: float | None


class NightRead(msgspec.Struct):
    source: Source
    policy: str | None
    start: str
    end: str


class CircleRead(msgspec.Struct):
    lat: float
    lon: float
    radius_m: float


class SafeZoneRead(msgspec.Struct):
    """``source`` ``none``: no safe zone, so no WANDERING alarms."""

    source: Source
    circle: CircleRead | None
    polygon: list[tuple[float, float]] | None


class VitalRead(msgspec.Struct):
    source: Source
    policy: str | None
    value: float
    unit: str
    reason: str | None


class VitalsRead(msgspec.Struct):
    heart_rate_low_bpm: VitalRead
    heart_rate_high_bpm: VitalRead
    spo2_low_pct: VitalRead
    temperature_high_c: VitalRead


class MonitoringRead(msgspec.Struct):
    """The settings that apply to the elder on ``on`` (a local date): each part says whether it is the
    elder's own (``elder``) or which dated policy row it comes from (``policy``: key[scope]@valid_from).
    ``updated_*`` and ``reason`` describe the last change of the elder's own settings, if any."""

    elder_id: int
    living_situation: str
    has_dementia: bool
    on: dt.date
    daytime: DaytimeRead
    night: NightRead
    safe_zone: SafeZoneRead
    vitals: VitalsRead
    updated_at: dt.datetime | None
    updated_by: int | None
    reason: str | None
