"""Table-driven tests of the pure alarm rules (DOMAIN §7)."""

from __future__ import annotations

import datetime as dt

import pytest

from callcentre.seed import POLICY_DEFAULTS
from core.geo import haversine_m
from core.policy import snapshot_from_rows
from iot_ingest.normalise import Event, Reading
from iot_ingest.rules import (
    DaySchedule,
    DeviceContext,
    VitalsTrack,
    alarms_for_event,
    battery_alarm,
    daytime_seconds_between,
    geofence_alarm,
    inactivity_alarm,
    offline_alarm,
    thresholds_from,
    vitals_step,
)

pytestmark = pytest.mark.unit

# The seeded policy (DOMAIN §7), as the ingest reads it when no row was ever written.
TH = thresholds_from(snapshot_from_rows(dt.date(2026, 11, 29), [], POLICY_DEFAULTS))
CTX = DeviceContext(device_id=1, elder_id=10, kind="sos_button")
DEMENTIA = DeviceContext(device_id=1, elder_id=10, kind="door", elder_has_dementia=True)
# 2026-11-29 08:00 UTC = 16:00 Asia/Shanghai.
T0 = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC)


def _local(hour: int, minute: int = 0, day: int = 29) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=dt.timezone(dt.timedelta(hours=8))).astimezone(
        dt.UTC
    )


@pytest.mark.parametrize(
    ("etype", "ctx", "at", "expected"),
    [
        ("sos", CTX, T0, [("SOS", "CRITICAL")]),
        ("fall", CTX, T0, [("FALL", "CRITICAL")]),
        ("smoke", CTX, T0, [("SMOKE", "CRITICAL")]),
        ("gas", CTX, T0, [("GAS", "CRITICAL")]),
        ("water_leak", CTX, T0, [("WATER_LEAK", "MAJOR")]),
        ("tamper", CTX, T0, [("TAMPER", "MINOR")]),
        ("low_battery", CTX, T0, [("LOW_BATTERY", "WARNING")]),
        ("motion", CTX, T0, []),
        ("button", CTX, T0, []),
        ("maybe_fall", CTX, T0, []),
        ("door_open", DEMENTIA, _local(2, 30), [("DOOR_OPEN_NIGHT", "MINOR")]),
        ("door_open", DEMENTIA, _local(0, 0), [("DOOR_OPEN_NIGHT", "MINOR")]),
        ("door_open", DEMENTIA, _local(5, 0), []),
        ("door_open", DEMENTIA, _local(23, 59), []),
        ("door_open", CTX, _local(2, 30), []),
    ],
)
def test_event_alarms(
    etype: str, ctx: DeviceContext, at: dt.datetime, expected: list[tuple[str, str]]
) -> None:
    out = alarms_for_event(Event(etype, at), ctx, TH)
    assert [(a.type, a.severity) for a in out] == expected
    for a in out:
        assert a.device_id == ctx.device_id
        assert a.elder_id == ctx.elder_id
        assert a.at == at


@pytest.mark.parametrize(("battery", "alarm"), [(14.9, True), (15, False), (80, False)])
def test_low_battery_reading(battery: float, alarm: bool) -> None:
    out = battery_alarm(Reading("battery", battery, T0), CTX, TH)
    assert (out.type if out else None) == ("LOW_BATTERY" if alarm else None)


def _run_vitals(metric: str, series: list[tuple[int, float]]) -> list[int]:
    """Feed (seconds after T0, value) readings; return the offsets at which VITALS was raised."""
    track: VitalsTrack | None = None
    raised: list[int] = []
    for offset, value in series:
        track, alarm = vitals_step(track, Reading(metric, value, T0 + dt.timedelta(seconds=offset)), CTX, TH)
        if alarm is not None:
            assert alarm.type == "VITALS"
            assert alarm.severity == "MAJOR"
            raised.append(offset)
    return raised


@pytest.mark.parametrize(
    ("metric", "series", "raised_at"),
    [
        ("hr", [(0, 140), (60, 142), (119, 141)], []),  # not yet held 2 min
        ("hr", [(0, 140), (60, 142), (120, 141), (180, 150)], [120]),  # once per breach
        ("hr", [(0, 35), (60, 36), (120, 38)], [120]),  # bradycardia
        ("hr", [(0, 140), (60, 80), (120, 140), (200, 140)], []),  # broken by a normal reading
        ("hr", [(0, 140), (130, 140), (140, 80), (150, 140), (280, 140)], [130, 280]),  # two breaches
        ("hr", [(0, 130), (200, 130), (400, 40)], []),  # boundaries are normal
        ("hr", [(60, 140), (0, 80), (180, 140)], [180]),  # out-of-order reading ignored
        ("spo2", [(0, 89)], [0]),
        ("spo2", [(0, 90)], []),
        ("body_temp", [(0, 38.6)], [0]),
        ("body_temp", [(0, 38.5)], []),
        ("steps", [(0, 99999)], []),
    ],
)
def test_vitals_held_for_duration(metric: str, series: list[tuple[int, float]], raised_at: list[int]) -> None:
    assert _run_vitals(metric, series) == raised_at


