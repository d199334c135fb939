"""Constrained wire types shared by every route: ids, dates, instants, amounts, positions.

One home for what a well-formed value is, so bad input is a 4xx problem at the edge and never
reaches Python date arithmetic or the database as a 500:

- ids are 1..2^31-1 for ``integer`` keys (districts, streets, communities, providers) and
  1..2^63-1 for ``bigint`` keys;
- dates and instants lie in ``[MIN_DAY, MAX_DAY]`` (a sanity window, not a domain rule: domain
  bounds such as the ordering horizon or the minimum age are dated policy, checked where they apply);
- amounts are integer fen, non-negative and bounded;
- names and phone numbers have bounded lengths (phones are then checked and normalised by
  :mod:`core.phone`, so "+86 138-1234-5678" is accepted).

msgspec cannot bound a date in its ``Meta``; request bodies get the bound from :class:`Input`, the
base of every ``XCreate``/``XUpdate``, and query or path dates from :func:`check_day` /
:func:`parse_day`.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Any, Final, TypeVar

import msgspec
from litestar.params import QueryParameter

from core.errors import Invalid

# PostgreSQL text cannot hold NUL characters; refuse them at the edge like any other bad value.
NO_NUL: Final = r"^[^\x00]*$"
INT32_MAX: Final = 2**31 - 1
INT64_MAX: Final = 2**63 - 1
# 1,000,000 yuan: far above any visit, month or settlement the platform prices.
FEN_MAX: Final = 100_000_000

MIN_DAY: Final = dt.date(1900, 1, 1)
MAX_DAY: Final = dt.date(2200, 12, 31)
_MIN_INSTANT: Final = dt.datetime.combine(MIN_DAY, dt.time(), tzinfo=dt.UTC)
_MAX_INSTANT: Final = dt.datetime.combine(MAX_DAY, dt.time.max, tzinfo=dt.UTC)
_DAY_RANGE: Final = f"{MIN_DAY.isoformat()}..{MAX_DAY.isoformat()}"

Id32 = Annotated[int, msgspec.Meta(ge=1, le=INT32_MAX, description="Id (integer key)")]
Id64 = Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX, description="Id (bigint key)")]
Fen = Annotated[int, msgspec.Meta(ge=0, le=FEN_MAX, description="Amount in fen (1/100 yuan)")]
Day = Annotated[dt.date, msgspec.Meta(description=f"YYYY-MM-DD, {_DAY_RANGE}")]
Instant = Annotated[
    dt.datetime, msgspec.Meta(tz=True, description=f"ISO 8601 with a time zone, {_DAY_RANGE}")
]
Lat = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Lon = Annotated[float, msgspec.Meta(ge=-180, le=180)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=NO_NUL)]
PhoneIn = Annotated[str, msgspec.Meta(min_length=1, max_length=20, pattern=NO_NUL)]
# A field of an ``XUpdate`` the client did not send: left as it is.
Unset = msgspec.UnsetType
UNSET = msgspec.UNSET
Id32Query = Annotated[int | None, QueryParameter(ge=1, le=INT32_MAX, description="Id (integer key)")]
Id64Query = Annotated[int | None, QueryParameter(ge=1, le=INT64_MAX, description="Id (bigint key)")]


def day_in_range(value: dt.date) -> bool:
    """Whether a date (or an instant, compared in UTC) lies in the sanity window."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return MIN_DAY <= value.date() <= MAX_DAY
        try:
            return _MIN_INSTANT <= value <= _MAX_INSTANT
        except OverflowError:  # an offset that moves it past year 1 or 9999
            return False
    return MIN_DAY <= value <= MAX_DAY


def _out_of_range(value: Any) -> bool:
    if isinstance(value, dt.date):
        return not day_in_range(value)
    if isinstance(value, list | tuple):
        return any(_out_of_range(v) for v in value)
    return False


class Input(msgspec.Struct, forbid_unknown_fields=True):
    """Base of every request body: unknown fields are refused, and every date or instant field
    (also inside lists) must lie in ``[MIN_DAY, MAX_DAY]`` — msgspec reports the ``ValueError`` as a
    validation error naming the field, which the API renders as a 422 ``validation.invalid``."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            if _out_of_range(getattr(self, name)):
                raise ValueError(f"`{name}` must lie in {_DAY_RANGE}")


def _plain(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return {
            f: _plain(v) for f in value.__struct_fields__ if (v := getattr(value, f)) is not msgspec.UNSET
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def given(struct: msgspec.Struct) -> dict[str, Any]:
    """The fields the client sent (``UNSET`` ones dropped), with enums and nested structs made plain:
    the column values a partial update (``XUpdate``) writes."""
    return {
        name: _plain(value)
        for name in struct.__struct_fields__
        if (value := getattr(struct, name)) is not msgspec.UNSET
    }


T = TypeVar("T")


def given_or(value: T | Unset, current: T) -> T:
    """A field of an ``XUpdate``: the value sent, else ``current`` (the field is left as it is)."""
    return current if isinstance(value, Unset) else value


D = TypeVar("D", bound=dt.date)


def check_day(value: D, *, field: str) -> D:
    """``value`` (a date or an instant) if it lies in the sanity window, else a 422
    ``validation.invalid`` naming ``field``."""
    if not day_in_range(value):
        raise Invalid(f"{field} must lie in {_DAY_RANGE}.", field=field)
    return value


def parse_day(text: str, *, field: str, code: str = "validation.invalid") -> dt.date:
    """A date given as text (a path segment or query value), YYYY-MM-DD in the sanity window; else a
    422 with ``code`` naming ``field``."""
    try:
        if len(text) != 10:
            raise ValueError(text)
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{field}={text[:20]!r} is not a date (YYYY-MM-DD).", code=code, field=field) from None
    if not day_in_range(day):
        raise Invalid(f"{field} must lie in {_DAY_RANGE}.", code=code, field=field)
    return day
