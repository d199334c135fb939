"""Every alarm rule applies the dated policy: a row valid from day D changes the rule's behaviour on D
and not on the day before (DOMAIN §7, issue #10). Pure: snapshots built with ``snapshot_from_rows``
over the seeded defaults, as the ingest reads them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from callcentre.contract import AlarmCandidate, AlarmType, Severity
from callcentre.seed import POLICY_DEFAULTS
from core.clock import SHANGHAI
from core.policy import PolicyMissing, snapshot_from_rows
from iot_ingest.alarm_policy import PolicyByDay, day_bounds
from iot_ingest.normalise import Event, Message, Reading, SourceRef
from iot_ingest.rules import (
    AlarmThresholds,
    DaySchedule,
    DeviceContext,
    VitalsTrack,
    alarms_for_event,
    battery_alarm,
    geofence_alarm,
    inactivity_alarm,
    offline_alarm,
    thresholds_from,
    vitals_step,
)

pytestmark = pytest.mark.unit

D = dt.date(2026, 6, 1)  # the new row's valid_from
BEFORE = D - dt.timedelta(days=1)
CTX = DeviceContext(device_id=1, elder_id=10, kind="vitals_band")
DEMENTIA = DeviceContext(device_id=1, elder_id=10, kind="door", elder_has_dementia=True)
Row = tuple[str, str, dict[str, Any], dt.date, dt.date | None]


def _at(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    """A local (Asia/Shanghai) time on ``day``, as the UTC instant a device message carries."""
    return dt.datetime.combine(day, dt.time(hour, minute, second), SHANGHAI).astimezone(dt.UTC)


def _th(day: dt.date, *rows: Row) -> AlarmThresholds:
    return thresholds_from(snapshot_from_rows(day, rows, POLICY_DEFAULTS))


def _row(key: str, value: dict[str, Any], scope: str = "*") -> Row:
    return (key, scope, value, D, None)


def _ref(key: str, scope: str, day: dt.date) -> str:
    return f"{key}[{scope}]@{day.isoformat()}"


SEEDED = dt.date(2026, 1, 1)  # POLICY_EPOCH: the seeded defaults' valid_from


def _vitals(metric: str, series: list[tuple[int, float]], day: dt.date, th: AlarmThresholds) -> list[int]:
    """Feed (seconds after 10:00 local on ``day``, value) readings; the offsets that raised VITALS."""
    track: VitalsTrack | None = None
    raised: list[int] = []
    for offset, value in series:
        at = _at(day, 10) + dt.timedelta(seconds=offset)
        track, alarm = vitals_step(track, Reading(metric, value, at), CTX, th)
        if alarm is not None:
            raised.append(offset)
    return raised


# (name, policy row from D, metric, readings, VITALS raised at (offsets) the day before, and on D)
VITALS_CASES: list[tuple[str, Row, str, list[tuple[int, float]], list[int], list[int]]] = [
    (
        "heart rate low",
        _row("alarm.vitals.heart_rate", {"low_bpm": 50, "high_bpm": 130, "sustain_seconds": 120}),
        "hr",
        [(0, 45), (60, 45), (120, 45)],
        [],
        [120],
    ),
    (
        "heart rate high",
        _row("alarm.vitals.heart_rate", {"low_bpm": 40, "high_bpm": 110, "sustain_seconds": 120}),
        "hr",
        [(0, 120), (60, 120), (120, 120)],
        [],
        [120],
    ),
    (
        "heart rate sustain",
        _row("alarm.vitals.heart_rate", {"low_bpm": 40, "high_bpm": 130, "sustain_seconds": 30}),
        "hr",
        [(0, 150), (60, 150), (120, 150)],
        [120],
        [60],
    ),
    (
        "SpO2 low",
        _row("alarm.vitals.spo2", {"low_pct": 92, "sustain_seconds": 0}),
        "spo2",
        [(0, 91)],
        [],
        [0],
    ),
    (
        "SpO2 sustain",
        _row("alarm.vitals.spo2", {"low_pct": 90, "sustain_seconds": 60}),
        "spo2",
        [(0, 85), (30, 85), (60, 85)],
        [0],
        [60],
    ),
    (
        "temperature high",
        _row("alarm.vitals.temperature", {"high_centi_c": 3800, "sustain_seconds": 0}),
        "body_temp",
        [(0, 38.2)],
        [],
        [0],
    ),
    (
        "temperature sustain",
        _row("alarm.vitals.temperature", {"high_centi_c": 3850, "sustain_seconds": 300}),
        "body_temp",
        [(0, 39.0), (299, 39.0), (300, 39.0)],
        [0],
        [300],
    ),
]


@pytest.mark.parametrize(
    ("row", "metric", "series", "before", "on"),
    [c[1:] for c in VITALS_CASES],
    ids=[c[0] for c in VITALS_CASES],
)
def test_vital_sign_policy_applies_from_its_date(
    row: Row, metric: str, series: list[tuple[int, float]], before: list[int], on: list[int]
) -> None:
    assert _vitals(metric, series, BEFORE, _th(BEFORE, row)) == before
    assert _vitals(metric, series, D, _th(D, row)) == on


def test_vitals_alarm_names_the_threshold_and_severity_rows() -> None:
    row = _row("alarm.vitals.spo2", {"low_pct": 92, "sustain_seconds": 0})
    for day, threshold_ref in ((BEFORE, _ref(row[0], "*", SEEDED)), (D, _ref(row[0], "*", D))):
        _, alarm = vitals_step(None, Reading("spo2", 89, _at(day, 9)), CTX, _th(day, row))
        assert alarm is not None
        assert alarm.details["policy"] == [threshold_ref, _ref("alarm.severity", "VITALS", SEEDED)]


def test_low_battery_policy_applies_from_its_date() -> None:
    row = _row("alarm.low_battery", {"pct": 30})
    assert battery_alarm(Reading("battery", 20, _at(BEFORE, 12)), CTX, _th(BEFORE, row)) is None
    alarm = battery_alarm(Reading("battery", 20, _at(D, 12)), CTX, _th(D, row))
    assert alarm is not None
    assert (alarm.type, alarm.severity) == ("LOW_BATTERY", "WARNING")
    assert alarm.details["policy"] == [
        _ref("alarm.low_battery", "*", D),
        _ref("alarm.severity", "LOW_BATTERY", SEEDED),
    ]


@pytest.mark.parametrize(
    ("hour", "minute", "before", "on"),
    [
        (23, 0, False, True),  # in the new window (22:00–06:00), not in the seeded one (00:00–05:00)
        (5, 30, False, True),
        (2, 0, True, True),  # in both
        (21, 59, False, False),
        (6, 0, False, False),
    ],
)
def test_door_open_night_window_applies_from_its_date(hour: int, minute: int, before: bool, on: bool) -> None:
    row = _row("alarm.door_open_night", {"start": "22:00", "end": "06:00"})
    for day, expected in ((BEFORE, before), (D, on)):
        out = alarms_for_event(Event("door_open", _at(day, hour, minute)), DEMENTIA, _th(day, row))
        assert [a.type for a in out] == (["DOOR_OPEN_NIGHT"] if expected else []), (day, hour, minute)
        for a in out:
            assert a.details["policy"][0] == _ref("alarm.door_open_night", "*", day if day == D else SEEDED)


@pytest.mark.parametrize(
    ("power", "seconds", "silent", "ref_scope"),
    [
        ("mains", 300, dt.timedelta(minutes=6), "mains"),  # seeded 600 s
        ("battery", 2 * 3600, dt.timedelta(hours=3), "battery"),  # seeded 25 h
    ],
)
def test_device_offline_limit_applies_from_its_date(
    power: str, seconds: int, silent: dt.timedelta, ref_scope: str
) -> None:
    row = _row("alarm.device_offline", {"seconds": seconds}, scope=power)
    ctx = DeviceContext(device_id=2, elder_id=10, kind="motion", power=power)
    now_before, now_on = _at(BEFORE, 12), _at(D, 12)
    assert offline_alarm(ctx, now_before - silent, now_before, _th(BEFORE, row)) is None
    alarm = offline_alarm(ctx, now_on - silent, now_on, _th(D, row))
    assert alarm is not None
    assert alarm.details["policy"][0] == _ref("alarm.device_offline", ref_scope, D)
    # The other power kind keeps its seeded limit on D.
    on, seeded = _th(D, row), _th(D)
    if power == "mains":
        assert (on.offline_battery_s, on.offline_battery_ref) == (
            seeded.offline_battery_s,
            seeded.offline_battery_ref,
        )
    else:
        assert (on.offline_mains_s, on.offline_mains_ref) == (
            seeded.offline_mains_s,
            seeded.offline_mains_ref,
        )


# --- Severities ------------------------------------------------------------------------------------

HOME_ZONE = {"circle": {"lat": 30.92, "lon": 113.91, "radius_m": 500}}


def _raise(alarm_type: str, ctx: DeviceContext, day: dt.date, th: AlarmThresholds) -> AlarmCandidate:
    """Raise one alarm of ``alarm_type`` through its own rule, at noon (or 02:00 for a night door)."""
    at = _at(day, 12)
    out: list[AlarmCandidate] = []
    events = {
        "SOS": "sos",
        "FALL": "fall",
        "SMOKE": "smoke",
        "GAS": "gas",
        "WATER_LEAK": "water_leak",
        "TAMPER": "tamper",
        "LOW_BATTERY": "low_battery",
    }
    raisers: dict[str, Callable[[], AlarmCandidate | None]] = {
        "VITALS": lambda: vitals_step(None, Reading("spo2", 80, at), ctx, th)[1],
        "DOOR_OPEN_NIGHT": lambda: alarms_for_event(
            Event("door_open", _at(day, 2)), DeviceContext(1, 10, "door", elder_has_dementia=True), th
        )[0],
        "DEVICE_OFFLINE": lambda: offline_alarm(ctx, at - dt.timedelta(days=2), at, th),
        "INACTIVITY": lambda: inactivity_alarm(
            elder_id=10,
            last_activity_at=at - dt.timedelta(days=3),
            monitored_since=at - dt.timedelta(days=3),
            schedule=DaySchedule(7 * 60, 22 * 60, 12),
            now=at,
            th=th,
        ),
        "WANDERING": lambda: geofence_alarm(
            ctx, [Reading("lat", 30.95, at), Reading("lon", 113.91, at)], HOME_ZONE, th
        ),
    }
    if alarm_type in events:
        out = alarms_for_event(Event(events[alarm_type], at), ctx, th)
        assert len(out) == 1
        return out[0]
    alarm = raisers[alarm_type]()
    assert alarm is not None
    return alarm


def test_every_alarm_type_has_a_rule_here() -> None:
    th = _th(D)
    assert {_raise(t.value, CTX, D, th).type for t in AlarmType} == {t.value for t in AlarmType}


def _other(severity: str) -> str:
    return Severity.MINOR.value if severity != Severity.MINOR else Severity.MAJOR.value


@pytest.mark.parametrize("alarm_type", [t.value for t in AlarmType])
def test_each_severity_applies_from_its_date(alarm_type: str) -> None:
    seeded = _raise(alarm_type, CTX, D, _th(D)).severity
    value: dict[str, Any] = {"severity": _other(seeded)}
    if alarm_type == AlarmType.WANDERING:
        value["dementia_severity"] = Severity.CRITICAL.value
    row = _row("alarm.severity", value, scope=alarm_type)
    before = _raise(alarm_type, CTX, BEFORE, _th(BEFORE, row))
    on = _raise(alarm_type, CTX, D, _th(D, row))
    assert before.severity == seeded
    assert on.severity == _other(seeded)
    assert before.details["policy"][-1] == _ref("alarm.severity", alarm_type, SEEDED)
    assert on.details["policy"][-1] == _ref("alarm.severity", alarm_type, D)


def test_dementia_severity_for_wandering_applies_from_its_date() -> None:
    # From D, wandering is MAJOR for everyone (a supervisor's decision, say), no longer CRITICAL
    # for elders with dementia; a second row makes dementia count for a fall.
    wandering = _row("alarm.severity", {"severity": "MAJOR", "dementia_severity": "MAJOR"}, "WANDERING")
    fall = _row("alarm.severity", {"severity": "MAJOR", "dementia_severity": "CRITICAL"}, "FALL")
    before, on = _th(BEFORE, wandering, fall), _th(D, wandering, fall)
    assert _raise("WANDERING", DEMENTIA, BEFORE, before).severity == "CRITICAL"
    assert _raise("WANDERING", CTX, BEFORE, before).severity == "MAJOR"
    assert _raise("WANDERING", DEMENTIA, D, on).severity == "MAJOR"
    assert _raise("FALL", DEMENTIA, BEFORE, before).severity == "CRITICAL"
    assert _raise("FALL", CTX, D, on).severity == "MAJOR"
    assert _raise("FALL", DEMENTIA, D, on).severity == "CRITICAL"


# --- Building the thresholds ------------------------------------------------------------------------


def test_seeded_defaults_alone_give_domain_section_7() -> None:
    th = _th(D)
    assert (th.hr_low, th.hr_high, th.hr_hold_s) == (40, 130, 120)
    assert (th.spo2_low, th.spo2_hold_s, th.body_temp_high, th.body_temp_hold_s) == (90, 0, 38.5, 0)
    assert (th.battery_low_pct, th.offline_mains_s, th.offline_battery_s) == (15, 600, 25 * 3600)
    assert (th.night_start, th.night_end) == (dt.time(0), dt.time(5))
    assert th.severity["WANDERING"].for_elder(True) == "CRITICAL"
    assert th.severity["WANDERING"].for_elder(False) == "MAJOR"
    assert th.hr_ref == _ref("alarm.vitals.heart_rate", "*", SEEDED)


def test_a_row_without_a_field_seeded_later_takes_the_seeded_field() -> None:
    # An SpO2 row written before ``sustain_seconds`` was seeded: the hold comes from the seed.
    row = _row("alarm.vitals.spo2", {"low_pct": 93})
    th = _th(D, row)
    assert (th.spo2_low, th.spo2_hold_s, th.spo2_ref) == (93, 0, _ref("alarm.vitals.spo2", "*", D))


def test_malformed_policy_is_refused_not_guessed() -> None:
    with pytest.raises(ValueError, match=r"alarm\.severity\[SOS\]@2026-06-01: severity 'URGENT'"):
        _th(D, _row("alarm.severity", {"severity": "URGENT"}, "SOS"))
    with pytest.raises(ValueError, match="'critical'"):
        _th(D, _row("alarm.severity", {"severity": "MAJOR", "dementia_severity": "critical"}, "WANDERING"))
    with pytest.raises(TypeError, match="pct"):
        _th(D, _row("alarm.low_battery", {"pct": "low"}))
    with pytest.raises(PolicyMissing):
        thresholds_from(snapshot_from_rows(D, [], []))


# --- The ingest's per-day cache ---------------------------------------------------------------------


def _message(*at: dt.datetime) -> Message:
    return Message(SourceRef("dev", "x"), readings=tuple(Reading("battery", 20, a) for a in at))


def test_policy_by_day_judges_each_instant_by_its_local_date() -> None:
    row = _row("alarm.low_battery", {"pct": 30})
    policy = PolicyByDay()
    policy.replace(D, _th(D, row))
    # 23:59:59 local on the day before is 15:59:59 UTC: a day not held yet.
    late = _at(BEFORE, 23, 59, 59)
    assert policy.missing(_message(_at(D, 0), _at(D, 23, 59, 59))) is None
    assert policy.missing(_message(_at(D, 8), late)) == {BEFORE}
    policy.put(BEFORE, _th(BEFORE, row))
    assert policy.missing(_message(late)) is None
    assert policy.at(late).battery_low_pct == 15
    assert policy.at(_at(D, 0)).battery_low_pct == 30
    assert policy.at(late).battery_ref == _ref("alarm.low_battery", "*", SEEDED)
    assert day_bounds(D) == (_at(D, 0), _at(D + dt.timedelta(days=1), 0))


def test_policy_by_day_forgets_old_days_but_never_today() -> None:
    policy = PolicyByDay()
    policy.replace(D, _th(D))
    for n in range(1, PolicyByDay.MAX_DAYS + 4):
        policy.make_room(1)
        policy.put(D - dt.timedelta(days=n), _th(D))
    held = policy.held()
    assert len(held) == PolicyByDay.MAX_DAYS
    assert D in held
    # A message spanning more days than that still gets all of them.
    days = {D + dt.timedelta(days=n) for n in range(1, PolicyByDay.MAX_DAYS + 2)}
    policy.make_room(len(days))
    for day in days:
        policy.put(day, _th(D))
    assert days | {D} <= set(policy.held())
