"""The life of a service order and its visit: states, allowed transitions, who may make them, and
what a cancellation costs. Pure: the service layer records every accepted transition.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import TypeAlias

from core.identity.models import Role


class OrderState(enum.StrEnum):
    CREATED = "created"
    OFFERED = "offered"
    ESCALATED = "escalated"  # waiting in the operator queue
    ACCEPTED = "accepted"
    EN_ROUTE = "en_route"
    CHECKED_IN = "checked_in"
    CHECKED_OUT = "checked_out"
    VERIFIED = "verified"
    EXCEPTION = "exception"
    RATED = "rated"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"


class EscalationReason(enum.StrEnum):
    """Why an order is in the operator queue: ``service_order.escalation_reason``, set by each move
    into ``escalated`` and shown while the order is there."""

    NO_CAREGIVER = "no_caregiver"  # real-time dispatch: offers declined or expired, or nobody eligible
    UNPLANNED = "unplanned"  # no day plan could place it by the evening cut-off
    PLAN_WITHDRAWN = "plan_withdrawn"  # a re-plan found no caregiver for a published visit
    START_AT_RISK = "start_at_risk"  # the caregiver has not set off in time (dispatch.start_watch)


class System(enum.StrEnum):
    """The platform itself as the actor of a transition (offer expiry, day plans, verification)."""

    SYSTEM = "system"


SYSTEM = System.SYSTEM
# Who asks for a transition: a user in a role of DOMAIN §9 (the kernel's one list of roles), or the
# platform. Both are string enums, so ``actor.value`` is what ``order_transition.actor_role`` stores.
Actor: TypeAlias = Role | System
ACTORS: tuple[Actor, ...] = (SYSTEM, *Role)


S = OrderState
R = Role
_STAFF = frozenset({R.OPERATOR, R.SUPERVISOR, R.ADMIN})
_CUSTOMER = frozenset({R.ELDER, R.FAMILY})
_CANCELLERS = _CUSTOMER | _STAFF | {R.PROVIDER_ADMIN}

# Who resolves a visit exception. Every exception holds the visit from payment (DOMAIN §5), so it is
# resolved by someone independent of the provider that is paid: a call-centre supervisor, civil
# affairs of the elder's district, or an admin. The provider (and its caregiver) may explain or
# contest an exception, never resolve it.
EXCEPTION_RESOLVERS = frozenset({R.SUPERVISOR, R.CIVIL_AFFAIRS, R.ADMIN})

# (from, to) → who may do it.
TRANSITIONS: dict[tuple[OrderState, OrderState], frozenset[Actor]] = {
    (S.CREATED, S.OFFERED): frozenset({SYSTEM}) | _STAFF,
    (S.CREATED, S.ESCALATED): frozenset({SYSTEM}),
    (S.CREATED, S.CANCELLED): _CANCELLERS,
    # A published day plan assigns its scheduled orders (dispatch.dayplans).
    (S.CREATED, S.ACCEPTED): frozenset({SYSTEM}),
    (S.OFFERED, S.ACCEPTED): frozenset({R.CAREGIVER}),
    # Declined or expired: back to the pool for the next candidate.
    (S.OFFERED, S.CREATED): frozenset[Actor]({R.CAREGIVER, SYSTEM}),
    (S.OFFERED, S.ESCALATED): frozenset({SYSTEM}),
    (S.OFFERED, S.CANCELLED): _CANCELLERS,
    (S.ESCALATED, S.OFFERED): _STAFF,
    (S.ESCALATED, S.ACCEPTED): _STAFF | {R.PROVIDER_ADMIN},  # assigned by hand
    (S.ESCALATED, S.CANCELLED): _CANCELLERS,
    (S.ACCEPTED, S.EN_ROUTE): frozenset({R.CAREGIVER}),
    (S.ACCEPTED, S.CHECKED_IN): frozenset({R.CAREGIVER}),  # already next door
    # The caregiver (or their provider) withdraws: re-dispatch.
    (S.ACCEPTED, S.CREATED): frozenset({R.CAREGIVER, R.PROVIDER_ADMIN}) | _STAFF,
    (S.ACCEPTED, S.CANCELLED): _CANCELLERS,
    (S.ACCEPTED, S.NO_SHOW): frozenset({SYSTEM}) | _STAFF,
    # A re-plan (sick caregiver) finds nobody for a planned visit not yet started: to the operator queue.
    (S.ACCEPTED, S.ESCALATED): frozenset({SYSTEM}),
    (S.EN_ROUTE, S.CHECKED_IN): frozenset({R.CAREGIVER}),
    (S.EN_ROUTE, S.CREATED): frozenset({R.CAREGIVER, R.PROVIDER_ADMIN}) | _STAFF,
    (S.EN_ROUTE, S.CANCELLED): _CANCELLERS,
    (S.EN_ROUTE, S.NO_SHOW): frozenset[Actor]({R.CAREGIVER, SYSTEM}) | _STAFF,  # elder not at home
    (S.CHECKED_IN, S.CHECKED_OUT): frozenset({R.CAREGIVER}) | _STAFF,
    (S.CHECKED_OUT, S.VERIFIED): frozenset({SYSTEM}),
    (S.CHECKED_OUT, S.EXCEPTION): frozenset({SYSTEM}),
    # Resolved with reason + resolution codes by a named, independent user.
    (S.EXCEPTION, S.VERIFIED): EXCEPTION_RESOLVERS,
    (S.VERIFIED, S.RATED): _CUSTOMER | _STAFF,
}

TERMINAL = frozenset({S.RATED, S.CANCELLED, S.NO_SHOW})
# Orders no caregiver holds yet: pausing or cancelling their series, or ending the agreement it runs
# under, cancels these (free of charge).
NOT_DISPATCHED = (S.CREATED.value, S.OFFERED.value, S.ESCALATED.value)

# An order in these states has a visit that occupies (or occupied) its caregiver's time: for how long
# is :func:`dispatch.matching.busy_interval` of what actually happened. Cancelled and no-show visits
# occupy nothing.
BOOKED = frozenset({S.ACCEPTED, S.EN_ROUTE, S.CHECKED_IN, S.CHECKED_OUT, S.VERIFIED, S.EXCEPTION, S.RATED})


class InvalidTransition(ValueError):
    """A transition that the state machine does not allow, or not for this actor."""

    def __init__(self, current: OrderState, target: OrderState, actor: Actor, reason: str) -> None:
        super().__init__(f"{current} → {target} by {actor}: {reason}")
        self.current = current
        self.target = target
        self.actor = actor
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Transition:
    """A validated transition, ready to be recorded."""

    from_state: OrderState
    to_state: OrderState
    actor: Actor
    at: dt.datetime


def transition(current: OrderState, target: OrderState, *, actor: Actor, now: dt.datetime) -> Transition:
    """Validate ``current → target`` by ``actor``; raise :class:`InvalidTransition` otherwise."""
    allowed = TRANSITIONS.get((current, target))
    if allowed is None:
        raise InvalidTransition(current, target, actor, "not an allowed transition")
    if actor not in allowed:
        raise InvalidTransition(current, target, actor, "actor may not make this transition")
    return Transition(current, target, actor, now)


class CancellationConsequence(enum.StrEnum):
    FREE = "free"
    LATE_FEE = "late_fee"  # the customer cancelled inside the notice period
    REDISPATCH = "redispatch"  # the provider side cancelled: find another caregiver, mark reliability


@dataclass(frozen=True, slots=True)
class CancellationPolicy:
    """``notice_s``: cancelling later than this before the start costs ``late_fee_fen`` (policies
    ``dispatch.cancel_notice`` and ``dispatch.late_cancel_fee``)."""

    notice_s: int
    late_fee_fen: int


@dataclass(frozen=True, slots=True)
class Cancellation:
    consequence: CancellationConsequence
    fee_fen: int


def cancellation(
    *,
    state: OrderState,
    actor: Actor,
    start: dt.datetime,
    now: dt.datetime,
    policy: CancellationPolicy,
) -> Cancellation:
    """What a cancellation by ``actor`` at ``now`` costs. Fees are in fen.

    A customer cancelling a visit that a caregiver has already accepted less than ``notice_s`` seconds
    before its start (or once the caregiver is on the way) pays the late fee; earlier is free. Staff and
    provider cancellations never charge the customer.
    """
    if actor in _CUSTOMER:
        committed = state in (S.ACCEPTED, S.EN_ROUTE)
        late = (start - now).total_seconds() < policy.notice_s or state == S.EN_ROUTE
        if committed and late:
            return Cancellation(CancellationConsequence.LATE_FEE, policy.late_fee_fen)
        return Cancellation(CancellationConsequence.FREE, 0)
    if actor == R.PROVIDER_ADMIN and state in (S.ACCEPTED, S.EN_ROUTE):
        return Cancellation(CancellationConsequence.REDISPATCH, 0)
    return Cancellation(CancellationConsequence.FREE, 0)
