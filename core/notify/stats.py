"""The outbox's figures for ``/metrics``: rows by status and the age of the oldest undelivered one.

Read from the database at each scrape, so any API process reports them whichever process delivers.
``eldercare_notify_outbox_oldest_pending_age_seconds`` is the one to alert on: it grows when the
dispatcher is down or a receiver keeps failing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

STATUSES: Final = ("pending", "sent", "dead")

OUTBOX_ROWS = Gauge("eldercare_notify_outbox_rows", "Notification outbox rows by status", ["status"])
OLDEST_PENDING_AGE = Gauge(
    "eldercare_notify_outbox_oldest_pending_age_seconds",
    "Seconds since the oldest notification still pending was written (0 when none is pending)",
)
DUE = Gauge("eldercare_notify_outbox_due", "Pending notifications due now (the dispatcher's backlog)")

_STATS_SQL: Final = text(
    """SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'sent'),
              count(*) FILTER (WHERE status = 'dead'),
              count(*) FILTER (WHERE status = 'pending' AND next_attempt_at <= :now),
              min(created_at) FILTER (WHERE status = 'pending')
         FROM notification_outbox"""
)


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    sent: int
    dead: int
    due: int
    oldest_pending_age_s: float  # 0 when nothing is pending


async def outbox_stats(session: AsyncSession, *, now: dt.datetime) -> OutboxStats:
    pending, sent, dead, due, oldest = (await session.execute(_STATS_SQL, {"now": now})).one()
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return OutboxStats(pending=pending, sent=sent, dead=dead, due=due, oldest_pending_age_s=age)


def export(stats: OutboxStats) -> None:
    """Set the gauges (in this process's registry, which ``/metrics`` renders)."""
    for status in STATUSES:
        OUTBOX_ROWS.labels(status=status).set(getattr(stats, status))
    OLDEST_PENDING_AGE.set(stats.oldest_pending_age_s)
    DUE.set(stats.due)
