"""What every dispatch use case shares: the errors they raise, the dated policies they read
(:func:`load_policies`), catalogue prices, the scope rule for orders and visits (who may see which
order, in Python and as SQL) and the one way an order changes state.

Services flush; the caller (request, job) owns the transaction. Every state change goes through
:func:`change_state`, a conditional ``UPDATE … WHERE state = :expected`` that records the transition,
so two concurrent writers can never both move an order out of the same state; :func:`move` is the same
for a use case acting for a signed-in :class:`~core.identity.authz.Principal`, answering a refused
move with a 409.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    DateTime,
    Integer,
    String,
    bindparam,
    cast,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSON, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute, selectinload

from core.clock import SHANGHAI, local_date
from core.crud import get_or_404, not_found
from core.errors import Conflict, DomainError
from core.identity.authz import Principal
from core.identity.models import Role
from core.policy import PolicyValue, policy_number, valid_on
from dispatch.matching import MatchPolicy, MatchWeights, ServiceRule
from dispatch.models import (
    DayPlanDirty,
    OrderTransition,
    ProviderDayPlan,
    ProviderService,
    Service,
    ServiceOrder,
    Visit,
    VisitExceptionRecord,
)
from dispatch.states import Actor, CancellationPolicy, InvalidTransition, OrderState, transition
from dispatch.verification import QualityWeights, VerificationPolicy
from registry.models import Elder
from registry.scope import sees_all_elders


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


class NotContracted(DispatchError):
    """The caregiver's provider holds no contract for the order's service on its service day."""

    status = 409
    code = "dispatch.not_contracted"
    title = "Provider not contracted for the service"


@dataclass(frozen=True, slots=True)
class OfferPolicy:
    offer_seconds: int = 60
    max_attempts: int = 3


# Continuity of care counts the visits of the last this many days (DOMAIN §6), unless the policy
# ``dispatch.continuity_window`` says otherwise.
CONTINUITY_DAYS = 30


@dataclass(frozen=True, slots=True)
class SignOffPinPolicy:
    """Wrong sign-off PINs one visit may see before PIN sign-off of that visit is refused for
    ``lock_s`` seconds (policy ``verification.signoff_pin``)."""

    max_failures: int = 5
    lock_s: int = 15 * 60


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
    return price_fen(await session.scalar(price_select(service_code, day)), service_code, day)


def price_select(service_code: Any, day: Any) -> Any:
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


def price_fen(value: Mapping[str, Any] | None, service_code: str, day: dt.date) -> int:
    if value is None or "fen" not in value:
        raise DispatchError(f"service {service_code} has no price valid on {day.isoformat()}")
    return int(value["fen"])


def logged(order_id: Any) -> Any:
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


def new_visit(
    order: ServiceOrder, *, caregiver_id: int, provider_id: int | None, start: dt.datetime
) -> Visit:
    """The visit of an order just accepted by (or assigned to) a caregiver: it is scheduled from
    ``start`` for the order's duration. The caller adds it to the session."""
    return Visit(
        order_id=order.id,
        service_code=order.service_code,
        elder_id=order.elder_id,
        caregiver_id=caregiver_id,
        provider_id=provider_id,
        scheduled_start_at=start,
        scheduled_end_at=start + dt.timedelta(seconds=order.duration_s),
    )


@dataclass(frozen=True, slots=True)
class Policies:
    """The dated policy values (``dispatch.*``, ``verification.*``) valid on one day."""

    match: MatchPolicy
    offer: OfferPolicy
    verification: VerificationPolicy
    cancellation: CancellationPolicy
    quality: QualityWeights = field(default_factory=QualityWeights)
    continuity_days: int = CONTINUITY_DAYS
    sign_off_pin: SignOffPinPolicy = field(default_factory=SignOffPinPolicy)


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
        *valid_on(day),
    )


def policy_rows_json(day: Any) -> Any:
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
        # A JSON number only (not true/false), as :func:`core.policy.policy_number` reads it in SQL.
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else default

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
        early_check_in_s=int(num("verification.checkin_early", "*", "seconds", v.early_check_in_s)),
        late_check_in_s=int(num("verification.checkin_late", "*", "seconds", v.late_check_in_s)),
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
    pin = SignOffPinPolicy()
    sign_off_pin = SignOffPinPolicy(
        max_failures=max(1, int(num("verification.signoff_pin", "*", "max_failures", pin.max_failures))),
        lock_s=max(0, int(num("verification.signoff_pin", "*", "lock_minutes", pin.lock_s / 60) * 60)),
    )
    return Policies(
        match_policy,
        offer_policy,
        verification,
        cancel,
        quality,
        # Whole days, as :func:`continuity_days_sql` counts them.
        continuity_days=max(0, int(num("dispatch.continuity_window", "*", "days", CONTINUITY_DAYS))),
        sign_off_pin=sign_off_pin,
    )


