"""Dispatch use cases: orders, transitions, offers (60 s), race-safe accept, escalation.

Services flush; the caller (request, job) owns the transaction. Every state change goes through
:func:`change_state`, a conditional ``UPDATE … WHERE state = :expected`` that records the transition,
so two concurrent writers can never both move an order out of the same state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Elder, PolicyValue
from dispatch.matching import CaregiverIndex, CaregiverProfile, MatchPolicy, OrderRequest, ServiceRule, match
from dispatch.models import Offer, OfferState, OrderTransition, Service, ServiceOrder, Visit
from dispatch.states import Actor, OrderState, transition

log = structlog.get_logger(__name__)


class DispatchError(ValueError):
    """A request that cannot be carried out; the message says why. Nothing was changed."""


class StateConflict(DispatchError):
    """The order was no longer in the expected state (someone else changed it first)."""


class OfferNotOpen(DispatchError):
    """The offer was already answered, expired, withdrawn, or is not this caregiver's."""


@dataclass(frozen=True, slots=True)
class OfferPolicy:
    offer_seconds: int = 60
    max_attempts: int = 3


def service_rule(s: Service) -> ServiceRule:
    return ServiceRule(
        code=s.code,
        skill=s.skill,
        certificate_kind=s.certificate_kind,
        max_certificate_level=s.max_certificate_level,
        same_gender=s.same_gender,
        min_minutes=s.min_minutes,
    )


async def price_on(*, session: AsyncSession, service_code: str, day: dt.date) -> int:
    """The unit price in fen valid on ``day`` (policy ``service.price_fen``, scope = service code).

    Raises :class:`DispatchError` if no price is valid that day.
    """
    value = await session.scalar(
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
    if value is None or "fen" not in value:
        raise DispatchError(f"service {service_code} has no price valid on {day.isoformat()}")
    return int(value["fen"])


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
    """Create an order in state ``created``; the price of the service date is snapshotted (fen)."""
    if window_end_at < window_start_at:
        raise DispatchError("window end is before its start")
    if duration_s <= 0:
        raise DispatchError("duration must be positive")
    if window_start_at.tzinfo is None:
        raise DispatchError("times must carry a time zone")
    service = await session.get(Service, service_code)
    if service is None or not service.is_active:
        raise DispatchError(f"unknown or inactive service {service_code!r}")
    elder = await session.get(Elder, elder_id)
    if elder is None or elder.status != "active":
        raise DispatchError(f"elder {elder_id} is unknown or not active")
    from dispatch.matching import local_date

    price = await price_on(session=session, service_code=service_code, day=local_date(window_start_at))
    order = ServiceOrder(
        elder_id=elder_id,
        service_code=service_code,
        window_start_at=window_start_at,
        window_end_at=window_end_at,
        duration_s=duration_s,
        asap=asap,
        urgent=urgent,
        requirements=requirements,
        price_fen=price,
        state=OrderState.CREATED.value,
        created_by_role=actor.value,
        created_by_user_id=actor_user_id,
        created_at=now,
        updated_at=now,
    )
    session.add(order)
    await session.flush()
    session.add(
        OrderTransition(
            order_id=order.id,
            from_state="none",
            to_state=OrderState.CREATED.value,
            actor_role=actor.value,
            actor_user_id=actor_user_id,
            at=now,
        )
    )
    await session.flush()
    log.info("dispatch.order.created", order_id=order.id, elder_id=elder_id, service=service_code)
    return order


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
) -> None:
    """Move an order from ``expected`` to ``target`` if (and only if) it is still in ``expected``.

    Raises :class:`dispatch.states.InvalidTransition` for a transition the state machine forbids and
    :class:`StateConflict` if the order has meanwhile left ``expected``.
    """
    transition(expected, target, actor=actor, now=now)
    moved = await session.scalar(
        update(ServiceOrder)
        .where(ServiceOrder.id == order_id, ServiceOrder.state == expected.value)
        .values(state=target.value, updated_at=now, **dict(values or {}))
        .returning(ServiceOrder.id)
    )
    if moved is None:
        raise StateConflict(f"order {order_id} is no longer {expected.value}")
    await session.execute(
        insert(OrderTransition).values(
            order_id=order_id,
            from_state=expected.value,
            to_state=target.value,
            actor_role=actor.value,
            actor_user_id=actor_user_id,
            at=now,
            note=note,
        )
    )


async def make_offer(
    *,
    session: AsyncSession,
    order_id: int,
    caregiver_id: int,
    score: float,
    eta_s: int,
    now: dt.datetime,
    policy: OfferPolicy,
    actor: Actor = Actor.SYSTEM,
) -> Offer:
    """Offer a ``created`` (or, by staff, an ``escalated``) order to one caregiver until now + 60 s."""
    order = await session.get(ServiceOrder, order_id, populate_existing=True)
    if order is None:
        raise DispatchError(f"order {order_id} not found")
    await change_state(
        session=session,
        order_id=order_id,
        expected=OrderState(order.state),
        target=OrderState.OFFERED,
        actor=actor,
        actor_user_id=None,
        now=now,
        values={"offer_attempts": ServiceOrder.offer_attempts + 1},
    )
    offer = Offer(
        order_id=order_id,
        caregiver_id=caregiver_id,
        rank=order.offer_attempts + 1,
        score=score,
        eta_s=eta_s,
        state=OfferState.PENDING.value,
        offered_at=now,
        deadline_at=now + dt.timedelta(seconds=policy.offer_seconds),
    )
    session.add(offer)
    await session.flush()
    log.info("dispatch.offer.made", order_id=order_id, offer_id=offer.id, caregiver_id=caregiver_id)
    return offer


