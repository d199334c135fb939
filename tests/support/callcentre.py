"""Alarms for the call-centre tests: raised through the one writer (:mod:`callcentre.contract`), on the
test's own connection, then placed in time (and, for the figures, given their history) by hand.

``received_at`` is the platform's clock when an alarm is written, not the tests' fixed ``TEST_NOW``;
:func:`plant` moves every time of the alarm so a test reasons about seconds it chose.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from callcentre.contract import AlarmCandidate, raise_alarm
from tests.conftest import TEST_NOW

SEVERITY = {"SOS": "CRITICAL", "FALL": "CRITICAL", "SMOKE": "CRITICAL", "WATER_LEAK": "MAJOR"}


async def raw(db: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under the test's session (same transaction)."""
    connection = await db.connection()
    driver: asyncpg.Connection = (await connection.get_raw_connection()).driver_connection
    return driver


async def plant(
    db: AsyncSession,
    *,
    elder_id: int | None = None,
    device_id: int | None = None,
    type: str = "SOS",
    severity: str | None = None,
    at: dt.datetime = TEST_NOW - dt.timedelta(seconds=30),
    **history: Any,
) -> int:
    """An alarm raised ``at`` (received then too); ``history`` sets more columns (acknowledged_at,
    acknowledged_by, cleared_at, cleared_by, outcome, assignee_id…). Returns its id."""
    conn = await raw(db)
    written = await raise_alarm(
        conn,
        AlarmCandidate(
            type, severity or SEVERITY.get(type, "MINOR"), device_id, elder_id, at, {"test": True}
        ),
    )
    columns = {"received_at": at, "first_seen_at": at, "last_seen_at": at, **history}
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=2))
    await conn.execute(f"UPDATE alarm SET {sets} WHERE id = $1", written.alarm_id, *columns.values())
    return written.alarm_id


async def alarm_row(db: AsyncSession, alarm_id: int) -> asyncpg.Record:
    row = await (await raw(db)).fetchrow("SELECT * FROM alarm WHERE id = $1", alarm_id)
    assert row is not None
    return row


async def events(db: AsyncSession, alarm_id: int) -> list[asyncpg.Record]:
    return list(
        await (await raw(db)).fetch(
            "SELECT kind, actor_id, at, data::text AS data FROM alarm_event WHERE alarm_id = $1 ORDER BY id",
            alarm_id,
        )
    )
