"""The shared constrained types: the date/instant sanity window, and request bodies refusing values
outside it (a 422 at the edge, never a 500 from date arithmetic or the database)."""

from __future__ import annotations

import datetime as dt
import enum

import msgspec
import pytest

from core.errors import Invalid
from core.types import (
    UNSET,
    Day,
    Id32,
    Input,
    Instant,
    Unset,
    check_day,
    day_in_range,
    given,
    given_or,
    parse_day,
)

pytestmark = pytest.mark.unit

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


class Body(Input):
    day: Day | None = None
    at: Instant | None = None
    days: list[Day] = msgspec.field(default_factory=list)
    ref: Id32 | None = None


class Colour(enum.StrEnum):
    RED = "red"


class Part(Input):
    n: int


class Patch(Input):
    """A partial update: unset fields are left as they are, ``null`` clears a nullable one."""

    name: str | Unset = UNSET
    until: Day | Unset | None = UNSET
    colour: Colour | Unset = UNSET
    parts: list[Part] | Unset = UNSET


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


def test_a_patch_names_only_the_fields_sent_and_null_is_sent() -> None:
    patch = msgspec.json.decode(b'{"until": null, "colour": "red", "parts": [{"n": 1}]}', type=Patch)
    # Enums and nested bodies come out plain: the column values to write.
    assert given(patch) == {"until": None, "colour": "red", "parts": [{"n": 1}]}
    assert given(msgspec.json.decode(b"{}", type=Patch)) == {}
    assert given_or(patch.name, "kept") == "kept"
    assert given_or(patch.until, dt.date(2026, 1, 1)) is None
    assert given_or(patch.colour, "blue") is Colour.RED
