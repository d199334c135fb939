"""Dispatch use cases: orders, transitions, offers (60 s), race-safe accept, escalation.

Services flush; the caller (request, job) owns the transaction. Every state change goes through
:func:`change_state`, a conditional ``UPDATE … WHERE state = :expected`` that records the transition,
so two concurrent writers can never both move an order out of the same state.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import structlog
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    DateTime,
    Double,
    Integer,
    String,
    Table,
    bindparam,
    case,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON, aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute, aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from core.authz import Principal, sees_all_elders
from core.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from core.models import (
    Caregiver,
    Certificate,
    Community,
    District,
    Elder,
    ElderBlockedCaregiver,
    PolicyValue,
    Provider,
    ProviderDistrict,
    Role,
)
from core.registry.common import (
    Paged,
    Window,
    get_or_404,
    in_key_range,
    page_of,
    require_ref,
    unknown_reference,
)
from dispatch import routing
from dispatch.matching import (
    LOCAL_TZ,
    METRES_PER_DEGREE_LAT,
    Booking,
    CaregiverIndex,
    CaregiverProfile,
    CertificateInfo,
    MatchPolicy,
    MatchWeights,
    OrderRequest,
    ServiceRule,
    local_date,
    match,
    max_distance_m,
    static_rejection,
    timing_rejection,
)
from dispatch.models import (
    CallbackTask,
    CaregiverPosition,
    Complaint,
    DayPlanStop,
    Offer,
    OfferState,
    OrderTransition,
    ProviderDayPlan,
    RecurringOrder,
    Service,
    ServiceOrder,
    Visit,
    VisitExceptionRecord,
    VisitRating,
)
from dispatch.recurrence import RecurrenceError, expand
from dispatch.states import (
    Actor,
    CancellationConsequence,
    CancellationPolicy,
    InvalidTransition,
    OrderState,
    cancellation,
    transition,
)
from dispatch.verification import (
    Capture,
    CaptureMethod,
    ProviderStats,
    QualityWeights,
    Verdict,
    VerificationPolicy,
    VerificationResult,
    VisitException,
    VisitRecord,
    provider_quality,
    select_callbacks,
    verify,
)

log = structlog.get_logger(__name__)


class DispatchError(DomainError, ValueError):
    """A request that cannot be carried out; the message says why. Nothing was changed.

    A :class:`core.errors.DomainError`, so the API answers it as a problem with a stable code.
    """

    status = 422
    code = "dispatch.invalid"
    title = "Invalid dispatch request"


class StateConflict(DispatchError):
    """The order was no longer in the expected state (someone else changed it first)."""

    status = 409
    code = "dispatch.state_conflict"
    title = "State conflict"


class OfferNotOpen(DispatchError):
    """The offer was already answered, expired, withdrawn, or is not this caregiver's."""

    status = 409
    code = "dispatch.offer_not_open"
    title = "Offer not open"


@dataclass(frozen=True, slots=True)
class OfferPolicy:
    offer_seconds: int = 60
    max_attempts: int = 3


def service_rule(s: Service) -> ServiceRule:
    return ServiceRule(
        code=s.code,
        skill=s.skill,
        certificate_kind=s.certificate_kind,
        max_certificate_level=s.max_certificate_level,
        same_gender=s.same_gender,
        min_minutes=s.min_minutes,
    )


async def price_on(*, session: AsyncSession, service_code: str, day: dt.date) -> int:
    """The unit price in fen valid on ``day`` (policy ``service.price_fen``, scope = service code).

    Raises :class:`DispatchError` if no price is valid that day.
    """
    return _price_fen(await session.scalar(_price_select(service_code, day)), service_code, day)


def _price_select(service_code: Any, day: Any) -> Any:
    return (
        select(PolicyValue.value)
        .where(
            PolicyValue.key == "service.price_fen",
            PolicyValue.scope == service_code,
            PolicyValue.valid_from <= day,
            (PolicyValue.valid_to.is_(None)) | (PolicyValue.valid_to >= day),
        )
        .order_by(PolicyValue.valid_from.desc())
        .limit(1)
    )


def _price_fen(value: Mapping[str, Any] | None, service_code: str, day: dt.date) -> int:
    if value is None or "fen" not in value:
        raise DispatchError(f"service {service_code} has no price valid on {day.isoformat()}")
    return int(value["fen"])


async def create_order(
    *,
    session: AsyncSession,
    elder_id: int,
    service_code: str,
    window_start_at: dt.datetime,
    window_end_at: dt.datetime,
    duration_s: int,
    actor: Actor,
    actor_user_id: int | None,
    now: dt.datetime,
    asap: bool = False,
    urgent: bool = False,
    requirements: str = "",
) -> ServiceOrder:
    """Create an order in state ``created``; the price of the service date is snapshotted (fen)."""
    if window_end_at < window_start_at:
        raise DispatchError("window end is before its start")
    if duration_s <= 0:
        raise DispatchError("duration must be positive")
    if window_start_at.tzinfo is None:
        raise DispatchError("times must carry a time zone")
    service = await session.get(Service, service_code)
    if service is None or not service.is_active:
        raise DispatchError(f"unknown or inactive service {service_code!r}")
    status = await session.scalar(select(Elder.status).where(Elder.id == elder_id))
    if status != "active":
        raise DispatchError(f"elder {elder_id} is unknown or not active")
    price = await price_on(session=session, service_code=service_code, day=local_date(window_start_at))
    return await _insert_order(
        session,
        {
            "elder_id": elder_id,
            "service_code": service_code,
            "window_start_at": window_start_at,
            "window_end_at": window_end_at,
            "duration_s": duration_s,
            "asap": asap,
            "urgent": urgent,
            "requirements": requirements,
            "price_fen": price,
        },
        actor=actor,
        actor_user_id=actor_user_id,
        now=now,
    )


def _logged(order_id: Any) -> Any:
    """INSERT … SELECT of an order transition, for use inside a data-modifying CTE. Parameters:
    from_state, to_state, actor_role, actor_user_id, at."""
    return insert(OrderTransition).from_select(
        ["order_id", "from_state", "to_state", "actor_role", "actor_user_id", "at", "note"],
        select(
            order_id,
            bindparam("from_state", type_=String),
            bindparam("to_state", type_=String),
            bindparam("actor_role", type_=String),
            bindparam("actor_user_id", type_=BigInteger),
            bindparam("at", type_=DateTime(timezone=True)),
            literal("", String),
        ),
    )


_ORDER_VALUES = (
    "elder_id",
    "service_code",
    "window_start_at",
    "window_end_at",
    "duration_s",
    "asap",
    "urgent",
    "requirements",
    "price_fen",
)


@functools.cache
def _insert_order_statement() -> Any:
    """Built once: INSERT of an order (parameters :data:`_ORDER_VALUES`, created_by_role,
    created_by_user_id, at) and of its first transition, returning the order as an entity."""
    table = cast(Table, ServiceOrder.__table__)
    new = (
        insert(table)
        .values(
            {
                **{name: bindparam(name, type_=table.c[name].type) for name in _ORDER_VALUES},
                "state": OrderState.CREATED.value,
                "created_by_role": bindparam("actor_role", type_=String),
                "created_by_user_id": bindparam("actor_user_id", type_=BigInteger),
                "created_at": bindparam("at", type_=DateTime(timezone=True)),
                "updated_at": bindparam("at", type_=DateTime(timezone=True)),
            }
        )
        .returning(*table.c)
        .cte("new_order")
    )
    return select(aliased(ServiceOrder, new)).add_cte(_logged(new.c.id).cte("first_transition"))


async def _insert_order(
    session: AsyncSession,
    values: Mapping[str, Any],
    *,
    actor: Actor,
    actor_user_id: int | None,
    now: dt.datetime,
) -> ServiceOrder:
    """Insert a ``created`` order and its first transition in one statement (one round trip)."""
    params = {
        **{name: values.get(name) for name in _ORDER_VALUES},
        "from_state": "none",
        "to_state": OrderState.CREATED.value,
        "actor_role": actor.value,
        "actor_user_id": actor_user_id,
        "at": now,
    }
    order: ServiceOrder = (await session.scalars(_insert_order_statement(), params)).one()
    log.info("dispatch.order.created", order_id=order.id, elder_id=order.elder_id, service=order.service_code)
    return order


async def change_state(
    *,
    session: AsyncSession,
    order_id: int,
    expected: OrderState,
    target: OrderState,
    actor: Actor,
    actor_user_id: int | None,
    now: dt.datetime,
    note: str = "",
    values: Mapping[str, Any] | None = None,
) -> None:
    """Move an order from ``expected`` to ``target`` if (and only if) it is still in ``expected``.

    Raises :class:`dispatch.states.InvalidTransition` for a transition the state machine forbids and
    :class:`StateConflict` if the order has meanwhile left ``expected``.
    """
    transition(expected, target, actor=actor, now=now)
    moved = await session.scalar(
        update(ServiceOrder)
        .where(ServiceOrder.id == order_id, ServiceOrder.state == expected.value)
        .values(state=target.value, updated_at=now, **dict(values or {}))
        .returning(ServiceOrder.id)
    )
    if moved is None:
        raise StateConflict(f"order {order_id} is no longer {expected.value}")
    await session.execute(
        insert(OrderTransition).values(
            order_id=order_id,
            from_state=expected.value,
            to_state=target.value,
            actor_role=actor.value,
            actor_user_id=actor_user_id,
            at=now,
            note=note,
        )
    )


@functools.cache
def _make_offer_statement() -> Any:
    """Built once: the order's conditional move to ``offered`` (``offer_attempts`` + 1), its
    transition row and the offer row, returning the offer (no row: the order had left ``expected``)."""
    at = bindparam("at", type_=DateTime(timezone=True))
    moved = (
        update(ServiceOrder)
        .where(
            ServiceOrder.id == bindparam("order_id", type_=BigInteger),
            ServiceOrder.state == bindparam("expected", type_=String),
        )
        .values(state=OrderState.OFFERED.value, updated_at=at, offer_attempts=ServiceOrder.offer_attempts + 1)
        .returning(ServiceOrder.id, ServiceOrder.offer_attempts)
        .cte("moved")
    )
    made = (
        insert(cast(Table, Offer.__table__))
        .from_select(
            ["order_id", "caregiver_id", "rank", "score", "eta_s", "state", "offered_at", "deadline_at"],
            select(
                moved.c.id,
                bindparam("offer_caregiver_id", type_=BigInteger),
                moved.c.offer_attempts,
                bindparam("score", type_=Double),
                bindparam("eta_s", type_=Integer),
                literal(OfferState.PENDING.value, String),
                at,
                bindparam("deadline_at", type_=DateTime(timezone=True)),
            ),
        )
        .returning(*Offer.__table__.c)
        .cte("made")
    )
    # A SELECT over the data-modifying CTEs (an ORM INSERT given parameters would be a bulk insert).
    return select(aliased(Offer, made)).add_cte(_logged(moved.c.id).cte("logged"))


async def make_offer(
    *,
    session: AsyncSession,
    order_id: int,
    caregiver_id: int,
    score: float,
    eta_s: int,
    now: dt.datetime,
    policy: OfferPolicy,
    actor: Actor = Actor.SYSTEM,
    expected: OrderState | None = None,
) -> Offer:
    """Offer a ``created`` (or, by staff, an ``escalated``) order to one caregiver until now + 60 s.

    ``expected`` is the order's current state if the caller has just read it (else it is read here).
    The state change, its transition row and the offer row are one statement: one round trip.
    """
    if expected is None:
        state = await session.scalar(select(ServiceOrder.state).where(ServiceOrder.id == order_id))
        if state is None:
            raise DispatchError(f"order {order_id} not found")
        expected = OrderState(state)
    transition(expected, OrderState.OFFERED, actor=actor, now=now)
    params = {
        "order_id": order_id,
        "expected": expected.value,
        "from_state": expected.value,
        "to_state": OrderState.OFFERED.value,
        "actor_role": actor.value,
        "actor_user_id": None,
        "at": now,
        "offer_caregiver_id": caregiver_id,  # not "caregiver_id": the UPDATE would take it as a SET value
        "score": score,
        "eta_s": eta_s,
        "deadline_at": now + dt.timedelta(seconds=policy.offer_seconds),
    }
    offer: Offer | None = (await session.scalars(_make_offer_statement(), params)).one_or_none()
    if offer is None:
        raise StateConflict(f"order {order_id} is no longer {expected.value}")
    # Keep a loaded copy of the order in step without another round trip.
    order = session.identity_map.get(identity_key(ServiceOrder, order_id))
    if isinstance(order, ServiceOrder):
        set_committed_value(order, "state", OrderState.OFFERED.value)
        set_committed_value(order, "offer_attempts", offer.rank)
        set_committed_value(order, "updated_at", now)
    log.info("dispatch.offer.made", order_id=order_id, offer_id=offer.id, caregiver_id=caregiver_id)
    return offer


async def _close_offer(
    session: AsyncSession,
    *,
    offer_id: int,
    caregiver_id: int,
    to: OfferState,
    now: dt.datetime,
    in_time: bool,
) -> int:
    """Move this caregiver's pending offer to ``to`` with one conditional UPDATE (the race-safe step);
    ``in_time`` also requires the deadline not to have passed. Returns the order id, or raises
    :class:`OfferNotOpen` when the offer was not open (taken, answered, expired or someone else's)."""
    conditions = [
        Offer.id == offer_id,
        Offer.caregiver_id == caregiver_id,
        Offer.state == OfferState.PENDING.value,
    ]
    if in_time:
        conditions.append(Offer.deadline_at >= now)
    order_id = await session.scalar(
        update(Offer).where(*conditions).values(state=to.value, responded_at=now).returning(Offer.order_id)
    )
    if order_id is None:
        raise OfferNotOpen(f"offer {offer_id} is not open for caregiver {caregiver_id}")
    return int(order_id)


