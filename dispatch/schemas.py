"""Wire types of the marketplace and dispatch API (``XCreate`` in, ``XRead`` out).

Instants are ISO 8601 with a time zone (stored as UTC); money is integer fen; durations in the
requests are minutes, in the responses seconds (``_s``); positions are WGS 84 degrees.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec

from core.crud import Paged
from core.types import NO_NUL, Day, Id32, Id64, Input, Instant, Lat, Lon
from dispatch.caregiver_app import OpenOffer
from dispatch.dayplans.common import DayPlanView
from dispatch.models import (
    CallbackTask,
    Complaint,
    Offer,
    OrderTransition,
    ProviderService,
    RecurringOrder,
    ServiceOrder,
    Visit,
    VisitExceptionRecord,
    VisitRating,
)
from dispatch.orders import NextStep, OrderDetail
from dispatch.process_schemas import (
    AgreementStatusRead,
    AssessmentStatusRead,
    agreement_status_read,
    assessment_status_read,
)
from dispatch.quality import QualityReport
from dispatch.series import SeriesChange
from dispatch.states import OrderState
from dispatch.verification import ReasonCode, VerificationResult
from dispatch.visits import VisitDetail

ServiceCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2,10}$", description="Catalogue code, e.g. CLEAN")]
Minutes = Annotated[int, msgspec.Meta(ge=1, le=720)]
Requirements = Annotated[str, msgspec.Meta(max_length=500, pattern=NO_NUL)]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
Note = Annotated[str, msgspec.Meta(max_length=400, pattern=NO_NUL)]
QrCode = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[0-9a-zA-Z_-]+$")]
TaskName = Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=NO_NUL)]


# --- In ---------------------------------------------------------------------------------------------


class OrderCreate(Input):
    """A one-off order. ``asap``: as soon as possible (the window starts now). Without
    ``window_end_at`` the window is 30 minutes; without ``duration_minutes`` the service's minimum."""

    elder_id: Id64
    service_code: ServiceCode
    asap: bool = False
    urgent: bool = False
    window_start_at: Instant | None = None
    window_end_at: Instant | None = None
    duration_minutes: Minutes | None = None
    requirements: Requirements = ""


class RecurringOrderCreate(Input):
    """An RFC 5545 RRULE series (COUNT or UNTIL required), e.g. ``FREQ=WEEKLY;BYDAY=MO,WE,FR;COUNT=12``,
    evaluated on Asia/Shanghai wall time from ``first_start_at``. ``window_minutes``: allowed lateness.
    ``provider_id``: the provider the series is with; signed service agreements with it must cover the
    service on every remaining day (409 ``dispatch.agreement_required``). Omitted: the one provider
    whose signed agreement covers the first day (422 ``dispatch.provider_required`` if several do)."""

    elder_id: Id64
    service_code: ServiceCode
    rrule: Annotated[str, msgspec.Meta(min_length=5, max_length=400, pattern=NO_NUL)]
    first_start_at: Instant
    duration_minutes: Minutes
    window_minutes: Annotated[int, msgspec.Meta(ge=0, le=240)] = 30
    requirements: Requirements = ""
    provider_id: Id32 | None = None


class CancelIn(Input):
    reason: ShortText


class NoShowIn(Input):
    note: ShortText


class AssignIn(Input):
    caregiver_id: Id64


class PositionIn(Input):
    """A WGS 84 position in degrees: where the caregiver is now (shift start, position reports,
    check-out)."""

    lat: Lat
    lon: Lon


class CheckInIn(Input):
    """GPS position at the door; ``qr_code``: the code scanned from the elder's door sticker, if any."""

    lat: Lat
    lon: Lon
    qr_code: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[0-9a-zA-Z_-]+$")] | None = (
        None
    )


class ChecklistIn(Input):
    """Task name → done, e.g. ``{"mop floor": true}``."""

    items: Annotated[dict[TaskName, bool], msgspec.Meta(max_length=30)]


class SignOffIn(Input):
    pin: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")]


