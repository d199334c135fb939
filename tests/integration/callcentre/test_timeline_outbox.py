"""The call centre's tables of migration 0019: the alarm's district, its timeline written by triggers
and by ``callcentre.timeline``, and the notification outbox (``core.outbox``)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from callcentre.contract import AlarmCandidate, raise_alarm
from callcentre.timeline import EventKind, record
from core.identity.models import Role
from core.outbox import enqueue
from tests.factories import Factory

AT = dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC)


def _json(value: Any) -> Any:
    """A jsonb value as asyncpg gives it: text, or decoded where the connection has a codec for it."""
    return json.loads(value) if isinstance(value, str) else value


async def _raw(db: AsyncSession) -> asyncpg.Connection:
    raw = await (await db.connection()).get_raw_connection()
    conn: asyncpg.Connection = raw.driver_connection
    return conn


async def test_a_new_alarm_gets_its_district_and_a_raised_event(db: AsyncSession, make: Factory) -> None:
    elder = await make.elder()
    conn = await _raw(db)
    first = await raise_alarm(conn, AlarmCandidate("INACTIVITY", "MAJOR", None, elder.id, AT, {"hours": 12}))
    again = await raise_alarm(
        conn, AlarmCandidate("INACTIVITY", "MAJOR", None, elder.id, AT + dt.timedelta(minutes=5))
    )
    assert first.created
    assert (again.created, again.alarm_id, again.count) == (False, first.alarm_id, 2)

    district = await conn.fetchval("SELECT district_id FROM alarm WHERE id = $1", first.alarm_id)
    assert district == elder.district_id
    events = await conn.fetch(
        "SELECT kind, district_id, data FROM alarm_event WHERE alarm_id = $1 ORDER BY id", first.alarm_id
    )
    assert [e["kind"] for e in events] == ["raised", "repeated"]
    assert all(e["district_id"] == elder.district_id for e in events)
    assert _json(events[0]["data"])["severity"] == "MAJOR"
    assert _json(events[1]["data"])["count"] == 2


async def test_recorded_events_carry_actor_and_data_and_never_change(db: AsyncSession, make: Factory) -> None:
    elder = await make.elder()
    operator = await make.account(Role.OPERATOR)
    conn = await _raw(db)
    alarm = await raise_alarm(conn, AlarmCandidate("INACTIVITY", "MAJOR", None, elder.id, AT))
    event_id = await record(
        conn, alarm.alarm_id, EventKind.ACTION, actor_id=operator.user.id, data={"action": "call_elder"}
    )
    row = await conn.fetchrow("SELECT kind, actor_id, data FROM alarm_event WHERE id = $1", event_id)
    assert row is not None
    assert (row["kind"], row["actor_id"]) == ("action", operator.user.id)
    assert _json(row["data"]) == {"action": "call_elder"}
    with pytest.raises(LookupError):
        await record(conn, -1, EventKind.COMMENT)
    with pytest.raises(asyncpg.RestrictViolationError):
        await conn.execute("UPDATE alarm_event SET kind = 'cleared' WHERE id = $1", event_id)


async def test_enqueue_is_idempotent_by_key(db: AsyncSession) -> None:
    conn = await _raw(db)
    args = {"channel": "webhook", "recipient": "http://127.0.0.1:9/hook", "kind": "alarm.raised"}
    first = await enqueue(conn, **args, payload={"alarm_id": 1}, idempotency_key="alarm:1:raised")
    second = await enqueue(conn, **args, payload={"alarm_id": 2}, idempotency_key="alarm:1:raised")
    assert first == second
    row = await conn.fetchrow(
        "SELECT status, attempts, payload FROM notification_outbox WHERE id = $1", first
    )
    assert row is not None
    assert (row["status"], row["attempts"], _json(row["payload"])) == ("pending", 0, {"alarm_id": 1})