@pytest.mark.parametrize(
    ("power", "silent", "alarm"),
    [
        ("mains", dt.timedelta(minutes=10), False),
        ("mains", dt.timedelta(minutes=10, seconds=1), True),
        ("battery", dt.timedelta(hours=24), False),
        ("battery", dt.timedelta(hours=25, seconds=1), True),
    ],
)
def test_device_offline(power: str, silent: dt.timedelta, alarm: bool) -> None:
    ctx = DeviceContext(device_id=2, elder_id=10, kind="motion", power=power)
    out = offline_alarm(ctx, T0 - silent, T0, TH)
    assert (out is not None) == alarm
    if out:
        assert out.type == "DEVICE_OFFLINE"
        assert out.severity == "WARNING"
    assert offline_alarm(ctx, None, T0, TH) is None


SCHED = DaySchedule(start_minute=7 * 60, end_minute=22 * 60, inactivity_hours=12)


@pytest.mark.parametrize(
    ("start", "end", "seconds"),
    [
        (_local(8), _local(10), 2 * 3600),
        (_local(5), _local(8), 3600),
        (_local(21), _local(23), 3600),
        (_local(21, day=28), _local(8, day=29), 2 * 3600),
        (_local(7, day=27), _local(7, day=29), 2 * 15 * 3600),
        (_local(10), _local(9), 0),
    ],
)
def test_daytime_seconds(start: dt.datetime, end: dt.datetime, seconds: float) -> None:
    assert daytime_seconds_between(start, end, SCHED) == seconds


@pytest.mark.parametrize(
    ("last_activity", "now", "alarm"),
    [
        (_local(7), _local(18, 59), False),  # 11h59 of quiet daytime
        (_local(7), _local(19), True),  # 12 h
        (_local(20, day=28), _local(9, day=29), False),  # night does not count
        (_local(14, day=28), _local(9, day=29), False),  # 8 h yesterday + 2 h today = 10 h
        (None, _local(22, day=29), True),  # never any activity since monitoring began
    ],
)
def test_inactivity(last_activity: dt.datetime | None, now: dt.datetime, alarm: bool) -> None:
    out = inactivity_alarm(
        elder_id=10,
        last_activity_at=last_activity,
        monitored_since=_local(7, day=29) if last_activity is None else _local(0, day=1),
        schedule=SCHED,
        now=now,
        th=TH,
    )
    assert (out is not None) == alarm
    if out:
        assert out.type == "INACTIVITY"
        assert out.elder_id == 10
        assert out.device_id is None


HOME = (30.9200, 113.9100)
CIRCLE = {"circle": {"lat": HOME[0], "lon": HOME[1], "radius_m": 500}}
SQUARE = {"polygon": [[30.91, 113.90], [30.93, 113.90], [30.93, 113.92], [30.91, 113.92]]}


def _fix(lat: float, lon: float, acc: float = 0) -> list[Reading]:
    return [Reading("lat", lat, T0), Reading("lon", lon, T0), Reading("acc", acc, T0)]


@pytest.mark.parametrize(
    ("zone", "fix", "ctx", "expected"),
    [
        (CIRCLE, _fix(30.9200, 113.9100), CTX, None),
        (CIRCLE, _fix(30.9240, 113.9100), CTX, None),  # ~445 m north
        (CIRCLE, _fix(30.9260, 113.9100), CTX, "MAJOR"),  # ~667 m north
        (CIRCLE, _fix(30.9260, 113.9100), DEMENTIA, "CRITICAL"),
        (CIRCLE, _fix(30.9260, 113.9100, acc=200), CTX, None),  # could still be inside
        (SQUARE, _fix(30.92, 113.91), CTX, None),
        (SQUARE, _fix(30.95, 113.91), CTX, "MAJOR"),
        (SQUARE, _fix(30.92, 113.93), DEMENTIA, "CRITICAL"),
        (None, _fix(40.0, 116.0), CTX, None),
        ({"circle": {"lat": 1}}, _fix(40.0, 116.0), CTX, None),  # malformed zone: no alarm
    ],
)
def test_geofence(
    zone: dict[str, object] | None, fix: list[Reading], ctx: DeviceContext, expected: str | None
) -> None:
    out = geofence_alarm(ctx, fix, zone, TH)
    assert (out.severity if out else None) == expected
    if out:
        assert out.type == "WANDERING"


def test_haversine_one_degree_latitude() -> None:
    assert haversine_m(30.0, 114.0, 31.0, 114.0) == pytest.approx(111_195, rel=1e-3)