async def accept_offer(*, session: AsyncSession, offer_id: int, caregiver_id: int, now: dt.datetime) -> Visit:
    """Accept an open offer. Of any number of simultaneous accepts exactly one succeeds.

    The offer row is claimed with a conditional UPDATE (``state = 'pending'`` and before the deadline);
    PostgreSQL row locking makes every concurrent claimer wait and then re-check the condition, so
    only the first commit wins and the others get :class:`OfferNotOpen`.
    """
    order_id = await _close_offer(
        session, offer_id=offer_id, caregiver_id=caregiver_id, to=OfferState.ACCEPTED, now=now, in_time=True
    )
    await change_state(
        session=session,
        order_id=order_id,
        expected=OrderState.OFFERED,
        target=OrderState.ACCEPTED,
        actor=Actor.CAREGIVER,
        actor_user_id=None,
        now=now,
        values={
            "caregiver_id": caregiver_id,
            "provider_id": select(Caregiver.provider_id)
            .where(Caregiver.id == caregiver_id)
            .scalar_subquery(),
        },
    )
    order = await session.get(ServiceOrder, order_id, populate_existing=True)
    if order is None:  # pragma: no cover - the UPDATE above just found it
        raise DispatchError(f"order {order_id} vanished")
    start = max(order.window_start_at, now) if order.asap else order.window_start_at
    visit = Visit(
        order_id=order_id,
        service_code=order.service_code,
        elder_id=order.elder_id,
        caregiver_id=caregiver_id,
        provider_id=order.provider_id,
        scheduled_start_at=start,
        scheduled_end_at=start + dt.timedelta(seconds=order.duration_s),
    )
    session.add(visit)
    await session.flush()
    log.info("dispatch.offer.accepted", order_id=order_id, offer_id=offer_id, caregiver_id=caregiver_id)
    return visit


async def decline_offer(*, session: AsyncSession, offer_id: int, caregiver_id: int, now: dt.datetime) -> int:
    """Decline an open offer; the order goes back to ``created`` for the next candidate. Returns its id."""
    order_id = await _close_offer(
        session, offer_id=offer_id, caregiver_id=caregiver_id, to=OfferState.DECLINED, now=now, in_time=False
    )
    await change_state(
        session=session,
        order_id=order_id,
        expected=OrderState.OFFERED,
        target=OrderState.CREATED,
        actor=Actor.CAREGIVER,
        actor_user_id=None,
        now=now,
        note="declined",
    )
    return int(order_id)


async def expire_offers(*, session: AsyncSession, now: dt.datetime) -> list[int]:
    """Expire every open offer past its deadline; their orders return to ``created``. Returns order ids."""
    rows = await session.scalars(
        update(Offer)
        .where(Offer.state == OfferState.PENDING.value, Offer.deadline_at < now)
        .values(state=OfferState.EXPIRED.value)
        .returning(Offer.order_id)
    )
    order_ids = sorted(set(rows))
    for oid in order_ids:
        await change_state(
            session=session,
            order_id=oid,
            expected=OrderState.OFFERED,
            target=OrderState.CREATED,
            actor=Actor.SYSTEM,
            actor_user_id=None,
            now=now,
            note="offer expired",
        )
    return order_ids


async def offer_next(
    *,
    session: AsyncSession,
    order_id: int,
    request: OrderRequest,
    index: CaregiverIndex,
    profiles: Mapping[int, CaregiverProfile],
    match_policy: MatchPolicy,
    offer_policy: OfferPolicy,
    now: dt.datetime,
) -> Offer | None:
    """Offer a ``created`` order to the best caregiver not yet asked; escalate to the operator queue
    after ``max_attempts`` offers or when nobody is eligible. Returns the new offer, or None if escalated.
    """
    order = await session.get(ServiceOrder, order_id, populate_existing=True)
    if order is None:
        raise DispatchError(f"order {order_id} not found")
    asked = frozenset(await session.scalars(select(Offer.caregiver_id).where(Offer.order_id == order_id)))
    return await _offer_or_escalate(
        session=session,
        order_id=order_id,
        state=order.state,
        attempts=order.offer_attempts,
        asked=asked,
        request=request,
        index=index,
        profiles=profiles,
        match_policy=match_policy,
        offer_policy=offer_policy,
        now=now,
    )


async def _offer_or_escalate(
    *,
    session: AsyncSession,
    order_id: int,
    state: str,
    attempts: int,
    asked: frozenset[int],
    request: OrderRequest,
    index: CaregiverIndex,
    profiles: Mapping[int, CaregiverProfile],
    match_policy: MatchPolicy,
    offer_policy: OfferPolicy,
    now: dt.datetime,
) -> Offer | None:
    """:func:`offer_next` given the order's state, offer count and the caregivers already asked."""
    if state != OrderState.CREATED.value:
        raise StateConflict(f"order {order_id} is {state}, not created")
    if attempts < offer_policy.max_attempts:
        result = match(
            request, index=index, profiles=profiles, policy=match_policy, now=now, limit=len(asked) + 5
        )
        for cand in result.candidates:
            if cand.caregiver_id not in asked:
                return await make_offer(
                    session=session,
                    order_id=order_id,
                    caregiver_id=cand.caregiver_id,
                    score=cand.score,
                    eta_s=cand.eta_s,
                    now=now,
                    policy=offer_policy,
                    expected=OrderState.CREATED,
                )
    await change_state(
        session=session,
        order_id=order_id,
        expected=OrderState.CREATED,
        target=OrderState.ESCALATED,
        actor=Actor.SYSTEM,
        actor_user_id=None,
        now=now,
        note=f"after {attempts} offers",
    )
    order = session.identity_map.get(identity_key(ServiceOrder, order_id))
    if isinstance(order, ServiceOrder):
        set_committed_value(order, "state", OrderState.ESCALATED.value)
        set_committed_value(order, "updated_at", now)
    log.info("dispatch.order.escalated", order_id=order_id, attempts=attempts)
    return None


# === Use cases behind the API and the jobs ========================================================
# Every function below takes the signed-in :class:`Principal` (``actor``) and applies its scope; the
# route layer only parses and serialises. Errors are :class:`core.errors.DomainError`s with stable codes.

RECURRING_HORIZON_DAYS = 14  # recurring orders are materialised this many days ahead
CONTINUITY_DAYS = 30
CANDIDATE_POOL = 32  # nearest caregivers fetched per dispatch; the matching core ranks them
# Reason codes for resolving a visit exception (DOMAIN §5); resolution codes are approved/rejected/corrected.
EXCEPTION_REASON_CODES = (
    "gps_drift",
    "device_fault",
    "elder_not_home",
    "elder_unable_to_sign",
    "coordinator_entry",
    "caregiver_error",
    "certificate_renewed",
    "other",
)
_LIVE_ORDER_STATES = tuple(
    s.value for s in OrderState if s not in (OrderState.CANCELLED, OrderState.NO_SHOW, OrderState.CREATED)
)


@dataclass(frozen=True, slots=True)
class Policies:
    """The dated policy values (``dispatch.*``, ``verification.*``) valid on one day."""

    match: MatchPolicy
    offer: OfferPolicy
    verification: VerificationPolicy
    cancellation: CancellationPolicy
    quality: QualityWeights = field(default_factory=QualityWeights)


async def load_policies(*, session: AsyncSession, day: dt.date) -> Policies:
    """Read every ``dispatch.*`` / ``verification.*`` policy value valid on ``day`` (one query).

    Keys absent from ``policy_value`` fall back to the DOMAIN defaults of the policy dataclasses.
    """
    stmt = select(PolicyValue.key, PolicyValue.scope, PolicyValue.value).where(*_policy_filter(day))
    rows = await session.execute(stmt.order_by(PolicyValue.valid_from))
    return policies_from([(str(k), str(sc), v) for k, sc, v in rows])


def _policy_filter(day: Any) -> tuple[ColumnElement[bool], ...]:
    return (
        or_(PolicyValue.key.startswith("dispatch."), PolicyValue.key.startswith("verification.")),
        PolicyValue.valid_from <= day,
        (PolicyValue.valid_to.is_(None)) | (PolicyValue.valid_to >= day),
    )


def _policy_rows_json(day: Any) -> Any:
    """A scalar subquery: the rows of :func:`load_policies` as a JSON array of [key, scope, value]."""
    row = func.json_build_array(PolicyValue.key, PolicyValue.scope, PolicyValue.value)
    return (
        select(func.json_agg(aggregate_order_by(row, PolicyValue.valid_from.asc()), type_=JSON))
        .where(*_policy_filter(day))
        .scalar_subquery()
    )


def policies_from(rows: Sequence[tuple[str, str, Mapping[str, Any]]]) -> Policies:
    """Policies from (key, scope, value) rows ordered by ``valid_from`` (the latest wins)."""
    values: dict[tuple[str, str], Mapping[str, Any]] = {}
    for key, scope, value in rows:
        values[(key, scope)] = value

    def num(key: str, scope: str, name: str, default: float) -> float:
        v = values.get((key, scope), {}).get(name)
        return float(v) if isinstance(v, int | float) else default

    m = MatchPolicy()
    w = m.weights
    match_policy = MatchPolicy(
        weights=MatchWeights(
            travel=num("dispatch.match_weights", "*", "travel_bp", w.travel * 10_000) / 10_000,
            continuity=num("dispatch.match_weights", "*", "continuity_bp", w.continuity * 10_000) / 10_000,
            fairness=num("dispatch.match_weights", "*", "fairness_bp", w.fairness * 10_000) / 10_000,
            rating=num("dispatch.match_weights", "*", "rating_bp", w.rating * 10_000) / 10_000,
        ),
        detour_factor=num("dispatch.detour", "*", "bp", m.detour_factor * 10_000) / 10_000,
        urban_speed_kmh=num("dispatch.speed", "urban", "kmh", m.urban_speed_kmh),
        rural_speed_kmh=num("dispatch.speed", "rural", "kmh", m.rural_speed_kmh),
        urgent_eta_urban_min=num("dispatch.urgent_eta_max", "urban", "seconds", m.urgent_eta_urban_min * 60)
        / 60,
        urgent_eta_rural_min=num("dispatch.urgent_eta_max", "rural", "seconds", m.urgent_eta_rural_min * 60)
        / 60,
    )
    o = OfferPolicy()
    offer_policy = OfferPolicy(
        offer_seconds=int(num("dispatch.offer_window", "*", "seconds", o.offer_seconds)),
        max_attempts=int(num("dispatch.max_offers", "*", "count", o.max_attempts)),
    )
    v = VerificationPolicy()
    verification = VerificationPolicy(
        max_check_in_distance_urban_m=num(
            "verification.checkin_radius", "urban", "metres", v.max_check_in_distance_urban_m
        ),
        max_check_in_distance_rural_m=num(
            "verification.checkin_radius", "rural", "metres", v.max_check_in_distance_rural_m
        ),
        min_on_site_ratio=num("verification.min_onsite", "*", "bp", v.min_on_site_ratio * 10_000) / 10_000,
        sign_off_within_s=int(num("verification.signoff_window", "*", "seconds", v.sign_off_within_s)),
        callback_ratio=num("verification.callback_sample", "*", "bp", v.callback_ratio * 10_000) / 10_000,
    )
    c = CancellationPolicy()
    cancel = CancellationPolicy(
        notice_s=int(num("dispatch.cancel_notice", "*", "seconds", c.notice_s)),
        late_fee_fen=int(num("dispatch.late_cancel_fee", "*", "fen", c.late_fee_fen)),
    )
    q = QualityWeights()
    quality = QualityWeights(
        rating=num("dispatch.quality_weights", "*", "rating_bp", q.rating * 10_000) / 10_000,
        callback=num("dispatch.quality_weights", "*", "callback_bp", q.callback * 10_000) / 10_000,
        exceptions=num("dispatch.quality_weights", "*", "exceptions_bp", q.exceptions * 10_000) / 10_000,
        complaints=num("dispatch.quality_weights", "*", "complaints_bp", q.complaints * 10_000) / 10_000,
    )
    return Policies(match_policy, offer_policy, verification, cancel, quality)


# --- Scope ------------------------------------------------------------------------------------------


def can_see_order(
    p: Principal, *, elder_id: int, district_id: int, provider_id: int | None, caregiver_id: int | None
) -> bool:
    """Staff see every order; civil affairs their districts'; a provider admin its provider's; a
    caregiver the orders they took; an elder or family member their elders'."""
    if sees_all_elders(p):
        return True
    if p.role == Role.CIVIL_AFFAIRS:
        return district_id in p.district_ids
    if p.role == Role.PROVIDER_ADMIN:
        return provider_id is not None and provider_id == p.provider_id
    if p.role == Role.CAREGIVER:
        return caregiver_id is not None and caregiver_id == p.caregiver_id
    if p.role in (Role.ELDER, Role.FAMILY):
        return elder_id in p.elder_ids
    return False


def _scope_clause(
    p: Principal,
    *,
    elder_col: QueryableAttribute[Any],
    provider_col: QueryableAttribute[Any],
    caregiver_col: QueryableAttribute[Any],
) -> ColumnElement[bool]:
    """The SQL twin of :func:`can_see_order`, over any table with elder/provider/caregiver columns."""
    if sees_all_elders(p):
        return true()
    if p.role == Role.CIVIL_AFFAIRS:
        if not p.district_ids:
            return false()
        return elder_col.in_(select(Elder.id).where(Elder.district_id.in_(sorted(p.district_ids))))
    if p.role == Role.PROVIDER_ADMIN:
        return provider_col == p.provider_id if p.provider_id is not None else false()
    if p.role == Role.CAREGIVER:
        return caregiver_col == p.caregiver_id if p.caregiver_id is not None else false()
    if p.role in (Role.ELDER, Role.FAMILY):
        return elder_col.in_(sorted(p.elder_ids)) if p.elder_ids else false()
    return false()


