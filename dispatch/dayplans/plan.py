"""Day plans: the next day's scheduled orders (state ``created``, not as-soon-as-possible or urgent, of
a service the provider holds a contract for on that day) are planned per provider with
:mod:`dispatch.routing`: which caregiver serves which order, in what sequence and from when. Providers
are taken in id order and each plans the orders of the districts it serves that no other plan of the
day holds. Plans are stored in ``day_plan`` / ``day_plan_stop``.

A plan is an assignment. Publishing it moves each planned order ``created → accepted`` (actor system,
note "day plan") through :func:`dispatch.common.change_state` and creates its visit at the planned
start, so the caregiver sees it in the app while real-time dispatch and the operator queue, which take
only ``created`` and ``escalated`` orders, leave it alone; an order whose state changed meanwhile is
left out (unassigned). A re-plan after sick calls and cancellations changes as little as possible:
visits under way (or booked outside the plan) are fixed points, a visit that keeps its caregiver keeps
its place and start, a sick caregiver's visits not yet started are reassigned in place, and one that
fits nowhere is withdrawn to the operator queue (``accepted → escalated``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import (
    ColumnElement,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from core.crud import get_or_404
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.identity.authz import Principal
from core.identity.models import Role
from core.policy import policy_number
from dispatch import routing
from dispatch.candidates import caregiver_profiles
from dispatch.common import (
    StateConflict,
    actor_of,
    change_state,
    contracted,
    day_start,
    load_policies,
    new_visit,
    service_rule,
)
from dispatch.matching import LOCAL_TZ, local_date
from dispatch.models import (
    DayPlanDirty,
    DayPlanStop,
    OrderTransition,
    ProviderDayPlan,
    Service,
    ServiceOrder,
    Visit,
)
from dispatch.states import BOOKED as BOOKED_STATES
from dispatch.states import Actor, OrderState
from registry.models import (
    Caregiver,
    Community,
    District,
    Elder,
    ElderBlockedCaregiver,
    Provider,
    ProviderDistrict,
)

log = structlog.get_logger(__name__)

DAYPLAN_READERS = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})
DAYPLAN_REPLANNERS = frozenset({Role.PROVIDER_ADMIN, Role.SUPERVISOR, Role.ADMIN})
S = OrderState
# A visit in these states has started (or is over): a fixed point of every re-plan.
UNDER_WAY = frozenset({S.EN_ROUTE, S.CHECKED_IN, S.CHECKED_OUT, S.VERIFIED, S.EXCEPTION, S.RATED, S.NO_SHOW})
# Visits that occupy their caregiver's time (a plan must route around those it does not hold).
BOOKED = tuple(sorted(s.value for s in BOOKED_STATES))


# Local minute of the evening before from which orders no plan could place go to the operator queue.
ESCALATE_AT_MINUTE = 20 * 60


@dataclass(frozen=True, slots=True)
class DayPlanBudget:
    """The planner's search budget per provider in wall seconds (policy ``dispatch.dayplan``, in ms):
    ``min_s`` plus ``per_visit_s`` for each visit to plan, at most ``max_s``."""

    max_s: float = 5.0
    min_s: float = 0.2
    per_visit_s: float = 0.02

    def seconds(self, visits: int) -> float:
        return max(0.0, min(self.max_s, self.min_s + self.per_visit_s * visits))


async def dayplan_budget(session: AsyncSession, day: dt.date) -> DayPlanBudget:
    """The budget valid on ``day``; fields absent from the policy keep the defaults above."""
    d = DayPlanBudget()
    row = (
        await session.execute(
            select(
                policy_number("dispatch.dayplan", "*", "max_ms", day, d.max_s * 1000),
                policy_number("dispatch.dayplan", "*", "min_ms", day, d.min_s * 1000),
                policy_number("dispatch.dayplan", "*", "per_visit_ms", day, d.per_visit_s * 1000),
            )
        )
    ).one()
    return DayPlanBudget(row[0] / 1000, row[1] / 1000, row[2] / 1000)


# --- The routing instance -----------------------------------------------------------------------------


def _visit_columns() -> tuple[Any, ...]:
    return (
        ServiceOrder.id,
        ServiceOrder.elder_id,
        ServiceOrder.service_code,
        Elder.lat,
        Elder.lon,
        Elder.gender,
        Elder.allows_any_gender_bathing,
        Community.is_village,
        District.kind,
    )


async def _plan_instance(
    session: AsyncSession,
    *,
    provider_id: int,
    day: dt.date,
    order_ids: Collection[int],
    extra_caregivers: Collection[int],
    fixed: Mapping[int, tuple[int, int]] | None = None,
    also_blocked: Mapping[int, Collection[int]] | None = None,
    now: dt.datetime,
) -> tuple[routing.DayPlanInstance, frozenset[int]]:
    """The routing instance of ``order_ids`` on ``day`` for the provider's caregivers (plus
    ``extra_caregivers``, e.g. ones in an earlier plan who have since left the provider).

    ``fixed`` pins orders under way to (caregiver, start in seconds after midnight); ``also_blocked``
    adds caregivers an order must not go to (the one who withdrew from it). Every visit the caregivers
    have that day outside these orders is added as a fixed visit too, so the plan routes around it;
    their order ids are returned with the instance (they are not the plan's)."""
    fixed = fixed or {}
    also_blocked = also_blocked or {}
    midnight = day_start(day)
    caregivers = list(
        await session.scalars(
            select(Caregiver)
            .where(or_(Caregiver.provider_id == provider_id, Caregiver.id.in_(sorted(extra_caregivers))))
            .order_by(Caregiver.id)
        )
    )
    cids = [int(c.id) for c in caregivers]
    own = (
        await session.execute(
            select(
                *_visit_columns(),
                ServiceOrder.window_start_at,
                ServiceOrder.window_end_at,
                ServiceOrder.duration_s,
            )
            .join(Elder, Elder.id == ServiceOrder.elder_id)
            .join(Community, Community.id == Elder.community_id)
            .join(District, District.id == Elder.district_id)
            .where(ServiceOrder.id.in_(sorted(order_ids)))
            .order_by(ServiceOrder.id)
        )
    ).all()
    outside = (
        await session.execute(
            select(*_visit_columns(), Visit.caregiver_id, Visit.scheduled_start_at, Visit.scheduled_end_at)
            .join(ServiceOrder, ServiceOrder.id == Visit.order_id)
            .join(Elder, Elder.id == ServiceOrder.elder_id)
            .join(Community, Community.id == Elder.community_id)
            .join(District, District.id == Elder.district_id)
            .where(
                Visit.caregiver_id.in_(cids),
                Visit.scheduled_start_at >= midnight,
                Visit.scheduled_start_at < midnight + dt.timedelta(days=1),
                ServiceOrder.state.in_(BOOKED),
                ServiceOrder.id.notin_(sorted(order_ids)),
            )
            .order_by(ServiceOrder.id)
        )
    ).all()
    policies = await load_policies(session=session, day=day)
    elders = sorted({int(r.elder_id) for r in own})
    rules = {s.code: service_rule(s) for s in await session.scalars(select(Service))}
    blocked: dict[int, set[int]] = {}
    for eid, cid in await session.execute(
        select(ElderBlockedCaregiver.elder_id, ElderBlockedCaregiver.caregiver_id).where(
            ElderBlockedCaregiver.elder_id.in_(elders)
        )
    ):
        blocked.setdefault(int(eid), set()).add(int(cid))
    preferred: dict[int, tuple[int, int]] = {}  # elder → (visits, caregiver): most visits, then lowest id
    since = now - dt.timedelta(days=policies.continuity_days)
    for eid, cid, n in await session.execute(
        select(Visit.elder_id, Visit.caregiver_id, func.count())
        .where(Visit.elder_id.in_(elders), Visit.check_in_at >= since)
        .group_by(Visit.elder_id, Visit.caregiver_id)
    ):
        best = preferred.get(int(eid))
        if best is None or (int(n), -int(cid)) > (best[0], -best[1]):
            preferred[int(eid)] = (int(n), int(cid))

    def secs(at: dt.datetime) -> int:
        return int((at - midnight).total_seconds())

    def plan_visit(r: Any, **kw: Any) -> routing.PlanVisit:
        return routing.PlanVisit(
            id=int(r.id),
            elder_id=int(r.elder_id),
            lat=r.lat,
            lon=r.lon,
            rural=bool(r.is_village) or r.kind == "rural",
            service=rules[r.service_code],
            elder_gender=r.gender,
            elder_allows_any_gender=r.allows_any_gender_bathing,
            **kw,
        )

    visits = []
    for r in own:
        oid, eid = int(r.id), int(r.elder_id)
        pin = fixed.get(oid)  # under way: its caregiver, at its start
        visits.append(
            plan_visit(
                r,
                window_open_s=secs(r.window_start_at) if pin is None else pin[1],
                window_close_s=secs(r.window_end_at) if pin is None else pin[1],
                duration_s=int(r.duration_s),
                blocked=frozenset({*blocked.get(eid, ()), *also_blocked.get(oid, ())}),
                preferred_caregiver=preferred[eid][1] if eid in preferred else None,
                assigned_to=None if pin is None else pin[0],
            )
        )
    for r in outside:
        start_s = secs(r.scheduled_start_at)
        visits.append(
            plan_visit(
                r,
                window_open_s=start_s,
                window_close_s=start_s,
                duration_s=max(0, secs(r.scheduled_end_at) - start_s),
                assigned_to=int(r.caregiver_id),
            )
        )
    profiles = await caregiver_profiles(session, caregivers, midnight + dt.timedelta(hours=12), now=now)
    inst = routing.DayPlanInstance(
        day=day,
        visits=tuple(visits),
        caregivers=tuple(
            routing.PlanCaregiver(profiles[int(c.id)], c.home_lat, c.home_lon, rural=False)
            for c in caregivers
        ),
        policy=routing.PlanPolicy(match=policies.match),
    )
    return inst, frozenset(int(r.id) for r in outside)


def _only(plan: routing.DayPlan, orders: Collection[int]) -> routing.DayPlan:
    """``plan`` without the stops of other orders (visits booked outside the plan)."""
    routes = {c: tuple(s for s in stops if s.visit_id in orders) for c, stops in plan.routes.items()}
    return routing.DayPlan(
        {c: r for c, r in routes.items() if r},
        tuple(v for v in plan.unassigned if v in orders),
        plan.travel_s,
        plan.continuity_misses,
        plan.objective,
    )


def _stops_of(plan: routing.DayPlan) -> dict[int, tuple[int, int]]:
    """order id → (caregiver id, start in seconds after local midnight)."""
    return {s.visit_id: (cid, s.start_s) for cid, stops in plan.routes.items() for s in stops}


# --- Publication: stops become assignments ------------------------------------------------------------


@dataclass(slots=True)
class _Held:
    """A published stop's visit as the re-plan found it (the order row locked)."""

    visit_id: int
    caregiver_id: int
    start_s: int
    duration_s: int


async def _apply(
    session: AsyncSession,
    record: ProviderDayPlan,
    plan: routing.DayPlan,
    *,
    held: Mapping[int, _Held],
    fixed: Mapping[int, int],
    actor: Actor,
    actor_user_id: int | None,
    now: dt.datetime,
) -> tuple[routing.DayPlan, dict[int, int]]:
    """Make ``plan`` the assignment: publish new stops, reassign published visits that moved, withdraw
    published visits left unplanned. ``held`` are the published visits not yet started (by order),
    ``fixed`` the visits under way (order → visit id). Returns the plan as applied (orders that could
    not be published are unassigned) and the visit of each planned order."""
    midnight = day_start(record.plan_on)
    visits: dict[int, int] = {}
    to_publish: list[tuple[int, int, int]] = []
    for cid, stops in plan.routes.items():
        for s in stops:
            h = held.get(s.visit_id)
            if s.visit_id in fixed:
                visits[s.visit_id] = fixed[s.visit_id]
            elif h is None:
                to_publish.append((s.visit_id, cid, s.start_s))
            else:
                visits[s.visit_id] = h.visit_id
                if (h.caregiver_id, h.start_s) != (cid, s.start_s):
                    await _reassign(
                        session,
                        record,
                        order_id=s.visit_id,
                        held=h,
                        caregiver_id=cid,
                        start=midnight + dt.timedelta(seconds=s.start_s),
                        actor=actor,
                        actor_user_id=actor_user_id,
                        now=now,
                    )
    for oid in plan.unassigned:
        if oid in held:
            await _withdraw(session, order_id=oid, visit_id=held[oid].visit_id, now=now)
    lost = set()
    orders = {
        o.id: o
        for o in await session.scalars(
            select(ServiceOrder).where(ServiceOrder.id.in_(sorted(oid for oid, _, _ in to_publish)))
        )
    }
    published: list[Visit] = []
    for oid, cid, start_s in to_publish:
        try:
            await change_state(
                session=session,
                order_id=oid,
                expected=S.CREATED,
                target=S.ACCEPTED,
                actor=Actor.SYSTEM,
                actor_user_id=None,
                now=now,
                note="day plan",
                values={"caregiver_id": cid, "provider_id": record.provider_id},
            )
        except StateConflict:  # taken, cancelled or dispatched meanwhile: not the plan's any more
            lost.add(oid)
            continue
        start = midnight + dt.timedelta(seconds=start_s)
        published.append(
            new_visit(orders[oid], caregiver_id=cid, provider_id=record.provider_id, start=start)
        )
    session.add_all(published)
    await session.flush()
    visits.update({v.order_id: v.id for v in published})
    if record.published_at is None:
        record.published_at = now
    if lost:
        log.info("dispatch.dayplan.publish_conflicts", plan_id=record.id, orders=sorted(lost))
        plan = routing.DayPlan(
            {c: tuple(s for s in stops if s.visit_id not in lost) for c, stops in plan.routes.items()},
            tuple(sorted({*plan.unassigned, *lost})),
            plan.travel_s,
            plan.continuity_misses,
            plan.objective,
        )
    return plan, visits


async def _reassign(
    session: AsyncSession,
    record: ProviderDayPlan,
    *,
    order_id: int,
    held: _Held,
    caregiver_id: int,
    start: dt.datetime,
    actor: Actor,
    actor_user_id: int | None,
    now: dt.datetime,
) -> None:
    """Move a published visit not yet started to ``caregiver_id`` / ``start`` in place, recorded as an
    ``accepted → accepted`` transition naming both caregivers. Conditional on the order still being
    ``accepted`` with the old caregiver (the re-plan holds its row lock, so this is a safeguard)."""
    moved = await session.scalar(
        update(ServiceOrder)
        .where(
            ServiceOrder.id == order_id,
            ServiceOrder.state == S.ACCEPTED.value,
            ServiceOrder.caregiver_id == held.caregiver_id,
        )
        .values(caregiver_id=caregiver_id, provider_id=record.provider_id, updated_at=now)
        .returning(ServiceOrder.id)
    )
    if moved is None:
        raise StateConflict(f"order {order_id} is no longer accepted by caregiver {held.caregiver_id}")
    await session.execute(
        update(Visit)
        .where(Visit.id == held.visit_id)
        .values(
            caregiver_id=caregiver_id,
            provider_id=record.provider_id,
            scheduled_start_at=start,
            scheduled_end_at=start + dt.timedelta(seconds=held.duration_s),
        )
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        insert(OrderTransition).values(
            order_id=order_id,
            from_state=S.ACCEPTED.value,
            to_state=S.ACCEPTED.value,
            actor_role=actor.value,
            actor_user_id=actor_user_id,
            at=now,
            note=f"day plan r{record.revision}: caregiver {held.caregiver_id} → {caregiver_id}"
            if caregiver_id != held.caregiver_id
            else f"day plan r{record.revision}: new start",
        )
    )


async def _withdraw(session: AsyncSession, *, order_id: int, visit_id: int, now: dt.datetime) -> None:
    """A published visit not yet started that no caregiver can take: the visit is deleted and the order
    goes to the operator queue (``accepted → escalated``), without a caregiver."""
    await session.execute(
        delete(Visit).where(Visit.id == visit_id).execution_options(synchronize_session=False)
    )
    await change_state(
        session=session,
        order_id=order_id,
        expected=S.ACCEPTED,
        target=S.ESCALATED,
        actor=Actor.SYSTEM,
        actor_user_id=None,
        now=now,
        note="day plan: no caregiver after re-plan",
        values={"caregiver_id": None, "provider_id": None},
    )


async def _store_plan(
    session: AsyncSession,
    record: ProviderDayPlan,
    plan: routing.DayPlan,
    visits: Mapping[int, int],
    *,
    day: dt.date,
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
            "visit_id": visits.get(stop.visit_id),
        }
        for cid, stops in plan.routes.items()
        for seq, stop in enumerate(stops, start=1)
    ]
    if rows:
        await session.execute(insert(DayPlanStop), rows)
    record.travel_s = plan.travel_s
    record.unassigned_order_ids = list(plan.unassigned)
    await session.flush()


