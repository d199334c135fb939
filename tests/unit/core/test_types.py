"""The shared constrained types: the date/instant sanity window, and request bodies refusing values
outside it (a 422 at the edge, never a 500 from date arithmetic or the database)."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from core.errors import Invalid
from core.types import Day, Id32, Input, Instant, check_day, day_in_range, parse_day

pytestmark = pytest.mark.unit

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


class Body(Input):
    day: Day | None = None
    at: Instant | None = None
    days: list[Day] = msgspec.field(default_factory=list)
    ref: Id32 | None = None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (dt.date(1900, 1, 1), True),
        (dt.date(2200, 12, 31), True),
        (dt.date(1899, 12, 31), False),
        (dt.date(2201, 1, 1), False),
        (dt.date.min, False),
        (dt.date.max, False),
        (dt.datetime(2026, 11, 20, 9, tzinfo=SHANGHAI), True),
        (dt.datetime(1, 1, 1, tzinfo=SHANGHAI), False),  # before year 1 in UTC: no OverflowError
        (dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-8))), False),
    ],
)
def test_the_sanity_window(value: dt.date, ok: bool) -> None:
    assert day_in_range(value) is ok


@pytest.mark.parametrize(
    "raw",
    [
        b'{"day": "9999-12-31"}',
        b'{"day": "0001-01-01"}',
        b'{"at": "0001-01-01T00:00:00+08:00"}',
        b'{"days": ["2026-01-01", "2201-01-01"]}',
        b'{"ref": 2147483648}',
        b'{"unknown": 1}',
    ],
)
def test_bodies_refuse_values_outside_the_types(raw: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(raw, type=Body)


def test_bodies_inside_the_types_decode() -> None:
    body = msgspec.json.decode(b'{"day": "2026-11-20", "at": "2026-11-20T09:00:00+08:00"}', type=Body)
    assert body.day == dt.date(2026, 11, 20)


def test_query_and_path_dates() -> None:
    assert parse_day("2026-11-20", field="day") == dt.date(2026, 11, 20)
    for text in ("9999-12-31", "2026-13-01", "20261120", "x" * 40):
        with pytest.raises(Invalid) as err:
            parse_day(text, field="day", code="dayplan.date_invalid")
        assert err.value.code == "dayplan.date_invalid"
        assert err.value.extra["field"] == "day"
    with pytest.raises(Invalid):
        check_day(dt.date(1, 1, 1), field="on")