class ResolveIn(Input):
    reason_code: ReasonCode
    resolution_code: Literal["approved", "rejected", "corrected"]
    note: Note = ""


class ExceptionNoteIn(Input):
    """The provider side explains what happened, or contests the exception (or its rejection)."""

    kind: Literal["explanation", "contest"]
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=400, pattern=NO_NUL)]


class RatingIn(Input):
    score: Annotated[int, msgspec.Meta(ge=1, le=5)]
    comment: Note = ""


class ComplaintCreate(Input):
    order_id: Id64
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=NO_NUL)]


# --- Out --------------------------------------------------------------------------------------------


class OrderRead(msgspec.Struct):
    id: int
    elder_id: int
    service_code: str
    state: str
    asap: bool
    urgent: bool
    window_start_at: dt.datetime
    window_end_at: dt.datetime
    duration_s: int
    requirements: str
    price_fen: int
    provider_id: int | None
    caregiver_id: int | None
    recurring_order_id: int | None
    offer_attempts: int
    created_by_role: str
    cancelled_by_role: str | None
    cancel_reason: str | None
    cancellation_fee_fen: int
    created_at: dt.datetime
    updated_at: dt.datetime
    # What happens next (in the answer to placing the order and in its read view; not in lists).
    next_step: NextStepRead | None = None
    # While escalated: why it is in the operator queue (no_caregiver, unplanned, plan_withdrawn,
    # start_at_risk); None in every other state.
    escalation_reason: str | None = None


class NextStepRead(msgspec.Struct):
    """What happens next to an order. ``code``: ``operator_queue`` (nobody could take it at once; the
    call centre assigns a caregiver by hand by ``act_by``), ``awaiting_caregiver`` (an offer is open),
    ``awaiting_plan`` (a scheduled order, planned the day before). ``message`` is English; clients
    translate by ``code``."""

    code: str
    message: str
    act_by: dt.datetime | None


class TransitionRead(msgspec.Struct):
    from_state: str
    to_state: str
    actor_role: str
    actor_user_id: int | None
    at: dt.datetime
    note: str


class ExceptionNoteRead(msgspec.Struct):
    kind: str  # explanation, contest or resolution
    text: str
    by_user_id: int | None
    by_role: str
    at: dt.datetime


class ExceptionRead(msgspec.Struct):
    code: str
    detected_at: dt.datetime
    reason_code: str | None
    resolution_code: str | None
    resolved_by_user_id: int | None
    resolved_at: dt.datetime | None
    note: str
    history: list[ExceptionNoteRead]  # oldest first


class VisitRead(msgspec.Struct):
    id: int
    order_id: int
    service_code: str
    elder_id: int
    caregiver_id: int
    provider_id: int | None
    scheduled_start_at: dt.datetime
    scheduled_end_at: dt.datetime
    check_in_at: dt.datetime | None
    check_in_method: str | None
    check_out_at: dt.datetime | None
    check_out_method: str | None
    checklist: dict[str, Any]
    signed_off_at: dt.datetime | None
    sign_off_method: str | None
    verification: str
    verified_at: dt.datetime | None
    exceptions: list[ExceptionRead]


class OrderDetailRead(msgspec.Struct):
    order: OrderRead
    transitions: list[TransitionRead]
    visit: VisitRead | None
    agreement: AgreementStatusRead
    assessment: AssessmentStatusRead


class VisitDetailRead(VisitRead):
    """A visit with the agreement behind its order and the elder's assessment on its day."""

    agreement: AgreementStatusRead
    assessment: AssessmentStatusRead


class SeriesRead(msgspec.Struct):
    """A recurring series; ``state``: active, paused or cancelled; ``provider_id``: the provider it is
    agreed with (null for a series placed before service agreements)."""

    id: int
    elder_id: int
    service_code: str
    provider_id: int | None
    rrule: str
    first_start_at: dt.datetime
    duration_s: int
    window_s: int
    requirements: str
    state: str
    created_at: dt.datetime
    updated_at: dt.datetime | None