async def accept_offer(*, session: AsyncSession, offer_id: int, caregiver_id: int, now: dt.datetime) -> Visit:
    """Accept an open offer. Of any number of simultaneous accepts exactly one succeeds.

    The offer row is claimed with a conditional UPDATE (``state = 'pending'`` and before the deadline);
    PostgreSQL row locking makes every concurrent claimer wait and then re-check the condition, so
    only the first commit wins and the others get :class:`OfferNotOpen`.
    """
    order_id = await session.scalar(
        update(Offer)
        .where(
            Offer.id == offer_id,
            Offer.caregiver_id == caregiver_id,
            Offer.state == OfferState.PENDING.value,
            Offer.deadline_at >= now,
        )
        .values(state=OfferState.ACCEPTED.value, responded_at=now)
        .returning(Offer.order_id)
    )
    if order_id is None:
        raise OfferNotOpen(f"offer {offer_id} is not open for caregiver {caregiver_id}")
    await change_state(
        session=session,
        order_id=order_id,
        expected=OrderState.OFFERED,
        target=OrderState.ACCEPTED,
        actor=Actor.CAREGIVER,
        actor_user_id=None,
        now=now,
        values={"caregiver_id": caregiver_id},
    )
    order = await session.get(ServiceOrder, order_id, populate_existing=True)
    if order is None:  # pragma: no cover - the UPDATE above just found it
        raise DispatchError(f"order {order_id} vanished")
    start = max(order.window_start_at, now) if order.asap else order.window_start_at
    visit = Visit(
        order_id=order_id,
        service_code=order.service_code,
        elder_id=order.elder_id,
        caregiver_id=caregiver_id,
        provider_id=order.provider_id,
        scheduled_start_at=start,
        scheduled_end_at=start + dt.timedelta(seconds=order.duration_s),
    )
    session.add(visit)
    await session.flush()
    log.info("dispatch.offer.accepted", order_id=order_id, offer_id=offer_id, caregiver_id=caregiver_id)
    return visit


async def decline_offer(*, session: AsyncSession, offer_id: int, caregiver_id: int, now: dt.datetime) -> int:
    """Decline an open offer; the order goes back to ``created`` for the next candidate. Returns its id."""
    order_id = await session.scalar(
        update(Offer)
        .where(
            Offer.id == offer_id, Offer.caregiver_id == caregiver_id, Offer.state == OfferState.PENDING.value
        )
        .values(state=OfferState.DECLINED.value, responded_at=now)
        .returning(Offer.order_id)
    )
    if order_id is None:
        raise OfferNotOpen(f"offer {offer_id} is not open for caregiver {caregiver_id}")
    await change_state(
        session=session,
        order_id=order_id,
        expected=OrderState.OFFERED,
        target=OrderState.CREATED,
        actor=Actor.CAREGIVER,
        actor_user_id=None,
        now=now,
        note="declined",
    )
    return int(order_id)


async def expire_offers(*, session: AsyncSession, now: dt.datetime) -> list[int]:
    """Expire every open offer past its deadline; their orders return to ``created``. Returns order ids."""
    rows = await session.scalars(
        update(Offer)
        .where(Offer.state == OfferState.PENDING.value, Offer.deadline_at < now)
        .values(state=OfferState.EXPIRED.value)
        .returning(Offer.order_id)
    )
    order_ids = sorted(set(rows))
    for oid in order_ids:
        await change_state(
            session=session,
            order_id=oid,
            expected=OrderState.OFFERED,
            target=OrderState.CREATED,
            actor=Actor.SYSTEM,
            actor_user_id=None,
            now=now,
            note="offer expired",
        )
    return order_ids


async def offer_next(
    *,
    session: AsyncSession,
    order_id: int,
    request: OrderRequest,
    index: CaregiverIndex,
    profiles: Mapping[int, CaregiverProfile],
    match_policy: MatchPolicy,
    offer_policy: OfferPolicy,
    now: dt.datetime,
) -> Offer | None:
    """Offer a ``created`` order to the best caregiver not yet asked; escalate to the operator queue
    after ``max_attempts`` offers or when nobody is eligible. Returns the new offer, or None if escalated.
    """
    order = await session.get(ServiceOrder, order_id, populate_existing=True)
    if order is None:
        raise DispatchError(f"order {order_id} not found")
    if order.state != OrderState.CREATED.value:
        raise StateConflict(f"order {order_id} is {order.state}, not created")
    asked = set(await session.scalars(select(Offer.caregiver_id).where(and_(Offer.order_id == order_id))))
    if order.offer_attempts < offer_policy.max_attempts:
        result = match(
            request, index=index, profiles=profiles, policy=match_policy, now=now, limit=len(asked) + 5
        )
        for cand in result.candidates:
            if cand.caregiver_id not in asked:
                return await make_offer(
                    session=session,
                    order_id=order_id,
                    caregiver_id=cand.caregiver_id,
                    score=cand.score,
                    eta_s=cand.eta_s,
                    now=now,
                    policy=offer_policy,
                )
    await change_state(
        session=session,
        order_id=order_id,
        expected=OrderState.CREATED,
        target=OrderState.ESCALATED,
        actor=Actor.SYSTEM,
        actor_user_id=None,
        now=now,
        note=f"after {order.offer_attempts} offers",
    )
    log.info("dispatch.order.escalated", order_id=order_id, attempts=order.offer_attempts)
    return None
