"""What every dispatch use case shares: the errors they raise, catalogue prices, the scope rule for
orders and visits (who may see which order, in Python and as SQL) and the one way an order changes
state. The dated policies they read are :mod:`dispatch.policies` (:func:`load_policies`).

Services flush; the caller (request, job) owns the transaction. Every state change goes through
:func:`change_state`, a conditional ``UPDATE … WHERE state = :expected`` that records the transition,
so two concurrent writers can never both move an order out of the same state; :func:`move` is the same
for a use case acting for a signed-in :class:`~core.identity.authz.Principal`, answering a refused
move with a 409.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    DateTime,
    String,
    Table,
    bindparam,
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
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute, selectinload

from core.clock import SHANGHAI, local_date
from core.crud import in_key_range, not_found
from core.errors import Conflict, DomainError
from core.identity.authz import Principal
from core.identity.models import Role
from core.policy import PolicyValue
from dispatch.models import (
    DayPlanDirty,
    OrderTransition,
    ProviderDayPlan,
    ProviderService,
    ServiceOrder,
    Visit,
    VisitExceptionRecord,
)

# The dated policies every use case reads, re-exported for the use cases that import them from here.
from dispatch.policies import OfferPolicy as OfferPolicy
from dispatch.policies import Policies as Policies
from dispatch.policies import SignOffPinPolicy as SignOffPinPolicy
from dispatch.policies import load_policies as load_policies
from dispatch.states import Actor, InvalidTransition, OrderState, transition
from registry.models import Elder
from registry.scope import sees_all_elders

Row = TypeVar("Row", ServiceOrder, Visit)


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
) -> ServiceOrder:
    """Move an order from ``expected`` to ``target`` if (and only if) it is still in ``expected``,
    recording the transition; returns the order as it now is (the session's object, refreshed).

    One statement: the conditional UPDATE and the transition's INSERT are data-modifying CTEs, and the
    updated row comes back to refresh the ORM object. Raises :class:`dispatch.states.InvalidTransition`
    for a transition the state machine forbids and :class:`StateConflict` if the order has meanwhile
    left ``expected``.
    """
    transition(expected, target, actor=actor, now=now)
    order_table = cast(Table, ServiceOrder.__table__)
    moved = (
        update(order_table)
        .where(order_table.c.id == order_id, order_table.c.state == expected.value)
        .values(state=target.value, updated_at=now, **dict(values or {}))
        .returning(*order_table.c)
        .cte("moved")
    )
    logged_move = (
        insert(OrderTransition)
        .from_select(
            ["order_id", "from_state", "to_state", "actor_role", "actor_user_id", "at", "note"],
            select(
                moved.c.id,
                literal(expected.value, String),
                literal(target.value, String),
                literal(actor.value, String),
                literal(actor_user_id, BigInteger),
                literal(now, DateTime(timezone=True)),
                literal(note, String),
            ),
        )
        .cte("logged_move")
    )
    stmt = select(ServiceOrder).from_statement(select(moved).add_cte(logged_move))
    order: ServiceOrder | None = (
        await session.scalars(stmt, execution_options={"populate_existing": True})
    ).one_or_none()
    if order is None:
        raise StateConflict(f"order {order_id} is no longer {expected.value}")
    return order


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


async def _visible(session: AsyncSession, actor: Principal, model: type[Row], key: int, what: str) -> Row:
    """The order or visit ``key`` if ``actor`` may see it (:func:`can_see_order`), read with its elder's
    district in one statement; else the 404 ``<what>.not_found`` of one that does not exist."""
    found = (
        (
            await session.execute(
                select(model, Elder.district_id)
                .join(Elder, Elder.id == model.elder_id)
                .where(model.id == bindparam("key", type_=BigInteger)),
                {"key": key},
            )
        ).one_or_none()
        if in_key_range(key)
        else None
    )
    if found is None:
        raise not_found(what, key)
    row, district_id = found
    if not can_see_order(
        actor,
        elder_id=row.elder_id,
        district_id=int(district_id),
        provider_id=row.provider_id,
        caregiver_id=row.caregiver_id,
    ):
        raise not_found(what, key)
    return row


async def visible_order(*, session: AsyncSession, actor: Principal, order_id: int) -> ServiceOrder:
    """The order if ``actor`` may see it, else 404 ``order.not_found``: the same answer for an order
    outside the actor's scope as for one that does not exist, so its existence is not revealed."""
    return await _visible(session, actor, ServiceOrder, order_id, "order")


async def visible_visit(*, session: AsyncSession, actor: Principal, visit_id: int) -> Visit:
    """The visit if ``actor`` may see it (same rule as its order), else the 404 ``visit.not_found`` of
    a visit that does not exist."""
    return await _visible(session, actor, Visit, visit_id, "visit")


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
    # change_state refreshed ``order`` (the session's object) from the updated row.


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