class RecurringOrderRead(SeriesRead):
    """A series with its orders (those just created, or all of them when read)."""

    orders: list[OrderRead]


class SeriesPage(msgspec.Struct):
    items: list[SeriesRead]
    total: int
    limit: int
    offset: int
    has_more: bool = False  # whether rows follow this page (set from total on creation)

    def __post_init__(self) -> None:
        self.has_more = self.offset + len(self.items) < self.total


class SeriesChangeRead(msgspec.Struct):
    """The series after a pause, resume or cancel; the future orders it cancelled (no caregiver held
    them), the orders a resume created, and the future visits a caregiver holds, which stay (cancel
    each on its own: ``POST /api/v1/orders/{id}/cancel``)."""

    series: SeriesRead
    cancelled_order_ids: list[int]
    created_order_ids: list[int]
    kept_order_ids: list[int]


class CancelRead(msgspec.Struct):
    order: OrderRead
    consequence: str
    fee_fen: int


class PositionRead(msgspec.Struct):
    caregiver_id: int
    lat: float
    lon: float
    at: dt.datetime
    on_shift: bool
    shift_started_at: dt.datetime | None


class OfferRead(msgspec.Struct):
    id: int
    order_id: int
    service_code: str
    window_start_at: dt.datetime
    window_end_at: dt.datetime
    duration_s: int
    eta_s: int
    offered_at: dt.datetime
    deadline_at: dt.datetime
    seconds_left: int


class PlanItemRead(msgspec.Struct):
    visit: VisitRead
    order_state: str
    elder_name: str
    address: str
    lat: float
    lon: float


class VerificationRead(msgspec.Struct):
    """The verdict of DOMAIN §5 after check-out or sign-off (``pending``: waiting for the sign-off)."""

    visit_id: int
    verification: str
    signed_off_at: dt.datetime | None
    verdict: str
    exceptions: list[str]
    on_site_s: int | None
    check_in_distance_m: float | None


class SignOffCodeRead(msgspec.Struct):
    visit_id: int
    pin: str


class RatingRead(msgspec.Struct):
    id: int
    visit_id: int
    by_role: str
    score: int
    comment: str
    created_at: dt.datetime


class ComplaintRead(msgspec.Struct):
    id: int
    order_id: int | None
    visit_id: int | None
    elder_id: int
    provider_id: int | None
    caregiver_id: int | None
    text: str
    status: str
    created_at: dt.datetime


class OrderPage(msgspec.Struct):
    items: list[OrderRead]
    total: int
    limit: int
    offset: int
    has_more: bool = False  # whether rows follow this page (set from total on creation)

    def __post_init__(self) -> None:
        self.has_more = self.offset + len(self.items) < self.total


class ComplaintPage(msgspec.Struct):
    items: list[ComplaintRead]
    total: int
    limit: int
    offset: int
    has_more: bool = False  # whether rows follow this page (set from total on creation)

    def __post_init__(self) -> None:
        self.has_more = self.offset + len(self.items) < self.total


# --- Converters -------------------------------------------------------------------------------------


def order_read(o: ServiceOrder, step: NextStep | None = None) -> OrderRead:
    return OrderRead(
        id=o.id,
        elder_id=o.elder_id,
        service_code=o.service_code,
        state=o.state,
        asap=o.asap,
        urgent=o.urgent,
        window_start_at=o.window_start_at,
        window_end_at=o.window_end_at,
        duration_s=o.duration_s,
        requirements=o.requirements,
        price_fen=o.price_fen,
        provider_id=o.provider_id,
        caregiver_id=o.caregiver_id,
        recurring_order_id=o.recurring_order_id,
        offer_attempts=o.offer_attempts,
        created_by_role=o.created_by_role,
        cancelled_by_role=o.cancelled_by_role,
        cancel_reason=o.cancel_reason,
        cancellation_fee_fen=o.cancellation_fee_fen,
        created_at=o.created_at,
        updated_at=o.updated_at,
        next_step=None if step is None else NextStepRead(step.code, step.message, step.act_by),
        escalation_reason=o.escalation_reason if o.state == OrderState.ESCALATED.value else None,
    )