# --- Building and repairing ---------------------------------------------------------------------------


def _unplanned_orders(provider_id: int, day: dt.date) -> Any:
    """Scheduled ``created`` orders of ``day`` in the provider's districts, of a service the provider
    is contracted for that day, that no plan holds yet."""
    return (
        select(ServiceOrder.id)
        .join(Elder, Elder.id == ServiceOrder.elder_id)
        .where(
            *_waiting_for_a_plan(day),
            Elder.district_id.in_(
                select(ProviderDistrict.district_id).where(ProviderDistrict.provider_id == provider_id)
            ),
            contracted(provider_id, ServiceOrder.service_code, day),
        )
        .order_by(ServiceOrder.id)
    )


def _waiting_for_a_plan(day: dt.date) -> tuple[ColumnElement[bool], ...]:
    """Scheduled orders of ``day`` still ``created`` that no plan of the day holds."""
    midnight = day_start(day)
    return (
        ServiceOrder.state == S.CREATED.value,
        ServiceOrder.asap.is_(False),
        ServiceOrder.urgent.is_(False),
        ServiceOrder.window_start_at >= midnight,
        ServiceOrder.window_start_at < midnight + dt.timedelta(days=1),
        ~exists().where(
            DayPlanStop.order_id == ServiceOrder.id,
            DayPlanStop.plan_id.in_(select(ProviderDayPlan.id).where(ProviderDayPlan.plan_on == day)),
        ),
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


async def _needs_repair(session: AsyncSession, record: ProviderDayPlan) -> bool:
    """The plan is not published yet (stored before plans were), a stop lost its visit (withdrawn
    by the caregiver or provider) or its order was cancelled, or an order it could not place is no
    longer waiting (cancelled, assigned by hand): a re-plan tidies it up."""
    if record.published_at is None:
        return True
    stale = (
        select(DayPlanStop.order_id)
        .join(ServiceOrder, ServiceOrder.id == DayPlanStop.order_id)
        .where(
            DayPlanStop.plan_id == record.id,
            or_(DayPlanStop.visit_id.is_(None), ServiceOrder.state == S.CANCELLED.value),
        )
    )
    gone = select(ServiceOrder.id).where(
        ServiceOrder.id.in_(list(record.unassigned_order_ids)), ServiceOrder.state != S.CREATED.value
    )
    return bool(await session.scalar(select(or_(stale.exists(), gone.exists()))))


def _plan_lock_key(provider_id: int, day: dt.date) -> int:
    """A stable signed 64-bit advisory-lock key for one provider's plan of one day."""
    name = f"dispatch.dayplan:{provider_id}:{day.isoformat()}"
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


async def plan_provider_day(
    *,
    session: AsyncSession,
    provider_id: int,
    day: dt.date,
    now: dt.datetime,
    time_limit_s: float | None = None,
) -> ProviderDayPlan | None:
    """Plan and publish the provider's unplanned scheduled orders of ``day``. A first build runs the
    full planner within the policy's budget (``time_limit_s`` caps it); when a plan exists, new orders
    are only inserted into it (nothing planned moves), and a plan with stops that lost their visit or
    order is repaired. Returns the plan, or None when there was nothing to plan.

    Builds of one provider's day are serialised by a transaction-scoped advisory lock (the nightly
    job, the dirty-plan job and a dispatcher's build on demand may meet): the second waits, then finds
    the first one's plan and changes nothing that is already planned."""
    await session.execute(select(func.pg_advisory_xact_lock(_plan_lock_key(provider_id, day))))
    new_ids = list(await session.scalars(_unplanned_orders(provider_id, day)))
    record = await session.scalar(
        select(ProviderDayPlan)
        .where(ProviderDayPlan.provider_id == provider_id, ProviderDayPlan.plan_on == day)
        .with_for_update()
    )
    if record is None and not new_ids:
        return None
    if record is None:
        inst, _ = await _plan_instance(
            session, provider_id=provider_id, day=day, order_ids=new_ids, extra_caregivers=(), now=now
        )
        # The planner searches until its budget is spent; a small day does not need the full one.
        budget = (await dayplan_budget(session, day)).seconds(len(new_ids))
        if time_limit_s is not None:
            budget = min(budget, time_limit_s)
        plan = _only(routing.plan_day(inst, time_limit_s=budget), set(new_ids))
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
        plan, visits = await _apply(
            session, record, plan, held={}, fixed={}, actor=Actor.SYSTEM, actor_user_id=None, now=now
        )
        await _store_plan(session, record, plan, visits, day=day)
        log.info(
            "dispatch.dayplan.published",
            provider_id=provider_id,
            day=day.isoformat(),
            orders=len(new_ids),
            visits=len(visits),
        )
        return record
    fresh = set(new_ids) - set(record.unassigned_order_ids)
    if fresh or await _needs_repair(session, record):
        await _replan_record(
            session,
            record,
            cancelled=set(),
            unavailable=set(),
            extra=sorted(fresh),
            actor=Actor.SYSTEM,
            actor_user_id=None,
            now=now,
        )
    return record


def _dispatchers_provider(actor: Principal, provider_id: int | None, *, verb: str) -> int:
    """The provider whose day a dispatcher builds or re-plans: a provider admin's own (naming another
    is 403 ``scope.provider``); supervisors and admins must name one."""
    if actor.role not in DAYPLAN_REPLANNERS:
        raise Forbidden(f"Your role may not {verb} a day plan.", code="auth.forbidden")
    if actor.role == Role.PROVIDER_ADMIN:
        if provider_id is not None and provider_id != actor.provider_id:
            raise Forbidden(f"You may {verb} only your own provider's day.", code="scope.provider")
        provider_id = actor.provider_id
    if provider_id is None:
        raise Invalid(f"Name the provider whose day to {verb}.", code="dayplan.provider_required")
    return provider_id


async def _replan_record(
    session: AsyncSession,
    record: ProviderDayPlan,
    *,
    cancelled: set[int],
    unavailable: set[int],
    extra: Sequence[int],
    actor: Actor,
    actor_user_id: int | None,
    now: dt.datetime,
) -> tuple[routing.DayPlan, int]:
    """Repair the stored plan with :func:`dispatch.routing.replan` and apply it; returns the plan and
    how many orders that kept a place changed caregiver.

    The plan's orders are locked first (in id order), so the caregiver app, cancellations and dispatch
    wait for the re-plan and then see its result. Each order is then one of: a published visit not yet
    started (``accepted``; it keeps its caregiver unless that one is unavailable), a visit under way
    (fixed), an order still to publish (``created``: unplanned before, a stop of a plan stored before
    plans were published, or a stop whose caregiver withdrew, who is then not given it again), or gone
    (cancelled, dispatched elsewhere, in the operator queue, deleted).
    """
    day = record.plan_on
    midnight = day_start(day)
    stops = {
        s.order_id: s
        for s in await session.scalars(select(DayPlanStop).where(DayPlanStop.plan_id == record.id))
    }
    all_ids = sorted({*stops, *record.unassigned_order_ids, *extra})
    facts = {
        int(r.id): r
        for r in await session.execute(
            select(ServiceOrder.id, ServiceOrder.state, ServiceOrder.duration_s, Visit.id.label("visit_id"))
            .outerjoin(Visit, Visit.order_id == ServiceOrder.id)
            .where(ServiceOrder.id.in_(all_ids))
            .order_by(ServiceOrder.id)
            .with_for_update(of=ServiceOrder)
        )
    }
    elsewhere = await _planned_elsewhere(session, plan_id=record.id, day=day)
    kept: dict[int, DayPlanStop] = {}  # stops that keep their place if their caregiver can
    held: dict[int, _Held] = {}
    fixed: dict[int, int] = {}  # order → visit id of a visit under way
    orphans: list[int] = []
    withdrew: dict[int, set[int]] = {}
    for oid in all_ids:
        fact, stop = facts.get(oid), stops.get(oid)
        if fact is None or oid in cancelled:
            continue
        state = S(fact.state)
        ours = stop is not None and fact.visit_id is not None and fact.visit_id == stop.visit_id
        if ours and stop is not None and state == S.ACCEPTED:
            kept[oid] = stop
            start_s = int((stop.planned_start_at - midnight).total_seconds())
            held[oid] = _Held(int(fact.visit_id), stop.caregiver_id, start_s, int(fact.duration_s))
        elif ours and stop is not None and state in UNDER_WAY:
            kept[oid] = stop
            fixed[oid] = int(fact.visit_id)
        elif state == S.CREATED and fact.visit_id is None:
            if stop is not None and record.published_at is None:
                kept[oid] = stop  # a proposal stored before plans were published: publish it as it is
            elif stop is not None:
                orphans.append(oid)
                withdrew[oid] = {stop.caregiver_id}
            elif oid not in elsewhere:
                orphans.append(oid)
    routes: dict[int, list[routing.Stop]] = {}
    for s in sorted(kept.values(), key=lambda s: (s.caregiver_id, s.seq)):
        start_s = int((s.planned_start_at - midnight).total_seconds())
        routes.setdefault(s.caregiver_id, []).append(routing.Stop(s.order_id, start_s))
    previous = routing.DayPlan(
        {c: tuple(r) for c, r in routes.items()}, tuple(orphans), record.travel_s, 0, 0
    )
    off = {*record.unavailable_caregiver_ids, *unavailable}
    # Caregivers who have left the provider since keep only their visits under way.
    left_provider = set(
        await session.scalars(
            select(Caregiver.id).where(
                Caregiver.id.in_(sorted(routes)), Caregiver.provider_id != record.provider_id
            )
        )
    )
    own = [*kept, *orphans]
    before = _stops_of(previous)
    inst, _ = await _plan_instance(
        session,
        provider_id=record.provider_id,
        day=day,
        order_ids=own,
        extra_caregivers=sorted({*routes, *off}),
        fixed={oid: before[oid] for oid in fixed},
        also_blocked=withdrew,
        now=now,
    )
    plan = routing.replan(
        inst,
        previous,
        unavailable=frozenset(off | left_provider),
        not_before_s=int((now - midnight).total_seconds()),
    )
    plan = _only(plan, set(own))
    after = _stops_of(plan)
    moved = sum(1 for oid, (cid, _) in after.items() if oid in before and before[oid][0] != cid)
    record.revision += 1
    record.replanned_at = now
    record.unavailable_caregiver_ids = sorted(off)
    plan, visits = await _apply(
        session,
        record,
        plan,
        held=held,
        fixed=fixed,
        actor=actor,
        actor_user_id=actor_user_id,
        now=now,
    )
    await _store_plan(session, record, plan, visits, day=day)
    log.info(
        "dispatch.dayplan.replanned",
        plan_id=record.id,
        revision=record.revision,
        unavailable=len(off),
        moved=moved,
        withdrawn=sum(1 for oid in plan.unassigned if oid in held),
        unassigned=len(plan.unassigned),
    )
    return plan, moved


async def plan_tomorrow(*, session: AsyncSession, now: dt.datetime, time_limit_s: float | None = None) -> int:
    """Job: plan and publish tomorrow's (Asia/Shanghai) scheduled orders for every provider with active
    caregivers, in provider id order; a provider already planned only gets its new orders inserted
    (rerunning the job changes nothing else). Returns the number of plans written or kept."""
    day = local_date(now) + dt.timedelta(days=1)
    written = await _plan_every_provider(session=session, day=day, now=now, time_limit_s=time_limit_s)
    await escalate_unplaced(session=session, day=day, now=now)
    return written


async def _plan_every_provider(
    *,
    session: AsyncSession,
    day: dt.date,
    now: dt.datetime,
    time_limit_s: float | None = None,
    planned_only: bool = False,
) -> int:
    """:func:`plan_provider_day` for every provider with active caregivers, in provider id order
    (``planned_only``: those with a plan of the day already). Returns the number of plans written or
    kept."""
    stmt = select(Caregiver.provider_id).where(Caregiver.is_active)
    if planned_only:
        planned = select(ProviderDayPlan.provider_id).where(ProviderDayPlan.plan_on == day)
        stmt = stmt.where(Caregiver.provider_id.in_(planned))
    providers = list(await session.scalars(stmt.distinct().order_by(Caregiver.provider_id)))
    written = 0
    for pid in providers:
        if await plan_provider_day(
            session=session, provider_id=int(pid), day=day, now=now, time_limit_s=time_limit_s
        ):
            written += 1
    return written


async def rebuild_dirty_plans(*, session: AsyncSession, now: dt.datetime) -> int:
    """Job: re-plan every day marked by :func:`mark_day_dirty` for every provider with minimal change
    (new orders are inserted, cancelled ones drop out, nothing else moves), then delete the marks it
    read, and only those: a mark committed during the re-plan stays for the next run, which sees its
    order. Marks of past days are dropped. Returns the number of days re-planned."""
    marks = (await session.execute(select(DayPlanDirty.id, DayPlanDirty.plan_on))).all()
    days = sorted({day for _, day in marks})
    today = local_date(now)
    rebuilt = 0
    for day in days:
        if day < today:
            continue
        # Today only existing plans are repaired (see build_day for why there is no first build).
        await _plan_every_provider(session=session, day=day, now=now, planned_only=day == today)
        await escalate_unplaced(session=session, day=day, now=now)
        rebuilt += 1
    if marks:
        await session.execute(delete(DayPlanDirty).where(DayPlanDirty.id.in_(sorted(i for i, _ in marks))))
    if rebuilt:
        log.info("dispatch.dayplan.dirty_rebuilt", days=[d.isoformat() for d in days if d >= today])
    return rebuilt


async def build_day(
    *, session: AsyncSession, actor: Principal, day: dt.date, provider_id: int | None, now: dt.datetime
) -> DayPlanView:
    """Build (or bring up to date) a provider's plan of ``day`` now, as the nightly job would: a
    dispatcher's build on demand. Provider admins build their own provider's day; supervisors and
    admins name the provider. Safe to repeat or to run while the job runs (see
    :func:`plan_provider_day`). 404 ``day_plan.nothing_to_plan`` when there is no plan and no order
    to plan; 422 ``dayplan.day_past`` for a day before today and ``dayplan.day_not_ahead`` for today
    (Asia/Shanghai)."""
    provider_id = _dispatchers_provider(actor, provider_id, verb="build")
    if day < local_date(now):
        raise Invalid(f"{day.isoformat()} is in the past.", code="dayplan.day_past")
    if day == local_date(now):
        # A first build plans whole-day windows, part of which have passed; today's new orders are
        # dispatched in real time, and a plan of today that exists is kept current by re-plans (which
        # never start a visit before now).
        raise Invalid(
            "Today is not built ahead: its orders are dispatched in real time (re-plan an existing plan).",
            code="dayplan.day_not_ahead",
        )
    await get_or_404(session, Provider, provider_id, what="provider")
    record = await plan_provider_day(session=session, provider_id=provider_id, day=day, now=now)
    if record is None:
        raise NotFound(
            f"Provider {provider_id} has no orders to plan on {day.isoformat()}.",
            code="day_plan.nothing_to_plan",
        )
    return await _view(session, record)


async def escalate_unplaced(*, session: AsyncSession, day: dt.date, now: dt.datetime) -> list[int]:
    """From the evening cut-off on (policy ``dispatch.dayplan`` ``escalate_at_minute``, minutes after
    local midnight, default 20:00), hand ``day``'s scheduled orders that no provider's plan could place
    to the operator queue (``created → escalated``, system), so that none waits unseen for a plan run
    that will not place it either. Before the cut-off they stay ``created`` for the next run, which may
    find room (a new caregiver, a cancellation). Returns the escalated order ids."""
    cutoff = (
        await session.execute(
            select(policy_number("dispatch.dayplan", "*", "escalate_at_minute", day, ESCALATE_AT_MINUTE))
        )
    ).scalar_one()
    local = now.astimezone(LOCAL_TZ)
    evening_before = local.date() == day - dt.timedelta(days=1) and local.hour * 60 + local.minute >= cutoff
    if not (evening_before or local.date() >= day):
        return []
    ids = list(
        await session.scalars(
            select(ServiceOrder.id).where(*_waiting_for_a_plan(day)).order_by(ServiceOrder.id)
        )
    )
    escalated = []
    for oid in ids:
        try:
            await change_state(
                session=session,
                order_id=oid,
                expected=S.CREATED,
                target=S.ESCALATED,
                actor=Actor.SYSTEM,
                actor_user_id=None,
                now=now,
                note="no day plan could place it",
            )
        except StateConflict:
            continue  # changed meanwhile (cancelled, dispatched): nothing to escalate
        escalated.append(oid)
    if escalated:
        log.info("dispatch.dayplan.escalated", day=day.isoformat(), orders=escalated)
    return escalated


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
    """Re-plan a provider's stored plan of ``day`` after caregivers call in sick, changing as little as
    possible: only the sick caregivers' visits not yet started (and orders left unplanned before) look
    for a new place, and are reassigned in place or, fitting nowhere, withdrawn to the operator queue;
    every other visit keeps its caregiver, sequence and start, and visits under way stay. Cancelled
    orders (cancel them first: ``cancelled_order_ids`` must be cancelled, else 409
    ``dayplan.order_not_cancelled``) and orders taken elsewhere drop out."""
    provider_id = _dispatchers_provider(actor, provider_id, verb="re-plan")
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
        live = set(
            await session.scalars(
                select(ServiceOrder.id).where(
                    ServiceOrder.id.in_(sorted(cancelled)), ServiceOrder.state != S.CANCELLED.value
                )
            )
        )
        if live:
            raise Conflict(
                f"Orders {sorted(live)} are not cancelled; cancel them first (POST /api/v1/orders/…/cancel).",
                code="dayplan.order_not_cancelled",
            )
    _, moved = await _replan_record(
        session,
        record,
        cancelled=cancelled,
        unavailable=sick,
        extra=(),
        actor=actor_of(actor),
        actor_user_id=actor.user_id,
        now=now,
    )
    return await _view(session, record, moved)


async def _view(session: AsyncSession, record: ProviderDayPlan, moved: int = 0) -> DayPlanView:
    """The plan with all its stops, by caregiver and sequence."""
    stops = list(
        await session.scalars(
            select(DayPlanStop)
            .where(DayPlanStop.plan_id == record.id)
            .order_by(DayPlanStop.caregiver_id, DayPlanStop.seq)
        )
    )
    return DayPlanView(record, stops, moved)
