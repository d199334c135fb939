"""Recurring orders: RFC 5545 RRULEs expanded on Asia/Shanghai wall-clock dates.

The rule is evaluated on naive local times (China has had no DST since 1991, so every local time
exists exactly once) and each occurrence is then converted to a UTC instant. Month-end behaviour is
RFC 5545's: ``BYMONTHDAY=31`` skips shorter months; ``BYMONTHDAY=-1`` means the last day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dateutil.rrule import rrule, rrulestr

from core.clock import SHANGHAI

MAX_OCCURRENCES = 400


class RecurrenceError(ValueError):
    """The RRULE cannot be used: malformed, unbounded or producing too many visits."""


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One visit of a recurring order, as UTC instants [start, end)."""

    start: dt.datetime
    end: dt.datetime

    @property
    def local_date(self) -> dt.date:
        return self.start.astimezone(SHANGHAI).date()


def canonical_rule(rule: str) -> str:
    """The rule in one spelling: no ``RRULE:`` prefix, upper case, no blanks, parts sorted by name, so
    that two requests for the same series compare equal (RFC 5545 parts are unordered)."""
    text = "".join(rule.split()).upper()
    if text.startswith("RRULE:"):
        text = text[6:]
    return ";".join(sorted(p for p in text.split(";") if p))


def parse_rule(rule: str, *, first_start_local: dt.datetime) -> rrule:
    """Parse ``rule`` (the RRULE value, with or without the ``RRULE:`` prefix).

    ``first_start_local`` is the naive Asia/Shanghai wall-clock DTSTART. The rule must be bounded by
    COUNT or UNTIL; UNTIL is read as a local date-time (a trailing ``Z`` is rejected); a date UNTIL includes
    the whole of that day.
    """
    if first_start_local.tzinfo is not None:
        raise RecurrenceError("first start must be a naive Asia/Shanghai wall-clock time")
    text = rule.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    parts = {p.split("=", 1)[0].upper() for p in text.split(";") if p}
    if "COUNT" not in parts and "UNTIL" not in parts:
        raise RecurrenceError("a recurring order needs COUNT or UNTIL")
    fields = [p.split("=", 1) for p in text.split(";") if p]
    for i, (name, *value) in enumerate(fields):
        if name.upper() != "UNTIL" or not value:
            continue
        if value[0].upper().endswith("Z"):
            raise RecurrenceError("UNTIL must be a local date or date-time, without Z")
        if len(value[0]) == 8 and value[0].isdigit():
            # A date UNTIL includes that whole day (RFC 5545: the UNTIL day is the last instance).
            fields[i] = [name, value[0] + "T235959"]
    text = ";".join("=".join(f) for f in fields)
    try:
        parsed = rrulestr(text, dtstart=first_start_local)
    except (ValueError, TypeError) as exc:
        raise RecurrenceError(f"invalid RRULE: {exc}") from exc
    if not isinstance(parsed, rrule):
        raise RecurrenceError("only a single RRULE is supported")
    return parsed


def expand(
    rule: str,
    *,
    first_start_local: dt.datetime,
    duration_s: int,
    window_from: dt.datetime | None = None,
    window_to: dt.datetime | None = None,
    max_occurrences: int = MAX_OCCURRENCES,
) -> list[Occurrence]:
    """Every occurrence of the rule, optionally only those starting in [window_from, window_to) (UTC).

    Raises :class:`RecurrenceError` if the rule yields more than ``max_occurrences`` visits in total.
    """
    if duration_s <= 0:
        raise RecurrenceError("duration must be positive")
    parsed = parse_rule(rule, first_start_local=first_start_local)
    out: list[Occurrence] = []
    for n, local in enumerate(parsed):
        if n >= max_occurrences:
            raise RecurrenceError(f"the rule yields more than {max_occurrences} visits")
        start = local.replace(tzinfo=SHANGHAI).astimezone(dt.UTC)
        if window_from is not None and start < window_from:
            continue
        if window_to is not None and start >= window_to:
            continue
        out.append(Occurrence(start, start + dt.timedelta(seconds=duration_s)))
    return out
