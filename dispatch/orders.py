"""Orders: creating one (priced on its service day), placing one-off and recurring (RFC 5545 RRULE)
orders for an elder, materialising recurring series ahead, listing and reading orders in the actor's
scope, cancelling (with its late fee or re-dispatch), recording a no-show and assigning an escalated
order by hand. As-soon-as-possible and same-day orders go straight to
:func:`dispatch.offers.dispatch_order`. Every function taking ``actor`` applies its scope; errors are
:class:`core.errors.DomainError` subclasses with stable codes.

The GB/T 43153 prerequisites (:mod:`dispatch.prerequisites`): every order of a service that needs an
ability assessment is refused without one valid on its service day; a series is placed only with the
provider a signed agreement binds it to, covering every remaining day of the series, and only that
provider's caregivers take its orders.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import structlog
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    String,
    Table,
    bindparam,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core import audit
from core.clock import SHANGHAI, local_date
from core.crud import (
    Paged,
    Window,
    get_or_404,
    in_key_range,
    not_found,
    page_of,
    require_ref,
    unknown_reference,
)
from core.errors import Conflict, Forbidden, Invalid
from core.identity.authz import Principal
from core.identity.models import Role
from dispatch.candidates import build_request, caregiver_profiles
from dispatch.common import (
    DispatchError,
    NotContracted,
    contracted,
    elder_district,
    exception_records,
    load_policies,
    logged,
    mark_day_dirty,
    move,
    new_visit,
    order_clause,
    price_fen,
    price_on,
    price_select,
    visible_order,
)
from dispatch.matching import static_rejection, timing_rejection
from dispatch.models import (
    DayPlanDirty,
    Offer,
    OfferState,
    OrderTransition,
    ProviderDayPlan,
    RecurringOrder,
    SeriesState,
    Service,
    ServiceOrder,
    Visit,
    VisitExceptionRecord,
)
from dispatch.offers import dispatch_order
from dispatch.policies import min_on_site_minutes, policy_number_sql
from dispatch.prerequisites import (
    AgreementRequired,
    AssessmentRequired,
    Prerequisites,
    agreed_provider,
    order_prerequisites,
    require_assessment,
    require_series_provider,
    series_cover,
)
from dispatch.recurrence import RecurrenceError, canonical_rule, expand
from dispatch.states import SYSTEM, Actor, CancellationConsequence, EscalationReason, OrderState, cancellation
from registry.models import Caregiver, Elder, ProviderDistrict

log = structlog.get_logger(__name__)

RECURRING_HORIZON_DAYS = 14  # recurring orders are materialised this many days ahead
# The cancel reason of an order cancelled by pausing its series (resuming re-creates the occurrence).
SERIES_PAUSED = "series paused"
ORDER_HORIZON_POLICY = "dispatch.order_horizon"
ORDER_WINDOW_POLICY = "dispatch.order_window"
SERIES_LOOKBACK_POLICY = "dispatch.series_lookback"


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
    """Create an order in state ``created``; the price of the service date is snapshotted (fen). 409
    ``dispatch.assessment_required`` if the service needs an assessment valid that day and there is
    none."""
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
    day = local_date(window_start_at)
    await require_assessment(
        session, elder_id=elder_id, service_code=service_code, day=day, today=local_date(now)
    )
    price = await price_on(session=session, service_code=service_code, day=day)
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
    # The order's day marked for a re-plan if that day's plans are built (mark_day_dirty, in the same
    # statement): parameters dirty_day (the window's local day) and planned (neither asap nor urgent).
    dirty_day = bindparam("dirty_day", type_=Date)
    marked = insert(DayPlanDirty).from_select(
        ["plan_on", "marked_at"],
        select(dirty_day, bindparam("at", type_=DateTime(timezone=True))).where(
            bindparam("planned", type_=Boolean), exists().where(ProviderDayPlan.plan_on == dirty_day)
        ),
    )
    # The mark first: SQLAlchemy takes the Python-side column defaults to send (``offer_attempts``, …)
    # from the INSERT it compiles last, which must be the order's (compiled within the transition's).
    return (
        select(aliased(ServiceOrder, new))
        .add_cte(marked.cte("marked_dirty"))
        .add_cte(logged(new.c.id).cte("first_transition"))
    )


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
        "dirty_day": local_date(values["window_start_at"]),
        "planned": not (values.get("asap") or values.get("urgent")),
    }
    order: ServiceOrder = (await session.scalars(_insert_order_statement(), params)).one()
    log.info("dispatch.order.created", order_id=order.id, elder_id=order.elder_id, service=order.service_code)
    return order


async def _require_elder(session: AsyncSession, elder_id: int) -> None:
    """A 422 ``reference.unknown`` unless the elder exists (a column read: no relationships loaded)."""
    found = (
        await session.scalar(select(Elder.id).where(Elder.id == elder_id)) if in_key_range(elder_id) else None
    )
    if found is None:
        raise unknown_reference("elder_id", elder_id, "elder")


def _check_may_order_for(p: Principal, elder_id: int) -> None:
    """An elder or family member orders only for their own elders; any other elder id gets the same
    422 ``reference.unknown`` as an elder that does not exist, so its existence is not revealed."""
    if p.role in (Role.ELDER, Role.FAMILY) and elder_id not in p.elder_ids:
        raise unknown_reference("elder_id", elder_id, "elder")


@functools.cache
def _order_check_statement() -> Any:
    """Built once: the service (an entity), the elder's status and the price of the day (parameters
    elder_id, service_code, day); no row when the service is unknown."""
    code = bindparam("service_code", type_=String)
    elder_status = select(Elder.status).where(Elder.id == bindparam("elder_id", type_=BigInteger))
    price = price_select(code, bindparam("day", type_=Date))
    return select(
        Service,
        elder_status.scalar_subquery().label("elder_status"),
        price.scalar_subquery().label("price"),
        _horizon_days(bindparam("today", type_=Date)).label("horizon_days"),
        # With no row valid: the seeded defaults. A negative max_hours: no limit on the window's length.
        policy_number_sql(ORDER_WINDOW_POLICY, "past_grace_minutes", bindparam("today", type_=Date)).label(
            "past_grace_minutes"
        ),
        policy_number_sql(ORDER_WINDOW_POLICY, "max_hours", bindparam("today", type_=Date)).label(
            "max_window_hours"
        ),
    ).where(Service.code == code)


def _horizon_days(today: Any) -> Any:
    """Policy ``dispatch.order_horizon``: how many days ahead of ``today`` a visit may be ordered
    (with no row valid, the seeded default). Negative: no horizon beyond the sanity window of
    :data:`core.types.Instant`."""
    return policy_number_sql(ORDER_HORIZON_POLICY, "days", today)


def _check_horizon(start: dt.datetime, *, now: dt.datetime, horizon_days: float, field: str) -> None:
    if horizon_days >= 0 and start > now + dt.timedelta(days=horizon_days):
        raise Invalid(
            f"{field} is more than {horizon_days:g} days ahead; visits can be ordered that far at most.",
            code="dispatch.window_too_far",
            field=field,
        )


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
            {
                "elder_id": elder_id,
                "service_code": service_code,
                "day": local_date(start),
                "today": local_date(now),
            },
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
    if start < now - dt.timedelta(minutes=row.past_grace_minutes):
        raise Invalid("The window may not start in the past.", code="dispatch.window_past")
    _check_horizon(start, now=now, horizon_days=row.horizon_days, field="window_start_at")
    end = window_end_at or start + dt.timedelta(minutes=30)
    if end < start:
        raise Invalid("The window ends before it starts.", code="dispatch.window_order")
    if row.max_window_hours >= 0 and end - start > dt.timedelta(hours=row.max_window_hours):
        raise Invalid(
            f"The window may be at most {row.max_window_hours:g} hours long.", code="dispatch.window_too_long"
        )
    if row.elder_status != "active":
        raise DispatchError(f"elder {elder_id} is unknown or not active")
    await require_assessment(
        session, elder_id=elder_id, service_code=service_code, day=local_date(start), today=local_date(now)
    )
    order = await _insert_order(
        session,
        {
            "elder_id": elder_id,
            "service_code": service_code,
            "window_start_at": start,
            "window_end_at": end,
            "duration_s": duration_s or max(min_on_site_minutes(service_code, row.price), 30) * 60,
            "asap": asap,
            "urgent": urgent,
            "requirements": requirements,
            "price_fen": price_fen(row.price, service_code, local_date(start)),
        },
        actor=actor.role,
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
    provider_id: int | None = None,
) -> tuple[RecurringOrder, list[ServiceOrder]]:
    """Register an RRULE series and materialise its visits of the next 14 days as orders.

    The series is agreed with ``provider_id`` — by default the one provider whose signed agreement
    with the elder covers the service on its first remaining day (422 ``dispatch.provider_required``
    when several do) — and signed agreements with it must cover every remaining day (409
    ``dispatch.agreement_required`` naming the first that is not)."""
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
    await _check_series_start(session, first_start_at, now=now)
    local_first = first_start_at.astimezone(SHANGHAI).replace(tzinfo=None)
    try:
        occurrences = expand(rrule, first_start_local=local_first, duration_s=duration_s)
    except RecurrenceError as exc:
        raise Invalid(str(exc), code="dispatch.rrule_invalid") from exc
    if not occurrences:
        raise Invalid("The rule yields no visits.", code="dispatch.rrule_empty")
    upcoming = [o.local_date for o in occurrences if o.start >= now] or [occurrences[-1].local_date]
    provider_id = await agreed_provider(
        session, elder_id=elder_id, service_code=service_code, provider_id=provider_id, days=upcoming
    )
    series = RecurringOrder(
        elder_id=elder_id,
        service_code=service_code,
        provider_id=provider_id,
        rrule=canonical_rule(rrule),  # one spelling, so the unique index sees the same series as such
        first_start_at=first_start_at,
        duration_s=duration_s,
        window_s=window_s,
        requirements=requirements,
        created_by_user_id=actor.user_id,
        state=SeriesState.ACTIVE.value,
        created_at=now,
    )
    try:
        # The partial unique index decides between identical requests racing each other.
        async with session.begin_nested():
            session.add(series)
            await session.flush()
    except IntegrityError as exc:
        if "uq_recurring_order_series" not in str(exc.orig):
            raise
        # Named, so the client can offer to resume (or read) that one; the caller may see it, as it
        # may order for the same elder.
        existing = await session.scalar(
            select(RecurringOrder.id).where(
                RecurringOrder.elder_id == series.elder_id,
                RecurringOrder.service_code == series.service_code,
                RecurringOrder.rrule == series.rrule,
                RecurringOrder.first_start_at == series.first_start_at,
                RecurringOrder.state != SeriesState.CANCELLED.value,
            )
        )
        raise Conflict(
            f"This elder already has the same series (recurring order {existing}: service, rule and "
            "first start); pause, resume or cancel that one instead.",
            code="dispatch.series_duplicate",
            recurring_order_id=existing,
        ) from None
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="recurring_order",
        entity_id=series.id,
        after=audit.snapshot(series),
    )
    orders = await materialise_series(session=session, series=series, now=now, actor=actor.role)
    log.info("dispatch.recurring.created", recurring_order_id=series.id, orders=len(orders))
    return series, orders


async def _check_series_start(
    session: AsyncSession, first_start_at: dt.datetime, *, now: dt.datetime
) -> None:
    """A series may start at most ``dispatch.series_lookback`` days back (policy; with no row valid,
    no bound) and no further ahead than the ordering horizon."""
    today = local_date(now)
    lookback, horizon = (
        await session.execute(
            select(policy_number_sql(SERIES_LOOKBACK_POLICY, "days", today), _horizon_days(today))
        )
    ).one()
    if lookback >= 0 and first_start_at < now - dt.timedelta(days=lookback):
        raise Invalid(
            f"first_start_at is more than {lookback:g} days back; start the series nearer today.",
            code="dispatch.series_start_too_early",
            field="first_start_at",
        )
    _check_horizon(first_start_at, now=now, horizon_days=horizon, field="first_start_at")


async def materialise_series(
    *, session: AsyncSession, series: RecurringOrder, now: dt.datetime, actor: Actor, strict: bool = True
) -> list[ServiceOrder]:
    """Create the series' orders starting in [now, now + horizon) that do not exist yet. An occurrence
    its agreement or the assessment its service needs does not cover refuses the whole call when
    ``strict`` (placing, resuming: 409); the job (``strict=False``) skips it, logged, for a later run."""
    local_first = series.first_start_at.astimezone(SHANGHAI).replace(tzinfo=None)
    occurrences = expand(
        series.rrule,
        first_start_local=local_first,
        duration_s=series.duration_s,
        window_from=now,
        window_to=now + dt.timedelta(days=RECURRING_HORIZON_DAYS),
    )
    # Every occurrence that has an order stays as it is (a visit the customer cancelled is not
    # re-created), except those cancelled by pausing the series.
    existing = set(
        await session.scalars(
            select(ServiceOrder.window_start_at).where(
                ServiceOrder.recurring_order_id == series.id,
                or_(
                    ServiceOrder.state != OrderState.CANCELLED.value,
                    ServiceOrder.cancel_reason.is_distinct_from(SERIES_PAUSED),
                ),
            )
        )
    )
    cover = await series_cover(session, series)
    created: list[ServiceOrder] = []
    for occ in occurrences:
        if occ.start in existing:
            continue
        try:
            if cover is not None:
                cover.require(occ.local_date)
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
        except (AgreementRequired, AssessmentRequired) as exc:
            if strict:
                raise
            log.warning(
                "dispatch.recurring.day_skipped",
                recurring_order_id=series.id,
                day=str(occ.local_date),
                code=exc.code,
            )
            continue
        order.recurring_order_id = series.id
        created.append(order)
    await session.flush()
    return created


async def materialise_recurring(*, session: AsyncSession, now: dt.datetime) -> int:
    """Job: create the next 14 days' orders of every active series. Returns how many were created.

    A series whose occurrence cannot be priced (no price valid that day) is logged and skipped. The
    active series are locked (in id order) for the run, so a pause or cancellation meanwhile waits and
    then cancels what the run made, or, committed first, keeps its series out of the run (the lock
    re-reads the state).
    """
    total = 0
    active = (
        select(RecurringOrder)
        .where(RecurringOrder.state == SeriesState.ACTIVE.value)
        .order_by(RecurringOrder.id)
        .with_for_update()
    )
    for series in list(await session.scalars(active)):
        try:
            async with session.begin_nested():
                made = await materialise_series(
                    session=session, series=series, now=now, actor=SYSTEM, strict=False
                )
                total += len(made)
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
class NextStep:
    """What happens next to an order, for the person who placed it: a stable ``code`` (the UI
    translates it), an English ``message``, and for the operator queue the instant by which the
    call centre has undertaken to act (policy ``dispatch.operator_pickup``; None if no policy)."""

    code: str
    message: str
    act_by: dt.datetime | None = None


def next_step_of(order: ServiceOrder, *, operator_pickup_s: int | None) -> NextStep | None:
    """The next step of ``order`` in its current state (None once a caregiver holds it or it is over).
    An escalated order's ``updated_at`` is when it entered the operator queue."""
    state = OrderState(order.state)
    if state == OrderState.ESCALATED:
        within = "" if operator_pickup_s is None else f" within {operator_pickup_s // 60} minutes"
        why = (
            "The caregiver had not set off and could no longer be there by the start."
            if order.escalation_reason == EscalationReason.START_AT_RISK.value
            else "No caregiver could take this order at once (nobody suitable is on shift nearby, or "
            "those asked did not accept)."
        )
        return NextStep(
            "operator_queue",
            f"{why} The call centre has been asked to assign one by hand{within}; the "
            "caregiver appears on this order when assigned. For an emergency call the hotline.",
            None if operator_pickup_s is None else order.updated_at + dt.timedelta(seconds=operator_pickup_s),
        )
    if state == OrderState.OFFERED:
        return NextStep(
            "awaiting_caregiver",
            "A caregiver has been asked to accept this order; if they decline or do not answer in time, "
            "the next one is asked, and after that the call centre.",
        )
    if state == OrderState.CREATED and not (order.asap or order.urgent):
        return NextStep(
            "awaiting_plan",
            "The order will be given to a caregiver in the provider's day plan, built the day before "
            "(a same-day order is offered to a caregiver at once).",
        )
    return None


