"""Marketplace and dispatch tables: catalogue, orders, offers, visits, verification, quality.

Times are UTC ``timestamptz``; money is integer fen; state columns are checked against the enums of
:mod:`dispatch.states` and :mod:`dispatch.verification`.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base
from dispatch.states import EscalationReason, OrderState
from dispatch.verification import CaptureMethod, VisitException


def _now() -> Mapped[dt.datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def _in(column: str, values: type[enum.StrEnum] | tuple[str, ...]) -> CheckConstraint:
    items = [v.value for v in values] if isinstance(values, type) else list(values)
    allowed = ", ".join(f"'{v}'" for v in items)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


class OfferState(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"  # the order was cancelled or taken while this offer was open


# --- Catalogue ----------------------------------------------------------------------------------


class Service(Base):
    """A catalogue service (DOMAIN §3): its identity, the skill a caregiver needs for it and whether
    it is offered. What else it asks of the caregiver (certificate, level, same gender) and its
    minimum time on site are dated policy (``service.requirement`` / ``service.price_fen``, read
    through :mod:`dispatch.policies` for the service day), as is its price."""

    __tablename__ = "service"
    __table_args__ = (_in("unit", ("meal", "hour", "visit")),)

    code: Mapped[str] = mapped_column(String(10), primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    name_en: Mapped[str] = mapped_column(String(60))
    unit: Mapped[str] = mapped_column(String(8))
    skill: Mapped[str] = mapped_column(String(10))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class ProviderService(Base):
    """A service a provider is contracted to deliver, over a date range (valid_to inclusive)."""

    __tablename__ = "provider_service"
    __table_args__ = (CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="range_valid"),)

    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id", ondelete="CASCADE"), primary_key=True)
    service_code: Mapped[str] = mapped_column(ForeignKey("service.code"), primary_key=True)
    valid_from: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)


# --- Orders and offers --------------------------------------------------------------------------


class SeriesState(enum.StrEnum):
    """A recurring series: ``active`` materialises its visits ahead; ``paused`` does not (its future
    orders not yet dispatched are cancelled) until resumed; ``cancelled`` is final."""

    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"


class RecurringOrder(Base):
    """An RFC 5545 RRULE series; ``first_start_at`` is DTSTART, expanded on Asia/Shanghai wall time.

    At most one series that is not cancelled per elder, service, rule and first start (a partial
    unique index: two identical requests racing cannot both succeed)."""

    __tablename__ = "recurring_order"
    __table_args__ = (
        _in("state", SeriesState),
        Index(
            "uq_recurring_order_series",
            "elder_id",
            "service_code",
            "rrule",
            "first_start_at",
            unique=True,
            postgresql_where=text("state <> 'cancelled'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id", ondelete="CASCADE"), index=True)
    service_code: Mapped[str] = mapped_column(ForeignKey("service.code"))
    # The provider the series is agreed with (a signed :class:`ServiceAgreement` covers its dates):
    # only its caregivers are offered, planned or assigned the series' orders. NULL only for series
    # placed before agreements existed (migration 0018), which keep being dispatched as before.
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("provider.id"), index=True)
    rrule: Mapped[str] = mapped_column(String(400))
    first_start_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    duration_s: Mapped[int] = mapped_column(Integer)
    window_s: Mapped[int] = mapped_column(Integer, default=1800)  # allowed lateness of the start
    requirements: Mapped[str] = mapped_column(Text, default="")
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(12), default=SeriesState.ACTIVE.value)
    created_at: Mapped[dt.datetime] = _now()
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ServiceOrder(Base):
    """One requested visit. The visit must start in [window_start_at, window_end_at]."""

    __tablename__ = "service_order"
    __table_args__ = (
        _in("state", OrderState),
        _in("escalation_reason", EscalationReason),
        CheckConstraint("window_end_at >= window_start_at", name="window_order"),
        CheckConstraint("duration_s > 0", name="duration_positive"),
        Index("ix_service_order_state_window", "state", "window_start_at"),
        # One live order per occurrence of a series; an occurrence cancelled by pausing the series
        # gets a new order when it is resumed.
        Index(
            "uq_service_order_occurrence",
            "recurring_order_id",
            "window_start_at",
            unique=True,
            postgresql_where=text("state <> 'cancelled'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id"), index=True)
    service_code: Mapped[str] = mapped_column(ForeignKey("service.code"))
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("provider.id"), index=True)
    caregiver_id: Mapped[int | None] = mapped_column(ForeignKey("caregiver.id"), index=True)
    recurring_order_id: Mapped[int | None] = mapped_column(
        ForeignKey("recurring_order.id", ondelete="SET NULL")
    )
    state: Mapped[str] = mapped_column(String(12), default=OrderState.CREATED.value)
    asap: Mapped[bool] = mapped_column(Boolean, default=False)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    window_start_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    window_end_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    duration_s: Mapped[int] = mapped_column(Integer)
    requirements: Mapped[str] = mapped_column(Text, default="")
    price_fen: Mapped[int] = mapped_column(Integer)  # the unit price on the service date, snapshotted
    offer_attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    # Why it last went to the operator queue (dispatch.states.EscalationReason); meaningful while the
    # order is escalated, kept afterwards as history.
    escalation_reason: Mapped[str | None] = mapped_column(String(20))
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    created_by_role: Mapped[str] = mapped_column(String(20))
    cancelled_by_role: Mapped[str | None] = mapped_column(String(20))
    cancel_reason: Mapped[str | None] = mapped_column(String(200))
    cancellation_fee_fen: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = _now()
    updated_at: Mapped[dt.datetime] = _now()


class OrderTransition(Base):
    """Every state change of an order: who, when, from, to."""

    __tablename__ = "order_transition"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("service_order.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str] = mapped_column(String(12))
    to_state: Mapped[str] = mapped_column(String(12))
    actor_role: Mapped[str] = mapped_column(String(20))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str] = mapped_column(String(200), default="")


class Offer(Base):
    """An offer of an order to one caregiver, open until ``deadline_at`` (60 s by default policy)."""

    __tablename__ = "offer"
    __table_args__ = (
        _in("state", OfferState),
        # At most one open offer per order.
        Index("uq_offer_one_pending", "order_id", unique=True, postgresql_where="state = 'pending'"),
        Index("ix_offer_caregiver_state", "caregiver_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("service_order.id", ondelete="CASCADE"), index=True)
    caregiver_id: Mapped[int] = mapped_column(ForeignKey("caregiver.id"))
    rank: Mapped[int] = mapped_column(SmallInteger)
    score: Mapped[float] = mapped_column(Double)
    eta_s: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(10), default=OfferState.PENDING.value)
    offered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    responded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class CaregiverPosition(Base):
    """A caregiver's last known position and shift status (one row per caregiver).

    The GiST index over ``point(lon, lat)`` of those on shift serves nearest-first (KNN ``<->``)
    candidate search; ``caregiver`` has the same over ``point(home_lon, home_lat)`` (migration 0006).
    """

    __tablename__ = "caregiver_position"
    __table_args__ = (
        Index(
            "ix_caregiver_position_on_shift_point",
            text("point(lon, lat)"),
            postgresql_using="gist",
            postgresql_where=text("on_shift"),
        ),
    )

    caregiver_id: Mapped[int] = mapped_column(
        ForeignKey("caregiver.id", ondelete="CASCADE"), primary_key=True
    )
    lat: Mapped[float] = mapped_column(Double)
    lon: Mapped[float] = mapped_column(Double)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    on_shift: Mapped[bool] = mapped_column(Boolean, default=False)
    shift_started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


# --- Visits and verification --------------------------------------------------------------------


class Visit(Base):
    """The visit of an accepted order: the six EVV elements plus check-in/out evidence and sign-off
    (with the count of wrong sign-off PINs that rate-limits guessing)."""

    __tablename__ = "visit"
    __table_args__ = (
        _in("verification", ("pending", "verified", "exception")),
        # NULL passes a CHECK, so the optional columns need no extra IS NULL.
        _in("check_in_method", CaptureMethod),
        _in("check_out_method", CaptureMethod),
        _in("sign_off_method", ("pin", "family")),
        CheckConstraint("check_out_at IS NULL OR check_out_at >= check_in_at", name="check_order"),
        CheckConstraint("pin_failures >= 0", name="pin_failures_nonnegative"),
        Index("ix_visit_caregiver_start", "caregiver_id", "scheduled_start_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("service_order.id", ondelete="CASCADE"), unique=True)
    service_code: Mapped[str] = mapped_column(ForeignKey("service.code"))
    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id"), index=True)
    caregiver_id: Mapped[int] = mapped_column(ForeignKey("caregiver.id"))
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("provider.id"), index=True)
    scheduled_start_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    scheduled_end_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    check_in_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    check_in_lat: Mapped[float | None] = mapped_column(Double)
    check_in_lon: Mapped[float | None] = mapped_column(Double)
    check_in_method: Mapped[str | None] = mapped_column(String(8))
    check_in_qr_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    check_out_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    check_out_lat: Mapped[float | None] = mapped_column(Double)
    check_out_lon: Mapped[float | None] = mapped_column(Double)
    check_out_method: Mapped[str | None] = mapped_column(String(8))
    checklist: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    signed_off_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    sign_off_method: Mapped[str | None] = mapped_column(String(8))
    signed_off_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    # Wrong sign-off PINs since the last lock (or right PIN); PIN sign-off is refused until
    # ``pin_locked_until`` (policy ``verification.signoff_pin``).
    pin_failures: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    pin_locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    verification: Mapped[str] = mapped_column(String(10), default="pending")
    verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = _now()


class VisitExceptionRecord(Base):
    """An exception holding a visit from payment; resolved with reason + resolution codes by a named user."""

    __tablename__ = "visit_exception"
    __table_args__ = (
        _in("code", VisitException),
        _in("resolution_code", ("approved", "rejected", "corrected")),
        UniqueConstraint("visit_id", "code", name="uq_visit_exception_visit_code"),
        CheckConstraint(
            "(resolved_at IS NULL) = (resolved_by_user_id IS NULL AND resolution_code IS NULL)",
            name="resolution_complete",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(20))
    detected_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    reason_code: Mapped[str | None] = mapped_column(String(30))
    resolution_code: Mapped[str | None] = mapped_column(String(12))
    resolved_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str] = mapped_column(String(400), default="")
    # Its history: explanations and contests by the provider side, the resolution; oldest first.
    # Loaded only on request (``selectinload``), never lazily.
    notes: Mapped[list[VisitExceptionNote]] = relationship(
        order_by="VisitExceptionNote.id", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class ExceptionNoteKind(enum.StrEnum):
    EXPLANATION = "explanation"  # the provider or caregiver explains what happened
    CONTEST = "contest"  # the provider or caregiver disputes the exception (or its rejection)
    RESOLUTION = "resolution"  # the resolver's note, with the resolution


class VisitExceptionNote(Base):
    """One entry in a visit exception's history, by a named user in a role, at a time."""

    __tablename__ = "visit_exception_note"
    __table_args__ = (_in("kind", ExceptionNoteKind),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    exception_id: Mapped[int] = mapped_column(
        ForeignKey("visit_exception.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(12))
    text: Mapped[str] = mapped_column(String(400))
    by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    by_role: Mapped[str] = mapped_column(String(20))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class VisitRating(Base):
    __tablename__ = "visit_rating"
    __table_args__ = (
        CheckConstraint("score BETWEEN 1 AND 5", name="score_range"),
        UniqueConstraint("visit_id", "by_user_id", name="uq_visit_rating_visit_user"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id", ondelete="CASCADE"), index=True)
    by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    by_role: Mapped[str] = mapped_column(String(20))
    score: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[dt.datetime] = _now()


class Complaint(Base):
    __tablename__ = "complaint"
    __table_args__ = (_in("status", ("open", "investigating", "upheld", "dismissed")),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("service_order.id", ondelete="SET NULL"))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visit.id", ondelete="SET NULL"))
    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id"), index=True)
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("provider.id"), index=True)
    caregiver_id: Mapped[int | None] = mapped_column(ForeignKey("caregiver.id"))
    filed_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(14), default="open")
    resolution: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = _now()
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class CallbackTask(Base):
    """A phone callback (回访) for a sampled verified visit, recording satisfaction 1–5."""

    __tablename__ = "callback_task"
    __table_args__ = (
        _in("status", ("open", "done", "unreachable")),
        CheckConstraint("satisfaction IS NULL OR satisfaction BETWEEN 1 AND 5", name="satisfaction_range"),
        CheckConstraint("status <> 'done' OR satisfaction IS NOT NULL", name="done_has_score"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id", ondelete="CASCADE"), unique=True)
    due_on: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12), default="open")
    satisfaction: Mapped[int | None] = mapped_column(SmallInteger)
    done_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    done_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str] = mapped_column(String(400), default="")


# --- Day plans ------------------------------------------------------------------------------------


class ProviderDayPlan(Base):
    """A provider's plan of one Asia/Shanghai day: its stops are in :class:`DayPlanStop`.

    ``revision`` counts builds (1) plus re-plans; caregivers reported unavailable (sick) stay out of
    every later re-plan of the day; orders that fit nowhere are listed in ``unassigned_order_ids``.
    A plan is an assignment: from ``published_at`` on, every stop's order is accepted with a visit.
    """

    __tablename__ = "day_plan"
    __table_args__ = (
        UniqueConstraint("provider_id", "plan_on", name="uq_day_plan_provider_day"),
        CheckConstraint("revision >= 1", name="revision_positive"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id", ondelete="CASCADE"))
    plan_on: Mapped[dt.date] = mapped_column(Date, index=True)
    built_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    replanned_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revision: Mapped[int] = mapped_column(SmallInteger, default=1)
    travel_s: Mapped[int] = mapped_column(Integer)  # total planned travel, seconds
    unassigned_order_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), default=list)
    unavailable_caregiver_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), default=list)
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class DayPlanDirty(Base):
    """A mark that a day's stored plans are out of date: an order of that day was placed or cancelled
    after its plans were built. Written in the transaction of the change; the
    ``dispatch.rebuild_dirty_plans`` job re-plans the day and then deletes the marks it read, in its
    own transaction, so a crash between the two loses nothing.

    Append-only (one row per change, no unique day): a writer never meets a row the job is deleting,
    so it never waits for a re-plan in progress while it holds the row of the order it changed (which
    the re-plan may be about to lock: a deadlock), and a mark written during a re-plan outlives it."""

    __tablename__ = "day_plan_dirty"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    plan_on: Mapped[dt.date] = mapped_column(Date, index=True)
    marked_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class DayPlanStop(Base):
    """One planned visit: the order, its caregiver, its place (1, 2, …) in that caregiver's route, the
    planned start (UTC) and the visit that publishing it created (NULL once that visit is withdrawn)."""

    __tablename__ = "day_plan_stop"
    __table_args__ = (
        UniqueConstraint("plan_id", "caregiver_id", "seq", name="uq_day_plan_stop_route_seq"),
        CheckConstraint("seq >= 1", name="seq_positive"),
        Index("ix_day_plan_stop_caregiver_start", "caregiver_id", "planned_start_at"),
    )

    plan_id: Mapped[int] = mapped_column(ForeignKey("day_plan.id", ondelete="CASCADE"), primary_key=True)
    order_id: Mapped[int] = mapped_column(
        ForeignKey("service_order.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    caregiver_id: Mapped[int] = mapped_column(ForeignKey("caregiver.id"))
    seq: Mapped[int] = mapped_column(SmallInteger)
    planned_start_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visit.id", ondelete="SET NULL"), unique=True)


# --- Service agreements (GB/T 43153: intake → assessment → signed agreement → service) ----------------


class AgreementState(enum.StrEnum):
    """``draft`` until every required party has signed, then ``signed``; ``terminated`` (from either)
    is final. The terms of an agreement that is not a draft never change: amending is a new one."""

    DRAFT = "draft"
    SIGNED = "signed"
    TERMINATED = "terminated"


class AgreementParty(enum.StrEnum):
    ELDER = "elder"  # the elder signs personally
    GUARDIAN = "guardian"  # the agreement's guardian signs for the elder
    PROVIDER = "provider"


class SignatureMethod(enum.StrEnum):
    IN_APP = "in_app"  # the signer, signed in, signed in the app (``user_id``)
    PAPER_SCAN = "paper_scan"  # signed on paper; ``document_ref`` names the scanned document


class ServiceAgreement(Base):
    """A service agreement (服务协议) between an elder, or a guardian acting for them (``guardian_id``),
    and a provider: the services it covers (:class:`AgreementItem`, each with the price quoted) from
    ``valid_from`` to ``valid_to`` (inclusive), and the signatures (:class:`AgreementSignature`).

    It covers a day when it was signed by both sides (``signed_at``), the day lies in its dates, and
    it was not terminated with effect on or before that day (``terminated_on``: the first day it no
    longer covers). The terms (elder, provider, guardian, dates, price list, items) are frozen once a
    draft is signed or terminated; a trigger (migration 0018) refuses any later change to them."""

    __tablename__ = "service_agreement"
    __table_args__ = (
        _in("state", AgreementState),
        CheckConstraint("valid_to >= valid_from", name="range_valid"),
        CheckConstraint("state <> 'signed' OR signed_at IS NOT NULL", name="signed_dated"),
        CheckConstraint(
            "(state = 'terminated') = (terminated_at IS NOT NULL AND terminated_on IS NOT NULL)",
            name="termination_complete",
        ),
        Index("ix_service_agreement_elder_provider", "elder_id", "provider_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id", ondelete="CASCADE"))
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"), index=True)
    guardian_id: Mapped[int | None] = mapped_column(ForeignKey("guardian.id"))
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date] = mapped_column(Date)
    # The day whose catalogue prices (policy ``service.price_fen``) the items quote: ``valid_from``.
    price_list_on: Mapped[dt.date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(12), default=AgreementState.DRAFT.value)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = _now()
    updated_at: Mapped[dt.datetime] = _now()
    signed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    terminated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    terminated_on: Mapped[dt.date | None] = mapped_column(Date)
    terminated_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    termination_reason: Mapped[str | None] = mapped_column(String(200))

    items: Mapped[list[AgreementItem]] = relationship(
        order_by="AgreementItem.service_code", lazy="selectin", cascade="all, delete-orphan"
    )
    signatures: Mapped[list[AgreementSignature]] = relationship(
        order_by="AgreementSignature.id", lazy="selectin", cascade="all, delete-orphan"
    )


class AgreementItem(Base):
    """A service an agreement covers, with the unit price quoted (fen, per ``unit``) and the policy
    row it was quoted from (``price_ref``: ``service.price_fen[CODE]@valid_from``)."""

    __tablename__ = "service_agreement_item"
    __table_args__ = (CheckConstraint("price_fen >= 0", name="price_nonnegative"),)

    agreement_id: Mapped[int] = mapped_column(
        ForeignKey("service_agreement.id", ondelete="CASCADE"), primary_key=True
    )
    service_code: Mapped[str] = mapped_column(ForeignKey("service.code"), primary_key=True)
    price_fen: Mapped[int] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(8))
    price_ref: Mapped[str] = mapped_column(String(80))


class AgreementSignature(Base):
    """One party's signature: who signed (name; the account if signed in the app), how, when (UTC),
    and who recorded it (the signer, or the provider's staff recording a signed paper)."""

    __tablename__ = "agreement_signature"
    __table_args__ = (
        _in("party", AgreementParty),
        _in("method", SignatureMethod),
        # One signature per party: the unique index decides between two racing signers.
        UniqueConstraint("agreement_id", "party", name="uq_agreement_signature_party"),
        CheckConstraint("method <> 'paper_scan' OR document_ref IS NOT NULL", name="paper_has_document"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    agreement_id: Mapped[int] = mapped_column(
        ForeignKey("service_agreement.id", ondelete="CASCADE"), index=True
    )
    party: Mapped[str] = mapped_column(String(10))
    signer_name: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    method: Mapped[str] = mapped_column(String(12))
    document_ref: Mapped[str | None] = mapped_column(String(200))
    recorded_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    signed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
