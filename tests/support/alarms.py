"""Helpers of the call centre's integration tests: the driver connection of the test's session, alarms
raised through the contract as the ingest raises them, devices, and dated policy rows of the test."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from callcentre.contract import AlarmCandidate, raise_alarm
from core.clock import local_date


def jsonb(value: Any) -> Any:
    """A jsonb value as asyncpg gives it: text, or decoded where the connection has a codec for it."""
    return json.loads(value) if isinstance(value, str) else value


async def driver(db: AsyncSession) -> asyncpg.Connection:
    raw = await (await db.connection()).get_raw_connection()
    conn: asyncpg.Connection = raw.driver_connection
    return conn


@dataclass(frozen=True, slots=True)
class Raised:
    id: int
    at: dt.datetime  # received_at: the database's clock at the insert (the escalation's start)

    def after(self, seconds: float) -> dt.datetime:
        return self.at + dt.timedelta(seconds=seconds)


async def raise_(
    conn: asyncpg.Connection,
    alarm_type: str,
    severity: str,
    *,
    elder_id: int | None = None,
    device_id: int | None = None,
    at: dt.datetime | None = None,
    details: dict[str, Any] | None = None,
) -> Raised:
    """An alarm through the call centre's contract (the one SQL the ingest uses)."""
    when = at or dt.datetime.now(dt.UTC)
    write = await raise_alarm(
        conn, AlarmCandidate(alarm_type, severity, device_id, elder_id, when, details or {})
    )
    received = await conn.fetchval("SELECT received_at FROM alarm WHERE id = $1", write.alarm_id)
    return Raised(write.alarm_id, received)


async def add_device(
    conn: asyncpg.Connection, elder_id: int, kind: str, *, power: str = "battery", tag: str = ""
) -> int:
    n = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('device', 'id'))")
    uid = f"t{kind[:6]}{tag}{n}"
    device_id: int = await conn.fetchval(
        """INSERT INTO device (uid, kind, model, serial, elder_id, power, status)
           VALUES ($1, $2, 'test', $1, $3, $4, 'active') RETURNING id""",
        uid,
        kind,
        elder_id,
        power,
    )
    return device_id


async def policy_row(
    conn: asyncpg.Connection, key: str, scope: str, value: dict[str, Any], *, on: dt.datetime
) -> None:
    """A policy row valid from the local date of ``on`` (the test's own, rolled back with it)."""
    await conn.execute(
        """INSERT INTO policy_value (key, scope, value, valid_from, source)
           VALUES ($1, $2, $3::jsonb, $4, 'test')
           ON CONFLICT (key, scope, valid_from) DO UPDATE SET value = excluded.value""",
        key,
        scope,
        json.dumps(value),
        local_date(on),
    )
