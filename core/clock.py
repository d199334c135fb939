"""The one place that reads the wall clock; everything else takes ``now`` as an argument."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

Clock = Callable[[], dt.datetime]
SHANGHAI = ZoneInfo("Asia/Shanghai")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def local_date(at: dt.datetime) -> dt.date:
    """The calendar date in Asia/Shanghai of an aware instant."""
    return at.astimezone(SHANGHAI).date()
