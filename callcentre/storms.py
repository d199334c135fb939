"""Alarm storms (issue #11): a device raising more alarms than it plausibly should is grouped and
flagged, so an operator sees one storm rather than a wall of rows.

Repeats already fold (:mod:`callcentre.contract`: one active alarm per device and type, its ``count``
going up). A storm is more than that: a device whose alarms — new ones and repeats alike, each message
counted — number more than ``alarms`` within ``minutes`` (policy ``alarm.storm``). Such a device gets an
open ``alarm_storm`` row (one per device while open); its active alarms, and those it raised in the
window, are grouped under it (``alarm.storm_id``, which the queue can show) with a ``grouped`` event
each; an alarm it raises while the storm is open joins it. A storm ends once its device has stayed
below the limit for a whole window.

The counts come from the timeline: each ``raised``/``repeated`` event carries the alarm's ``count``
after it, so the messages within the window are the rise of ``count`` over it, however the ingest
batched them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import structlog

from callcentre import seed as callcentre_seed
from callcentre.timeline import EventKind, record
from core.clock import local_date
from core.policy import load_policy_conn

log = structlog.get_logger("callcentre.storms")

STORM_KEY: Final = "alarm.storm"


@dataclass(frozen=True, slots=True)
class StormRule:
    """More than ``alarms`` alarm messages of one device within ``window`` is a storm."""

    ref: str
    alarms: int
    window: dt.timedelta


def _positive(value: Mapping[str, Any], name: str, ref: str) -> int:
    v = value.get(name)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{ref}: {name} must be a positive integer, not {v!r}")
    return v


def parse_storm_rule(value: Mapping[str, Any], *, ref: str) -> StormRule:
    alarms = _positive(value, "alarms", ref)
    return StormRule(ref, alarms, dt.timedelta(minutes=_positive(value, "minutes", ref)))


def is_storm(messages: int, rule: StormRule) -> bool:
    """Whether this many alarm messages of one device within the rule's window is a storm."""
    return messages > rule.alarms


# Per device with alarms in (start, end]: the alarm messages in the window — the rise of each alarm's
# count over it (from 0 for an alarm raised in it) — and the window's first and last event.
_COUNTS: Final = """
WITH recent AS (
    SELECT ev.alarm_id, max((ev.data->>'count')::int) AS upto, min(ev.at) AS first_at,
           max(ev.at) AS last_at, bool_or(ev.kind = 'raised') AS raised_in_window
    FROM alarm_event ev
    WHERE ev.at > $1 AND ev.at <= $2 AND ev.kind IN ('raised', 'repeated')
    GROUP BY ev.alarm_id
)
SELECT a.device_id, max(a.district_id) AS district_id,
       sum(r.upto - CASE WHEN r.raised_in_window THEN 0 ELSE coalesce((
           SELECT (p.data->>'count')::int FROM alarm_event p
           WHERE p.alarm_id = r.alarm_id AND p.kind IN ('raised', 'repeated') AND p.at <= $1
           ORDER BY p.id DESC LIMIT 1), 0) END)::int AS messages,
       min(r.first_at) AS first_at, max(r.last_at) AS last_at
FROM recent r JOIN alarm a ON a.id = r.alarm_id
WHERE a.device_id IS NOT NULL
GROUP BY a.device_id
ORDER BY a.device_id"""

_OPEN: Final = """
INSERT INTO alarm_storm (device_id, district_id, started_at, last_event_at, peak_events, policy)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (device_id) WHERE ended_at IS NULL DO UPDATE
SET last_event_at = GREATEST(alarm_storm.last_event_at, excluded.last_event_at),
    peak_events = GREATEST(alarm_storm.peak_events, excluded.peak_events)
RETURNING id, (xmax = 0) AS created"""

# The alarms of devices in an open storm not grouped yet: active ones, and any raised since the
# storm's window began.
_GROUP: Final = """
UPDATE alarm a SET storm_id = s.id
FROM alarm_storm s
WHERE s.ended_at IS NULL AND a.device_id = s.device_id AND a.storm_id IS NULL
  AND (a.cleared_at IS NULL OR a.received_at > s.started_at - $1::interval)
RETURNING a.id, s.id AS storm_id, s.peak_events, s.policy"""

_END: Final = """UPDATE alarm_storm SET ended_at = $1
WHERE ended_at IS NULL AND last_event_at <= $2 RETURNING id, device_id"""


@dataclass(frozen=True, slots=True)
class StormPass:
    storming: int  # devices above the limit in the window ending now
    opened: int
    grouped: int  # alarms newly grouped
    ended: int


async def group_storms(conn: asyncpg.Connection, *, now: dt.datetime) -> StormPass:
    """Open or extend the storms of devices above the ``alarm.storm`` limit in the window ending at
    ``now``, group their alarms (a ``grouped`` event each) and end the storms quiet for a window. The
    caller owns the transaction."""
    snapshot = await load_policy_conn(
        conn, day=local_date(now), prefixes=("alarm.",), defaults=callcentre_seed.SEED.policies
    )
    entry = snapshot.entry(STORM_KEY)
    rule = parse_storm_rule(entry.value, ref=entry.ref())
    storming = opened = 0
    for row in await conn.fetch(_COUNTS, now - rule.window, now):
        if not is_storm(row["messages"], rule):
            continue
        storming += 1
        storm = await conn.fetchrow(
            _OPEN,
            row["device_id"],
            row["district_id"],
            row["first_at"],
            row["last_at"],
            row["messages"],
            rule.ref,
        )
        assert storm is not None
        if storm["created"]:
            opened += 1
            log.warning("alarm.storm", device_id=row["device_id"], messages=row["messages"], policy=rule.ref)
    grouped = await conn.fetch(_GROUP, rule.window)
    for g in grouped:
        await record(
            conn,
            g["id"],
            EventKind.GROUPED,
            data={"storm_id": g["storm_id"], "messages": g["peak_events"], "policy": g["policy"]},
        )
    ended = await conn.fetch(_END, now, now - rule.window)
    for e in ended:
        log.info("alarm.storm_ended", storm_id=e["id"], device_id=e["device_id"])
    return StormPass(storming, opened, len(grouped), len(ended))
