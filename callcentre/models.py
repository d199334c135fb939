"""Call-centre tables: the alarm (DOMAIN §7).

Lifecycle after ThingsBoard: active/cleared × unacknowledged/acknowledged. An alarm is *active* while
``cleared_at`` is NULL and *acknowledged* once ``acknowledged_at`` is set. At most one active alarm
exists per (device, type) — or per (elder, type) for elder-level alarms without a device such as
INACTIVITY — enforced by partial unique indexes; a repeat increments ``count`` and moves
``last_seen_at``. Migration 0002 adds an AFTER INSERT trigger that ``NOTIFY``s channel ``alarm``.
The types, severities and the SQL that raises an alarm are in :mod:`callcentre.contract`, the
table's one writer.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from callcentre.contract import AlarmType, Severity, severity_rank_sql
from core.db import Base


def _in(column: str, values: type[enum.StrEnum]) -> CheckConstraint:
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


class Alarm(Base):
    """One alarm; times are UTC and recorded to the second or better (DOMAIN §7 service levels).

    ``received_at``: the platform committed it; ``presented_at``: first shown on a console;
    ``acknowledged_at``/``cleared_at``: operator actions. ``first_seen_at``/``last_seen_at`` are the
    device-side times of the first and latest triggering message.
    """

    __tablename__ = "alarm"
    __table_args__ = (
        _in("type", AlarmType),
        _in("severity", Severity),
        CheckConstraint("device_id IS NOT NULL OR elder_id IS NOT NULL", name="has_subject"),
        CheckConstraint("count >= 1", name="count_positive"),
        Index(
            "uq_alarm_active_device_type",
            "device_id",
            "type",
            unique=True,
            postgresql_where=text("cleared_at IS NULL AND device_id IS NOT NULL"),
        ),
        Index(
            "uq_alarm_active_elder_type",
            "elder_id",
            "type",
            unique=True,
            postgresql_where=text("cleared_at IS NULL AND device_id IS NULL"),
        ),
        Index("ix_alarm_open", "received_at", postgresql_where=text("cleared_at IS NULL")),
        Index("ix_alarm_elder_received", "elder_id", "received_at"),
        # The operators' queue (migration 0020): open alarms by severity, then age; city-wide and per
        # district. Cleared alarms newest first; every alarm by the time it was received (the figures).
        Index(
            "ix_alarm_queue_rank",
            "severity_rank",
            "received_at",
            "id",
            postgresql_where=text("cleared_at IS NULL"),
        ),
        Index(
            "ix_alarm_queue_district",
            "district_id",
            "severity_rank",
            "received_at",
            "id",
            postgresql_where=text("cleared_at IS NULL"),
        ),
        Index("ix_alarm_cleared", "cleared_at", "id", postgresql_where=text("cleared_at IS NOT NULL")),
        Index("ix_alarm_received_at", "received_at"),
        # The escalation runner's one query: active alarms by when it must look at them next.
        Index("ix_alarm_escalation_due", "escalation_due_at", postgresql_where=text("cleared_at IS NULL")),
        Index("ix_alarm_storm", "storm_id", postgresql_where=text("storm_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    type: Mapped[str] = mapped_column(String(20))
    severity: Mapped[str] = mapped_column(String(10))
    # 0 (CRITICAL) … 3 (WARNING), computed by the database: the queue's order (migration 0020).
    severity_rank: Mapped[int] = mapped_column(SmallInteger, Computed(severity_rank_sql(), persisted=True))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("device.id", ondelete="SET NULL"))
    elder_id: Mapped[int | None] = mapped_column(ForeignKey("elder.id", ondelete="SET NULL"))
    count: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    first_seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    presented_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    cleared_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cleared_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    assigned_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The elder's district when raised (trigger ``alarm_set_district``, migration 0019).
    district_id: Mapped[int | None] = mapped_column(ForeignKey("district.id"))
    outcome: Mapped[str | None] = mapped_column(String(30))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'"))
    # --- Escalation (callcentre.escalation, callcentre.escalation_runner; migration 0020) -------------
    # The chain frozen on the alarm when the call centre first saw it (with its policy ``ref``), the
    # pending step (cycle from 0: one more per return to the queue; round from 1; step from 0) and when
    # the runner must look at the alarm next. A new row is due at once: the runner freezes its chain.
    escalation_chain: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    escalation_cycle: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    escalation_round: Mapped[int] = mapped_column(SmallInteger, default=1, server_default=text("1"))
    escalation_step: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    escalation_due_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # Acknowledged but still open past its chain's limit, it returned to the queue (acknowledgement and
    # assignee reset): when it last did, and its first acknowledgement, kept for the service levels.
    requeued_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    first_acknowledged_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    first_acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    # The storm its device was in when it was grouped (callcentre.storms), if any.
    storm_id: Mapped[int | None] = mapped_column(ForeignKey("alarm_storm.id", ondelete="SET NULL"))


class AlarmEvent(Base):
    """One change of an alarm, append-only: its timeline and the live feed's event (``id``).

    ``raised`` and ``repeated`` are written by triggers on ``alarm`` (migration 0019); every other kind
    by :mod:`callcentre.timeline`. ``district_id`` is the alarm's, copied for the feed's scoping.
    """

    __tablename__ = "alarm_event"
    __table_args__ = (
        Index("ix_alarm_event_alarm", "alarm_id", "id"),
        Index("ix_alarm_event_at", "at"),  # recent events by time: storms (migration 0020)
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarm.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=text("clock_timestamp()"))
    kind: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    district_id: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'"))


class AlarmStorm(Base):
    """A device raising more alarms than ``alarm.storm`` allows in its window (callcentre.storms): its
    alarms in that time are grouped under this row (``alarm.storm_id``) and flagged in the queue.
    Open while ``ended_at`` is NULL (one open storm per device); it ends after a quiet window."""

    __tablename__ = "alarm_storm"
    __table_args__ = (
        Index("uq_alarm_storm_open", "device_id", unique=True, postgresql_where=text("ended_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"))
    district_id: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_event_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The most alarm events (raises and repeats) seen in one window while it lasted.
    peak_events: Mapped[int] = mapped_column(Integer)
    policy: Mapped[str] = mapped_column(String(80))  # the ``alarm.storm`` row applied, key[scope]@date


class EscalationHeartbeat(Base):
    """The escalation jobs' last beats (``runner``, ``auditor``), written by the scheduler process and
    exported on the API's ``/metrics``: a stopped runner shows as an old beat."""

    __tablename__ = "escalation_heartbeat"

    job: Mapped[str] = mapped_column(String(20), primary_key=True)
    beat_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    alarms: Mapped[int] = mapped_column(Integer)  # alarms worked (runner) or checked (auditor)
    problems: Mapped[int] = mapped_column(Integer)  # alarms that failed (runner) or problems (auditor)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'"))
