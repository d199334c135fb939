"""Real-time dispatch: the 60 s offer to one caregiver, the race-safe accept, decline and expiry, and
the choice of the next caregiver or escalation to the operator queue. :func:`dispatch_order` reads an
order's facts and its nearest eligible caregivers (:mod:`dispatch.candidates`, two statements) and
lets :mod:`dispatch.matching` rank them; every change of an offer or its order is a conditional
``UPDATE`` (:func:`dispatch.common.change_state`).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from typing import Any, cast

import structlog
from sqlalchemy import (
    BigInteger,
    DateTime,
    Double,
    Integer,
    String,
    Table,
    bindparam,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from core.crud import in_key_range
from core.identity.models import Role
from dispatch.candidates import dispatch_facts, nearest_candidates
from dispatch.common import (
    DispatchError,
    OfferNotOpen,
    OfferPolicy,
    StateConflict,
    change_state,
    logged,
    new_visit,
)
from dispatch.matching import CaregiverIndex, CaregiverProfile, MatchPolicy, OrderRequest, match
from dispatch.models import Offer, OfferState, ServiceOrder, Visit
from dispatch.states import SYSTEM, Actor, EscalationReason, OrderState, transition
from registry.models import Caregiver

log = structlog.get_logger(__name__)


@functools.cache
def _make_offer_statement() -> Any:
    """Built once: the order's conditional move to ``offered`` (``offer_attempts`` + 1), its
    transition row and the offer row, returning the offer (no row: the order had left ``expected``)."""
    at = bindparam("at", type_=DateTime(timezone=True))
    moved = (
        update(ServiceOrder)
        .where(
            ServiceOrder.id == bindparam("order_id", type_=BigInteger),
            ServiceOrder.state == bindparam("expected", type_=String),
        )
        .values(state=OrderState.OFFERED.value, updated_at=at, offer_attempts=ServiceOrder.offer_attempts + 1)
        .returning(ServiceOrder.id, ServiceOrder.offer_attempts)
        .cte("moved")
    )
    made = (
        insert(cast(Table, Offer.__table__))
        .from_select(
            ["order_id", "caregiver_id", "rank", "score", "eta_s", "state", "offered_at", "deadline_at"],
            select(
                moved.c.id,
                bindparam("offer_caregiver_id", type_=BigInteger),
                moved.c.offer_attempts,
                bindparam("score", type_=Double),
                bindparam("eta_s", type_=Integer),
                literal(OfferState.PENDING.value, String),
                at,
                bindparam("deadline_at", type_=DateTime(timezone=True)),
            ),
        )
        .returning(*Offer.__table__.c)
        .cte("made")
    )
    # A SELECT over the data-modifying CTEs (an ORM INSERT given parameters would be a bulk insert).
    return select(aliased(Offer, made)).add_cte(logged(moved.c.id).cte("logged"))


async def make_offer(
    *,
    session: AsyncSession,
    order_id: int,
    caregiver_id: int,
    score: float,
    eta_s: int,
    now: dt.datetime,
    policy: OfferPolicy,
    actor: Actor = SYSTEM,
    expected: OrderState | None = None,
) -> Offer:
    """Offer a ``created`` (or, by staff, an ``escalated``) order to one caregiver until now + 60 s.

    ``expected`` is the order's current state if the caller has just read it (else it is read here).
    The state change, its transition row and the offer row are one statement: one round trip.
    """
    if expected is None:
        state = await session.scalar(select(ServiceOrder.state).where(ServiceOrder.id == order_id))
        if state is None:
            raise DispatchError(f"order {order_id} not found")
        expected = OrderState(state)
    transition(expected, OrderState.OFFERED, actor=actor, now=now)
    params = {
        "order_id": order_id,
        "expected": expected.value,
        "from_state": expected.value,
        "to_state": OrderState.OFFERED.value,
        "actor_role": actor.value,
        "actor_user_id": None,
        "at": now,
        "offer_caregiver_id": caregiver_id,  # not "caregiver_id": the UPDATE would take it as a SET value
        "score": score,
        "eta_s": eta_s,
        "deadline_at": now + dt.timedelta(seconds=policy.offer_seconds),
    }
    offer: Offer | None = (await session.scalars(_make_offer_statement(), params)).one_or_none()
    if offer is None:
        raise StateConflict(f"order {order_id} is no longer {expected.value}")
    # Keep a loaded copy of the order in step without another round trip.
    order = session.identity_map.get(identity_key(ServiceOrder, order_id))
    if isinstance(order, ServiceOrder):
        set_committed_value(order, "state", OrderState.OFFERED.value)
        set_committed_value(order, "offer_attempts", offer.rank)
        set_committed_value(order, "updated_at", now)
    log.info("dispatch.offer.made", order_id=order_id, offer_id=offer.id, caregiver_id=caregiver_id)
    return offer


async def _close_offer(
    session: AsyncSession,
    *,
    offer_id: int,
    caregiver_id: int,
    to: OfferState,
    now: dt.datetime,
    in_time: bool,
) -> int:
    """Move this caregiver's pending offer to ``to`` with one conditional UPDATE (the race-safe step);
    ``in_time`` also requires the deadline not to have passed. Returns the order id, or raises
    :class:`OfferNotOpen` when the offer was not open (taken, answered, expired or someone else's)."""
    if not in_key_range(offer_id):  # no offer has an id the bigint column cannot hold
        raise OfferNotOpen(f"offer {offer_id} is not open for caregiver {caregiver_id}")
    conditions = [
        Offer.id == offer_id,
        Offer.caregiver_id == caregiver_id,
        Offer.state == OfferState.PENDING.value,
    ]
    if in_time:
        conditions.append(Offer.deadline_at >= now)
    order_id = await session.scalar(
        update(Offer).where(*conditions).values(state=to.value, responded_at=now).returning(Offer.order_id)
    )
    if order_id is None:
        raise OfferNotOpen(f"offer {offer_id} is not open for caregiver {caregiver_id}")
    return int(order_id)


async def accept_offer(*, session: AsyncSession, offer_id: int, caregiver_id: int, now: dt.datetime) -> Visit:
    """Accept an open offer. Of any number of simultaneous accepts exactly one succeeds.

    The offer row is claimed with a conditional UPDATE (``state = 'pending'`` and before the deadline);
    PostgreSQL row locking makes every concurrent claimer wait and then re-check the condition, so
    only the first commit wins and the others get :class:`OfferNotOpen`.
    """
    order_id = await _close_offer(
        session, offer_id=offer_id, caregiver_id=caregiver_id, to=OfferState.ACCEPTED, now=now, in_time=True
    )
    await change_state(
        session=session,
        order_id=order_id,
        expected=OrderState.OFFERED,
        target=OrderState.ACCEPTED,
        actor=Role.CAREGIVER,
        actor_user_id=None,
        now=now,
        values={
            "caregiver_id": caregiver_id,
            "provider_id": select(Caregiver.provider_id)
            .where(Caregiver.id == caregiver_id)
            .scalar_subquery(),
        },
    )
    order = await session.get(ServiceOrder, order_id, populate_existing=True)
    if order is None:  # pragma: no cover - the UPDATE above just found it
        raise DispatchError(f"order {order_id} vanished")
    start = max(order.window_start_at, now) if order.asap else order.window_start_at
    visit = new_visit(order, caregiver_id=caregiver_id, provider_id=order.provider_id, start=start)
    session.add(visit)
    await session.flush()
    log.info("dispatch.offer.accepted", order_id=order_id, offer_id=offer_id, caregiver_id=caregiver_id)
    return visit


async def decline_offer(*, session: AsyncSession, offer_id: int, caregiver_id: int, now: dt.datetime) -> int:
    """Decline an open offer; the order goes back to ``created`` for the next candidate. Returns its id."""
    order_id = await _close_offer(
        session, offer_id=offer_id, caregiver_id=caregiver_id, to=OfferState.DECLINED, now=now, in_time=False
    )
    await change_state(
        session=session,
        order_id=order_id,
        expected=OrderState.OFFERED,
        target=OrderState.CREATED,
        actor=Role.CAREGIVER,
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
            actor=SYSTEM,
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
    asked = frozenset(await session.scalars(select(Offer.caregiver_id).where(Offer.order_id == order_id)))
    return await _offer_or_escalate(
        session=session,
        order_id=order_id,
        state=order.state,
        attempts=order.offer_attempts,
        asked=asked,
        request=request,
        index=index,
        profiles=profiles,
        match_policy=match_policy,
        offer_policy=offer_policy,
        now=now,
    )


async def _offer_or_escalate(
    *,
    session: AsyncSession,
    order_id: int,
    state: str,
    attempts: int,
    asked: frozenset[int],
    request: OrderRequest,
    index: CaregiverIndex,
    profiles: Mapping[int, CaregiverProfile],
    match_policy: MatchPolicy,
    offer_policy: OfferPolicy,
    now: dt.datetime,
) -> Offer | None:
    """:func:`offer_next` given the order's state, offer count and the caregivers already asked."""
    if state != OrderState.CREATED.value:
        raise StateConflict(f"order {order_id} is {state}, not created")
    if attempts < offer_policy.max_attempts:
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
                    expected=OrderState.CREATED,
                )
    await change_state(
        session=session,
        order_id=order_id,
        expected=OrderState.CREATED,
        target=OrderState.ESCALATED,
        actor=SYSTEM,
        actor_user_id=None,
        now=now,
        note=f"after {attempts} offers",
        values={"escalation_reason": EscalationReason.NO_CAREGIVER.value},
    )
    order = session.identity_map.get(identity_key(ServiceOrder, order_id))
    if isinstance(order, ServiceOrder):
        set_committed_value(order, "state", OrderState.ESCALATED.value)
        set_committed_value(order, "updated_at", now)
        set_committed_value(order, "escalation_reason", EscalationReason.NO_CAREGIVER.value)
    log.info("dispatch.order.escalated", order_id=order_id, attempts=attempts)
    return None


async def dispatch_order(*, session: AsyncSession, order_id: int, now: dt.datetime) -> Offer | None:
    """Offer a ``created`` order to the best caregiver not yet asked, or escalate it.

    The candidates are :func:`dispatch.candidates.nearest_candidates` (eligible caregivers within reach
    of the elder, nearest first); the matching core applies every hard rule and scores them.

    Round trips: the order's facts (one statement), the candidates with their profiles (one), the
    offer with its state change (one); a second, wider candidate search only when the nearest are busy.
    """
    # Only fields fixed at creation are read from this copy; state and offers come with the facts.
    order = await session.get(ServiceOrder, order_id)
    if order is None:
        raise DispatchError(f"order {order_id} not found")
    facts = await dispatch_facts(session, order, now)
    index, profiles = await nearest_candidates(session, facts, now=now)
    return await _offer_or_escalate(
        session=session,
        order_id=order_id,
        state=facts.state,
        attempts=facts.attempts,
        asked=facts.asked,
        request=facts.request,
        index=index,
        profiles=profiles,
        match_policy=facts.policies.match,
        offer_policy=facts.policies.offer,
        now=now,
    )


async def expire_and_redispatch(*, session: AsyncSession, now: dt.datetime) -> int:
    """Job: expire offers past their deadline and offer each order to the next candidate (or escalate).
    Returns the number of orders moved on."""
    order_ids = await expire_offers(session=session, now=now)
    for oid in order_ids:
        await dispatch_order(session=session, order_id=oid, now=now)
    if order_ids:
        log.info("dispatch.offers.expired", orders=len(order_ids))
    return len(order_ids)
