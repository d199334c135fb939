"""Recurring series (RFC 5545 RRULE standing orders) after they are placed: listing and reading them in
the actor's scope, pausing, resuming and cancelling. Placing a series and materialising its orders
ahead live in :mod:`dispatch.orders`.

Scope is that of orders: an elder or family member sees their elders' series, civil affairs those of
elders in their districts, call-centre staff and admins all, a provider admin (or caregiver) the
series it has served an order of, and a provider admin also the series agreed with its provider
(``provider_id``). A series out of scope is a 404. Those who may place a series (the elder, family,
an operator) and supervisors and admins may pause, resume and cancel it; a provider admin may not (it
withdraws single visits; the standing order is the customer's).

Resuming is activating again: signed agreements with the series' provider must cover every remaining
day (409 ``dispatch.agreement_required``, :mod:`dispatch.prerequisites`); a series placed before
agreements existed is bound to the provider that covers them.

State changes are conditional updates (``… WHERE state IN (:expected)``), audited. Pausing or
cancelling cancels the series' future orders that no caregiver holds yet (``created``, ``offered``,
``escalated``), free of charge; accepted visits and the past stay, so the history is kept and a
booked visit is cancelled one by one with its own notice rule. Resuming re-creates the occurrences
the pause cancelled.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import ColumnElement, false, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.crud import Paged, Window, in_key_range, page_of
from core.errors import Conflict, Forbidden, NotFound
from core.identity.authz import Principal
from core.identity.models import Role
from dispatch.common import order_clause
from dispatch.models import RecurringOrder, SeriesState, ServiceOrder
from dispatch.orders import SERIES_PAUSED, cancel_order, materialise_series
from dispatch.prerequisites import agreed_provider, remaining_days
from dispatch.states import NOT_DISPATCHED, OrderState
from registry.models import Elder
from registry.scope import sees_all_elders

log = structlog.get_logger(__name__)

SERIES_MANAGERS = frozenset({Role.ELDER, Role.FAMILY, Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})
# (action, states it may start from, state it leads to)
_MOVES: dict[str, tuple[frozenset[SeriesState], SeriesState]] = {
    "pause": (frozenset({SeriesState.ACTIVE}), SeriesState.PAUSED),
    "resume": (frozenset({SeriesState.PAUSED}), SeriesState.ACTIVE),
    "cancel": (frozenset({SeriesState.ACTIVE, SeriesState.PAUSED}), SeriesState.CANCELLED),
}


def series_clause(p: Principal) -> ColumnElement[bool]:
    """The series ``p`` may see (see the module docstring)."""
    if sees_all_elders(p):
        return true()
    if p.role == Role.CIVIL_AFFAIRS:
        if not p.district_ids:
            return false()
        return RecurringOrder.elder_id.in_(
            select(Elder.id).where(Elder.district_id.in_(sorted(p.district_ids)))
        )
    if p.role in (Role.PROVIDER_ADMIN, Role.CAREGIVER):
        served = select(ServiceOrder.recurring_order_id).where(
            ServiceOrder.recurring_order_id.is_not(None), order_clause(p)
        )
        if p.role == Role.PROVIDER_ADMIN and p.provider_id is not None:
            return or_(RecurringOrder.provider_id == p.provider_id, RecurringOrder.id.in_(served))
        return RecurringOrder.id.in_(served)
    if p.role in (Role.ELDER, Role.FAMILY):
        return RecurringOrder.elder_id.in_(sorted(p.elder_ids)) if p.elder_ids else false()
    return false()


async def list_series(
    *,
    session: AsyncSession,
    actor: Principal,
    window: Window,
    state: str | None = None,
    elder_id: int | None = None,
) -> Paged[RecurringOrder]:
    """The series in ``actor``'s scope, newest first."""
    stmt: Any = select(RecurringOrder).where(series_clause(actor))
    if state is not None:
        stmt = stmt.where(RecurringOrder.state == state)
    if elder_id is not None:
        stmt = stmt.where(RecurringOrder.elder_id == elder_id)
    return await page_of(
        session, stmt.order_by(RecurringOrder.created_at.desc(), RecurringOrder.id.desc()), window
    )