async def operator_pickup_s(session: AsyncSession, day: dt.date) -> int | None:
    """Seconds within which the call centre undertakes to place an order from its queue (policy
    ``dispatch.operator_pickup`` valid on ``day``, else the seeded default), or None where a row sets
    it negative (no undertaking)."""
    seconds = await session.scalar(select(policy_number_sql("dispatch.operator_pickup", "seconds", day)))
    return int(seconds) if seconds is not None and seconds >= 0 else None


async def next_step(*, session: AsyncSession, order: ServiceOrder) -> NextStep | None:
    """:func:`next_step_of` with the policy valid on the day the order entered the operator queue."""
    if order.state != OrderState.ESCALATED.value:
        return next_step_of(order, operator_pickup_s=None)
    pickup = await operator_pickup_s(session, local_date(order.updated_at))
    return next_step_of(order, operator_pickup_s=pickup)


@dataclass(frozen=True, slots=True)
class OrderDetail:
    order: ServiceOrder
    transitions: list[OrderTransition]
    visit: Visit | None
    exceptions: list[VisitExceptionRecord]
    next_step: NextStep | None = None
    # The agreement behind it and the elder's assessment on its service day (as of ``now``).
    prerequisites: Prerequisites | None = None


async def order_detail(
    *, session: AsyncSession, actor: Principal, order_id: int, now: dt.datetime
) -> OrderDetail:
    order = await visible_order(session=session, actor=actor, order_id=order_id)
    detail = await _detail(session, order)
    start = detail.visit.scheduled_start_at if detail.visit is not None else order.window_start_at
    checks = await order_prerequisites(session, order=order, day=local_date(start), today=local_date(now))
    return dataclasses.replace(detail, prerequisites=checks)