def continuity_days_sql(day: Any) -> ColumnElement[int]:
    """SQL twin of :attr:`Policies.continuity_days` valid on ``day`` (whole days, at least 0)."""
    days = policy_number("dispatch.continuity_window", "*", "days", day, CONTINUITY_DAYS)
    return cast(func.greatest(0, func.trunc(days)), Integer)


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


def scope_clause(
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
    return scope_clause(
        p,
        elder_col=ServiceOrder.elder_id,
        provider_col=ServiceOrder.provider_id,
        caregiver_col=ServiceOrder.caregiver_id,
    )


async def elder_district(session: AsyncSession, elder_id: int) -> int:
    district = await session.scalar(select(Elder.district_id).where(Elder.id == elder_id))
    return int(district) if district is not None else 0


async def in_scope(session: AsyncSession, actor: Principal, row: ServiceOrder | Visit) -> bool:
    """Whether ``actor`` may see this order or visit (both carry the same keys): :func:`can_see_order`."""
    return can_see_order(
        actor,
        elder_id=row.elder_id,
        district_id=await elder_district(session, row.elder_id),
        provider_id=row.provider_id,
        caregiver_id=row.caregiver_id,
    )


async def visible_order(*, session: AsyncSession, actor: Principal, order_id: int) -> ServiceOrder:
    """The order if ``actor`` may see it, else 404 ``order.not_found``: the same answer for an order
    outside the actor's scope as for one that does not exist, so its existence is not revealed."""
    order = await get_or_404(session, ServiceOrder, order_id, what="order")
    if not await in_scope(session, actor, order):
        raise not_found("order", order_id)
    return order


async def visible_visit(*, session: AsyncSession, actor: Principal, visit_id: int) -> Visit:
    """The visit if ``actor`` may see it (same rule as its order), else the 404 ``visit.not_found`` of
    a visit that does not exist."""
    visit = await get_or_404(session, Visit, visit_id, what="visit")
    if not await in_scope(session, actor, visit):
        raise not_found("visit", visit_id)
    return visit


async def move(
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


async def exception_records(session: AsyncSession, visit_id: int) -> list[VisitExceptionRecord]:
    """The visit's exceptions in detection order, each with its history (notes) freshly loaded."""
    return list(
        await session.scalars(
            select(VisitExceptionRecord)
            .where(VisitExceptionRecord.visit_id == visit_id)
            .order_by(VisitExceptionRecord.id)
            .options(selectinload(VisitExceptionRecord.notes))
            .execution_options(populate_existing=True)
        )
    )


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), SHANGHAI)


def local_day_of(at: Any) -> Any:
    """SQL: the Asia/Shanghai calendar date of a ``timestamptz`` column or value."""
    return func.timezone(SHANGHAI.key, at).cast(Date)


def contracted(provider_id: Any, service_code: Any, day: Any) -> ColumnElement[bool]:
    """SQL: the provider holds a contract for the service valid on ``day`` (``valid_to`` inclusive).

    Each argument may be a column, an expression or a plain value, so the same rule filters candidate
    caregivers (``Caregiver.provider_id``), the orders a provider plans, and a hand assignment.
    Columns correlate to the statement they come from at any depth of nesting (auto-correlation
    would look only one level up and otherwise pull their table into the subquery's FROM).
    """
    return (
        exists()
        .where(
            ProviderService.provider_id == provider_id,
            ProviderService.service_code == service_code,
            ProviderService.valid_from <= day,
            or_(ProviderService.valid_to.is_(None), ProviderService.valid_to >= day),
        )
        .correlate_except(ProviderService)
    )


# --- Day plans gone stale ------------------------------------------------------------------------


async def mark_day_dirty(*, session: AsyncSession, order: ServiceOrder, now: dt.datetime) -> None:
    """Mark the day of a scheduled order just placed or cancelled for a re-plan, if plans of that day
    have been built already (before that, the nightly build picks the order up). One statement, in
    the caller's transaction; :func:`dispatch.dayplans.plan.rebuild_dirty_plans` does the work."""
    if order.asap or order.urgent:
        return  # dispatched in real time, never planned
    day = local_date(order.window_start_at)
    built = exists().where(ProviderDayPlan.plan_on == day)
    # A plain insert (no ON CONFLICT): see DayPlanDirty for why marks are append-only.
    await session.execute(
        insert(DayPlanDirty).from_select(
            ["plan_on", "marked_at"],
            select(literal(day, Date), literal(now, DateTime(timezone=True))).where(built),
        )
    )