def order_clause(p: Principal) -> ColumnElement[bool]:
    return _scope_clause(
        p,
        elder_col=ServiceOrder.elder_id,
        provider_col=ServiceOrder.provider_id,
        caregiver_col=ServiceOrder.caregiver_id,
    )


async def _elder_district(session: AsyncSession, elder_id: int) -> int:
    district = await session.scalar(select(Elder.district_id).where(Elder.id == elder_id))
    return int(district) if district is not None else 0


async def _check_scope(session: AsyncSession, actor: Principal, row: ServiceOrder | Visit, what: str) -> None:
    """403 ``scope.<what>`` unless ``actor`` may see this order or visit (both carry the same keys)."""
    district = await _elder_district(session, row.elder_id)
    if not can_see_order(
        actor,
        elder_id=row.elder_id,
        district_id=district,
        provider_id=row.provider_id,
        caregiver_id=row.caregiver_id,
    ):
        raise Forbidden(f"This {what} is outside your scope.", code=f"scope.{what}")


async def visible_order(*, session: AsyncSession, actor: Principal, order_id: int) -> ServiceOrder:
    """The order if ``actor`` may see it: 404 ``order.not_found`` / 403 ``scope.order``."""
    order = await get_or_404(session, ServiceOrder, order_id, what="order")
    await _check_scope(session, actor, order, "order")
    return order


async def visible_visit(*, session: AsyncSession, actor: Principal, visit_id: int) -> Visit:
    """The visit if ``actor`` may see it (same rule as its order): 404 / 403 ``scope.visit``."""
    visit = await get_or_404(session, Visit, visit_id, what="visit")
    await _check_scope(session, actor, visit, "visit")
    return visit


def _actor_of(p: Principal) -> Actor:
    return Actor(p.role.value)


async def _move(
    *,
    session: AsyncSession,
    order: ServiceOrder,
    target: OrderState,
    actor: Actor,
    actor_user_id: int | None,
    now: dt.datetime,
    note: str = "",
    values: Mapping[str, Any] | None = None,
) -> None:
    """:func:`change_state` from the order's current state, answering a refused move with a 409."""
    try:
        await change_state(
            session=session,
            order_id=order.id,
            expected=OrderState(order.state),
            target=target,
            actor=actor,
            actor_user_id=actor_user_id,
            now=now,
            note=note,
            values=values,
        )
    except InvalidTransition as exc:
        raise Conflict(
            f"An order in state {order.state} cannot become {target.value} by {actor.value}.",
            code="dispatch.invalid_transition",
            state=order.state,
        ) from exc
    await session.refresh(order)


# --- Orders ---------------------------------------------------------------------------------------


async def _require_elder(session: AsyncSession, elder_id: int) -> None:
    """A 422 ``reference.unknown`` unless the elder exists (a column read: no relationships loaded)."""
    found = (
        await session.scalar(select(Elder.id).where(Elder.id == elder_id)) if in_key_range(elder_id) else None
    )
    if found is None:
        raise unknown_reference("elder_id", elder_id, "elder")


def _check_may_order_for(p: Principal, elder_id: int) -> None:
    if p.role in (Role.ELDER, Role.FAMILY) and elder_id not in p.elder_ids:
        raise Forbidden("You may order only for yourself or your own elders.", code="scope.elder")


@functools.cache
def _order_check_statement() -> Any:
    """Built once: the service (an entity), the elder's status and the price of the day (parameters
    elder_id, service_code, day); no row when the service is unknown."""
    code = bindparam("service_code", type_=String)
    elder_status = select(Elder.status).where(Elder.id == bindparam("elder_id", type_=BigInteger))
    price = _price_select(code, bindparam("day", type_=Date))
    return select(
        Service,
        elder_status.scalar_subquery().label("elder_status"),
        price.scalar_subquery().label("price"),
    ).where(Service.code == code)


async def place_order(
    *,
    session: AsyncSession,
    actor: Principal,
    elder_id: int,
    service_code: str,
    now: dt.datetime,
    window_start_at: dt.datetime | None = None,
    window_end_at: dt.datetime | None = None,
    duration_s: int | None = None,
    asap: bool = False,
    urgent: bool = False,
    requirements: str = "",
) -> ServiceOrder:
    """Create a one-off order; as-soon-as-possible and same-day orders are dispatched at once (an
    offer to the best caregiver, or the operator queue). Default window: 30 min from its start;
    default duration: the service's minimum time on site (at least 30 min)."""
    _check_may_order_for(actor, elder_id)
    start = window_start_at or now
    if start.tzinfo is None:
        raise Invalid("Times must carry a time zone.", code="dispatch.window_naive")
    # Elder, service and the price of the service day in one round trip.
    found = (
        await session.execute(
            _order_check_statement(),
            {"elder_id": elder_id, "service_code": service_code, "day": local_date(start)},
        )
        if in_key_range(elder_id)
        else None
    )
    row = found.one_or_none() if found is not None else None
    if row is None:
        await _require_elder(session, elder_id)  # a 422 naming the elder if that is what is missing
    if row is None or not row.Service.is_active:
        raise Invalid(f"Unknown or inactive service {service_code!r}.", code="dispatch.service_unknown")
    if row.elder_status is None:
        raise unknown_reference("elder_id", elder_id, "elder")
    service = row.Service
    if start < now - dt.timedelta(minutes=5):
        raise Invalid("The window may not start in the past.", code="dispatch.window_past")
    end = window_end_at or start + dt.timedelta(minutes=30)
    if end < start:
        raise Invalid("The window ends before it starts.", code="dispatch.window_order")
    if end - start > dt.timedelta(hours=12):
        raise Invalid("The window may be at most 12 hours long.", code="dispatch.window_too_long")
    if row.elder_status != "active":
        raise DispatchError(f"elder {elder_id} is unknown or not active")
    order = await _insert_order(
        session,
        {
            "elder_id": elder_id,
            "service_code": service_code,
            "window_start_at": start,
            "window_end_at": end,
            "duration_s": duration_s or max(service.min_minutes, 30) * 60,
            "asap": asap,
            "urgent": urgent,
            "requirements": requirements,
            "price_fen": _price_fen(row.price, service_code, local_date(start)),
        },
        actor=_actor_of(actor),
        actor_user_id=actor.user_id,
        now=now,
    )
    if asap or urgent or local_date(start) == local_date(now):
        # make_offer / the escalation keep ``order`` in step, so no refresh is needed.
        await dispatch_order(session=session, order_id=order.id, now=now)
    return order


async def place_recurring_order(
    *,
    session: AsyncSession,
    actor: Principal,
    elder_id: int,
    service_code: str,
    rrule: str,
    first_start_at: dt.datetime,
    duration_s: int,
    window_s: int,
    now: dt.datetime,
    requirements: str = "",
) -> tuple[RecurringOrder, list[ServiceOrder]]:
    """Register an RRULE series and materialise its visits of the next 14 days as orders."""
    _check_may_order_for(actor, elder_id)
    await _require_elder(session, elder_id)
    service = await session.get(Service, service_code)
    if service is None or not service.is_active:
        raise Invalid(f"Unknown or inactive service {service_code!r}.", code="dispatch.service_unknown")
    if any(f"FREQ={f}" in rrule.upper() for f in ("SECONDLY", "MINUTELY", "HOURLY")):
        raise Invalid(
            "Visits recur at most daily (FREQ=DAILY, WEEKLY, MONTHLY or YEARLY).",
            code="dispatch.rrule_invalid",
        )
    local_first = first_start_at.astimezone(LOCAL_TZ).replace(tzinfo=None)
    try:
        occurrences = expand(rrule, first_start_local=local_first, duration_s=duration_s)
    except RecurrenceError as exc:
        raise Invalid(str(exc), code="dispatch.rrule_invalid") from exc
    if not occurrences:
        raise Invalid("The rule yields no visits.", code="dispatch.rrule_empty")
    series = RecurringOrder(
        elder_id=elder_id,
        service_code=service_code,
        rrule=rrule,
        first_start_at=first_start_at,
        duration_s=duration_s,
        window_s=window_s,
        requirements=requirements,
        created_by_user_id=actor.user_id,
        is_active=True,
        created_at=now,
    )
    session.add(series)
    await session.flush()
    orders = await _materialise(session=session, series=series, now=now, actor=_actor_of(actor))
    log.info("dispatch.recurring.created", recurring_order_id=series.id, orders=len(orders))
    return series, orders


async def _materialise(
    *, session: AsyncSession, series: RecurringOrder, now: dt.datetime, actor: Actor
) -> list[ServiceOrder]:
    """Create the series' orders starting in [now, now + horizon) that do not exist yet."""
    local_first = series.first_start_at.astimezone(LOCAL_TZ).replace(tzinfo=None)
    occurrences = expand(
        series.rrule,
        first_start_local=local_first,
        duration_s=series.duration_s,
        window_from=now,
        window_to=now + dt.timedelta(days=RECURRING_HORIZON_DAYS),
    )
    existing = set(
        await session.scalars(
            select(ServiceOrder.window_start_at).where(ServiceOrder.recurring_order_id == series.id)
        )
    )
    created: list[ServiceOrder] = []
    for occ in occurrences:
        if occ.start in existing:
            continue
        order = await create_order(
            session=session,
            elder_id=series.elder_id,
            service_code=series.service_code,
            window_start_at=occ.start,
            window_end_at=occ.start + dt.timedelta(seconds=series.window_s),
            duration_s=series.duration_s,
            actor=actor,
            actor_user_id=series.created_by_user_id,
            now=now,
            requirements=series.requirements,
        )
        order.recurring_order_id = series.id
        created.append(order)
    await session.flush()
    return created


async def materialise_recurring(*, session: AsyncSession, now: dt.datetime) -> int:
    """Job: create the next 14 days' orders of every active series. Returns how many were created.

    A series whose occurrence cannot be priced (no price valid that day) is logged and skipped.
    """
    total = 0
    for series in list(await session.scalars(select(RecurringOrder).where(RecurringOrder.is_active))):
        try:
            async with session.begin_nested():
                total += len(await _materialise(session=session, series=series, now=now, actor=Actor.SYSTEM))
        except DispatchError as exc:
            log.warning("dispatch.recurring.skipped", recurring_order_id=series.id, reason=str(exc))
    return total


async def list_orders(
    *,
    session: AsyncSession,
    actor: Principal,
    window: Window,
    state: str | None = None,
    elder_id: int | None = None,
) -> Paged[ServiceOrder]:
    stmt: Any = select(ServiceOrder).where(order_clause(actor))
    if state is not None:
        stmt = stmt.where(ServiceOrder.state == state)
    if elder_id is not None:
        stmt = stmt.where(ServiceOrder.elder_id == elder_id)
    return await page_of(session, stmt.order_by(ServiceOrder.window_start_at.desc(), ServiceOrder.id), window)


@dataclass(frozen=True, slots=True)
class OrderDetail:
    order: ServiceOrder
    transitions: list[OrderTransition]
    visit: Visit | None
    exceptions: list[VisitExceptionRecord]


async def order_detail(*, session: AsyncSession, actor: Principal, order_id: int) -> OrderDetail:
    order = await visible_order(session=session, actor=actor, order_id=order_id)
    return await _detail(session, order)


async def _detail(session: AsyncSession, order: ServiceOrder) -> OrderDetail:
    moves = list(
        await session.scalars(
            select(OrderTransition).where(OrderTransition.order_id == order.id).order_by(OrderTransition.id)
        )
    )
    visit = await session.scalar(select(Visit).where(Visit.order_id == order.id))
    exceptions = await _exceptions(session, visit.id) if visit is not None else []
    return OrderDetail(order, moves, visit, exceptions)


async def _exceptions(session: AsyncSession, visit_id: int) -> list[VisitExceptionRecord]:
    return list(
        await session.scalars(
            select(VisitExceptionRecord)
            .where(VisitExceptionRecord.visit_id == visit_id)
            .order_by(VisitExceptionRecord.id)
        )
    )


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    order: ServiceOrder
    consequence: CancellationConsequence
    fee_fen: int


async def cancel_order(
    *, session: AsyncSession, actor: Principal, order_id: int, reason: str, now: dt.datetime
) -> CancelOutcome:
    """Cancel an order. A customer cancelling an accepted visit inside the notice period pays the late
    fee (fen); a provider admin withdrawing its caregiver sends the order back for re-dispatch."""
    order = await visible_order(session=session, actor=actor, order_id=order_id)
    who = _actor_of(actor)
    state = OrderState(order.state)
    visit = await session.scalar(select(Visit).where(Visit.order_id == order.id))
    start = visit.scheduled_start_at if visit is not None else order.window_start_at
    policies = await load_policies(session=session, day=local_date(now))
    outcome = cancellation(state=state, actor=who, start=start, now=now, policy=policies.cancellation)
    await session.execute(
        update(Offer)
        .where(Offer.order_id == order.id, Offer.state == OfferState.PENDING.value)
        .values(state=OfferState.WITHDRAWN.value, responded_at=now)
    )
    if outcome.consequence == CancellationConsequence.REDISPATCH:
        if visit is not None:
            await session.delete(visit)
            await session.flush()
        await _move(
            session=session,
            order=order,
            target=OrderState.CREATED,
            actor=who,
            actor_user_id=actor.user_id,
            now=now,
            note=f"withdrawn by provider: {reason}"[:200],
            values={"caregiver_id": None, "provider_id": None},
        )
        if local_date(order.window_start_at) == local_date(now):
            await dispatch_order(session=session, order_id=order.id, now=now)
            await session.refresh(order)
    else:
        await _move(
            session=session,
            order=order,
            target=OrderState.CANCELLED,
            actor=who,
            actor_user_id=actor.user_id,
            now=now,
            note=reason[:200],
            values={
                "cancelled_by_role": actor.role.value,
                "cancel_reason": reason[:200],
                "cancellation_fee_fen": outcome.fee_fen,
            },
        )
    log.info("dispatch.order.cancelled", order_id=order.id, consequence=outcome.consequence.value)
    return CancelOutcome(order, outcome.consequence, outcome.fee_fen)