async def visible_series(*, session: AsyncSession, actor: Principal, series_id: int) -> RecurringOrder:
    """The series if ``actor`` may see it, else 404 ``recurring_order.not_found`` (also when it exists
    out of scope, so ids do not leak)."""
    found = (
        await session.scalar(
            select(RecurringOrder).where(RecurringOrder.id == series_id, series_clause(actor))
        )
        if in_key_range(series_id)
        else None
    )
    if found is None:
        raise NotFound(f"No recurring order with id {series_id}.", code="recurring_order.not_found")
    return found


@dataclass(frozen=True, slots=True)
class SeriesChange:
    series: RecurringOrder
    cancelled_order_ids: list[int]  # future orders no caregiver held, cancelled by this change
    created_order_ids: list[int]  # orders a resume created
    kept_order_ids: list[int]  # future visits a caregiver holds: cancel each on its own


async def change_series(
    *, session: AsyncSession, actor: Principal, series_id: int, action: str, now: dt.datetime
) -> SeriesChange:
    """Pause, resume or cancel a series (``action``); 409 ``recurring_order.invalid_transition`` from
    a state that does not allow it (a concurrent change included)."""
    series = await visible_series(session=session, actor=actor, series_id=series_id)
    if actor.role not in SERIES_MANAGERS:
        raise Forbidden("Your role may not change a recurring order.", code="auth.forbidden")
    expected, target = _MOVES[action]
    before = audit.snapshot(series)
    moved = await session.scalar(
        update(RecurringOrder)
        .where(RecurringOrder.id == series.id, RecurringOrder.state.in_(sorted(s.value for s in expected)))
        .values(state=target.value, updated_at=now)
        .returning(RecurringOrder.id)
    )
    if moved is None:
        await session.refresh(series)
        raise Conflict(
            f"A recurring order that is {series.state} cannot be {action}d.",
            code="recurring_order.invalid_transition",
            state=series.state,
        )
    await session.refresh(series)
    cancelled: list[int] = []
    created: list[int] = []
    if target == SeriesState.ACTIVE:
        days = remaining_days(series, now)
        if days:  # still agreed for every remaining day (binding a series placed before agreements)
            series.provider_id = await agreed_provider(
                session,
                elder_id=series.elder_id,
                service_code=series.service_code,
                provider_id=series.provider_id,
                days=days,
            )
            await session.flush()
        created = [
            o.id for o in await materialise_series(session=session, series=series, now=now, actor=actor.role)
        ]
    else:
        reason = SERIES_PAUSED if target == SeriesState.PAUSED else "series cancelled"
        future = select(ServiceOrder.id).where(
            ServiceOrder.recurring_order_id == series.id, ServiceOrder.window_start_at >= now
        )
        for oid in list(
            await session.scalars(
                future.where(ServiceOrder.state.in_(NOT_DISPATCHED)).order_by(ServiceOrder.id)
            )
        ):
            await cancel_order(session=session, actor=actor, order_id=oid, reason=reason, now=now)
            cancelled.append(oid)
    kept = list(
        await session.scalars(
            select(ServiceOrder.id)
            .where(
                ServiceOrder.recurring_order_id == series.id,
                ServiceOrder.window_start_at >= now,
                ServiceOrder.state == OrderState.ACCEPTED.value,
            )
            .order_by(ServiceOrder.id)
        )
    )
    audit.record(
        session,
        actor=actor,
        action=action,
        entity="recurring_order",
        entity_id=series.id,
        before=before,
        after={**audit.snapshot(series), "cancelled_order_ids": cancelled, "created_order_ids": created},
    )
    log.info(
        "dispatch.recurring.changed",
        recurring_order_id=series.id,
        action=action,
        cancelled=len(cancelled),
        created=len(created),
    )
    return SeriesChange(series, cancelled, created, kept)


async def series_detail(
    *, session: AsyncSession, actor: Principal, series_id: int
) -> tuple[RecurringOrder, list[ServiceOrder]]:
    """The series (404 out of scope) and its orders in the actor's order scope, by start."""
    found = await visible_series(session=session, actor=actor, series_id=series_id)
    orders = list(
        await session.scalars(
            select(ServiceOrder)
            .where(ServiceOrder.recurring_order_id == found.id, order_clause(actor))
            .order_by(ServiceOrder.window_start_at, ServiceOrder.id)
        )
    )
    return found, orders
