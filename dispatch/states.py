"""The life of a service order and its visit: states, allowed transitions, who may make them, and
what a cancellation costs. Pure: the service layer records every accepted transition.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass


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


class Actor(enum.StrEnum):
    """Who asks for a transition: a role of DOMAIN §9, or the platform itself."""

    SYSTEM = "system"
    ELDER = "elder"
    FAMILY = "family"
    CAREGIVER = "caregiver"
    PROVIDER_ADMIN = "provider_admin"
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    CIVIL_AFFAIRS = "civil_affairs"
    ADMIN = "admin"


S = OrderState
A = Actor
_STAFF = frozenset({A.OPERATOR, A.SUPERVISOR, A.ADMIN})
_CUSTOMER = frozenset({A.ELDER, A.FAMILY})
_CANCELLERS = _CUSTOMER | _STAFF | {A.PROVIDER_ADMIN}

# Who resolves a visit exception. Every exception holds the visit from payment (DOMAIN §5), so it is
# resolved by someone independent of the provider that is paid: a call-centre supervisor, civil
# affairs of the elder's district, or an admin. The provider (and its caregiver) may explain or
# contest an exception, never resolve it.
EXCEPTION_RESOLVERS = frozenset({A.SUPERVISOR, A.CIVIL_AFFAIRS, A.ADMIN})

# (from, to) → who may do it.
TRANSITIONS: dict[tuple[OrderState, OrderState], frozenset[Actor]] = {
    (S.CREATED, S.OFFERED): frozenset({A.SYSTEM}) | _STAFF,
    (S.CREATED, S.ESCALATED): frozenset({A.SYSTEM}),
    (S.CREATED, S.CANCELLED): _CANCELLERS,
    # A published day plan assigns its scheduled orders (dispatch.dayplans).
    (S.CREATED, S.ACCEPTED): frozenset({A.SYSTEM}),
    (S.OFFERED, S.ACCEPTED): frozenset({A.CAREGIVER}),
    # Declined or expired: back to the pool for the next candidate.
    (S.OFFERED, S.CREATED): frozenset({A.CAREGIVER, A.SYSTEM}),
    (S.OFFERED, S.ESCALATED): frozenset({A.SYSTEM}),
    (S.OFFERED, S.CANCELLED): _CANCELLERS,
    (S.ESCALATED, S.OFFERED): _STAFF,
    (S.ESCALATED, S.ACCEPTED): _STAFF | {A.PROVIDER_ADMIN},  # assigned by hand
    (S.ESCALATED, S.CANCELLED): _CANCELLERS,
    (S.ACCEPTED, S.EN_ROUTE): frozenset({A.CAREGIVER}),
    (S.ACCEPTED, S.CHECKED_IN): frozenset({A.CAREGIVER}),  # already next door
    # The caregiver (or their provider) withdraws: re-dispatch.
    (S.ACCEPTED, S.CREATED): frozenset({A.CAREGIVER, A.PROVIDER_ADMIN}) | _STAFF,
    (S.ACCEPTED, S.CANCELLED): _CANCELLERS,
    (S.ACCEPTED, S.NO_SHOW): frozenset({A.SYSTEM}) | _STAFF,
    # A re-plan (sick caregiver) finds nobody for a planned visit not yet started: to the operator queue.
    (S.ACCEPTED, S.ESCALATED): frozenset({A.SYSTEM}),
    (S.EN_ROUTE, S.CHECKED_IN): frozenset({A.CAREGIVER}),
    (S.EN_ROUTE, S.CREATED): frozenset({A.CAREGIVER, A.PROVIDER_ADMIN}) | _STAFF,
    (S.EN_ROUTE, S.CANCELLED): _CANCELLERS,
    (S.EN_ROUTE, S.NO_SHOW): frozenset({A.CAREGIVER, A.SYSTEM}) | _STAFF,  # elder not at home
    (S.CHECKED_IN, S.CHECKED_OUT): frozenset({A.CAREGIVER}) | _STAFF,
    (S.CHECKED_OUT, S.VERIFIED): frozenset({A.SYSTEM}),
    (S.CHECKED_OUT, S.EXCEPTION): frozenset({A.SYSTEM}),
    # Resolved with reason + resolution codes by a named, independent user.
    (S.EXCEPTION, S.VERIFIED): EXCEPTION_RESOLVERS,
    (S.VERIFIED, S.RATED): _CUSTOMER | _STAFF,
}

TERMINAL = frozenset({S.RATED, S.CANCELLED, S.NO_SHOW})

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
    """``notice_s``: cancelling later than this before the start costs ``late_fee_fen`` (policy data)."""

    notice_s: int = 2 * 3600
    late_fee_fen: int = 1000


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
    if actor == A.PROVIDER_ADMIN and state in (S.ACCEPTED, S.EN_ROUTE):
        return Cancellation(CancellationConsequence.REDISPATCH, 0)
    return Cancellation(CancellationConsequence.FREE, 0)