async def mark_no_show(
    *, session: AsyncSession, actor: Principal, order_id: int, note: str, now: dt.datetime
) -> ServiceOrder:
    """Staff record that the visit did not happen (caregiver or elder absent)."""
    order = await visible_order(session=session, actor=actor, order_id=order_id)
    await _move(
        session=session,
        order=order,
        target=OrderState.NO_SHOW,
        actor=_actor_of(actor),
        actor_user_id=actor.user_id,
        now=now,
        note=note[:200],
    )
    return order


async def assign_order(
    *, session: AsyncSession, actor: Principal, order_id: int, caregiver_id: int, now: dt.datetime
) -> Visit:
    """Hand an escalated order to a caregiver (operator queue). Every hard rule except distance is checked;
    a provider admin may assign only its own caregivers."""
    order = await get_or_404(session, ServiceOrder, order_id, what="order")
    if actor.role == Role.PROVIDER_ADMIN:
        district = await _elder_district(session, order.elder_id)
        serving = await session.scalar(
            select(ProviderDistrict.provider_id).where(
                ProviderDistrict.provider_id == actor.provider_id, ProviderDistrict.district_id == district
            )
        )
        if serving is None:
            raise Forbidden("Your provider does not serve this elder's district.", code="scope.order")
    else:
        await visible_order(session=session, actor=actor, order_id=order_id)
    cg = await require_ref(session, Caregiver, caregiver_id, field="caregiver_id", what="caregiver")
    if actor.role == Role.PROVIDER_ADMIN and cg.provider_id != actor.provider_id:
        raise Forbidden("You may assign only your own provider's caregivers.", code="scope.provider")
    request = await build_request(session=session, order=order, now=now)
    profiles = await _profiles(session, [cg], request.start)
    reason = static_rejection(profiles[cg.id], request, local_date(request.start)) or timing_rejection(
        profiles[cg.id], request.start, request.start + dt.timedelta(seconds=order.duration_s)
    )
    if reason is not None:
        raise Conflict(
            f"Caregiver {cg.id} breaks the hard rule {reason.value!r} for this order.",
            code="dispatch.hard_rule",
            rule=reason.value,
        )
    if order.state != OrderState.ESCALATED.value:
        raise Conflict(
            "Only orders in the operator queue can be assigned by hand.", code="dispatch.not_escalated"
        )
    await _move(
        session=session,
        order=order,
        target=OrderState.ACCEPTED,
        actor=_actor_of(actor),
        actor_user_id=actor.user_id,
        now=now,
        note="assigned by hand",
        values={"caregiver_id": cg.id, "provider_id": cg.provider_id},
    )
    visit = Visit(
        order_id=order.id,
        service_code=order.service_code,
        elder_id=order.elder_id,
        caregiver_id=cg.id,
        provider_id=cg.provider_id,
        scheduled_start_at=request.start,
        scheduled_end_at=request.start + dt.timedelta(seconds=order.duration_s),
    )
    session.add(visit)
    await session.flush()
    return visit


# --- Real-time dispatch -----------------------------------------------------------------------------


async def build_request(*, session: AsyncSession, order: ServiceOrder, now: dt.datetime) -> OrderRequest:
    """The matching view of an order: the elder's home, gender, block list and continuity of care."""
    elder = (
        await session.execute(
            select(
                Elder.id,
                Elder.gender,
                Elder.allows_any_gender_bathing,
                Elder.lat,
                Elder.lon,
                Community.is_village,
                District.kind,
            )
            .join(Community, Community.id == Elder.community_id)
            .join(District, District.id == Elder.district_id)
            .where(Elder.id == order.elder_id)
        )
    ).one()
    service = await session.get(Service, order.service_code)
    if service is None:  # pragma: no cover - a foreign key
        raise DispatchError(f"unknown service {order.service_code}")
    blocked = frozenset(
        await session.scalars(
            select(ElderBlockedCaregiver.caregiver_id).where(ElderBlockedCaregiver.elder_id == elder.id)
        )
    )
    since = now - dt.timedelta(days=CONTINUITY_DAYS)
    continuity = {
        int(cid): int(n)
        for cid, n in await session.execute(
            select(Visit.caregiver_id, func.count())
            .where(Visit.elder_id == elder.id, Visit.check_in_at >= since)
            .group_by(Visit.caregiver_id)
        )
    }
    start = max(order.window_start_at, now) if order.asap else order.window_start_at
    return OrderRequest(
        elder_id=elder.id,
        elder_gender=elder.gender,
        elder_allows_any_gender=elder.allows_any_gender_bathing,
        lat=elder.lat,
        lon=elder.lon,
        rural=bool(elder.is_village) or elder.kind == "rural",
        service=service_rule(service),
        start=start,
        duration_s=order.duration_s,
        asap=order.asap,
        urgent=order.urgent,
        blocked=blocked,
        continuity=continuity,
    )


async def _profiles(
    session: AsyncSession, caregivers: Sequence[Any], around: dt.datetime
) -> dict[int, CaregiverProfile]:
    """Matching profiles of caregivers (rows or :class:`Caregiver` objects: id, gender, skills, shift,
    work days, capacity, rating, is_active) with their certificates and bookings from the day before
    to the day after ``around``. Two queries whatever the number of caregivers."""
    ids = [int(c.id) for c in caregivers]
    bookings: dict[int, list[Booking]] = {i: [] for i in ids}
    certificates: dict[int, list[CertificateInfo]] = {i: [] for i in ids}
    if ids:
        rows = await session.execute(
            select(Visit.caregiver_id, Visit.scheduled_start_at, Visit.scheduled_end_at)
            .join(ServiceOrder, ServiceOrder.id == Visit.order_id)
            .where(
                Visit.caregiver_id.in_(ids),
                ServiceOrder.state.in_(_LIVE_ORDER_STATES),
                Visit.scheduled_start_at >= around - dt.timedelta(days=1),
                Visit.scheduled_start_at < around + dt.timedelta(days=1),
            )
        )
        for cid, start, end in rows:
            bookings[int(cid)].append(Booking(start, end))
        certs = await session.execute(
            select(
                Certificate.caregiver_id,
                Certificate.kind,
                Certificate.level,
                Certificate.issued_on,
                Certificate.expires_on,
            ).where(Certificate.caregiver_id.in_(ids))
        )
        for cid, kind, level, issued, expires in certs:
            certificates[int(cid)].append(CertificateInfo(kind, level, issued, expires))
    return {
        int(c.id): CaregiverProfile(
            id=int(c.id),
            gender=c.gender,
            skills=frozenset(c.skills),
            certificates=tuple(certificates[int(c.id)]),
            shift_start=c.shift_start,
            shift_end=c.shift_end,
            work_days=frozenset(c.work_days),
            daily_capacity=c.daily_capacity,
            rating=c.rating,
            bookings=tuple(bookings[int(c.id)]),
            is_active=c.is_active,
        )
        for c in caregivers
    }


@dataclass(frozen=True, slots=True)
class _DispatchFacts:
    """What dispatching one order needs, read in one round trip."""

    request: OrderRequest
    district_id: int
    provider_ids: frozenset[int]  # providers serving the elder's district
    policies: Policies
    state: str
    attempts: int
    asked: frozenset[int]


@functools.cache
def _facts_statement() -> Any:
    """The statement behind :func:`_dispatch_facts`, built once (parameters: order_id, elder_id, since,
    day); reusing the object spares SQLAlchemy rebuilding it and its cache key on every order."""
    elder_id = bindparam("elder_id", type_=BigInteger)
    counts = (
        select(Visit.caregiver_id.label("cid"), func.count().label("n"))
        .where(
            Visit.elder_id == elder_id, Visit.check_in_at >= bindparam("since", type_=DateTime(timezone=True))
        )
        .group_by(Visit.caregiver_id)
        .subquery()
    )
    continuity = select(func.json_agg(func.json_build_array(counts.c.cid, counts.c.n), type_=JSON))
    blocked = select(func.array_agg(ElderBlockedCaregiver.caregiver_id, type_=ARRAY(BigInteger))).where(
        ElderBlockedCaregiver.elder_id == elder_id
    )
    asked = select(func.array_agg(Offer.caregiver_id, type_=ARRAY(BigInteger))).where(
        Offer.order_id == bindparam("order_id", type_=BigInteger)
    )
    providers = select(func.array_agg(ProviderDistrict.provider_id, type_=ARRAY(BigInteger))).where(
        ProviderDistrict.district_id == Elder.district_id
    )
    return (
        select(
            ServiceOrder.state,
            ServiceOrder.offer_attempts,
            Elder.id,
            Elder.gender,
            Elder.allows_any_gender_bathing,
            Elder.lat,
            Elder.lon,
            Elder.district_id,
            Community.is_village,
            District.kind,
            Service.code,
            Service.skill,
            Service.certificate_kind,
            Service.max_certificate_level,
            Service.same_gender,
            Service.min_minutes,
            blocked.scalar_subquery().label("blocked"),
            continuity.scalar_subquery().label("continuity"),
            asked.scalar_subquery().label("asked"),
            providers.scalar_subquery().label("providers"),
            _policy_rows_json(bindparam("day", type_=Date)).label("policies"),
        )
        .join(Elder, Elder.id == ServiceOrder.elder_id)
        .join(Community, Community.id == Elder.community_id)
        .join(District, District.id == Elder.district_id)
        .join(Service, Service.code == ServiceOrder.service_code)
        .where(ServiceOrder.id == bindparam("order_id", type_=BigInteger))
    )


async def _dispatch_facts(session: AsyncSession, order: ServiceOrder, now: dt.datetime) -> _DispatchFacts:
    """The order's current state and offers, the elder's home and block list, continuity of care, the
    service's rule and the policies of the service day: one statement (scalar subqueries)."""
    start = max(order.window_start_at, now) if order.asap else order.window_start_at
    params = {
        "order_id": order.id,
        "elder_id": order.elder_id,
        "since": now - dt.timedelta(days=CONTINUITY_DAYS),
        "day": local_date(start),
    }
    row = (await session.execute(_facts_statement(), params)).one()
    request = OrderRequest(
        elder_id=row.id,
        elder_gender=row.gender,
        elder_allows_any_gender=row.allows_any_gender_bathing,
        lat=row.lat,
        lon=row.lon,
        rural=bool(row.is_village) or row.kind == "rural",
        service=ServiceRule(
            code=row.code,
            skill=row.skill,
            certificate_kind=row.certificate_kind,
            max_certificate_level=row.max_certificate_level,
            same_gender=row.same_gender,
            min_minutes=row.min_minutes,
        ),
        start=start,
        duration_s=order.duration_s,
        asap=order.asap,
        urgent=order.urgent,
        blocked=frozenset(row.blocked or ()),
        continuity={int(c): int(n) for c, n in row.continuity or ()},
    )
    return _DispatchFacts(
        request=request,
        district_id=int(row.district_id),
        provider_ids=frozenset(row.providers or ()),
        policies=policies_from([(k, sc, v) for k, sc, v in row.policies or ()]),
        state=row.state,
        attempts=int(row.offer_attempts),
        asked=frozenset(row.asked or ()),
    )


_PROFILE_COLUMNS = (
    Caregiver.id,
    Caregiver.gender,
    Caregiver.skills,
    Caregiver.shift_start,
    Caregiver.shift_end,
    Caregiver.work_days,
    Caregiver.daily_capacity,
    Caregiver.rating,
    Caregiver.is_active,
)


