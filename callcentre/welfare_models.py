"""Welfare-visit tables (migration 0024): the officers' tier overrides and the visits placed.

``welfare_visit`` marks a dispatch order as a welfare visit and is what keeps the job from placing
twice: one cadence visit per (elder, due day) and one after-alarm visit per alarm, by unique indexes,
so two runs or two schedulers racing each other place one order. The order itself is dispatch's
(placed through :mod:`dispatch.system_orders`), matched, verified and rated like any other.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from callcentre.welfare import Tier, VisitReason
from core.db import Base, enum_check, now_column


class WelfareOverride(Base):
    """An officer's tier for one elder over a date range (``valid_to`` inclusive, NULL: open).
    At most one open override per elder; setting a new one closes the previous."""

    __tablename__ = "welfare_override"
    __table_args__ = (
        enum_check("tier", Tier),
        CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="range_valid"),
        Index(
            "uq_welfare_override_open",
            "elder_id",
            unique=True,
            postgresql_where=text("valid_to IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id", ondelete="CASCADE"), index=True)
    tier: Mapped[str] = mapped_column(String(10))
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(200))
    set_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = now_column()


class WelfareVisit(Base):
    """A welfare visit placed as a service order: why (``cadence`` or ``after_alarm``), for which due
    day (local date) and, after an alarm, which alarm."""

    __tablename__ = "welfare_visit"
    __table_args__ = (
        enum_check("reason", VisitReason),
        CheckConstraint("(reason = 'after_alarm') = (alarm_id IS NOT NULL)", name="alarm_iff_after_alarm"),
        Index(
            "uq_welfare_visit_cadence",
            "elder_id",
            "due_on",
            unique=True,
            postgresql_where=text("reason = 'cadence'"),
        ),
        Index(
            "uq_welfare_visit_alarm", "alarm_id", unique=True, postgresql_where=text("alarm_id IS NOT NULL")
        ),
        Index("ix_welfare_visit_elder_due", "elder_id", "due_on"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id", ondelete="CASCADE"))
    due_on: Mapped[dt.date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(12))
    tier: Mapped[str] = mapped_column(String(10))
    alarm_id: Mapped[int | None] = mapped_column(ForeignKey("alarm.id", ondelete="SET NULL"))
    order_id: Mapped[int] = mapped_column(ForeignKey("service_order.id", ondelete="CASCADE"), unique=True)
    created_at: Mapped[dt.datetime] = now_column()
