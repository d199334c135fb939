"""The pure monitoring rules: an elder's settings in effect part by part (own row, dated policy, or
none), the living-alone default changing with its policy's valid-from, vital-sign and night-window
overrides applied to the policy's thresholds, and the rules that use them (vitals, door at night,
geofence, inactivity)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from callcentre.seed import POLICY_DEFAULTS
from core.policy import PolicySnapshot, snapshot_from_rows
from iot_ingest.monitoring.rules import (
    DEFAULT_KEY,
    OwnSettings,
    ThresholdOverrides,
    apply_overrides,
    daytime_of,
    effective,
    hhmm,
    overrides_from_row,
    parse_hhmm,
)
from iot_ingest.normalise import Event, Reading
from iot_ingest.rules import (
    DaySchedule,
    DeviceContext,
    alarms_for_event,
    geofence_alarm,
    inactivity_alarm,
    thresholds_from,
    vitals_step,
)

pytestmark = pytest.mark.unit

D = dt.date(2026, 12, 10)  # a later policy row takes effect on this day
DAY_BEFORE = D - dt.timedelta(days=1)
EPOCH = "2026-01-01"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
LATER_DEFAULT = (
    DEFAULT_KEY,
    "alone",
    {"day_start": "08:00", "day_end": "20:00", "inactivity_hours": 6},
    D,
    None,
)


def snap(day: dt.date, *rows: tuple[str, str, dict[str, Any], dt.date, dt.date | None]) -> PolicySnapshot:
    return snapshot_from_rows(day, rows, POLICY_DEFAULTS)


# The policy's thresholds as seeded (DOMAIN §7), as the ingest builds them.
POLICY_TH = thresholds_from(snapshot_from_rows(D, [], POLICY_DEFAULTS))
HR_REF, SPO2_REF = f"alarm.vitals.heart_rate[*]@{EPOCH}", f"alarm.vitals.spo2[*]@{EPOCH}"


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), SHANGHAI).astimezone(dt.UTC)


def test_times_of_day() -> None:
    assert parse_hhmm("07:30") == 450
    assert parse_hhmm("24:00", allow_end_of_day=True) == 1440
    for bad in ("24:00", "7:30", "07:60", "ab:cd", "07-30"):
        with pytest.raises(ValueError, match="HH:MM"):
            parse_hhmm(bad)
    assert hhmm(450) == "07:30"
    assert hhmm(1440) == "24:00"


def test_living_alone_default_applies_without_own_settings() -> None:
    eff = effective(None, "alone", snap(D))
    assert eff.daytime == DaySchedule(7 * 60, 22 * 60, 12)
    assert (eff.daytime_from.source, eff.daytime_from.policy) == ("policy", f"{DEFAULT_KEY}[alone]@{EPOCH}")
    assert eff.night == (0, 5 * 60)
    assert eff.night_from.policy == f"alarm.door_open_night[*]@{EPOCH}"
    assert eff.safe_zone is None
    assert eff.safe_zone_from.source == "none"
    vitals = {v.spec.name: (v.value, v.part.source, v.part.policy) for v in eff.vitals}
    assert vitals == {
        "heart_rate_low_bpm": (40, "policy", f"alarm.vitals.heart_rate[*]@{EPOCH}"),
        "heart_rate_high_bpm": (130, "policy", f"alarm.vitals.heart_rate[*]@{EPOCH}"),
        "spo2_low_pct": (90, "policy", f"alarm.vitals.spo2[*]@{EPOCH}"),
        "temperature_high_c": (38.5, "policy", f"alarm.vitals.temperature[*]@{EPOCH}"),
    }


@pytest.mark.parametrize("situation", ["with_family", "empty_nest"])
def test_no_default_for_other_living_situations(situation: str) -> None:
    eff = effective(None, situation, snap(D))
    assert eff.daytime is None
    assert eff.daytime_from.source == "none"


def test_a_policy_scope_extends_the_default() -> None:
    row = (
        DEFAULT_KEY,
        "empty_nest",
        {"day_start": "06:00", "day_end": "21:00", "inactivity_hours": 10},
        D,
        None,
    )
    assert effective(None, "empty_nest", snap(DAY_BEFORE, row)).daytime is None
    eff = effective(None, "empty_nest", snap(D, row))
    assert eff.daytime == DaySchedule(6 * 60, 21 * 60, 10)
    assert eff.daytime_from.policy == f"{DEFAULT_KEY}[empty_nest]@{D.isoformat()}"


def test_later_policy_row_changes_the_default_from_its_date() -> None:
    before = effective(None, "alone", snap(DAY_BEFORE, LATER_DEFAULT))
    after = effective(None, "alone", snap(D, LATER_DEFAULT))
    assert before.daytime == DaySchedule(7 * 60, 22 * 60, 12)
    assert before.daytime_from.policy == f"{DEFAULT_KEY}[alone]@{EPOCH}"
    assert after.daytime == DaySchedule(8 * 60, 20 * 60, 6)
    assert after.daytime_from.policy == f"{DEFAULT_KEY}[alone]@{D.isoformat()}"


def test_own_settings_win_part_by_part() -> None:
    own = OwnSettings(
        daytime=DaySchedule(6 * 60, 23 * 60, 8),
        safe_zone={"circle": {"lat": 30.92, "lon": 113.91, "radius_m": 300}},
        vitals={"spo2_low_pct": (85.0, "COPD: lives at 86-88 %")},
    )
    eff = effective(own, "with_family", snap(D, LATER_DEFAULT))
    assert eff.daytime == DaySchedule(6 * 60, 23 * 60, 8)
    assert eff.daytime_from.source == "elder"
    assert eff.safe_zone_from.source == "elder"
    assert eff.night_from.source == "policy"  # not set: the door rule's window
    by_name = {v.spec.name: v for v in eff.vitals}
    assert (by_name["spo2_low_pct"].value, by_name["spo2_low_pct"].part.source) == (85.0, "elder")
    assert by_name["spo2_low_pct"].reason == "COPD: lives at 86-88 %"
    assert by_name["heart_rate_low_bpm"].part.source == "policy"
    own_night = effective(OwnSettings(night=(22 * 60, 6 * 60)), "alone", snap(D))
    assert (own_night.night, own_night.night_from.source) == ((1320, 360), "elder")
    # A part the elder has not set still follows the living-alone default.
    assert own_night.daytime_from.policy == f"{DEFAULT_KEY}[alone]@{EPOCH}"


def test_vital_policy_changes_show_in_the_effective_values() -> None:
    row = ("alarm.vitals.temperature", "*", {"high_centi_c": 3800}, D, None)
    assert {v.spec.name: v.value for v in effective(None, "alone", snap(DAY_BEFORE, row)).vitals}[
        "temperature_high_c"
    ] == 38.5
    assert {v.spec.name: v.value for v in effective(None, "alone", snap(D, row)).vitals}[
        "temperature_high_c"
    ] == 38.0


def test_overrides_from_a_stored_row() -> None:
    assert overrides_from_row({}, None, None) is None
    assert overrides_from_row(None, None, None) is None
    ov = overrides_from_row(
        {
            "heart_rate_low_bpm": {"value": 35, "reason": "athlete"},
            "temperature_high_c": {"value": 38.0, "reason": "febrile seizures history"},
            "unknown": {"value": 1, "reason": "ignored"},
            "spo2_low_pct": {"reason": "no value: ignored"},
        },
        22 * 60,
        6 * 60,
    )
    assert ov == ThresholdOverrides(
        hr_low=35, body_temp_high=38.0, night_start=dt.time(22, 0), night_end=dt.time(6, 0)
    )


def test_apply_overrides_replaces_only_what_the_elder_set() -> None:
    assert apply_overrides(POLICY_TH, None) is POLICY_TH
    assert apply_overrides(POLICY_TH, ThresholdOverrides()) is POLICY_TH
    th = apply_overrides(POLICY_TH, ThresholdOverrides(spo2_low=85, night_end=dt.time(6, 30)))
    assert (th.spo2_low, th.night_end) == (85, dt.time(6, 30))
    assert (th.hr_low, th.hr_high, th.body_temp_high, th.night_start) == (40, 130, 38.5, dt.time(0, 0))
    # The alarms say which of the elder's settings they applied, next to the policy row's.
    assert (th.spo2_ref, th.night_ref, th.hr_ref) == (
        f"{SPO2_REF}+elder_monitoring.spo2_low_pct",
        "elder_monitoring.night",
        HR_REF,
    )
    both = apply_overrides(POLICY_TH, ThresholdOverrides(hr_low=35, hr_high=140))
    assert both.hr_ref == f"{HR_REF}+elder_monitoring.heart_rate_low_bpm+elder_monitoring.heart_rate_high_bpm"


BAND = DeviceContext(device_id=5, elder_id=10, kind="vitals_band")


@pytest.mark.parametrize(
    ("overrides", "spo2", "alarm"),
    [
        (None, 88, True),
        (ThresholdOverrides(spo2_low=85), 88, False),  # the elder's own, lower threshold
        (ThresholdOverrides(spo2_low=85), 84, True),
        (ThresholdOverrides(hr_low=35), 88, True),  # other overrides leave SpO2 alone
    ],
)
def test_vitals_rule_with_overrides(overrides: ThresholdOverrides | None, spo2: float, alarm: bool) -> None:
    at = local(D, 10)
    _, out = vitals_step(None, Reading("spo2", spo2, at), BAND, apply_overrides(POLICY_TH, overrides))
    assert (out is not None) == alarm
    if out is not None and overrides is not None and overrides.spo2_low is not None:
        assert out.details["policy"][0] == f"{SPO2_REF}+elder_monitoring.spo2_low_pct"


DOOR = DeviceContext(device_id=6, elder_id=10, kind="door", elder_has_dementia=True)


@pytest.mark.parametrize(
    ("overrides", "hour", "alarm"),
    [
        (None, 2, True),
        (None, 23, False),
        (ThresholdOverrides(night_start=dt.time(22, 0), night_end=dt.time(6, 0)), 23, True),  # spans midnight
        (ThresholdOverrides(night_start=dt.time(22, 0), night_end=dt.time(6, 0)), 5, True),
        (ThresholdOverrides(night_start=dt.time(22, 0), night_end=dt.time(6, 0)), 6, False),
        (ThresholdOverrides(night_start=dt.time(1, 0), night_end=dt.time(4, 0)), 0, False),
    ],
)
def test_door_at_night_uses_the_elders_window(
    overrides: ThresholdOverrides | None, hour: int, alarm: bool
) -> None:
    th = apply_overrides(POLICY_TH, overrides)
    out = alarms_for_event(Event("door_open", local(D, hour)), DOOR, th)
    assert [a.type for a in out] == (["DOOR_OPEN_NIGHT"] if alarm else [])


WATCH = DeviceContext(device_id=7, elder_id=10, kind="gps_watch")
WATCH_DEMENTIA = DeviceContext(device_id=7, elder_id=10, kind="gps_watch", elder_has_dementia=True)
ZONE = {"polygon": [[30.91, 113.90], [30.93, 113.90], [30.93, 113.92], [30.91, 113.92]]}


def _fix(lat: float, lon: float, acc: float = 0) -> list[Reading]:
    at = local(D, 10)
    return [Reading("lat", lat, at), Reading("lon", lon, at), Reading("acc", acc, at)]


@pytest.mark.parametrize(
    ("ctx", "fix", "severity"),
    [
        (WATCH, _fix(30.92, 113.91), None),
        (WATCH, _fix(30.93, 113.91), None),  # on the fence
        (WATCH, _fix(30.9310, 113.91), "MAJOR"),  # ~111 m north of it
        (WATCH, _fix(30.9310, 113.91, acc=150), None),  # might still be on it
        (WATCH, _fix(30.9310, 113.91, acc=100), "MAJOR"),  # 111 m > 100 m: certainly out
        (WATCH_DEMENTIA, _fix(30.9310, 113.91), "CRITICAL"),
        (WATCH, _fix(30.92, 113.921, acc=50), "MAJOR"),  # ~95 m east
    ],
)
def test_geofence_polygon_with_accuracy(ctx: DeviceContext, fix: list[Reading], severity: str | None) -> None:
    out = geofence_alarm(ctx, fix, ZONE, POLICY_TH)
    assert (out.severity if out else None) == severity


def test_inactivity_records_the_policy_it_applied() -> None:
    schedule = DaySchedule(7 * 60, 22 * 60, 12)
    ref = f"{DEFAULT_KEY}[alone]@{EPOCH}"
    out = inactivity_alarm(
        elder_id=10,
        last_activity_at=local(D, 7),
        monitored_since=local(D - dt.timedelta(days=30), 0),
        schedule=schedule,
        now=local(D, 19),
        th=POLICY_TH,
        policy=(ref,),
    )
    assert out is not None
    assert out.details["policy"] == [ref, f"alarm.severity[INACTIVITY]@{EPOCH}"]
    own = inactivity_alarm(
        elder_id=10,
        last_activity_at=local(D, 7),
        monitored_since=local(D, 0),
        schedule=schedule,
        now=local(D, 19),
        th=POLICY_TH,
    )
    assert own is not None
    assert own.details["settings"] == "elder"
    assert own.details["policy"] == [f"alarm.severity[INACTIVITY]@{EPOCH}"]


def test_inactivity_since_long_ago_counts_enough_and_no_more() -> None:
    # A sensor installed years ago that never reported motion: the count stops at what the rule needs.
    out = inactivity_alarm(
        elder_id=10,
        last_activity_at=None,
        monitored_since=local(dt.date(2020, 1, 1), 0),
        schedule=DaySchedule(7 * 60, 22 * 60, 12),
        now=local(D, 12),
        th=POLICY_TH,
    )
    assert out is not None
    assert out.details["since"].startswith("2019-12-31T16:00")
    assert out.details["quiet_daytime_s"] <= 4 * 15 * 3600


@pytest.mark.parametrize(
    "value",
    [
        {"day_start": "22:00", "day_end": "07:00", "inactivity_hours": 12},
        {"day_start": "07:00", "day_end": "22:00", "inactivity_hours": 0},
        {"day_start": "7am", "day_end": "22:00", "inactivity_hours": 12},
        {"day_start": "07:00", "day_end": "22:00", "inactivity_hours": "12"},
    ],
)
def test_a_malformed_default_names_its_row(value: dict[str, Any]) -> None:
    entry = snap(D, (DEFAULT_KEY, "alone", value, D, None)).entry(DEFAULT_KEY, "alone")
    with pytest.raises((TypeError, ValueError), match=r"monitoring_default|HH:MM|inactivity_hours"):
        daytime_of(entry)