async def _detail(session: AsyncSession, order: ServiceOrder) -> OrderDetail:
    moves = list(
        await session.scalars(
            select(OrderTransition).where(OrderTransition.order_id == order.id).order_by(OrderTransition.id)
        )
    )
    found = (await session.execute(_VISIT_OF_ORDER, {"order_id": order.id})).one_or_none()
    visit, flagged = found if found is not None else (None, False)
    exceptions = await exception_records(session, visit.id) if visit is not None and flagged else []
    return OrderDetail(order, moves, visit, exceptions, await next_step(session=session, order=order))


# The order's visit, and whether it has exceptions (most have none: their query is then skipped).
_VISIT_OF_ORDER = select(
    Visit, exists().where(VisitExceptionRecord.visit_id == Visit.id).correlate(Visit)
).where(Visit.order_id == bindparam("order_id", type_=BigInteger))


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
    who = actor.role
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
        await move(
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
        await move(
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
    await mark_day_dirty(session=session, order=order, now=now)
    log.info("dispatch.order.cancelled", order_id=order.id, consequence=outcome.consequence.value)
    return CancelOutcome(order, outcome.consequence, outcome.fee_fen)


async def mark_no_show(
    *, session: AsyncSession, actor: Principal, order_id: int, note: str, now: dt.datetime
) -> ServiceOrder:
    """Staff record that the visit did not happen (caregiver or elder absent)."""
    order = await visible_order(session=session, actor=actor, order_id=order_id)
    await move(
        session=session,
        order=order,
        target=OrderState.NO_SHOW,
        actor=actor.role,
        actor_user_id=actor.user_id,
        now=now,
        note=note[:200],
    )
    return order


async def assign_order(
    *, session: AsyncSession, actor: Principal, order_id: int, caregiver_id: int, now: dt.datetime
) -> Visit:
    """Hand an escalated order to a caregiver (operator queue). Every hard rule except distance is checked,
    including the provider's contract for the service on the service day (409 ``dispatch.not_contracted``)
    and, for an order of a series, the provider it is agreed with (409 ``dispatch.series_provider``);
    a provider admin may assign only its own caregivers."""
    order = await get_or_404(session, ServiceOrder, order_id, what="order")
    if actor.role == Role.PROVIDER_ADMIN:
        district = await elder_district(session, order.elder_id)
        serving = await session.scalar(
            select(ProviderDistrict.provider_id).where(
                ProviderDistrict.provider_id == actor.provider_id, ProviderDistrict.district_id == district
            )
        )
        if serving is None:  # an order it may not see: answered like a missing one
            raise not_found("order", order_id)
    else:
        await visible_order(session=session, actor=actor, order_id=order_id)
    cg = await require_ref(session, Caregiver, caregiver_id, field="caregiver_id", what="caregiver")
    if actor.role == Role.PROVIDER_ADMIN and cg.provider_id != actor.provider_id:
        raise Forbidden("You may assign only your own provider's caregivers.", code="scope.provider")
    request = await build_request(session=session, order=order, now=now)
    day = local_date(request.start)
    if not await session.scalar(select(contracted(cg.provider_id, order.service_code, day))):
        raise NotContracted(
            f"Provider {cg.provider_id} holds no contract for {order.service_code} on {day.isoformat()}.",
            provider_id=cg.provider_id,
            service_code=order.service_code,
            day=day.isoformat(),
        )
    await require_series_provider(session, order=order, caregiver_id=cg.id, provider_id=cg.provider_id)
    profiles = await caregiver_profiles(session, [cg], request.start, now=now)
    reason = static_rejection(profiles[cg.id], request, day) or timing_rejection(
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
    await move(
        session=session,
        order=order,
        target=OrderState.ACCEPTED,
        actor=actor.role,
        actor_user_id=actor.user_id,
        now=now,
        note="assigned by hand",
        values={"caregiver_id": cg.id, "provider_id": cg.provider_id},
    )
    visit = new_visit(order, caregiver_id=cg.id, provider_id=cg.provider_id, start=request.start)
    session.add(visit)
    await session.flush()
    return visit