@functools.cache
def _candidate_statement(*, realtime: bool, continuity: bool) -> Any:
    """The statement behind :func:`_candidate_rows`, built once per variant. Parameters: lat, lon
    (degrees), dlon (the radius in degrees of longitude), shrink2 (cos² of the latitude), window,
    pool, skill, providers, continuity (ids), since and until (the bookings' span)."""
    lat = bindparam("lat", type_=Double)
    lon = bindparam("lon", type_=Double)
    dlon = bindparam("dlon", type_=Double)
    window = bindparam("window", type_=Integer)
    here = func.point(lon, lat)
    eligible = (
        Caregiver.is_active,
        Caregiver.skills.contains(bindparam("skill", type_=ARRAY(String))),
        Caregiver.provider_id.in_(bindparam("providers", expanding=True, type_=BigInteger)),
    )
    pos_distance = func.point(CaregiverPosition.lon, CaregiverPosition.lat).op("<->", return_type=Double)(
        here
    )
    pos_window = (
        select(CaregiverPosition.caregiver_id.label("id"), CaregiverPosition.lat, CaregiverPosition.lon)
        .where(CaregiverPosition.on_shift, pos_distance <= dlon)
        .order_by(pos_distance)
        .limit(window)
        .cte("pos_window")
    )
    windows = [pos_window]

    def fit(window_id: Any) -> Any:
        # LATERAL with LIMIT (which PostgreSQL does not flatten): one primary-key probe per window
        # row; as a plain join the planner tends to hash the provider's whole roster instead.
        return select(Caregiver.id).where(Caregiver.id == window_id, *eligible).limit(1).lateral()

    fit_on_shift = fit(pos_window.c.id)
    parts = [select(pos_window.c.id, pos_window.c.lat, pos_window.c.lon).join(fit_on_shift, true())]
    if not realtime:  # caregivers off shift count from home
        home_distance = func.point(Caregiver.home_lon, Caregiver.home_lat).op("<->", return_type=Double)(here)
        home_window = (
            select(Caregiver.id.label("id"), Caregiver.home_lat.label("lat"), Caregiver.home_lon.label("lon"))
            .where(home_distance <= dlon)
            .order_by(home_distance)
            .limit(window)
            .cte("home_window")
        )
        windows.append(home_window)
        shift_open = exists().where(
            CaregiverPosition.caregiver_id == home_window.c.id, CaregiverPosition.on_shift
        )
        fit_at_home = fit(home_window.c.id)
        parts.append(
            select(home_window.c.id, home_window.c.lat, home_window.c.lon)
            .join(fit_at_home, true())
            .where(~shift_open)
        )
    near = union_all(*parts).subquery("near")
    d2 = (near.c.lat - lat) * (near.c.lat - lat) + (near.c.lon - lon) * (near.c.lon - lon) * bindparam(
        "shrink2", type_=Double
    )
    nearest = (
        select(near.c.id, near.c.lat, near.c.lon, literal(True).label("is_near"))
        .order_by(d2)
        .limit(bindparam("pool", type_=Integer))
    )
    chosen: Any = nearest
    if continuity:
        shift_on = CaregiverPosition.on_shift.is_(True)
        lat_c = (
            CaregiverPosition.lat
            if realtime
            else case((shift_on, CaregiverPosition.lat), else_=Caregiver.home_lat)
        )
        lon_c = (
            CaregiverPosition.lon
            if realtime
            else case((shift_on, CaregiverPosition.lon), else_=Caregiver.home_lon)
        )
        known = (
            select(Caregiver.id, lat_c.label("lat"), lon_c.label("lon"), literal(False).label("is_near"))
            .outerjoin(CaregiverPosition, CaregiverPosition.caregiver_id == Caregiver.id)
            .where(Caregiver.id.in_(bindparam("continuity", expanding=True, type_=BigInteger)), *eligible)
        )
        if realtime:
            known = known.where(shift_on)
        chosen = union_all(nearest.subquery().select(), known)
    picked = chosen.subquery("picked")
    bookings = (
        select(
            func.json_agg(
                func.json_build_array(
                    func.extract("epoch", Visit.scheduled_start_at),
                    func.extract("epoch", Visit.scheduled_end_at),
                ),
                type_=JSON,
            )
        )
        .join(ServiceOrder, ServiceOrder.id == Visit.order_id)
        .where(
            Visit.caregiver_id == picked.c.id,
            ServiceOrder.state.in_(_LIVE_ORDER_STATES),
            Visit.scheduled_start_at >= bindparam("since", type_=DateTime(timezone=True)),
            Visit.scheduled_start_at < bindparam("until", type_=DateTime(timezone=True)),
        )
        .scalar_subquery()
    )
    certificates = (
        select(
            func.json_agg(
                func.json_build_array(
                    Certificate.kind, Certificate.level, Certificate.issued_on, Certificate.expires_on
                ),
                type_=JSON,
            )
        )
        .where(Certificate.caregiver_id == picked.c.id)
        .scalar_subquery()
    )
    full = or_(*(select(func.count()).select_from(w).scalar_subquery() >= window for w in windows))
    return select(
        *_PROFILE_COLUMNS,
        picked.c.lat,
        picked.c.lon,
        picked.c.is_near,
        bookings.label("bookings"),
        certificates.label("certificates"),
        full.label("window_full"),
    ).join(picked, picked.c.id == Caregiver.id)


async def _candidate_rows(
    session: AsyncSession, facts: _DispatchFacts, *, realtime: bool, radius_m: float, pool: int
) -> tuple[list[Any], int, bool]:
    """The ``pool`` eligible caregivers nearest the elder (plus the elder's continuity caregivers), each
    with its matching profile, bookings and certificates: one statement.

    Returns (rows, how many of them are among the nearest, whether a search window was full).

    Nearest-first comes from the GiST indexes on ``point(lon, lat)`` (migration 0006): a KNN index
    scan (``<->``, plain degrees) takes the ``8 × pool`` nearest positions (and, for scheduled orders,
    homes) inside the matching radius; the eligible ones among them are re-ranked by the
    latitude-scaled distance (a degree of longitude is 0.86 of one of latitude in Xiaogan). The
    window is a single-table subquery with LIMIT so the planner cannot trade the KNN scan for a scan
    of everything in range; when a window is full but yields fewer than ``pool`` eligible caregivers,
    the caller searches again with a larger pool.
    """
    request = facts.request
    shrink = max(math.cos(math.radians(request.lat)), 0.01)
    params = {
        "lat": request.lat,
        "lon": request.lon,
        "dlon": radius_m / METRES_PER_DEGREE_LAT / shrink,  # bounds the radius in any direction
        "shrink2": shrink * shrink,
        "window": 8 * pool,
        "pool": pool,
        "skill": [request.service.skill],
        "providers": sorted(facts.provider_ids),
        "since": request.start - dt.timedelta(days=1),
        "until": request.start + dt.timedelta(days=1),
    }
    if request.continuity:
        params["continuity"] = sorted(request.continuity)
    stmt = _candidate_statement(realtime=realtime, continuity=bool(request.continuity))
    rows = list((await session.execute(stmt, params)).all())
    return rows, sum(1 for r in rows if r.is_near), any(r.window_full for r in rows)


def _profile_of(row: Any) -> CaregiverProfile:
    """A :class:`CaregiverProfile` from a :func:`_candidate_rows` row (epoch seconds, ISO dates)."""
    return CaregiverProfile(
        id=int(row.id),
        gender=row.gender,
        skills=frozenset(row.skills),
        certificates=tuple(
            CertificateInfo(kind, level, dt.date.fromisoformat(issued), dt.date.fromisoformat(expires))
            for kind, level, issued, expires in row.certificates or ()
        ),
        shift_start=row.shift_start,
        shift_end=row.shift_end,
        work_days=frozenset(row.work_days),
        daily_capacity=row.daily_capacity,
        rating=row.rating,
        bookings=tuple(
            Booking(dt.datetime.fromtimestamp(float(a), dt.UTC), dt.datetime.fromtimestamp(float(b), dt.UTC))
            for a, b in row.bookings or ()
        ),
        is_active=row.is_active,
    )


async def dispatch_order(*, session: AsyncSession, order_id: int, now: dt.datetime) -> Offer | None:
    """Offer a ``created`` order to the best caregiver not yet asked, or escalate it.

    Candidates are the active caregivers with the service's skill of providers serving the elder's
    district, within reach of the elder (the matching radius of the policy). For as-soon-as-possible
    and urgent orders only caregivers on shift count, at their last reported position; otherwise a
    caregiver off shift counts from home. The database returns the :data:`CANDIDATE_POOL` nearest
    (plus the elder's continuity caregivers); the matching core applies every hard rule and scores
    them. Travel is half the score, so the best candidate is in practice always among the nearest.

    Round trips: the order's facts (one statement), the candidates with their profiles (one), the
    offer with its state change (one); a second, wider candidate search only when the nearest are busy.
    """
    # Only fields fixed at creation are read from this copy; state and offers come with the facts.
    order = await session.get(ServiceOrder, order_id)
    if order is None:
        raise DispatchError(f"order {order_id} not found")
    facts = await _dispatch_facts(session, order, now)
    request, policies = facts.request, facts.policies
    mp = policies.match
    if order.urgent:
        eta_min = mp.urgent_eta_rural_min if request.rural else mp.urgent_eta_urban_min
    else:
        eta_min = mp.max_eta_min
    radius = max_distance_m(eta_min, rural=request.rural, policy=mp)
    realtime = order.asap or order.urgent

    async def candidates(pool: int) -> tuple[CaregiverIndex, dict[int, CaregiverProfile], bool]:
        rows, fetched, full = await _candidate_rows(
            session, facts, realtime=realtime, radius_m=radius, pool=pool
        )
        index = CaregiverIndex()
        profiles: dict[int, CaregiverProfile] = {}
        for r in rows:
            index.update(int(r.id), r.lat, r.lon, r.skills)
            profiles[int(r.id)] = _profile_of(r)
        # Someone in range may have been left out: the pool or a KNN window was full.
        return index, profiles, fetched >= pool or full

    index, profiles, more_in_range = await candidates(CANDIDATE_POOL)
    enough = policies.offer.max_attempts + 1
    if more_in_range:
        found = match(request, index=index, profiles=profiles, policy=mp, now=now, limit=enough)
        if len(found.candidates) < enough:  # the nearest are busy: look farther before escalating
            index, profiles, _ = await candidates(CANDIDATE_POOL * 8)
    return await _offer_or_escalate(
        session=session,
        order_id=order_id,
        state=facts.state,
        attempts=facts.attempts,
        asked=facts.asked,
        request=request,
        index=index,
        profiles=profiles,
        match_policy=mp,
        offer_policy=policies.offer,
        now=now,
    )


async def expire_and_redispatch(*, session: AsyncSession, now: dt.datetime) -> int:
    """Job: expire offers past their deadline and offer each order to the next candidate (or escalate).
    Returns the number of orders moved on."""
    order_ids = await expire_offers(session=session, now=now)
    for oid in order_ids:
        await dispatch_order(session=session, order_id=oid, now=now)
    if order_ids:
        log.info("dispatch.offers.expired", orders=len(order_ids))
    return len(order_ids)


# --- Caregiver app ----------------------------------------------------------------------------------


def _caregiver_id(p: Principal) -> int:
    if p.caregiver_id is None:
        raise Forbidden("Only caregivers have a shift.", code="scope.caregiver")
    return p.caregiver_id


async def set_position(
    *,
    session: AsyncSession,
    actor: Principal,
    lat: float,
    lon: float,
    now: dt.datetime,
    on_shift: bool | None = None,
) -> CaregiverPosition:
    """Record the caregiver's position (degrees); ``on_shift`` starts (True) or ends (False) the shift."""
    cid = _caregiver_id(actor)
    pos = await session.get(CaregiverPosition, cid, populate_existing=True)
    if pos is None:
        pos = CaregiverPosition(caregiver_id=cid, lat=lat, lon=lon, at=now, on_shift=False)
        session.add(pos)
    pos.lat, pos.lon, pos.at = lat, lon, now
    if on_shift is True:
        if pos.on_shift:
            raise Conflict("Your shift has already started.", code="dispatch.shift_started")
        pos.on_shift, pos.shift_started_at = True, now
    elif on_shift is False:
        if not pos.on_shift:
            raise Conflict("You are not on shift.", code="dispatch.shift_not_started")
        pos.on_shift = False
    await session.flush()
    return pos


async def end_shift(*, session: AsyncSession, actor: Principal, now: dt.datetime) -> CaregiverPosition:
    cid = _caregiver_id(actor)
    pos = await session.get(CaregiverPosition, cid, populate_existing=True)
    if pos is None or not pos.on_shift:
        raise Conflict("You are not on shift.", code="dispatch.shift_not_started")
    pos.on_shift = False
    await session.flush()
    return pos


@dataclass(frozen=True, slots=True)
class OpenOffer:
    offer: Offer
    order: ServiceOrder


async def my_offers(*, session: AsyncSession, actor: Principal, now: dt.datetime) -> list[OpenOffer]:
    """The caregiver's open offers, soonest deadline first."""
    cid = _caregiver_id(actor)
    rows = await session.execute(
        select(Offer, ServiceOrder)
        .join(ServiceOrder, ServiceOrder.id == Offer.order_id)
        .where(Offer.caregiver_id == cid, Offer.state == OfferState.PENDING.value, Offer.deadline_at >= now)
        .order_by(Offer.deadline_at)
    )
    return [OpenOffer(o, so) for o, so in rows]


async def accept(*, session: AsyncSession, actor: Principal, offer_id: int, now: dt.datetime) -> Visit:
    return await accept_offer(session=session, offer_id=offer_id, caregiver_id=_caregiver_id(actor), now=now)


async def decline(
    *, session: AsyncSession, actor: Principal, offer_id: int, now: dt.datetime
) -> ServiceOrder:
    """Decline an offer; the order is offered to the next candidate at once (or escalated)."""
    order_id = await decline_offer(
        session=session, offer_id=offer_id, caregiver_id=_caregiver_id(actor), now=now
    )
    await dispatch_order(session=session, order_id=order_id, now=now)
    order = await session.get(ServiceOrder, order_id, populate_existing=True)
    if order is None:  # pragma: no cover
        raise DispatchError(f"order {order_id} vanished")
    return order


@dataclass(frozen=True, slots=True)
class PlanItem:
    visit: Visit
    order_state: str
    elder_name: str
    address: str
    lat: float
    lon: float


async def day_plan(*, session: AsyncSession, actor: Principal, day: dt.date) -> list[PlanItem]:
    """The caregiver's visits on an Asia/Shanghai day, in start order (cancelled ones left out)."""
    cid = _caregiver_id(actor)
    start = dt.datetime.combine(day, dt.time(0), LOCAL_TZ)
    rows = await session.execute(
        select(Visit, ServiceOrder.state, Elder.name, Elder.address, Elder.lat, Elder.lon)
        .join(ServiceOrder, ServiceOrder.id == Visit.order_id)
        .join(Elder, Elder.id == Visit.elder_id)
        .where(
            Visit.caregiver_id == cid,
            Visit.scheduled_start_at >= start,
            Visit.scheduled_start_at < start + dt.timedelta(days=1),
            ServiceOrder.state.notin_([OrderState.CANCELLED.value]),
        )
        .order_by(Visit.scheduled_start_at, Visit.id)
    )
    return [PlanItem(v, st, n, a, la, lo) for v, st, n, a, la, lo in rows]


async def _my_visit(session: AsyncSession, actor: Principal, visit_id: int) -> tuple[Visit, ServiceOrder]:
    cid = _caregiver_id(actor)
    visit = await get_or_404(session, Visit, visit_id, what="visit")
    if visit.caregiver_id != cid:
        raise Forbidden("This is not your visit.", code="scope.visit")
    order = await session.get(ServiceOrder, visit.order_id, populate_existing=True)
    if order is None:  # pragma: no cover - a foreign key
        raise DispatchError(f"order {visit.order_id} not found")
    return visit, order


def door_code(secret: str, elder_id: int) -> str:
    """The code printed as a QR sticker on the elder's door (an HMAC, so it cannot be guessed)."""
    return hmac.new(secret.encode(), f"door:{elder_id}".encode(), hashlib.sha256).hexdigest()[:16]


