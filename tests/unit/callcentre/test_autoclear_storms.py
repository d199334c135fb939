"""Self-clearing alarms and storms, pure: when a technical or inactivity alarm's condition has ended,
and when a device's alarms are a storm."""

from __future__ import annotations

import datetime as dt

import pytest

from callcentre.autoclear import AlarmFacts, ClearReason, battery_ok, clear_reason
from callcentre.seed import SEED
from callcentre.storms import STORM_KEY, StormRule, is_storm, parse_storm_rule
from core.policy import snapshot_from_rows

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 12, 3, 2, 0, tzinfo=dt.UTC)
LATER = T0 + dt.timedelta(minutes=5)
EARLIER = T0 - dt.timedelta(minutes=5)


@pytest.mark.parametrize(
    ("facts", "reason"),
    [
        (
            AlarmFacts("DEVICE_OFFLINE", T0, device_online=True, device_seen_at=LATER),
            ClearReason.DEVICE_HEARD,
        ),
        (AlarmFacts("DEVICE_OFFLINE", T0, device_online=False, device_seen_at=LATER), None),  # its last will
        (AlarmFacts("DEVICE_OFFLINE", T0, device_online=True, device_seen_at=EARLIER), None),
        (AlarmFacts("DEVICE_OFFLINE", T0, device_online=None, device_seen_at=None), None),
        (AlarmFacts("LOW_BATTERY", T0, battery_pct=80), ClearReason.BATTERY_OK),
        (
            AlarmFacts("LOW_BATTERY", T0, battery_pct=15),
            ClearReason.BATTERY_OK,
        ),  # the threshold is "below 15"
        (AlarmFacts("LOW_BATTERY", T0, battery_pct=14.9), None),
        (AlarmFacts("LOW_BATTERY", T0, battery_low_flag=0), ClearReason.BATTERY_OK),
        (AlarmFacts("LOW_BATTERY", T0, battery_pct=90, battery_low_flag=1), None),
        (AlarmFacts("LOW_BATTERY", T0), None),  # nothing heard since
        (AlarmFacts("INACTIVITY", T0, activity_at=LATER), ClearReason.ACTIVITY_RESUMED),
        (AlarmFacts("INACTIVITY", T0, activity_at=T0), None),
        (AlarmFacts("INACTIVITY", T0), None),
        (AlarmFacts("SOS", T0, device_online=True, device_seen_at=LATER), None),  # a person's alarm never
    ],
)
def test_a_self_clearing_alarm_clears_only_when_its_condition_has_ended(
    facts: AlarmFacts, reason: ClearReason | None
) -> None:
    assert clear_reason(facts, battery_threshold_pct=15) == reason


def test_a_battery_is_fine_only_when_some_reading_came_and_none_says_low() -> None:
    assert not battery_ok(None, None, 15)
    assert battery_ok(None, 0.0, 15)
    assert not battery_ok(50, 1.0, 15)


def test_the_seeded_storm_rule_is_more_than_five_alarms_in_ten_minutes() -> None:
    snapshot = snapshot_from_rows(dt.date(2026, 12, 3), [], SEED.policies)
    entry = snapshot.entry(STORM_KEY)
    rule = parse_storm_rule(entry.value, ref=entry.ref())
    assert rule == StormRule("alarm.storm[*]@2026-01-01", 5, dt.timedelta(minutes=10))
    assert not is_storm(5, rule)
    assert is_storm(6, rule)


@pytest.mark.parametrize(
    "value", [{"alarms": 0, "minutes": 1}, {"alarms": 3}, {"alarms": True, "minutes": 2}]
)
def test_a_storm_rule_needs_positive_whole_numbers(value: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        parse_storm_rule(value, ref="alarm.storm[*]@x")
