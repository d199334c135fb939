"""The call centre's contract with whoever raises alarms: the alarm types, the severity scale, and the
one SQL that writes an alarm (DOMAIN §7).

Which severity an alarm type gets is dated policy (``alarm.severity``, scope = the alarm type, seeded by
:mod:`callcentre.seed`), applied by whoever raises the alarm; this module holds no severity table.

The ``alarm`` table (:mod:`callcentre.models`) has one writer: this module. Raising an alarm is an
upsert on the active alarm of its subject: at most one alarm per (device, type) — or per (elder,
type) for elder-level alarms without a device, such as INACTIVITY — is active (``cleared_at`` NULL),
enforced by partial unique indexes. A new alarm is inserted (its ``AFTER INSERT`` trigger NOTIFYs
channel ``alarm``); a repeat *folds* into the active one: ``count`` adds up and ``last_seen_at`` moves
forward, nothing else changes (an operator may already be working on it).

The ingest raises alarms on its hot path with asyncpg and raw SQL, and its priority write is a single
statement (one round trip per batch, however busy the machine): so the SQL is handed out as text,
:func:`fold_device_alarms` for a set of rows to embed in a larger statement and :func:`raise_alarm`
for one alarm. Both go through :func:`_upsert`, so there is one fold rule.

Nothing here imports another domain: ``iot_ingest`` may import this module (a declared arrow), and
this module must never import ``iot_ingest`` back.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import asyncpg


class AlarmType(enum.StrEnum):
    SOS = "SOS"
    FALL = "FALL"
    SMOKE = "SMOKE"
    GAS = "GAS"
    WANDERING = "WANDERING"
    WATER_LEAK = "WATER_LEAK"
    VITALS = "VITALS"
    INACTIVITY = "INACTIVITY"
    DOOR_OPEN_NIGHT = "DOOR_OPEN_NIGHT"
    TAMPER = "TAMPER"
    DEVICE_OFFLINE = "DEVICE_OFFLINE"
    LOW_BATTERY = "LOW_BATTERY"


class Severity(enum.StrEnum):
    CRITICAL = "CRITICAL"
    MAJOR = "MAJOR"
    MINOR = "MINOR"
    WARNING = "WARNING"


ALARM_NOTIFY_CHANNEL: Final = "alarm"


def severity_rank_sql(column: str = "severity") -> str:
    """SQL ranking a severity in queue order, CRITICAL first (0) to WARNING (3): the ``alarm``
    table's generated ``severity_rank`` column, so the operators' queue is one index scan."""
    whens = " ".join(f"WHEN '{s.value}' THEN {i}" for i, s in enumerate(Severity))
    return f"CASE {column} {whens} END"


@dataclass(frozen=True, slots=True)
class AlarmCandidate:
    """An alarm to raise: of a device (``device_id`` set) or of an elder only (``device_id`` None).

    ``at`` is the device-side time of the triggering message (UTC); ``details`` is stored as JSON.
    """

    type: str
    severity: str
    device_id: int | None
    elder_id: int | None
    at: dt.datetime
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlarmWrite:
    """What raising did: the alarm's id, whether it is new (else a repeat folded in), its count."""

    alarm_id: int
    created: bool
    count: int


# --- The SQL -----------------------------------------------------------------------------------------

_COLUMNS: Final = (
    "type, severity, device_id, elder_id, count, first_seen_at, last_seen_at, received_at, details"
)
_ACTIVE: Final = {
    "device": "(device_id, type) WHERE cleared_at IS NULL AND device_id IS NOT NULL",
    "elder": "(elder_id, type) WHERE cleared_at IS NULL AND device_id IS NULL",
}


def _upsert(rows: str, *, subject: Literal["device", "elder"]) -> str:
    """``INSERT INTO alarm`` of ``rows`` (a VALUES list or a SELECT giving :data:`_COLUMNS`), a repeat
    folding into the active alarm of its subject. Returns ``id, created, count`` per row written.

    ``received_at`` in ``rows`` should be ``clock_timestamp()``: the wall-clock time of the write
    (not the transaction start), for latency accounting.
    """
    return f"""INSERT INTO alarm ({_COLUMNS})
    {rows}
    ON CONFLICT {_ACTIVE[subject]} DO UPDATE
    SET count = alarm.count + excluded.count,
        last_seen_at = GREATEST(alarm.last_seen_at, excluded.last_seen_at)
    RETURNING id, (xmax = 0) AS created, count"""  # noqa: S608 - constants and the caller's SQL


def fold_device_alarms(source: str) -> str:
    """SQL raising device alarms from the rows of ``source``, for embedding in a larger statement
    (e.g. as a CTE); the caller binds the parameters ``source`` uses.

    ``source`` is a FROM item exposing ``x(d, t, sev, elder, at, details, ord)``: device id, alarm
    type, severity, elder id, device-side time, details (jsonb), and an ordinal. Rows of one (device,
    type) are folded into one alarm first (one INSERT may touch a row only once): ``count`` is the
    number of rows, the times their earliest and latest, severity, elder and details those of the
    lowest ``ord``. Rows are written in (device, type) order, so concurrent writers never deadlock.
    """
    return _upsert(
        f"""SELECT x.t, (array_agg(x.sev ORDER BY x.ord))[1], x.d, (array_agg(x.elder ORDER BY x.ord))[1],
           count(*), min(x.at), max(x.at), clock_timestamp(), (array_agg(x.details ORDER BY x.ord))[1]
    FROM {source}
    GROUP BY x.d, x.t
    ORDER BY x.d, x.t""",  # noqa: S608 - the caller's FROM item, not input
        subject="device",
    )


_RAISE_ONE: Final = "VALUES ($1, $2, $3, $4, 1, $5, $5, clock_timestamp(), $6::jsonb)"
RAISE_DEVICE_ALARM: Final = _upsert(_RAISE_ONE, subject="device")
RAISE_ELDER_ALARM: Final = _upsert(_RAISE_ONE, subject="elder")


def details_json(details: Mapping[str, Any]) -> str:
    """An alarm's ``details`` as the JSON text the SQL takes (datetimes and the like as strings)."""
    return json.dumps(dict(details), default=str)


async def raise_alarm(conn: asyncpg.Connection, alarm: AlarmCandidate) -> AlarmWrite:
    """Insert the alarm, or fold it into the active one of its device (or elder) and type.

    The caller owns the transaction.
    """
    row = await conn.fetchrow(
        RAISE_DEVICE_ALARM if alarm.device_id is not None else RAISE_ELDER_ALARM,
        alarm.type,
        alarm.severity,
        alarm.device_id,
        alarm.elder_id,
        alarm.at,
        details_json(alarm.details),
    )
    assert row is not None
    return AlarmWrite(row["id"], row["created"], row["count"])
