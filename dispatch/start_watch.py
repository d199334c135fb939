"""The start-at-risk watch (DOMAIN §6): every minute, accepted visits whose caregiver has not set off
and can no longer be there by the start (:mod:`dispatch.start_risk`) go to the operator queue.

Going to the queue is the move every path into it makes (``accepted → escalated`` by the system, as a
re-plan withdraws a visit in :mod:`dispatch.dayplans.publish`): the visit is withdrawn and the order
loses its caregiver, so the call centre assigns one by hand (``POST /api/v1/orders/{id}/assign``, the
same caregiver again if they are coming after all). ``escalation_reason`` is ``start_at_risk``; the
transition's note says why (travel, minutes left, policy row) and the audit trail records the same as
the system's act.

Each order is escalated at most once, ever: once an operator has handled it (assigned it again by
hand, perhaps knowing the visit will be late), the watch leaves it alone. Safe to run twice and from
two processes at once: the candidates are read without locks, then each order at risk is read again
under its row lock (``FOR UPDATE``, in order id order) and judged again before it moves, so a
concurrent run, the caregiver setting off, a cancellation or a re-plan either happened before (and the
order no longer qualifies) or waits for this transaction. The scheduler's advisory lock normally keeps
two runs apart anyway.

Not done on position updates: the minute job sees every position within a minute, and a caregiver's
own position report is not the moment to take their visit away from them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog
from sqlalchemy import Row, Select, case, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.clock import local_date
from core.policy import load_policy
from dispatch.common import change_state
from dispatch.models import CaregiverPosition, OrderTransition, ServiceOrder, Visit
from dispatch.seed import POLICY_DEFAULTS
from dispatch.start_risk import (
    Assessment,
    Fix,
    PendingStart,
    StartRiskPolicy,
    assess,
    reason_note,
    start_risk_policy,
    starts_at_risk,
)
from dispatch.states import SYSTEM, EscalationReason, OrderState
from registry.models import Caregiver, Community, District, Elder

log = structlog.get_logger(__name__)

REASON = EscalationReason.START_AT_RISK


async def watch_policy(session: AsyncSession, now: dt.datetime) -> StartRiskPolicy:
    """The rule's policy valid on ``now``'s Asia/Shanghai date (one query)."""
    snapshot = await load_policy(
        session, day=local_date(now), prefixes=("dispatch.",), defaults=POLICY_DEFAULTS
    )
    return start_risk_policy(snapshot)


def _pending(*, now: dt.datetime, lookahead_s: int) -> Select[Any]:
    """Accepted orders not yet started whose start is within the lookahead, never escalated by this
    watch before, with what :class:`PendingStart` needs: one statement."""
    start_at = case((ServiceOrder.asap, ServiceOrder.window_end_at), else_=Visit.scheduled_start_at)
    horizon = now + dt.timedelta(seconds=lookahead_s)
    flagged = exists().where(
        OrderTransition.order_id == ServiceOrder.id,
        OrderTransition.to_state == OrderState.ESCALATED.value,
        OrderTransition.note.startswith(f"{REASON.value}:", autoescape=True),
    )
    return (
        select(
            ServiceOrder.id,
            ServiceOrder.caregiver_id,
            ServiceOrder.provider_id,
            start_at.label("start_at"),
            Visit.id.label("visit_id"),
            Elder.lat.label("elder_lat"),
            Elder.lon.label("elder_lon"),
            Community.is_village,
            District.kind,
            Caregiver.home_lat,
            Caregiver.home_lon,
            CaregiverPosition.lat.label("pos_lat"),
            CaregiverPosition.lon.label("pos_lon"),
            CaregiverPosition.at.label("pos_at"),
        )
        .join(Visit, Visit.order_id == ServiceOrder.id)
        .join(Elder, Elder.id == ServiceOrder.elder_id)
        .join(Community, Community.id == Elder.community_id)
        .join(District, District.id == Elder.district_id)
        .join(Caregiver, Caregiver.id == ServiceOrder.caregiver_id)
        .outerjoin(CaregiverPosition, CaregiverPosition.caregiver_id == ServiceOrder.caregiver_id)
        .where(
            ServiceOrder.state == OrderState.ACCEPTED.value,
            # Every start kept here is at or after the window start, so this bound is implied; it
            # lets the (state, window_start_at) index find the candidates.
            ServiceOrder.window_start_at <= horizon,
            start_at <= horizon,
            # Past the window end the visit cannot start as promised any more: a missed visit (no-show),
            # not one to reassign.
            ServiceOrder.window_end_at > now,
            Visit.check_in_at.is_(None),
            ~flagged,
        )
        .order_by(ServiceOrder.id)
    )


def _pending_start(row: Row[Any]) -> PendingStart:
    position = None if row.pos_at is None else Fix(float(row.pos_lat), float(row.pos_lon), row.pos_at)
    return PendingStart(
        order_id=int(row.id),
        caregiver_id=int(row.caregiver_id),
        start_at=row.start_at,
        elder_lat=float(row.elder_lat),
        elder_lon=float(row.elder_lon),
        # The elder's area, as matching and the day plans read it.
        rural=bool(row.is_village) or row.kind == "rural",
        home_lat=float(row.home_lat),
        home_lon=float(row.home_lon),
        position=position,
    )


async def pending_starts(session: AsyncSession, *, now: dt.datetime, lookahead_s: int) -> list[PendingStart]:
    """The orders the watch looks at now (see :func:`_pending`)."""
    rows = await session.execute(_pending(now=now, lookahead_s=lookahead_s))
    return [_pending_start(r) for r in rows]


async def _escalate(
    session: AsyncSession, order_id: int, *, now: dt.datetime, policy: StartRiskPolicy
) -> Assessment | None:
    """Lock the order, judge it again and, if its start is still at risk, send it to the operator
    queue. Returns the assessment acted on, or None if the order no longer qualifies."""
    locked = _pending(now=now, lookahead_s=policy.lookahead_s).where(ServiceOrder.id == order_id)
    row = (await session.execute(locked.with_for_update(of=ServiceOrder))).one_or_none()
    if row is None:
        return None  # set off, checked in, cancelled, reassigned or escalated meanwhile
    found = assess(_pending_start(row), now=now, policy=policy)
    if not found.at_risk:
        return None
    note = reason_note(found, policy)
    await session.execute(
        delete(Visit).where(Visit.id == row.visit_id).execution_options(synchronize_session=False)
    )
    await change_state(
        session=session,
        order_id=order_id,
        expected=OrderState.ACCEPTED,
        target=OrderState.ESCALATED,
        actor=SYSTEM,
        actor_user_id=None,
        now=now,
        note=note,
        values={"caregiver_id": None, "provider_id": None, "escalation_reason": REASON.value},
    )
    audit.record(
        session,
        actor=None,
        system_role=SYSTEM.value,
        action="escalate",
        entity="service_order",
        entity_id=order_id,
        before={
            "state": OrderState.ACCEPTED.value,
            "caregiver_id": found.caregiver_id,
            "provider_id": row.provider_id,
            "visit_id": row.visit_id,
            "start_at": row.start_at,
        },
        after={
            "state": OrderState.ESCALATED.value,
            "escalation_reason": REASON.value,
            "basis": found.basis.value,
            "travel_s": found.travel_s,
            "seconds_left": round(found.seconds_left),
            "required_s": found.required_s,
            "position_age_s": None if found.position_age_s is None else round(found.position_age_s),
            "policy": list(policy.refs),
            "note": note,
        },
    )
    return found


async def escalate_starts_at_risk(*, session: AsyncSession, now: dt.datetime) -> list[int]:
    """Job: send every accepted order whose start is at risk at ``now`` to the operator queue (once per
    order). Reads the policy and the candidates in one query each; flushes, the caller commits.
    Returns the ids of the orders escalated."""
    policy = await watch_policy(session, now)
    pending = await pending_starts(session, now=now, lookahead_s=policy.lookahead_s)
    escalated: list[int] = []
    for candidate in starts_at_risk(pending, now=now, policy=policy):
        acted = await _escalate(session, candidate.order_id, now=now, policy=policy)
        if acted is None:
            continue
        escalated.append(acted.order_id)
        log.info(
            "dispatch.start_risk.escalated",
            order_id=acted.order_id,
            caregiver_id=acted.caregiver_id,
            basis=acted.basis.value,
            travel_s=acted.travel_s,
            seconds_left=round(acted.seconds_left),
        )
    await session.flush()
    return escalated
