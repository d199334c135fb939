"""The routing instance of a provider's day, read from the database: the orders to plan with their
elders, the caregivers with their matching profiles, and every visit those caregivers already have that
day as a fixed point (:func:`plan_instance`); and the plan narrowed back to the plan's own orders."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch import routing
from dispatch.candidates import caregiver_profiles
from dispatch.common import day_start
from dispatch.models import Service, ServiceOrder, Visit
from dispatch.policies import Policies, load_policies
from dispatch.states import BOOKED as BOOKED_STATES
from registry.models import Caregiver, Community, District, Elder, ElderBlockedCaregiver

# Visits that occupy their caregiver's time (a plan must route around those it does not hold).
BOOKED = tuple(sorted(s.value for s in BOOKED_STATES))


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


async def plan_instance(
    session: AsyncSession,
    *,
    provider_id: int,
    day: dt.date,
    order_ids: Collection[int],
    extra_caregivers: Collection[int],
    fixed: Mapping[int, tuple[int, int]] | None = None,
    also_blocked: Mapping[int, Collection[int]] | None = None,
    now: dt.datetime,
    policies: Policies | None = None,
) -> tuple[routing.DayPlanInstance, frozenset[int]]:
    """The routing instance of ``order_ids`` on ``day`` for the provider's caregivers (plus
    ``extra_caregivers``, e.g. ones in an earlier plan who have since left the provider).

    ``fixed`` pins orders under way to (caregiver, start in seconds after midnight); ``also_blocked``
    adds caregivers an order must not go to (the one who withdrew from it). Every visit the caregivers
    have that day outside these orders is added as a fixed visit too, so the plan routes around it;
    their order ids are returned with the instance (they are not the plan's).

    ``policies`` are those of ``day`` (read here when not given): travel, continuity and what each
    service asks of the caregiver that day."""
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
    if policies is None:
        policies = await load_policies(session=session, day=day)
    elders = sorted({int(r.elder_id) for r in own})
    catalogue = await session.execute(select(Service.code, Service.skill))
    rules = {code: policies.service(code, skill) for code, skill in catalogue}
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


def only_orders(plan: routing.DayPlan, orders: Collection[int]) -> routing.DayPlan:
    """``plan`` without the stops of other orders (visits booked outside the plan)."""
    routes = {c: tuple(s for s in stops if s.visit_id in orders) for c, stops in plan.routes.items()}
    return routing.DayPlan(
        {c: r for c, r in routes.items() if r},
        tuple(v for v in plan.unassigned if v in orders),
        plan.travel_s,
        plan.continuity_misses,
        plan.objective,
    )


def stops_of(plan: routing.DayPlan) -> dict[int, tuple[int, int]]:
    """order id → (caregiver id, start in seconds after local midnight)."""
    return {s.visit_id: (cid, s.start_s) for cid, stops in plan.routes.items() for s in stops}
