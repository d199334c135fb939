"""Day plans: the next day's scheduled orders (state ``created``, not as-soon-as-possible or urgent) are
planned per provider with :mod:`dispatch.routing`: which caregiver serves which order, in what sequence
and from when. Providers are taken in id order and each plans the orders of the districts it serves
that no other plan of the day holds. The plan is a proposal stored in ``day_plan`` / ``day_plan_stop``;
the orders stay ``created``. Staff and caregivers read the plans in their scope, and a plan is repaired
after sick calls and cancellations moving as little as possible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import ColumnElement, delete, exists, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.authz import Principal
from core.errors import Forbidden, Invalid, NotFound
from core.models import Caregiver, Community, District, Elder, ElderBlockedCaregiver, ProviderDistrict, Role
from dispatch import routing
from dispatch.common import day_start, load_policies, service_rule
from dispatch.matching import local_date
from dispatch.models import DayPlanStop, ProviderDayPlan, Service, ServiceOrder, Visit
from dispatch.offers import CONTINUITY_DAYS, caregiver_profiles
from dispatch.states import OrderState

log = structlog.get_logger(__name__)

DAYPLAN_SECONDS = 5.0  # the planner's search budget per provider at most, wall seconds
DAYPLAN_MIN_SECONDS = 0.2  # … and at least, growing by the next figure for each visit to plan
DAYPLAN_SECONDS_PER_VISIT = 0.02
DAYPLAN_READERS = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})
DAYPLAN_REPLANNERS = frozenset({Role.PROVIDER_ADMIN, Role.SUPERVISOR, Role.ADMIN})


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
    midnight = day_start(day)
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
    profiles = await caregiver_profiles(session, caregivers, midnight + dt.timedelta(hours=12))
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
    midnight = day_start(day)
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
    midnight = day_start(day)
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
    midnight = day_start(record.plan_on)
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
