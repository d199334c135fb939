"""The service-level shares (callcentre.kpis): basis points rounded half-up, against their targets."""

from __future__ import annotations

import datetime as dt

import pytest

from callcentre.kpis import Targets, check_period, figures, share, share_bp
from core.errors import Invalid


@pytest.mark.parametrize(
    ("part", "whole", "bp"),
    [
        (0, 0, None),
        (0, 5, 0),
        (5, 5, 10_000),
        (39, 40, 9750),  # 97.5 % exactly
        (1, 3, 3333),  # 3333.33… down
        (2, 3, 6667),  # 6666.67 up
        (1, 8, 1250),
        (1, 16, 625),  # 625 exactly
        (1, 32, 313),  # 312.5: half-up
        (1, 80_000, 0),  # 0.125 bp
        (1, 20_000, 1),  # 0.5 bp: half-up
    ],
)
def test_share_bp_rounds_half_up(part: int, whole: int, bp: int | None) -> None:
    assert share_bp(part, whole) == bp


def test_a_share_meets_its_target_at_the_target_and_not_below() -> None:
    assert share(39, 40, 9750).meets_target is True
    assert share(38, 40, 9750).meets_target is False
    assert share(0, 0, 9750).meets_target is None


def test_figures_of_a_group() -> None:
    row = {
        "alarms": 4,
        "acknowledged": 3,
        "cleared": 2,
        "met_60": 2,
        "counted_60": 4,
        "met_180": 3,
        "counted_180": 3,
        "ack_p50": 30.0,
        "ack_p90": 150.0004,
        "clear_p50": None,
        "clear_p90": None,
        "false_alarms": 1,
        "with_outcome": 2,
    }
    got = figures(row, Targets(within_60s_bp=9750, within_180s_bp=9900))
    assert (got.ack_within_60s.share_bp, got.ack_within_60s.meets_target) == (5000, False)
    assert (got.ack_within_180s.share_bp, got.ack_within_180s.meets_target) == (10_000, True)
    assert (got.ack_median_s, got.ack_p90_s, got.clear_median_s) == (30.0, 150.0, None)
    assert got.false_alarm_share_bp == 5000


@pytest.mark.parametrize(
    ("start", "end", "code"),
    [
        (
            dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
            dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
            "kpis.range_invalid",
        ),
        (
            dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
            dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
            "kpis.range_invalid",
        ),
        (
            dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            "kpis.range_too_long",
        ),
        (
            dt.datetime(2026, 11, 1, tzinfo=dt.UTC).replace(tzinfo=None),
            dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
            "time.timezone_required",
        ),
    ],
)
def test_bad_periods(start: dt.datetime, end: dt.datetime, code: str) -> None:
    with pytest.raises(Invalid) as caught:
        check_period(start, end)
    assert caught.value.code == code
