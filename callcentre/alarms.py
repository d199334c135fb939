"""What the console's use cases share: the request's raw connection, an alarm read as the rules see it
(:class:`~callcentre.lifecycle.AlarmFacts`) and as the wire shows it
(:class:`~callcentre.schemas.AlarmState`), the alarm visible to a principal, and its timeline.

The call centre reads and writes alarms with asyncpg on the request's own connection (inside the
transaction the request's SQLAlchemy session holds, so audit rows the session adds commit with them):
the statements are fixed text, prepared once per connection, and rows go straight into structs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import asyncpg
import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from callcentre.lifecycle import Action, AlarmFacts, check_role, decide, not_found
from callcentre.schemas import AlarmState, TimelineEvent
from core.crud import MAX_BIGINT, in_key_range
from core.identity.authz import Principal

_JSON_OBJECT: Final = msgspec.json.Decoder(dict[str, Any])

# The columns of an AlarmState, in its field order (details as text: decoded here, whatever codecs
# the connection has).
ALARM_COLUMNS: Final = """a.id, a.type, a.severity, a.count, a.cleared_at IS NULL AS active,
    a.acknowledged_at IS NOT NULL AS acknowledged, a.district_id, a.elder_id, a.device_id,
    a.first_seen_at, a.last_seen_at, a.received_at, a.presented_at, a.acknowledged_at,
    a.acknowledged_by, a.assignee_id, a.assigned_at, a.cleared_at, a.cleared_by, a.outcome,
    a.details::text AS details"""
_ONE: Final = f"SELECT {ALARM_COLUMNS} FROM alarm a WHERE a.id = $1"  # noqa: S608 - constants
_TIMELINE: Final = """SELECT ev.id, ev.at, ev.kind, ev.actor_id, u.display_name AS actor_name,
    ev.data::text AS data
FROM alarm_event ev LEFT JOIN app_user u ON u.id = ev.actor_id
WHERE ev.alarm_id = $1 ORDER BY ev.id"""


async def raw_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under the session, in the session's transaction (begun if need be)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    return driver


def decode_object(text: str | None) -> dict[str, Any]:
    return {} if text is None else _JSON_OBJECT.decode(text)


def alarm_state(row: Mapping[str, Any]) -> AlarmState:
    """An :class:`AlarmState` from a row of :data:`ALARM_COLUMNS`."""
    values = dict(row)
    values["details"] = decode_object(values["details"])
    return AlarmState(**values)


def facts_of(row: Mapping[str, Any]) -> AlarmFacts:
    """What the lifecycle rules read of a row of :data:`ALARM_COLUMNS`."""
    return AlarmFacts(
        id=row["id"],
        district_id=row["district_id"],
        active=row["active"],
        acknowledged=row["acknowledged"],
        assignee_id=row["assignee_id"],
        presented=row["presented_at"] is not None,
    )


async def load(conn: asyncpg.Connection, alarm_id: int) -> asyncpg.Record | None:
    """The alarm's row (:data:`ALARM_COLUMNS`), or ``None`` (also for ids no bigint holds)."""
    if not in_key_range(alarm_id, limit=MAX_BIGINT):
        return None
    row: asyncpg.Record | None = await conn.fetchrow(_ONE, alarm_id)
    return row


async def visible(conn: asyncpg.Connection, principal: Principal, alarm_id: int) -> asyncpg.Record:
    """The alarm's row if the principal may read it: ``alarm.forbidden`` for a role that reads no
    alarms, ``alarm.not_found`` for a missing alarm or one outside the principal's districts."""
    row = await load(conn, alarm_id)
    if row is None:
        check_role(principal, Action.VIEW)  # a role that reads no alarms learns nothing more
        raise not_found(alarm_id)
    decide(facts_of(row), principal, Action.VIEW)
    return row


async def timeline_of(conn: asyncpg.Connection, alarm_id: int) -> list[TimelineEvent]:
    """Every event of the alarm, oldest first, with the actor's display name."""
    return [
        TimelineEvent(
            id=r["id"],
            at=r["at"],
            kind=r["kind"],
            actor_id=r["actor_id"],
            actor_name=r["actor_name"],
            data=decode_object(r["data"]),
        )
        for r in await conn.fetch(_TIMELINE, alarm_id)
    ]