def sign_off_pin(secret: str, visit_id: int) -> str:
    """The visit's 6-digit sign-off PIN, shown to the elder and family in their app."""
    digest = hmac.new(secret.encode(), f"signoff:{visit_id}".encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:4], 'big') % 1_000_000:06d}"


async def en_route(*, session: AsyncSession, actor: Principal, visit_id: int, now: dt.datetime) -> Visit:
    visit, order = await _my_visit(session, actor, visit_id)
    await _move(
        session=session,
        order=order,
        target=OrderState.EN_ROUTE,
        actor=Actor.CAREGIVER,
        actor_user_id=actor.user_id,
        now=now,
    )
    return visit


async def check_in(
    *,
    session: AsyncSession,
    actor: Principal,
    visit_id: int,
    lat: float,
    lon: float,
    qr_code: str | None,
    secret: str,
    now: dt.datetime,
) -> Visit:
    """Check in at the door with the phone's GPS position (degrees) and, optionally, the door's QR code."""
    visit, order = await _my_visit(session, actor, visit_id)
    qr_ok = qr_code is not None and hmac.compare_digest(qr_code, door_code(secret, visit.elder_id))
    if qr_code is not None and not qr_ok:
        raise Invalid("The QR code does not belong to this elder's door.", code="dispatch.qr_mismatch")
    await _move(
        session=session,
        order=order,
        target=OrderState.CHECKED_IN,
        actor=Actor.CAREGIVER,
        actor_user_id=actor.user_id,
        now=now,
    )
    visit.check_in_at, visit.check_in_lat, visit.check_in_lon = now, lat, lon
    visit.check_in_method = (CaptureMethod.QR if qr_ok else CaptureMethod.GPS).value
    visit.check_in_qr_ok = qr_ok
    await session.flush()
    return visit


async def save_checklist(
    *, session: AsyncSession, actor: Principal, visit_id: int, items: Mapping[str, bool]
) -> Visit:
    """Replace the visit's task checklist (task name → done), allowed while on site."""
    visit, order = await _my_visit(session, actor, visit_id)
    if order.state != OrderState.CHECKED_IN.value:
        raise Conflict("The checklist can be filled in only while checked in.", code="dispatch.not_on_site")
    visit.checklist = dict(items)
    await session.flush()
    return visit


async def check_out(
    *, session: AsyncSession, actor: Principal, visit_id: int, lat: float, lon: float, now: dt.datetime
) -> tuple[Visit, VerificationResult]:
    """Check out, then verify the visit at once (it stays pending while the sign-off may still come)."""
    visit, order = await _my_visit(session, actor, visit_id)
    await _move(
        session=session,
        order=order,
        target=OrderState.CHECKED_OUT,
        actor=Actor.CAREGIVER,
        actor_user_id=actor.user_id,
        now=now,
    )
    visit.check_out_at, visit.check_out_lat, visit.check_out_lon = now, lat, lon
    visit.check_out_method = CaptureMethod.GPS.value
    await session.flush()
    result = await verify_visit(session=session, visit_id=visit.id, now=now)
    return visit, result


async def sign_off_by_pin(
    *, session: AsyncSession, actor: Principal, visit_id: int, pin: str, secret: str, now: dt.datetime
) -> tuple[Visit, VerificationResult]:
    """The caregiver enters the PIN the elder reads from their app; the visit is verified again."""
    visit, _ = await _my_visit(session, actor, visit_id)
    if not hmac.compare_digest(pin, sign_off_pin(secret, visit.id)):
        raise Invalid("The sign-off PIN is wrong.", code="dispatch.pin_wrong")
    return await _sign_off(session, visit, method="pin", user_id=None, now=now)


async def sign_off_code(*, session: AsyncSession, actor: Principal, visit_id: int, secret: str) -> str:
    """The PIN for the elder or family to tell the caregiver."""
    visit = await visible_visit(session=session, actor=actor, visit_id=visit_id)
    return sign_off_pin(secret, visit.id)


async def confirm_by_family(
    *, session: AsyncSession, actor: Principal, visit_id: int, now: dt.datetime
) -> tuple[Visit, VerificationResult]:
    """A family member (or the elder in their own app) confirms the visit took place."""
    visit = await visible_visit(session=session, actor=actor, visit_id=visit_id)
    return await _sign_off(session, visit, method="family", user_id=actor.user_id, now=now)


async def _sign_off(
    session: AsyncSession, visit: Visit, *, method: str, user_id: int | None, now: dt.datetime
) -> tuple[Visit, VerificationResult]:
    order = await session.get(ServiceOrder, visit.order_id, populate_existing=True)
    open_states = (OrderState.CHECKED_IN.value, OrderState.CHECKED_OUT.value, OrderState.EXCEPTION.value)
    if order is None or order.state not in open_states:
        raise Conflict(
            "Only a visit in progress or awaiting verification can be signed off.",
            code="dispatch.sign_off_state",
        )
    if visit.signed_off_at is not None:
        raise Conflict("The visit is already signed off.", code="dispatch.signed_off")
    visit.signed_off_at, visit.sign_off_method, visit.signed_off_by_user_id = now, method, user_id
    await session.flush()
    if order.state == OrderState.CHECKED_OUT.value:
        return visit, await verify_visit(session=session, visit_id=visit.id, now=now)
    if order.state == OrderState.EXCEPTION.value:
        # Already held for other reasons: the sign-off is recorded as evidence for the resolver.
        open_codes = tuple(
            VisitException(r.code) for r in await _exceptions(session, visit.id) if r.resolved_at is None
        )
        return visit, VerificationResult(Verdict.EXCEPTION, open_codes, None, None)
    return visit, VerificationResult(Verdict.PENDING, (), None, None)


# --- Verification ------------------------------------------------------------------------------------


async def verify_visit(*, session: AsyncSession, visit_id: int, now: dt.datetime) -> VerificationResult:
    """Check a checked-out visit against DOMAIN §5; record the verdict, its exceptions and the order state.

    A pending verdict (only the sign-off missing, inside its 24 h) changes nothing.
    """
    visit = await session.get(Visit, visit_id, populate_existing=True)
    if visit is None:
        raise DispatchError(f"visit {visit_id} not found")
    order = await session.get(ServiceOrder, visit.order_id, populate_existing=True)
    if order is None or order.state != OrderState.CHECKED_OUT.value:
        raise Conflict("Only a checked-out visit can be verified.", code="dispatch.verify_state")
    request = await build_request(session=session, order=order, now=now)
    policies = await load_policies(session=session, day=local_date(visit.check_in_at or now))
    caregiver = await session.get(Caregiver, visit.caregiver_id)
    certs = tuple(
        CertificateInfo(c.kind, c.level, c.issued_on, c.expires_on)
        for c in (caregiver.certificates if caregiver else [])
    )
    others: list[tuple[dt.datetime, dt.datetime]] = [
        (a, b or a)
        for a, b in await session.execute(
            select(Visit.check_in_at, Visit.check_out_at).where(
                Visit.caregiver_id == visit.caregiver_id,
                Visit.id != visit.id,
                Visit.check_in_at.is_not(None),
                Visit.check_in_at < (visit.check_out_at or now),
                func.coalesce(Visit.check_out_at, Visit.check_in_at) > (visit.check_in_at or now),
            )
        )
        if a is not None
    ]

    def capture(
        at: dt.datetime | None, method: str | None, lat: float | None, lon: float | None, qr: bool
    ) -> Capture | None:
        if at is None:
            return None
        return Capture(at, CaptureMethod(method or "gps"), lat, lon, qr)

    record = VisitRecord(
        visit_id=visit.id,
        service=request.service,
        elder_id=visit.elder_id,
        caregiver_id=visit.caregiver_id,
        service_on=local_date(visit.check_in_at or visit.scheduled_start_at),
        home_lat=request.lat,
        home_lon=request.lon,
        rural=request.rural,
        check_in=capture(
            visit.check_in_at,
            visit.check_in_method,
            visit.check_in_lat,
            visit.check_in_lon,
            visit.check_in_qr_ok,
        ),
        check_out=capture(
            visit.check_out_at, visit.check_out_method, visit.check_out_lat, visit.check_out_lon, False
        ),
        signed_off_at=visit.signed_off_at,
        caregiver_certificates=certs,
        other_visits=tuple(others),
    )
    result = verify(record, policy=policies.verification, now=now)
    if result.verdict == Verdict.VERIFIED:
        await _move(
            session=session,
            order=order,
            target=OrderState.VERIFIED,
            actor=Actor.SYSTEM,
            actor_user_id=None,
            now=now,
        )
        visit.verification, visit.verified_at = "verified", now
    elif result.verdict == Verdict.EXCEPTION:
        await session.execute(
            pg_insert(VisitExceptionRecord)
            .values(
                [
                    {"visit_id": visit.id, "code": e.value, "detected_at": now, "note": ""}
                    for e in result.exceptions
                ]
            )
            .on_conflict_do_nothing(constraint="uq_visit_exception_visit_code")
        )
        await _move(
            session=session,
            order=order,
            target=OrderState.EXCEPTION,
            actor=Actor.SYSTEM,
            actor_user_id=None,
            now=now,
            note=",".join(e.value for e in result.exceptions)[:200],
        )
        visit.verification = "exception"
    await session.flush()
    log.info("dispatch.visit.verified", visit_id=visit.id, verdict=result.verdict.value)
    return result


async def verify_overdue(*, session: AsyncSession, now: dt.datetime) -> int:
    """Job: verify checked-out visits whose sign-off window has passed (they become exceptions if
    still unsigned). Returns how many were verified."""
    policies = await load_policies(session=session, day=local_date(now))
    cutoff = now - dt.timedelta(seconds=policies.verification.sign_off_within_s)
    ids = list(
        await session.scalars(
            select(Visit.id)
            .join(ServiceOrder, ServiceOrder.id == Visit.order_id)
            .where(ServiceOrder.state == OrderState.CHECKED_OUT.value, Visit.check_out_at < cutoff)
        )
    )
    for vid in ids:
        await verify_visit(session=session, visit_id=vid, now=now)
    return len(ids)


RESOLVERS = frozenset({Role.PROVIDER_ADMIN, Role.SUPERVISOR, Role.CIVIL_AFFAIRS, Role.ADMIN})


async def resolve_exception(
    *,
    session: AsyncSession,
    actor: Principal,
    visit_id: int,
    code: str,
    reason_code: str,
    resolution_code: str,
    note: str,
    now: dt.datetime,
) -> tuple[Visit, list[VisitExceptionRecord]]:
    """Resolve one exception of a visit by a named user. When every exception is resolved and none was
    rejected, the visit becomes verified (and payable)."""
    if actor.role not in RESOLVERS:
        raise Forbidden("Your role may not resolve visit exceptions.", code="auth.forbidden")
    visit = await visible_visit(session=session, actor=actor, visit_id=visit_id)
    if reason_code not in EXCEPTION_REASON_CODES:
        raise Invalid(f"Unknown reason code {reason_code!r}.", code="dispatch.reason_unknown")
    record = await session.scalar(
        select(VisitExceptionRecord).where(
            VisitExceptionRecord.visit_id == visit.id, VisitExceptionRecord.code == code
        )
    )
    if record is None:
        raise NotFound(f"Visit {visit.id} has no exception {code!r}.", code="visit_exception.not_found")
    if record.resolved_at is not None:
        raise Conflict("This exception is already resolved.", code="dispatch.exception_resolved")
    record.reason_code, record.resolution_code = reason_code, resolution_code
    record.resolved_by_user_id, record.resolved_at, record.note = actor.user_id, now, note
    await session.flush()
    records = await _exceptions(session, visit.id)
    if all(r.resolved_at is not None for r in records) and all(
        r.resolution_code != "rejected" for r in records
    ):
        order = await session.get(ServiceOrder, visit.order_id, populate_existing=True)
        if order is not None and order.state == OrderState.EXCEPTION.value:
            await _move(
                session=session,
                order=order,
                target=OrderState.VERIFIED,
                actor=_actor_of(actor),
                actor_user_id=actor.user_id,
                now=now,
                note="exceptions resolved",
            )
            visit.verification, visit.verified_at = "verified", now
            await session.flush()
    return visit, records


async def visit_detail(
    *, session: AsyncSession, actor: Principal, visit_id: int
) -> tuple[Visit, list[VisitExceptionRecord]]:
    visit = await visible_visit(session=session, actor=actor, visit_id=visit_id)
    return visit, await _exceptions(session, visit.id)


async def sample_callbacks(*, session: AsyncSession, now: dt.datetime) -> int:
    """Job: give a random ≥ 10 % (policy) of yesterday's verified visits a phone callback task.

    Yesterday is the Asia/Shanghai day before ``now``; a day already sampled is left alone, and the
    sample is seeded by the date so it can be reproduced for audit. Returns the tasks created.
    """
    day = local_date(now) - dt.timedelta(days=1)
    start = dt.datetime.combine(day, dt.time(0), LOCAL_TZ)
    due = day + dt.timedelta(days=1)
    if await session.scalar(select(CallbackTask.id).where(CallbackTask.due_on == due).limit(1)) is not None:
        return 0
    ids = list(
        await session.scalars(
            select(Visit.id).where(
                Visit.verification == "verified",
                Visit.verified_at >= start,
                Visit.verified_at < start + dt.timedelta(days=1),
            )
        )
    )
    policies = await load_policies(session=session, day=day)
    chosen = select_callbacks(
        ids, ratio=policies.verification.callback_ratio, seed=int(day.strftime("%Y%m%d"))
    )
    for vid in sorted(chosen):
        session.add(CallbackTask(visit_id=vid, due_on=due, status="open"))
    await session.flush()
    return len(chosen)


# --- Ratings and complaints ----------------------------------------------------------------------


