"""Publication: a plan's stops become assignments. A new stop moves its order ``created → accepted``
(system, note "day plan") and creates its visit at the planned start; a published visit that moved is
reassigned in place; one left unplanned is withdrawn to the operator queue (``accepted → escalated``).
The stops are then stored in ``day_plan_stop``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch import routing
from dispatch.common import StateConflict, change_state, day_start, new_visit
from dispatch.models import DayPlanStop, OrderTransition, ProviderDayPlan, ServiceOrder, Visit
from dispatch.states import SYSTEM, Actor, EscalationReason, OrderState

log = structlog.get_logger(__name__)

S = OrderState


@dataclass(slots=True)
class Held:
    """A published stop's visit as the re-plan found it (the order row locked)."""

    visit_id: int
    caregiver_id: int
    start_s: int
    duration_s: int


async def apply_plan(
    session: AsyncSession,
    record: ProviderDayPlan,
    plan: routing.DayPlan,
    *,
    held: Mapping[int, Held],
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
                actor=SYSTEM,
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
    held: Held,
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
        actor=SYSTEM,
        actor_user_id=None,
        now=now,
        note="day plan: no caregiver after re-plan",
        values={
            "caregiver_id": None,
            "provider_id": None,
            "escalation_reason": EscalationReason.PLAN_WITHDRAWN.value,
        },
    )


async def store_plan(
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
