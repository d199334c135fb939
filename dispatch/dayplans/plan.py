"""Building day plans: the next day's scheduled orders are planned per provider with
:mod:`dispatch.routing` within the policy's search budget and published (:mod:`.publish`); a provider
whose day is planned already only gets its new orders inserted, through a re-plan (:mod:`.replan`).
The nightly job, the dirty-plan job and a dispatcher's build on demand all come here; from the evening
cut-off, orders no plan could place go to the operator queue (:func:`escalate_unplaced`)."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import structlog
from sqlalchemy import ColumnElement, delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import SHANGHAI, local_date
from core.crud import get_or_404
from core.errors import Invalid, NotFound
from core.identity.authz import Principal
from dispatch import routing
from dispatch.common import StateConflict, change_state, contracted, day_start
from dispatch.dayplans.common import DayPlanView, dispatchers_provider, plan_view
from dispatch.dayplans.instance import only_orders, plan_instance
from dispatch.dayplans.publish import apply_plan, store_plan
from dispatch.dayplans.replan import replan_record
from dispatch.models import DayPlanDirty, DayPlanStop, ProviderDayPlan, ServiceOrder
from dispatch.policies import DayPlanBudget, load_policies
from dispatch.prerequisites import series_provider_allows
from dispatch.states import SYSTEM, EscalationReason, OrderState
from registry.models import Caregiver, Elder, Provider, ProviderDistrict

log = structlog.get_logger(__name__)

S = OrderState


async def dayplan_budget(session: AsyncSession, day: dt.date) -> DayPlanBudget:
    """The planner's budget valid on ``day`` (policy ``dispatch.dayplan``)."""
    return (await load_policies(session=session, day=day)).dayplan


def _unplanned_orders(provider_id: int, day: dt.date) -> Any:
    """Scheduled ``created`` orders of ``day`` in the provider's districts, of a service the provider
    is contracted for that day, that no plan holds yet (of a series: only if agreed with the provider)."""
    return (
        select(ServiceOrder.id)
        .join(Elder, Elder.id == ServiceOrder.elder_id)
        .where(
            *_waiting_for_a_plan(day),
            Elder.district_id.in_(
                select(ProviderDistrict.district_id).where(ProviderDistrict.provider_id == provider_id)
            ),
            contracted(provider_id, ServiceOrder.service_code, day),
            series_provider_allows(provider_id),
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
        policies = await load_policies(session=session, day=day)
        inst, _ = await plan_instance(
            session,
            provider_id=provider_id,
            day=day,
            order_ids=new_ids,
            extra_caregivers=(),
            now=now,
            policies=policies,
        )
        # The planner searches until its budget is spent; a small day does not need the full one.
        budget = policies.dayplan.seconds(len(new_ids))
        if time_limit_s is not None:
            budget = min(budget, time_limit_s)
        plan = only_orders(routing.plan_day(inst, time_limit_s=budget), set(new_ids))
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
        plan, visits = await apply_plan(
            session, record, plan, held={}, fixed={}, actor=SYSTEM, actor_user_id=None, now=now
        )
        await store_plan(session, record, plan, visits, day=day)
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
        await replan_record(
            session,
            record,
            cancelled=set(),
            unavailable=set(),
            extra=sorted(fresh),
            actor=SYSTEM,
            actor_user_id=None,
            now=now,
        )
    return record


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
    provider_id = dispatchers_provider(actor, provider_id, verb="build")
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
    return await plan_view(session, record)


async def escalate_unplaced(*, session: AsyncSession, day: dt.date, now: dt.datetime) -> list[int]:
    """From the evening cut-off on (policy ``dispatch.dayplan`` ``escalate_at_minute``, minutes after
    local midnight, seeded as 20:00), hand ``day``'s scheduled orders that no provider's plan could place
    to the operator queue (``created → escalated``, system), so that none waits unseen for a plan run
    that will not place it either. Before the cut-off they stay ``created`` for the next run, which may
    find room (a new caregiver, a cancellation). Returns the escalated order ids."""
    cutoff = (await load_policies(session=session, day=day)).escalate_at_minute
    local = now.astimezone(SHANGHAI)
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
                actor=SYSTEM,
                actor_user_id=None,
                now=now,
                note="no day plan could place it",
                values={"escalation_reason": EscalationReason.UNPLANNED.value},
            )
        except StateConflict:
            continue  # changed meanwhile (cancelled, dispatched): nothing to escalate
        escalated.append(oid)
    if escalated:
        log.info("dispatch.dayplan.escalated", day=day.isoformat(), orders=escalated)
    return escalated
