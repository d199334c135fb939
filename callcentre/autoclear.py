"""Alarms that clear themselves when their condition ends (issue #11): technical alarms (a device
offline, a low battery) and inactivity.

* DEVICE_OFFLINE — the device is heard again: online, and seen after the alarm was raised.
* LOW_BATTERY — the battery is fine: the device's latest battery readings since the alarm's last low
  one (percent, and Zigbee2MQTT's ``battery_low`` flag) say so, against ``alarm.low_battery``.
* INACTIVITY — activity resumed: a motion or door event of one of the elder's devices after the alarm
  was raised (the ingest's own activity events, :data:`iot_ingest.jobs.ACTIVITY_EVENTS`).

Such an alarm is cleared with no user (``cleared_by`` NULL), outcome ``technical``, and a ``cleared``
event whose data say ``{"auto": true, "reason": …}``: it stays in the record, and the ingest may raise
a new one if the condition comes back. :func:`clear_reason` is the pure rule; :func:`autoclear` reads
the facts in one query (device state, telemetry, events: the ingest's tables) and applies it, with
a conditional update (``WHERE cleared_at IS NULL``) in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Final

import asyncpg
import structlog

from callcentre import seed as callcentre_seed
from callcentre.contract import AlarmType
from callcentre.timeline import EventKind, record
from core.clock import local_date
from core.policy import load_policy_conn
from iot_ingest.jobs import ACTIVITY_EVENTS
from iot_ingest.rules import LOW_BATTERY_KEY

log = structlog.get_logger("callcentre.autoclear")

AUTO_OUTCOME: Final = "technical"


class ClearReason(enum.StrEnum):
    DEVICE_HEARD = "device_heard"
    BATTERY_OK = "battery_ok"
    ACTIVITY_RESUMED = "activity_resumed"


@dataclass(frozen=True, slots=True)
class AlarmFacts:
    """What is known of an active self-clearing alarm's condition now. Instants are UTC; readings are
    the latest since the alarm's last triggering message (None: none came)."""

    type: str
    raised_at: dt.datetime  # the alarm's first_seen_at
    device_online: bool | None = None
    device_seen_at: dt.datetime | None = None
    battery_pct: float | None = None
    battery_low_flag: float | None = None  # Zigbee2MQTT's battery_low as a 0/1 reading
    activity_at: dt.datetime | None = None  # the latest activity event after the raise


def battery_ok(pct: float | None, low_flag: float | None, threshold_pct: float) -> bool:
    """A battery is fine when some reading came and none of the latest says low."""
    if pct is None and low_flag is None:
        return False
    if pct is not None and pct < threshold_pct:
        return False
    return low_flag is None or low_flag < 0.5


def clear_reason(facts: AlarmFacts, *, battery_threshold_pct: float) -> ClearReason | None:
    """Why the alarm's condition has ended, or None while it lasts."""
    if facts.type == AlarmType.DEVICE_OFFLINE:
        heard = (
            facts.device_online is True
            and facts.device_seen_at is not None
            and facts.device_seen_at > facts.raised_at
        )
        return ClearReason.DEVICE_HEARD if heard else None
    if facts.type == AlarmType.LOW_BATTERY:
        ok = battery_ok(facts.battery_pct, facts.battery_low_flag, battery_threshold_pct)
        return ClearReason.BATTERY_OK if ok else None
    if facts.type == AlarmType.INACTIVITY:
        resumed = facts.activity_at is not None and facts.activity_at > facts.raised_at
        return ClearReason.ACTIVITY_RESUMED if resumed else None
    return None


SELF_CLEARING: Final = (
    AlarmType.DEVICE_OFFLINE.value,
    AlarmType.LOW_BATTERY.value,
    AlarmType.INACTIVITY.value,
)

_FACTS: Final = """
SELECT a.id, a.type, a.first_seen_at, d.online, d.last_seen_at AS device_seen_at,
       CASE WHEN a.type = 'LOW_BATTERY' THEN (
           SELECT t.value FROM telemetry t
           WHERE t.device_id = a.device_id AND t.metric = 'battery' AND t.at > a.last_seen_at
           ORDER BY t.at DESC LIMIT 1) END AS battery_pct,
       CASE WHEN a.type = 'LOW_BATTERY' THEN (
           SELECT t.value FROM telemetry t
           WHERE t.device_id = a.device_id AND t.metric = 'battery_low' AND t.at > a.last_seen_at
           ORDER BY t.at DESC LIMIT 1) END AS battery_low_flag,
       CASE WHEN a.type = 'INACTIVITY' THEN (
           SELECT max(ev.at) FROM device_event ev JOIN device dd ON dd.id = ev.device_id
           WHERE dd.elder_id = a.elder_id AND ev.type = ANY($2::text[]) AND ev.at > a.first_seen_at)
           END AS activity_at
FROM alarm a LEFT JOIN device d ON d.id = a.device_id
WHERE a.cleared_at IS NULL AND a.type = ANY($1::text[])
ORDER BY a.id
FOR UPDATE OF a SKIP LOCKED"""

_CLEAR: Final = """UPDATE alarm SET cleared_at = $2, cleared_by = NULL, outcome = $3
WHERE id = $1 AND cleared_at IS NULL"""


async def autoclear(conn: asyncpg.Connection, *, now: dt.datetime) -> dict[ClearReason, int]:
    """Clear every active self-clearing alarm whose condition has ended (``cleared_at`` = ``now``).
    Returns how many for each reason. The caller owns the transaction."""
    snapshot = await load_policy_conn(
        conn, day=local_date(now), prefixes=("alarm.",), defaults=callcentre_seed.SEED.policies
    )
    threshold = snapshot.number(LOW_BATTERY_KEY, "pct")
    cleared: dict[ClearReason, int] = {}
    for row in await conn.fetch(_FACTS, list(SELF_CLEARING), list(ACTIVITY_EVENTS)):
        facts = AlarmFacts(
            type=row["type"],
            raised_at=row["first_seen_at"],
            device_online=row["online"],
            device_seen_at=row["device_seen_at"],
            battery_pct=row["battery_pct"],
            battery_low_flag=row["battery_low_flag"],
            activity_at=row["activity_at"],
        )
        reason = clear_reason(facts, battery_threshold_pct=threshold)
        if reason is None:
            continue
        if await conn.execute(_CLEAR, row["id"], now, AUTO_OUTCOME) != "UPDATE 1":
            continue
        await record(
            conn,
            row["id"],
            EventKind.CLEARED,
            data={"auto": True, "reason": reason.value, "outcome": AUTO_OUTCOME},
        )
        cleared[reason] = cleared.get(reason, 0) + 1
    if cleared:
        log.info("alarm.auto_cleared", **{r.value: n for r, n in cleared.items()})
    return cleared
