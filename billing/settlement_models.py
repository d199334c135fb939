"""Settlement's tables: monthly periods, their adjudicated visit lines, review decisions, statements.

* ``settlement_period``: one per calendar month (Asia/Shanghai). States ``open`` → ``closed`` →
  ``reviewed`` → ``approved`` → ``paid`` → ``locked`` (and ``closed``/``reviewed`` → ``open`` when an
  admin reopens it); every transition is a conditional update (see :mod:`billing.settlement`) logged
  in ``settlement_period_event``. A trigger (migration 0020) refuses any change to a locked period.
* ``settlement_line``: a visit adjudicated in a period's close: ``passed`` or ``rejected`` with a
  numbered reason (:class:`billing.adjudication.Reason`), its price and each payer's share. Lines are
  never changed: a re-close after a reopen writes a new ``revision`` of a line only when its result
  differs (the ledger gets a reversal and new transfers). ``regular`` lines are visits of the
  period's month; ``adjustment`` lines are visits of earlier months verified after their period's
  cut-off.
* ``settlement_line_decision``: an officer's approval or rejection of a passed line at review.
* ``settlement_statement``: the canonical statement of a provider or a district for a period, with
  its SHA-256: a new version only when the content changes, so closing again gives the same bytes.
* ``settlement_district_review``: a district's officer marked its lines reviewed.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, enum_check, now_column


class PeriodState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    REVIEWED = "reviewed"
    APPROVED = "approved"
    PAID = "paid"
    LOCKED = "locked"


class LineKind(enum.StrEnum):
    REGULAR = "regular"  # a visit of the period's own month
    ADJUSTMENT = "adjustment"  # a visit of an earlier month, verified after that month's cut-off


class LineOutcome(enum.StrEnum):
    PASSED = "passed"
    REJECTED = "rejected"


class Decision(enum.StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class StatementKind(enum.StrEnum):
    PROVIDER = "provider"
    DISTRICT = "district"


class SettlementPeriod(Base):
    """A month's settlement. ``cutoff_at`` (UTC) decides which verifications count in it; a close
    is refused before it. ``close_revision`` counts closes (a re-close after a reopen is the next)."""

    __tablename__ = "settlement_period"
    __table_args__ = (
        enum_check("state", PeriodState),
        CheckConstraint("extract(day FROM month) = 1", name="month_first_day"),
        CheckConstraint("state <> 'paid' OR payment_reference IS NOT NULL", name="paid_has_reference"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    month: Mapped[dt.date] = mapped_column(Date, unique=True)
    state: Mapped[str] = mapped_column(String(10), default=PeriodState.OPEN.value)
    cutoff_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    close_revision: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    approved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    paid_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    payment_reference: Mapped[str | None] = mapped_column(String(60))
    locked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = now_column()


class SettlementPeriodEvent(Base):
    """Every transition of a period: who, when, from, to, why."""

    __tablename__ = "settlement_period_event"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    period_id: Mapped[int] = mapped_column(ForeignKey("settlement_period.id"), index=True)
    action: Mapped[str] = mapped_column(String(12))
    from_state: Mapped[str] = mapped_column(String(10))
    to_state: Mapped[str] = mapped_column(String(10))
    by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    by_role: Mapped[str] = mapped_column(String(20))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str] = mapped_column(String(200), default="")


class SettlementLine(Base):
    """One visit adjudicated in a period's close (revision ``revision``). Amounts in fen; the shares
    and ``copay_fen`` sum to ``amount_fen`` when the line is ``payable`` (posted to the ledger: passed,
    or rejected only for the public payers, reasons 3, 5, 6), and are all 0 otherwise. ``signals``
    is a bit set of :class:`billing.signals.Signal` for the reviewing officer."""

    __tablename__ = "settlement_line"
    __table_args__ = (
        enum_check("kind", LineKind),
        enum_check("outcome", LineOutcome),
        # Leads with the visit: also the index of a visit's lines across periods (adjustments, checks).
        UniqueConstraint("visit_id", "period_id", "revision", name="uq_settlement_line_visit_period_rev"),
        CheckConstraint("(outcome = 'passed') = (reason IS NULL)", name="reason_iff_rejected"),
        CheckConstraint(
            "ltc_fen >= 0 AND voucher_fen >= 0 AND local_fen >= 0 AND copay_fen >= 0",
            name="shares_nonnegative",
        ),
        CheckConstraint(
            "NOT payable OR ltc_fen + voucher_fen + local_fen + copay_fen = amount_fen", name="parts_sum"
        ),
        Index("ix_settlement_line_period_provider", "period_id", "provider_id"),
        Index("ix_settlement_line_period_district", "period_id", "district_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # No foreign keys on this high-volume, append-only table: the close is its only writer and takes
    # the visit ids from ``visit`` itself in the same statement; the ledger check (billing.ledger_check)
    # proves every paid line links to exactly one verified visit. (Row-level foreign-key triggers cost
    # more than the rest of a 1,500,000-line close.)
    period_id: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(SmallInteger)
    visit_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(10))
    service_month: Mapped[dt.date] = mapped_column(Date)
    service_on: Mapped[dt.date] = mapped_column(Date)
    service_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    elder_id: Mapped[int] = mapped_column(BigInteger)
    district_id: Mapped[int] = mapped_column(Integer)
    provider_id: Mapped[int] = mapped_column(Integer)
    caregiver_id: Mapped[int] = mapped_column(BigInteger)
    service_code: Mapped[str] = mapped_column(String(10))
    duration_s: Mapped[int] = mapped_column(Integer)
    unit_price_fen: Mapped[int] = mapped_column(Integer)
    amount_fen: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(8))
    reason: Mapped[int | None] = mapped_column(SmallInteger)
    payable: Mapped[bool] = mapped_column()
    ltc_fen: Mapped[int] = mapped_column(Integer)
    voucher_fen: Mapped[int] = mapped_column(Integer)
    local_fen: Mapped[int] = mapped_column(Integer)
    copay_fen: Mapped[int] = mapped_column(Integer)
    signals: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class SettlementLineDecision(Base):
    """An officer's decision on a passed line at review (one per line): rejecting one reverses its
    transfers in the ledger."""

    __tablename__ = "settlement_line_decision"
    __table_args__ = (enum_check("decision", Decision),)

    line_id: Mapped[int] = mapped_column(ForeignKey("settlement_line.id"), primary_key=True)
    period_id: Mapped[int] = mapped_column(ForeignKey("settlement_period.id"), index=True)
    decision: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(200))
    by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    by_role: Mapped[str] = mapped_column(String(20))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class SettlementStatement(Base):
    """A statement as closed: ``body`` is canonical JSON (the bytes the hash covers), ``sha256`` its
    hex digest. ``subject_id`` is the provider's or the district's id as ``kind`` says. Versions start
    at 1; a new one is written only when a re-close changes the content."""

    __tablename__ = "settlement_statement"
    __table_args__ = (
        enum_check("kind", StatementKind),
        UniqueConstraint(
            "period_id", "kind", "subject_id", "version", name="uq_settlement_statement_version"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    period_id: Mapped[int] = mapped_column(ForeignKey("settlement_period.id"))
    kind: Mapped[str] = mapped_column(String(10))
    subject_id: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(SmallInteger)
    line_count: Mapped[int] = mapped_column(Integer)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    public_fen: Mapped[int] = mapped_column(BigInteger)
    copay_fen: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class SettlementDistrictReview(Base):
    """A district's lines of a period reviewed by its officer (or an admin): every passed line has a
    decision. The period is ``reviewed`` once every district with lines is."""

    __tablename__ = "settlement_district_review"

    period_id: Mapped[int] = mapped_column(ForeignKey("settlement_period.id"), primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("district.id"), primary_key=True)
    by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    by_role: Mapped[str] = mapped_column(String(20))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