def transition_read(t: OrderTransition) -> TransitionRead:
    return TransitionRead(t.from_state, t.to_state, t.actor_role, t.actor_user_id, t.at, t.note)


def exception_read(e: VisitExceptionRecord) -> ExceptionRead:
    return ExceptionRead(
        e.code,
        e.detected_at,
        e.reason_code,
        e.resolution_code,
        e.resolved_by_user_id,
        e.resolved_at,
        e.note,
        [ExceptionNoteRead(n.kind, n.text, n.by_user_id, n.by_role, n.at) for n in e.notes],
    )


def visit_read(v: Visit, exceptions: list[VisitExceptionRecord] | None = None) -> VisitRead:
    return VisitRead(
        id=v.id,
        order_id=v.order_id,
        service_code=v.service_code,
        elder_id=v.elder_id,
        caregiver_id=v.caregiver_id,
        provider_id=v.provider_id,
        scheduled_start_at=v.scheduled_start_at,
        scheduled_end_at=v.scheduled_end_at,
        check_in_at=v.check_in_at,
        check_in_method=v.check_in_method,
        check_out_at=v.check_out_at,
        check_out_method=v.check_out_method,
        checklist=dict(v.checklist or {}),
        signed_off_at=v.signed_off_at,
        sign_off_method=v.sign_off_method,
        verification=v.verification,
        verified_at=v.verified_at,
        exceptions=[exception_read(e) for e in exceptions or []],
    )


def order_detail_read(d: OrderDetail) -> OrderDetailRead:
    assert d.prerequisites is not None, "order_detail reads them"
    return OrderDetailRead(
        order=order_read(d.order, d.next_step),
        transitions=[transition_read(t) for t in d.transitions],
        visit=visit_read(d.visit, d.exceptions) if d.visit is not None else None,
        agreement=agreement_status_read(d.prerequisites.agreement),
        assessment=assessment_status_read(d.prerequisites.assessment),
    )


def visit_detail_read(d: VisitDetail) -> VisitDetailRead:
    base = visit_read(d.visit, d.exceptions)
    return VisitDetailRead(
        **{f: getattr(base, f) for f in base.__struct_fields__},
        agreement=agreement_status_read(d.prerequisites.agreement),
        assessment=assessment_status_read(d.prerequisites.assessment),
    )


def offer_read(o: OpenOffer, now: dt.datetime) -> OfferRead:
    offer: Offer = o.offer
    return OfferRead(
        id=offer.id,
        order_id=offer.order_id,
        service_code=o.order.service_code,
        window_start_at=o.order.window_start_at,
        window_end_at=o.order.window_end_at,
        duration_s=o.order.duration_s,
        eta_s=offer.eta_s,
        offered_at=offer.offered_at,
        deadline_at=offer.deadline_at,
        seconds_left=max(0, int((offer.deadline_at - now).total_seconds())),
    )


def rating_read(r: VisitRating) -> RatingRead:
    return RatingRead(r.id, r.visit_id, r.by_role, r.score, r.comment, r.created_at)


def complaint_read(c: Complaint) -> ComplaintRead:
    return ComplaintRead(
        c.id,
        c.order_id,
        c.visit_id,
        c.elder_id,
        c.provider_id,
        c.caregiver_id,
        c.text,
        c.status,
        c.created_at,
    )


def verification_read(v: Visit, r: VerificationResult) -> VerificationRead:
    return VerificationRead(
        visit_id=v.id,
        verification=v.verification,
        signed_off_at=v.signed_off_at,
        verdict=r.verdict.value,
        exceptions=[e.value for e in r.exceptions],
        on_site_s=r.on_site_s,
        check_in_distance_m=None if r.check_in_distance_m is None else round(r.check_in_distance_m, 1),
    )


