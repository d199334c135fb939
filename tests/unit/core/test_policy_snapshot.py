"""The one policy reader's pure part: which row is valid on a day, and the seeded-default fallback."""

from __future__ import annotations

import datetime as dt

import pytest

from core.policy import POLICY_EPOCH, PolicyDefault, PolicyMissing, snapshot_from_rows

D = dt.date
DEFAULTS = (PolicyDefault("alarm.low_battery", "*", {"pct": 15}, "test"),)


def test_latest_valid_from_wins_and_future_rows_wait_for_their_day() -> None:
    rows: list[tuple[str, str, dict[str, int] | str, dt.date, dt.date | None]] = [
        ("alarm.low_battery", "*", {"pct": 20}, D(2026, 3, 1), None),
        ("alarm.low_battery", "*", '{"pct": 25}', D(2026, 6, 1), None),
    ]
    assert snapshot_from_rows(D(2026, 2, 28), rows, DEFAULTS).entry("alarm.low_battery").number("pct") == 15
    before = snapshot_from_rows(D(2026, 5, 31), rows, DEFAULTS).entry("alarm.low_battery")
    assert (before.number("pct"), before.valid_from, before.origin) == (20, D(2026, 3, 1), "row")
    on = snapshot_from_rows(D(2026, 6, 1), rows, DEFAULTS).entry("alarm.low_battery")
    assert (on.number("pct"), on.ref()) == (25, "alarm.low_battery[*]@2026-06-01")


def test_an_ended_row_gives_way_to_the_seeded_default() -> None:
    rows = [("alarm.low_battery", "*", {"pct": 30}, D(2026, 3, 1), D(2026, 3, 31))]
    assert snapshot_from_rows(D(2026, 3, 31), rows, DEFAULTS).number("alarm.low_battery", "pct") == 30
    after = snapshot_from_rows(D(2026, 4, 1), rows, DEFAULTS).entry("alarm.low_battery")
    assert (after.number("pct"), after.origin, after.valid_from) == (15, "default", POLICY_EPOCH)


def test_missing_keys_and_wrong_types_are_errors_naming_them() -> None:
    snap = snapshot_from_rows(D(2026, 6, 1), [("x.y", "*", {"n": True, "s": 3}, D(2026, 1, 1), None)])
    with pytest.raises(PolicyMissing, match=r"'alarm\.low_battery'"):
        snap.entry("alarm.low_battery")
    with pytest.raises(TypeError, match="'n' is not a number"):
        snap.number("x.y", "n")
    with pytest.raises(TypeError, match="'s' is not a string"):
        snap.entry("x.y").text("s")


def test_scope_override_and_listing() -> None:
    defaults = (
        PolicyDefault("alarm.severity", "*", {"severity": "HIGH"}, "t"),
        PolicyDefault("alarm.severity", "SOS", {"severity": "CRITICAL"}, "t"),
    )
    rows = [("alarm.severity", "FALL", {"severity": "CRITICAL"}, D(2026, 5, 1), None)]
    snap = snapshot_from_rows(D(2026, 5, 1), rows, defaults)
    assert snap.entry_or_star("alarm.severity", "GAS").text("severity") == "HIGH"
    assert snap.entry_or_star("alarm.severity", "FALL").origin == "row"
    assert sorted(snap.scopes("alarm.severity")) == ["*", "FALL", "SOS"]
    assert snap.refs(("alarm.severity", "FALL"), ("nope", "*")) == ["alarm.severity[FALL]@2026-05-01"]


def test_a_default_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="given twice"):
        snapshot_from_rows(D(2026, 1, 1), [], DEFAULTS * 2)
