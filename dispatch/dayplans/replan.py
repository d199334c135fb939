"""Re-planning a stored plan after sick calls and cancellations, changing as little as possible:
visits under way (or booked outside the plan) are fixed points, a visit that keeps its caregiver keeps
its place and start, a sick caregiver's visits not yet started are reassigned in place, and one that
fits nowhere is withdrawn to the operator queue. :func:`replan_record` is also how a build inserts new
orders into a plan that exists (:func:`dispatch.dayplans.plan.plan_provider_day`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict, Invalid, NotFound
from core.identity.authz import Principal
from dispatch import routing
from dispatch.common import day_start
from dispatch.dayplans.common import DayPlanView, dispatchers_provider, plan_view
from dispatch.dayplans.instance import only_orders, plan_instance, stops_of
from dispatch.dayplans.publish import Held, apply_plan, store_plan
from dispatch.models import DayPlanStop, ProviderDayPlan, ServiceOrder, Visit
from dispatch.states import Actor, OrderState
from registry.models import Caregiver

log = structlog.get_logger(__name__)

S = OrderState
# A visit in these states has started (or is over): a fixed point of every re-plan.
UNDER_WAY = frozenset({S.EN_ROUTE, S.CHECKED_IN, S.CHECKED_OUT, S.VERIFIED, S.EXCEPTION, S.RATED, S.NO_SHOW})


async def _planned_elsewhere(session: AsyncSession, *, plan_id: int, day: dt.date) -> set[int]:
    """Orders that another plan of ``day`` has given a caregiver."""
    return set(
        await session.scalars(
            select(DayPlanStop.order_id)
            .join(ProviderDayPlan, ProviderDayPlan.id == DayPlanStop.plan_id)
            .where(ProviderDayPlan.plan_on == day, ProviderDayPlan.id != plan_id)
        )
    )


async def replan_record(
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
    held: dict[int, Held] = {}
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
            held[oid] = Held(int(fact.visit_id), stop.caregiver_id, start_s, int(fact.duration_s))
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
    before = stops_of(previous)
    inst, _ = await plan_instance(
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
    plan = only_orders(plan, set(own))
    after = stops_of(plan)
    moved = sum(1 for oid, (cid, _) in after.items() if oid in before and before[oid][0] != cid)
    record.revision += 1
    record.replanned_at = now
    record.unavailable_caregiver_ids = sorted(off)
    plan, visits = await apply_plan(
        session,
        record,
        plan,
        held=held,
        fixed=fixed,
        actor=actor,
        actor_user_id=actor_user_id,
        now=now,
    )
    await store_plan(session, record, plan, visits, day=day)
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
    provider_id = dispatchers_provider(actor, provider_id, verb="re-plan")
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
    _, moved = await replan_record(
        session,
        record,
        cancelled=cancelled,
        unavailable=sick,
        extra=(),
        actor=actor.role,
        actor_user_id=actor.user_id,
        now=now,
    )
    return await plan_view(session, record, moved)