def _series_fields(r: RecurringOrder) -> dict[str, Any]:
    return {
        "id": r.id,
        "elder_id": r.elder_id,
        "service_code": r.service_code,
        "provider_id": r.provider_id,
        "rrule": r.rrule,
        "first_start_at": r.first_start_at,
        "duration_s": r.duration_s,
        "window_s": r.window_s,
        "requirements": r.requirements,
        "state": r.state,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    }


def series_read(r: RecurringOrder) -> SeriesRead:
    return SeriesRead(**_series_fields(r))


def recurring_order_read(r: RecurringOrder, orders: Sequence[ServiceOrder]) -> RecurringOrderRead:
    return RecurringOrderRead(**_series_fields(r), orders=[order_read(o) for o in orders])


def series_page(p: Paged[RecurringOrder]) -> SeriesPage:
    return SeriesPage([series_read(r) for r in p.items], p.total, p.limit, p.offset)


def series_change_read(c: SeriesChange) -> SeriesChangeRead:
    return SeriesChangeRead(
        series_read(c.series), c.cancelled_order_ids, c.created_order_ids, c.kept_order_ids
    )


def order_page(p: Paged[ServiceOrder]) -> OrderPage:
    return OrderPage([order_read(o) for o in p.items], p.total, p.limit, p.offset)


def complaint_page(p: Paged[Complaint]) -> ComplaintPage:
    return ComplaintPage([complaint_read(c) for c in p.items], p.total, p.limit, p.offset)


# --- Day plans ----------------------------------------------------------------------------------


class BuildIn(Input):
    """Build a provider's day plan now. ``provider_id`` is required for supervisors and admins (a
    provider admin builds its own provider's day)."""

    provider_id: Id32 | None = None


class ReplanIn(Input):
    """Re-plan a stored day plan. ``provider_id`` is required for supervisors and admins (a provider
    admin re-plans its own provider's day)."""

    provider_id: Id32 | None = None
    sick_caregiver_ids: Annotated[list[Id64], msgspec.Meta(max_length=200)] = msgspec.field(
        default_factory=list
    )
    cancelled_order_ids: Annotated[list[Id64], msgspec.Meta(max_length=2000)] = msgspec.field(
        default_factory=list
    )


class DayPlanStopRead(msgspec.Struct):
    order_id: int
    seq: int  # 1, 2, … in the caregiver's route
    planned_start_at: dt.datetime
    visit_id: int | None  # the visit the plan created for the order (None: withdrawn since)


class DayPlanRouteRead(msgspec.Struct):
    caregiver_id: int
    stops: list[DayPlanStopRead]


class DayPlanRead(msgspec.Struct):
    """A provider's plan of one day; ``moved`` counts orders that changed caregiver in the re-plan
    that produced this answer (0 for a plain read)."""

    id: int
    provider_id: int
    plan_on: dt.date
    built_at: dt.datetime
    replanned_at: dt.datetime | None
    published_at: dt.datetime | None  # when its stops became accepted orders with visits
    revision: int
    travel_s: int
    routes: list[DayPlanRouteRead]
    unassigned_order_ids: list[int]
    unavailable_caregiver_ids: list[int]
    moved: int = 0


def day_plan_read(view: DayPlanView, *, full: bool = True) -> DayPlanRead:
    """``full=False`` (a caregiver's view) leaves out the provider-wide lists."""
    routes: dict[int, list[DayPlanStopRead]] = {}
    for s in sorted(view.stops, key=lambda s: (s.caregiver_id, s.seq)):
        routes.setdefault(s.caregiver_id, []).append(
            DayPlanStopRead(s.order_id, s.seq, s.planned_start_at, s.visit_id)
        )
    p = view.plan
    return DayPlanRead(
        id=p.id,
        provider_id=p.provider_id,
        plan_on=p.plan_on,
        built_at=p.built_at,
        replanned_at=p.replanned_at,
        published_at=p.published_at,
        revision=p.revision,
        travel_s=p.travel_s if full else 0,
        routes=[DayPlanRouteRead(cid, stops) for cid, stops in routes.items()],
        unassigned_order_ids=list(p.unassigned_order_ids) if full else [],
        unavailable_caregiver_ids=list(p.unavailable_caregiver_ids) if full else [],
        moved=view.moved,
    )


