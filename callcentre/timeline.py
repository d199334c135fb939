"""An alarm's timeline: one append-only ``alarm_event`` row per change, with user and time (DOMAIN §7).

The rows are what a telecare regulator asks of the record (received, presented, acknowledged, each
call-back and its result, the responder sent and when, the outcome, cleared) and, by their ``id``, the
operators' live feed (every insert is NOTIFYed on channel :data:`EVENT_CHANNEL`). ``raised`` and
``repeated`` are written by triggers on ``alarm`` (migration 0019); the call centre writes every other
kind here, in the transaction of the change it records.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping
from typing import Any, Final

import asyncpg

EVENT_CHANNEL: Final = "alarm_event"


class EventKind(enum.StrEnum):
    RAISED = "raised"  # trigger: a new alarm
    REPEATED = "repeated"  # trigger: a repeat folded into the active alarm (count moved on)
    PRESENTED = "presented"  # first shown on a console
    CLAIMED = "claimed"
    ASSIGNED = "assigned"
    ACKNOWLEDGED = "acknowledged"
    COMMENT = "comment"
    ACTION = "action"  # a call-back or a responder sent, with its result
    ESCALATED = "escalated"
    NOTIFIED = "notified"
    REQUEUED = "requeued"  # acknowledged but still open past its limit: back to the queue
    GROUPED = "grouped"  # part of a storm
    CLEARED = "cleared"
    REOPENED = "reopened"


_INSERT: Final = """INSERT INTO alarm_event (alarm_id, kind, actor_id, district_id, data)
SELECT a.id, $2, $3, a.district_id, $4::jsonb FROM alarm a WHERE a.id = $1
RETURNING id"""
# The same with the event's time given (``$5``) rather than the database's clock.
_INSERT_AT: Final = """INSERT INTO alarm_event (alarm_id, kind, actor_id, district_id, data, at)
SELECT a.id, $2, $3, a.district_id, $4::jsonb, $5 FROM alarm a WHERE a.id = $1
RETURNING id"""


async def record(
    conn: asyncpg.Connection,
    alarm_id: int,
    kind: EventKind,
    *,
    actor_id: int | None = None,
    data: Mapping[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> int:
    """Append one event to the alarm's timeline; returns its id. ``at`` is when it happened (a
    service's ``now``; default the database's clock). The caller owns the transaction."""
    payload = json.dumps(dict(data or {}), default=str)
    if at is None:
        event_id = await conn.fetchval(_INSERT, alarm_id, kind.value, actor_id, payload)
    else:
        event_id = await conn.fetchval(_INSERT_AT, alarm_id, kind.value, actor_id, payload, at)
    if event_id is None:
        raise LookupError(f"alarm {alarm_id} does not exist")
    return int(event_id)


def record_sql() -> str:
    """The INSERT :func:`record` runs (``$1`` alarm id, ``$2`` kind, ``$3`` actor, ``$4`` data JSON), for
    callers that embed it in a larger statement or run it through SQLAlchemy's ``text()``."""
    return _INSERT