async def rate_visit(
    *, session: AsyncSession, actor: Principal, visit_id: int, score: int, comment: str, now: dt.datetime
) -> VisitRating:
    """An elder or family member rates a verified visit (1–5), once each; the order becomes rated."""
    visit = await visible_visit(session=session, actor=actor, visit_id=visit_id)
    order = await session.get(ServiceOrder, visit.order_id, populate_existing=True)
    if order is None or order.state not in (OrderState.VERIFIED.value, OrderState.RATED.value):
        raise Conflict("Only verified visits can be rated.", code="dispatch.rate_state")
    exists_already = await session.scalar(
        select(VisitRating.id).where(
            VisitRating.visit_id == visit.id, VisitRating.by_user_id == actor.user_id
        )
    )
    if exists_already is not None:
        raise Conflict("You have already rated this visit.", code="dispatch.already_rated")
    rating = VisitRating(
        visit_id=visit.id,
        by_user_id=actor.user_id,
        by_role=actor.role.value,
        score=score,
        comment=comment,
        created_at=now,
    )
    session.add(rating)
    if order.state == OrderState.VERIFIED.value:
        await _move(
            session=session,
            order=order,
            target=OrderState.RATED,
            actor=_actor_of(actor),
            actor_user_id=actor.user_id,
            now=now,
        )
    await session.flush()
    return rating


async def file_complaint(
    *, session: AsyncSession, actor: Principal, order_id: int, text: str, now: dt.datetime
) -> Complaint:
    """An elder or family member complains about one of their orders."""
    order = await visible_order(session=session, actor=actor, order_id=order_id)
    visit_id = await session.scalar(select(Visit.id).where(Visit.order_id == order.id))
    complaint = Complaint(
        order_id=order.id,
        visit_id=visit_id,
        elder_id=order.elder_id,
        provider_id=order.provider_id,
        caregiver_id=order.caregiver_id,
        filed_by_user_id=actor.user_id,
        text=text,
        status="open",
        created_at=now,
    )
    session.add(complaint)
    await session.flush()
    log.info("dispatch.complaint.filed", complaint_id=complaint.id, order_id=order.id)
    return complaint


async def list_complaints(*, session: AsyncSession, actor: Principal, window: Window) -> Paged[Complaint]:
    clause = _scope_clause(
        actor,
        elder_col=Complaint.elder_id,
        provider_col=Complaint.provider_id,
        caregiver_col=Complaint.caregiver_id,
    )
    stmt: Any = select(Complaint).where(clause).order_by(Complaint.id.desc())
    return await page_of(session, stmt, window)


# --- Day plans ----------------------------------------------------------------------------------------
# The next day's scheduled orders (state ``created``, not as-soon-as-possible or urgent) are planned per
# provider with :mod:`dispatch.routing`: which caregiver serves which order, in what sequence and from
# when. Providers are taken in id order and each plans the orders of the districts it serves that no
# other plan of the day holds. The plan is a proposal stored in ``day_plan`` / ``day_plan_stop``; the
# orders stay ``created``.

DAYPLAN_SECONDS = 5.0  # the planner's search budget per provider at most, wall seconds
DAYPLAN_MIN_SECONDS = 0.2  # … and at least, growing by the next figure for each visit to plan
DAYPLAN_SECONDS_PER_VISIT = 0.02
DAYPLAN_READERS = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})
DAYPLAN_REPLANNERS = frozenset({Role.PROVIDER_ADMIN, Role.SUPERVISOR, Role.ADMIN})


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), LOCAL_TZ)


async def _plan_instance(
    session: AsyncSession,
    *,
    provider_id: int,
    day: dt.date,
    order_ids: Sequence[int],
    extra_caregivers: Sequence[int],
    now: dt.datetime,
) -> routing.DayPlanInstance:
    """The routing instance of ``order_ids`` on ``day`` for the provider's caregivers (plus
    ``extra_caregivers``, e.g. ones in an earlier plan who have since left the provider)."""
    midnight = _day_start(day)
    rows = (
        await session.execute(
            select(
                ServiceOrder.id,
                ServiceOrder.elder_id,
                ServiceOrder.service_code,
                ServiceOrder.window_start_at,
                ServiceOrder.window_end_at,
                ServiceOrder.duration_s,
                Elder.lat,
                Elder.lon,
                Elder.gender,
                Elder.allows_any_gender_bathing,
                Community.is_village,
                District.kind,
            )
            .join(Elder, Elder.id == ServiceOrder.elder_id)
            .join(Community, Community.id == Elder.community_id)
            .join(District, District.id == Elder.district_id)
            .where(ServiceOrder.id.in_(sorted(order_ids)))
            .order_by(ServiceOrder.id)
        )
    ).all()
    elders = sorted({int(r.elder_id) for r in rows})
    rules = {s.code: service_rule(s) for s in await session.scalars(select(Service))}
    blocked: dict[int, set[int]] = {}
    for eid, cid in await session.execute(
        select(ElderBlockedCaregiver.elder_id, ElderBlockedCaregiver.caregiver_id).where(
            ElderBlockedCaregiver.elder_id.in_(elders)
        )
    ):
        blocked.setdefault(int(eid), set()).add(int(cid))
    preferred: dict[int, tuple[int, int]] = {}  # elder → (visits, caregiver): most visits, then lowest id
    for eid, cid, n in await session.execute(
        select(Visit.elder_id, Visit.caregiver_id, func.count())
        .where(Visit.elder_id.in_(elders), Visit.check_in_at >= now - dt.timedelta(days=CONTINUITY_DAYS))
        .group_by(Visit.elder_id, Visit.caregiver_id)
    ):
        best = preferred.get(int(eid))
        if best is None or (int(n), -int(cid)) > (best[0], -best[1]):
            preferred[int(eid)] = (int(n), int(cid))
    visits = tuple(
        routing.PlanVisit(
            id=int(r.id),
            elder_id=int(r.elder_id),
            lat=r.lat,
            lon=r.lon,
            rural=bool(r.is_village) or r.kind == "rural",
            service=rules[r.service_code],
            elder_gender=r.gender,
            elder_allows_any_gender=r.allows_any_gender_bathing,
            window_open_s=int((r.window_start_at - midnight).total_seconds()),
            window_close_s=int((r.window_end_at - midnight).total_seconds()),
            duration_s=int(r.duration_s),
            blocked=frozenset(blocked.get(int(r.elder_id), ())),
            preferred_caregiver=preferred[int(r.elder_id)][1] if int(r.elder_id) in preferred else None,
        )
        for r in rows
    )
    caregivers = list(
        await session.scalars(
            select(Caregiver)
            .where(or_(Caregiver.provider_id == provider_id, Caregiver.id.in_(sorted(extra_caregivers))))
            .order_by(Caregiver.id)
        )
    )
    profiles = await _profiles(session, caregivers, midnight + dt.timedelta(hours=12))
    policies = await load_policies(session=session, day=day)
    return routing.DayPlanInstance(
        day=day,
        visits=visits,
        caregivers=tuple(
            routing.PlanCaregiver(profiles[int(c.id)], c.home_lat, c.home_lon, rural=False)
            for c in caregivers
        ),
        policy=routing.PlanPolicy(match=policies.match),
    )


def _stops_of(plan: routing.DayPlan) -> dict[int, tuple[int, int]]:
    """order id → (caregiver id, start in seconds after local midnight)."""
    return {s.visit_id: (cid, s.start_s) for cid, stops in plan.routes.items() for s in stops}


async def _store_plan(
    session: AsyncSession, record: ProviderDayPlan, plan: routing.DayPlan, *, day: dt.date
) -> None:
    """Replace the stops of ``record`` with ``plan``'s (sequence 1, 2, … per caregiver)."""
    midnight = _day_start(day)
    await session.execute(delete(DayPlanStop).where(DayPlanStop.plan_id == record.id))
    rows = [
        {
            "plan_id": record.id,
            "order_id": stop.visit_id,
            "caregiver_id": cid,
            "seq": seq,
            "planned_start_at": midnight + dt.timedelta(seconds=stop.start_s),
        }
        for cid, stops in plan.routes.items()
        for seq, stop in enumerate(stops, start=1)
    ]
    if rows:
        await session.execute(insert(DayPlanStop), rows)
    record.travel_s = plan.travel_s
    record.unassigned_order_ids = list(plan.unassigned)
    await session.flush()


def _unplanned_orders(provider_id: int, day: dt.date) -> Any:
    """Scheduled ``created`` orders of ``day`` in the provider's districts that no plan holds yet."""
    midnight = _day_start(day)
    return (
        select(ServiceOrder.id)
        .join(Elder, Elder.id == ServiceOrder.elder_id)
        .where(
            ServiceOrder.state == OrderState.CREATED.value,
            ServiceOrder.asap.is_(False),
            ServiceOrder.urgent.is_(False),
            ServiceOrder.window_start_at >= midnight,
            ServiceOrder.window_start_at < midnight + dt.timedelta(days=1),
            Elder.district_id.in_(
                select(ProviderDistrict.district_id).where(ProviderDistrict.provider_id == provider_id)
            ),
            ~exists().where(
                DayPlanStop.order_id == ServiceOrder.id,
                DayPlanStop.plan_id.in_(select(ProviderDayPlan.id).where(ProviderDayPlan.plan_on == day)),
            ),
        )
        .order_by(ServiceOrder.id)
    )


async def _planned_elsewhere(session: AsyncSession, *, plan_id: int, day: dt.date) -> set[int]:
    """Orders that another plan of ``day`` has given a caregiver."""
    return set(
        await session.scalars(
            select(DayPlanStop.order_id)
            .join(ProviderDayPlan, ProviderDayPlan.id == DayPlanStop.plan_id)
            .where(ProviderDayPlan.plan_on == day, ProviderDayPlan.id != plan_id)
        )
    )


def _previous_plan(
    record: ProviderDayPlan, stops: Sequence[DayPlanStop], extra: Sequence[int]
) -> routing.DayPlan:
    midnight = _day_start(record.plan_on)
    routes: dict[int, list[routing.Stop]] = {}
    for s in sorted(stops, key=lambda s: (s.caregiver_id, s.seq)):
        start_s = int((s.planned_start_at - midnight).total_seconds())
        routes.setdefault(s.caregiver_id, []).append(routing.Stop(s.order_id, start_s))
    unassigned = tuple(sorted({*record.unassigned_order_ids, *extra}))
    return routing.DayPlan({c: tuple(r) for c, r in routes.items()}, unassigned, record.travel_s, 0, 0)


async def plan_provider_day(
    *,
    session: AsyncSession,
    provider_id: int,
    day: dt.date,
    now: dt.datetime,
    time_limit_s: float = DAYPLAN_SECONDS,
) -> ProviderDayPlan | None:
    """Plan the provider's unplanned scheduled orders of ``day``. A first build runs the full planner;
    when a plan exists, new orders are only inserted into it (nothing planned moves). Returns the plan,
    or None when there was nothing to plan."""
    new_ids = list(await session.scalars(_unplanned_orders(provider_id, day)))
    record = await session.scalar(
        select(ProviderDayPlan).where(
            ProviderDayPlan.provider_id == provider_id, ProviderDayPlan.plan_on == day
        )
    )
    if record is None and not new_ids:
        return None
    if record is None:
        inst = await _plan_instance(
            session, provider_id=provider_id, day=day, order_ids=new_ids, extra_caregivers=(), now=now
        )
        # The planner searches until its budget is spent; a small day does not need the full one.
        budget = min(time_limit_s, DAYPLAN_MIN_SECONDS + DAYPLAN_SECONDS_PER_VISIT * len(inst.visits))
        plan = routing.plan_day(inst, time_limit_s=budget)
        record = ProviderDayPlan(
            provider_id=provider_id,
            plan_on=day,
            built_at=now,
            revision=1,
            travel_s=plan.travel_s,
            unassigned_order_ids=[],
            unavailable_caregiver_ids=[],
        )
        session.add(record)
        await session.flush()
        await _store_plan(session, record, plan, day=day)
        log.info("dispatch.dayplan.stored", provider_id=provider_id, day=day.isoformat(), orders=len(new_ids))
        return record
    fresh = set(new_ids) - set(record.unassigned_order_ids)
    if not fresh:
        return record
    await _replan_record(session, record, cancelled=set(), unavailable=set(), extra=sorted(fresh), now=now)
    return record


async def _replan_record(
    session: AsyncSession,
    record: ProviderDayPlan,
    *,
    cancelled: set[int],
    unavailable: set[int],
    extra: Sequence[int],
    now: dt.datetime,
) -> tuple[routing.DayPlan, int]:
    """Repair the stored plan with :func:`dispatch.routing.replan`; returns the plan and how many
    orders that kept a place changed caregiver."""
    stops = list(await session.scalars(select(DayPlanStop).where(DayPlanStop.plan_id == record.id)))
    previous = _previous_plan(record, stops, extra)
    elsewhere = await _planned_elsewhere(session, plan_id=record.id, day=record.plan_on)
    all_ids = sorted({*(s.order_id for s in stops), *previous.unassigned})
    # Orders that left ``created`` (cancelled, dispatched in real time) no longer belong to the plan.
    states = dict(
        (
            await session.execute(
                select(ServiceOrder.id, ServiceOrder.state).where(ServiceOrder.id.in_(all_ids))
            )
        ).all()
    )
    gone = {oid for oid in all_ids if states.get(oid) != OrderState.CREATED.value}
    dropped = cancelled | gone | (elsewhere & set(previous.unassigned))
    off = {*record.unavailable_caregiver_ids, *unavailable}
    inst = await _plan_instance(
        session,
        provider_id=record.provider_id,
        day=record.plan_on,
        order_ids=[oid for oid in all_ids if oid in states],
        extra_caregivers=sorted({*previous.routes, *off}),
        now=now,
    )
    missing = set(all_ids) - set(states)  # deleted orders: their stops went with them (cascade)
    previous = routing.DayPlan(
        {c: tuple(s for s in r if s.visit_id not in missing) for c, r in previous.routes.items()},
        tuple(v for v in previous.unassigned if v not in missing),
        previous.travel_s,
        0,
        0,
    )
    plan = routing.replan(inst, previous, cancelled=frozenset(dropped), unavailable=frozenset(off))
    before, after = _stops_of(previous), _stops_of(plan)
    moved = sum(1 for oid, (cid, _) in after.items() if oid in before and before[oid][0] != cid)
    record.revision += 1
    record.replanned_at = now
    record.unavailable_caregiver_ids = sorted(off)
    await _store_plan(session, record, plan, day=record.plan_on)
    log.info(
        "dispatch.dayplan.replanned",
        plan_id=record.id,
        dropped=len(dropped),
        unavailable=len(off),
        moved=moved,
        unassigned=len(plan.unassigned),
    )
    return plan, moved


