"""Recurring orders: RFC 5545 rules over month ends, year ends and leap days in Asia/Shanghai."""

from __future__ import annotations

import datetime as dt

import pytest

from core.clock import SHANGHAI
from dispatch.recurrence import RecurrenceError, canonical_rule, expand


def wall(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """A naive Asia/Shanghai wall-clock time."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).replace(tzinfo=None)


pytestmark = pytest.mark.unit

CASES: list[tuple[str, str, dt.datetime, list[dt.date]]] = [
    (
        "last day of each month across a leap February",
        "FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=4",
        wall(2028, 1, 31, 9, 0),
        [dt.date(2028, 1, 31), dt.date(2028, 2, 29), dt.date(2028, 3, 31), dt.date(2028, 4, 30)],
    ),
    (
        "day 31 skips shorter months",
        "FREQ=MONTHLY;BYMONTHDAY=31;COUNT=3",
        wall(2027, 1, 31, 9, 0),
        [dt.date(2027, 1, 31), dt.date(2027, 3, 31), dt.date(2027, 5, 31)],
    ),
    (
        "weekly cleaning across the year end",
        "RRULE:FREQ=WEEKLY;BYDAY=TH;COUNT=3",
        wall(2026, 12, 24, 15, 0),
        [dt.date(2026, 12, 24), dt.date(2026, 12, 31), dt.date(2027, 1, 7)],
    ),
    (
        "lunch on weekdays up to a local UNTIL across a month end",
        "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;UNTIL=20261203T235959",
        wall(2026, 11, 27, 11, 30),
        [
            dt.date(2026, 11, 27),
            dt.date(2026, 11, 30),
            dt.date(2026, 12, 1),
            dt.date(2026, 12, 2),
            dt.date(2026, 12, 3),
        ],
    ),
]


@pytest.mark.parametrize(("name", "rule", "first", "dates"), CASES, ids=[c[0] for c in CASES])
def test_expansion_dates(name: str, rule: str, first: dt.datetime, dates: list[dt.date]) -> None:
    occ = expand(rule, first_start_local=first, duration_s=3600)
    assert [o.local_date for o in occ] == dates, name
    for o in occ:
        # Wall-clock time is kept in Shanghai; UTC is 8 h earlier all year (no DST).
        assert o.start.astimezone(dt.UTC).time() == (first - dt.timedelta(hours=8)).time()
        assert o.end - o.start == dt.timedelta(hours=1)


def test_lunch_every_weekday_for_30_days() -> None:
    occ = expand(
        "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;UNTIL=20261230",
        first_start_local=wall(2026, 12, 1, 11, 30),
        duration_s=900,
    )
    assert len(occ) == 22
    assert all(o.local_date.isoweekday() <= 5 for o in occ)
    # 11:30 in Shanghai is 03:30 UTC.
    assert occ[0].start == dt.datetime(2026, 12, 1, 3, 30, tzinfo=dt.UTC)


def test_a_midnight_local_start_is_the_previous_utc_day() -> None:
    occ = expand("FREQ=DAILY;COUNT=2", first_start_local=wall(2026, 12, 31, 6, 0), duration_s=600)
    assert occ[0].start == dt.datetime(2026, 12, 30, 22, 0, tzinfo=dt.UTC)
    assert [o.local_date for o in occ] == [dt.date(2026, 12, 31), dt.date(2027, 1, 1)]


def test_window_selects_one_day_for_the_day_plan() -> None:
    occ = expand(
        "FREQ=DAILY;COUNT=10",
        first_start_local=wall(2026, 12, 1, 9, 0),
        duration_s=600,
        window_from=dt.datetime(2026, 12, 4, 16, 0, tzinfo=dt.UTC),  # 12-05 00:00 Shanghai
        window_to=dt.datetime(2026, 12, 5, 16, 0, tzinfo=dt.UTC),
    )
    assert [o.local_date for o in occ] == [dt.date(2026, 12, 5)]


BAD = [
    ("unbounded", "FREQ=DAILY", "COUNT or UNTIL"),
    ("UTC until", "FREQ=DAILY;UNTIL=20261230T000000Z", "without Z"),
    ("garbage", "FREQ=SOMETIMES;COUNT=3", "invalid RRULE"),
    ("too many", "FREQ=HOURLY;COUNT=5000", "more than 400"),
]


@pytest.mark.parametrize(("name", "rule", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_rules_get_a_clear_error(name: str, rule: str, message: str) -> None:
    with pytest.raises(RecurrenceError, match=message):
        expand(rule, first_start_local=wall(2026, 12, 1, 9, 0), duration_s=600)


def test_aware_first_start_is_rejected() -> None:
    with pytest.raises(RecurrenceError, match="naive"):
        expand("FREQ=DAILY;COUNT=1", first_start_local=dt.datetime(2026, 12, 1, tzinfo=dt.UTC), duration_s=60)


def test_one_rule_in_different_spellings_has_one_canonical_form() -> None:
    spellings = [
        "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=12",
        "RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=12",
        "freq=weekly;count=12;byday=MO,WE",
        " FREQ=WEEKLY; COUNT=12;BYDAY=MO,WE; ",
    ]
    assert {canonical_rule(r) for r in spellings} == {"BYDAY=MO,WE;COUNT=12;FREQ=WEEKLY"}
    assert canonical_rule("FREQ=WEEKLY;BYDAY=MO,WE;COUNT=12") != canonical_rule(
        "FREQ=WEEKLY;BYDAY=MO;COUNT=12"
    )
    first = wall(2026, 11, 23, 11, 30)
    assert expand(canonical_rule(spellings[2]), first_start_local=first, duration_s=60) == expand(
        spellings[0], first_start_local=first, duration_s=60
    )
