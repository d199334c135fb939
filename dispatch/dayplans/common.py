"""What the day-plan use cases share: who may read a plan and who may build or re-plan one, whose
day a dispatcher works on, and the plan as the API shows it (:class:`DayPlanView`, read by
:func:`day_plans`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Forbidden, Invalid
from core.identity.authz import Principal
from core.identity.models import Role
from dispatch.models import DayPlanStop, ProviderDayPlan

DAYPLAN_READERS = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})
DAYPLAN_REPLANNERS = frozenset({Role.PROVIDER_ADMIN, Role.SUPERVISOR, Role.ADMIN})


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


async def plan_view(session: AsyncSession, record: ProviderDayPlan, moved: int = 0) -> DayPlanView:
    """The plan with all its stops, by caregiver and sequence."""
    stops = list(
        await session.scalars(
            select(DayPlanStop)
            .where(DayPlanStop.plan_id == record.id)
            .order_by(DayPlanStop.caregiver_id, DayPlanStop.seq)
        )
    )
    return DayPlanView(record, stops, moved)


def dispatchers_provider(actor: Principal, provider_id: int | None, *, verb: str) -> int:
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