async def plan_tomorrow(
    *, session: AsyncSession, now: dt.datetime, time_limit_s: float = DAYPLAN_SECONDS
) -> int:
    """Job: plan tomorrow's (Asia/Shanghai) scheduled orders for every provider with active caregivers,
    in provider id order; a provider already planned only gets its new orders inserted. Returns the
    number of plans written."""
    day = local_date(now) + dt.timedelta(days=1)
    providers = list(
        await session.scalars(
            select(Caregiver.provider_id)
            .where(Caregiver.is_active)
            .distinct()
            .order_by(Caregiver.provider_id)
        )
    )
    written = 0
    for pid in providers:
        if await plan_provider_day(
            session=session, provider_id=int(pid), day=day, now=now, time_limit_s=time_limit_s
        ):
            written += 1
    return written


@dataclass(frozen=True, slots=True)
class DayPlanView:
    plan: ProviderDayPlan
    stops: list[DayPlanStop]
    moved: int = 0  # orders that changed caregiver in the re-plan that produced this view


async def day_plans(
    *, session: AsyncSession, actor: Principal, day: dt.date, provider_id: int | None = None
) -> list[DayPlanView]:
    """The stored plans of ``day`` in the actor's scope: staff every provider's (or ``provider_id``'s),
    a provider admin its own, a caregiver only their own route (and not the unassigned list)."""
    stmt = select(ProviderDayPlan).where(ProviderDayPlan.plan_on == day).order_by(ProviderDayPlan.provider_id)
    stop_filter: list[ColumnElement[bool]] = []
    if actor.role in DAYPLAN_READERS:
        if provider_id is not None:
            stmt = stmt.where(ProviderDayPlan.provider_id == provider_id)
    elif actor.role == Role.PROVIDER_ADMIN and actor.provider_id is not None:
        if provider_id is not None and provider_id != actor.provider_id:
            raise Forbidden("You may see only your own provider's plans.", code="scope.provider")
        stmt = stmt.where(ProviderDayPlan.provider_id == actor.provider_id)
    elif actor.role == Role.CAREGIVER and actor.caregiver_id is not None:
        stmt = stmt.where(
            ProviderDayPlan.id.in_(
                select(DayPlanStop.plan_id).where(DayPlanStop.caregiver_id == actor.caregiver_id)
            )
        )
        stop_filter.append(DayPlanStop.caregiver_id == actor.caregiver_id)
    else:
        raise Forbidden("Your role has no day plans.", code="auth.forbidden")
    plans = list(await session.scalars(stmt))
    views = []
    for plan in plans:
        stops = list(
            await session.scalars(
                select(DayPlanStop)
                .where(DayPlanStop.plan_id == plan.id, *stop_filter)
                .order_by(DayPlanStop.caregiver_id, DayPlanStop.seq)
            )
        )
        views.append(DayPlanView(plan, stops))
    return views


async def replan_day(
    *,
    session: AsyncSession,
    actor: Principal,
    day: dt.date,
    provider_id: int | None,
    sick_caregiver_ids: Sequence[int],
    cancelled_order_ids: Sequence[int],
    now: dt.datetime,
) -> DayPlanView:
    """Re-plan a provider's stored plan of ``day`` after caregivers call in sick and/or orders are
    cancelled, changing as little as possible: only the orders of the sick caregivers (and those left
    unplanned before) look for a new place; every other order keeps its caregiver and sequence.
    Orders no longer ``created`` (cancelled, dispatched in real time) drop out as well."""
    if actor.role not in DAYPLAN_REPLANNERS:
        raise Forbidden("Your role may not re-plan a day.", code="auth.forbidden")
    if actor.role == Role.PROVIDER_ADMIN:
        if provider_id is not None and provider_id != actor.provider_id:
            raise Forbidden("You may re-plan only your own provider's day.", code="scope.provider")
        provider_id = actor.provider_id
    if provider_id is None:
        raise Invalid("Name the provider whose day to re-plan.", code="dayplan.provider_required")
    record = await session.scalar(
        select(ProviderDayPlan)
        .where(ProviderDayPlan.provider_id == provider_id, ProviderDayPlan.plan_on == day)
        .with_for_update()
    )
    if record is None:
        raise NotFound(
            f"Provider {provider_id} has no plan for {day.isoformat()}.", code="day_plan.not_found"
        )
    sick = set(sick_caregiver_ids)
    if sick:
        known = set(
            await session.scalars(
                select(Caregiver.id).where(
                    Caregiver.id.in_(sorted(sick)), Caregiver.provider_id == provider_id
                )
            )
        )
        if sick - known:
            raise Invalid(
                f"Not caregivers of provider {provider_id}: {sorted(sick - known)}.",
                code="dayplan.caregiver_unknown",
            )
    cancelled = set(cancelled_order_ids)
    if cancelled:
        in_plan = set(
            await session.scalars(
                select(DayPlanStop.order_id).where(
                    DayPlanStop.plan_id == record.id, DayPlanStop.order_id.in_(sorted(cancelled))
                )
            )
        ) | (cancelled & set(record.unassigned_order_ids))
        if cancelled - in_plan:
            raise Invalid(
                f"Not in this plan: orders {sorted(cancelled - in_plan)}.", code="dayplan.order_unknown"
            )
    _, moved = await _replan_record(session, record, cancelled=cancelled, unavailable=sick, extra=(), now=now)
    stops = list(
        await session.scalars(
            select(DayPlanStop)
            .where(DayPlanStop.plan_id == record.id)
            .order_by(DayPlanStop.caregiver_id, DayPlanStop.seq)
        )
    )
    return DayPlanView(record, stops, moved)


# --- Callbacks and provider quality ------------------------------------------------------------------
# Call-centre staff work the phone callbacks sampled by :func:`sample_callbacks`; a provider's quality
# score (:func:`dispatch.verification.provider_quality`) is read over a range of Asia/Shanghai days.

CALLBACK_WORKERS = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.CIVIL_AFFAIRS, Role.ADMIN})
QUALITY_READERS = frozenset({Role.PROVIDER_ADMIN, Role.SUPERVISOR, Role.CIVIL_AFFAIRS, Role.ADMIN})
QUALITY_MAX_DAYS = 366


def _callback_clause(p: Principal) -> ColumnElement[bool]:
    """Callbacks whose visit ``p`` may see (civil affairs: their districts' elders)."""
    if p.role not in CALLBACK_WORKERS:
        return false()
    return _scope_clause(
        p, elder_col=Visit.elder_id, provider_col=Visit.provider_id, caregiver_col=Visit.caregiver_id
    )


async def list_callbacks(
    *, session: AsyncSession, actor: Principal, window: Window, state: str | None
) -> Paged[CallbackTask]:
    """Callback tasks in ``actor``'s scope, earliest due first; ``state`` ``open`` or ``done`` (which
    includes callbacks that reached nobody)."""
    if actor.role not in CALLBACK_WORKERS:
        raise Forbidden("Your role may not work callbacks.", code="auth.forbidden")
    stmt: Any = (
        select(CallbackTask)
        .join(Visit, Visit.id == CallbackTask.visit_id)
        .where(_callback_clause(actor))
        .order_by(CallbackTask.due_on, CallbackTask.id)
    )
    if state == "open":
        stmt = stmt.where(CallbackTask.status == "open")
    elif state == "done":
        stmt = stmt.where(CallbackTask.status != "open")
    return await page_of(session, stmt, window)


async def complete_callback(
    *,
    session: AsyncSession,
    actor: Principal,
    callback_id: int,
    satisfaction: int | None,
    reached: bool,
    note: str,
    now: dt.datetime,
) -> CallbackTask:
    """Record a callback's outcome once, with who and when: reached → ``done`` with a satisfaction
    1–5; not reached → ``unreachable`` without one. A second completion is 409 ``callback.already_done``
    (a conditional update, so of two concurrent completions exactly one wins)."""
    if actor.role not in CALLBACK_WORKERS:
        raise Forbidden("Your role may not work callbacks.", code="auth.forbidden")
    task = await get_or_404(session, CallbackTask, callback_id, what="callback")
    await visible_visit(session=session, actor=actor, visit_id=task.visit_id)
    if reached and satisfaction is None:
        raise Invalid("A reached callback needs a satisfaction 1-5.", code="callback.satisfaction_required")
    if not reached and satisfaction is not None:
        raise Invalid("A callback that reached nobody has no satisfaction.", code="callback.unreached_score")
    done = await session.scalar(
        update(CallbackTask)
        .where(CallbackTask.id == task.id, CallbackTask.status == "open")
        .values(
            status="done" if reached else "unreachable",
            satisfaction=satisfaction,
            done_by_user_id=actor.user_id,
            done_at=now,
            note=note,
        )
        .returning(CallbackTask.id)
        .execution_options(synchronize_session=False)
    )
    if done is None:
        raise Conflict("This callback is already completed.", code="callback.already_done")
    await session.refresh(task)
    log.info("dispatch.callback.completed", callback_id=task.id, status=task.status)
    return task


@dataclass(frozen=True, slots=True)
class QualityReport:
    """A provider's quality score (0..100, None without visits) over ``start``..``end`` (inclusive
    Asia/Shanghai days) and the figures it was computed from."""

    provider_id: int
    start: dt.date
    end: dt.date
    score: float | None
    stats: ProviderStats
    weights: QualityWeights


async def provider_quality_report(
    *,
    session: AsyncSession,
    actor: Principal,
    provider_id: int,
    start: dt.date | None,
    end: dt.date | None,
    now: dt.datetime,
) -> QualityReport:
    """The quality score of a provider over its visits scheduled in the range (default: the 30 days
    to today). A visit counts as an exception visit when it had any verification exception (even one
    resolved later), as clean when it was verified without one; ratings and callback satisfaction are
    of those visits; complaints are those filed against the provider in the range."""
    if actor.role not in QUALITY_READERS:
        raise Forbidden("Your role may not read provider quality.", code="auth.forbidden")
    await get_or_404(session, Provider, provider_id, what="provider")
    if actor.role == Role.PROVIDER_ADMIN and actor.provider_id != provider_id:
        raise Forbidden("This provider is outside your scope.", code="scope.provider")
    if actor.role == Role.CIVIL_AFFAIRS:
        serves = await session.scalar(
            select(ProviderDistrict.provider_id)
            .where(
                ProviderDistrict.provider_id == provider_id,
                ProviderDistrict.district_id.in_(sorted(actor.district_ids)),
            )
            .limit(1)
        )
        if serves is None:
            raise Forbidden("This provider serves none of your districts.", code="scope.provider")
    end = end or local_date(now)
    start = start or end - dt.timedelta(days=29)
    if start > end:
        raise Invalid("'from' is after 'to'.", code="quality.range_invalid")
    if (end - start).days >= QUALITY_MAX_DAYS:
        raise Invalid(f"The range may span at most {QUALITY_MAX_DAYS} days.", code="quality.range_too_long")
    lo, hi = _day_start(start), _day_start(end + dt.timedelta(days=1))
    visits = (
        select(Visit.id)
        .where(
            Visit.provider_id == provider_id,
            Visit.scheduled_start_at >= lo,
            Visit.scheduled_start_at < hi,
            Visit.verification.in_(("verified", "exception")),
        )
        .scalar_subquery()
    )
    had_exception = exists().where(VisitExceptionRecord.visit_id == Visit.id)
    counts = (
        await session.execute(
            select(
                func.count().filter(had_exception),
                func.count().filter(~had_exception, Visit.verification == "verified"),
            ).where(Visit.id.in_(visits))
        )
    ).one()
    mean_rating = await session.scalar(
        select(func.avg(VisitRating.score)).where(VisitRating.visit_id.in_(visits))
    )
    mean_callback = await session.scalar(
        select(func.avg(CallbackTask.satisfaction)).where(
            CallbackTask.visit_id.in_(visits), CallbackTask.status == "done"
        )
    )
    complaints = await session.scalar(
        select(func.count()).where(
            Complaint.provider_id == provider_id, Complaint.created_at >= lo, Complaint.created_at < hi
        )
    )
    stats = ProviderStats(
        verified_visits=int(counts[1]),
        exception_visits=int(counts[0]),
        mean_rating=None if mean_rating is None else round(float(mean_rating), 3),
        mean_callback_score=None if mean_callback is None else round(float(mean_callback), 3),
        complaints=int(complaints or 0),
    )
    weights = (await load_policies(session=session, day=end)).quality
    return QualityReport(provider_id, start, end, provider_quality(stats, weights=weights), stats, weights)


# --- Catalogue -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """A catalogue service with the unit price (fen) valid on the asked day, ``None`` if it has none."""

    service: Service
    price_fen: int | None


async def catalogue(*, session: AsyncSession, day: dt.date) -> list[CatalogueEntry]:
    """The active services and their prices on ``day`` (Asia/Shanghai), in code order."""
    services = (
        await session.scalars(select(Service).where(Service.is_active.is_(True)).order_by(Service.code))
    ).all()
    out = []
    for s in services:
        value = await session.scalar(_price_select(s.code, day))
        out.append(CatalogueEntry(s, int(value["fen"]) if value and "fen" in value else None))
    return out