# --- Callbacks and provider quality ----------------------------------------------------------------


class CallbackCompleteIn(Input):
    """The outcome of a phone callback: a satisfaction 1–5 when the elder or family was reached,
    none when nobody answered (``reached`` false)."""

    satisfaction: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None
    reached: bool = True
    note: Note = ""


class CallbackRead(msgspec.Struct):
    id: int
    visit_id: int
    due_on: dt.date
    status: str  # open | done | unreachable
    satisfaction: int | None
    done_by_user_id: int | None
    done_at: dt.datetime | None
    note: str


class CallbackPage(msgspec.Struct):
    items: list[CallbackRead]
    total: int
    limit: int
    offset: int
    has_more: bool = False  # whether rows follow this page (set from total on creation)

    def __post_init__(self) -> None:
        self.has_more = self.offset + len(self.items) < self.total


class QualityRead(msgspec.Struct):
    """A provider's quality score 0..100 (null without visits) over inclusive Asia/Shanghai days, with
    the inputs of :func:`dispatch.verification.provider_quality` and the weights applied."""

    provider_id: int
    from_date: dt.date
    to_date: dt.date
    score: float | None
    verified_visits: int
    exception_visits: int
    mean_rating: float | None
    mean_callback_score: float | None
    complaints: int
    weights: dict[str, float]


def callback_read(t: CallbackTask) -> CallbackRead:
    return CallbackRead(
        t.id, t.visit_id, t.due_on, t.status, t.satisfaction, t.done_by_user_id, t.done_at, t.note
    )


def callback_page(p: Paged[CallbackTask]) -> CallbackPage:
    return CallbackPage([callback_read(t) for t in p.items], p.total, p.limit, p.offset)


def quality_read(r: QualityReport) -> QualityRead:
    s, w = r.stats, r.weights
    return QualityRead(
        provider_id=r.provider_id,
        from_date=r.start,
        to_date=r.end,
        score=r.score,
        verified_visits=s.verified_visits,
        exception_visits=s.exception_visits,
        mean_rating=s.mean_rating,
        mean_callback_score=s.mean_callback_score,
        complaints=s.complaints,
        weights={
            "rating": w.rating,
            "callback": w.callback,
            "exceptions": w.exceptions,
            "complaints": w.complaints,
        },
    )


class ServiceRead(msgspec.Struct):
    """A catalogue service (DOMAIN §3), its unit price in fen and what it asks of the caregiver on the
    asked day (dated policy ``service.price_fen`` / ``service.requirement``)."""

    code: str
    name: str
    name_en: str
    unit: str
    price_fen: int | None
    min_minutes: int
    skill: str
    certificate_kind: str | None
    max_certificate_level: int | None
    same_gender: bool


def service_read(entry: Any) -> ServiceRead:
    s = entry.service
    return ServiceRead(
        code=s.code,
        name=s.name,
        name_en=s.name_en,
        unit=s.unit,
        price_fen=entry.price_fen,
        min_minutes=entry.rule.min_minutes,
        skill=s.skill,
        certificate_kind=entry.rule.certificate_kind,
        max_certificate_level=entry.rule.max_certificate_level,
        same_gender=entry.rule.same_gender,
    )


# --- Provider contracts -------------------------------------------------------------------------------


class ContractIn(Input):
    """A service the provider is contracted for, ``valid_from``..``valid_to`` (inclusive; omitted or
    null: open-ended)."""

    service_code: ServiceCode
    valid_from: Day
    valid_to: Day | None = None


ContractList = Annotated[list[ContractIn], msgspec.Meta(max_length=200)]


class ContractRead(msgspec.Struct):
    provider_id: int
    service_code: str
    valid_from: dt.date
    valid_to: dt.date | None


def contract_read(c: ProviderService) -> ContractRead:
    return ContractRead(c.provider_id, c.service_code, c.valid_from, c.valid_to)
