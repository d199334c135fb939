"""Start at risk (DOMAIN §6): which accepted visits will not start on time because their caregiver has
not set off yet. Pure core: plain data and ``now`` in, assessments out; the scheduled job
(:mod:`dispatch.start_watch`) reads the orders and escalates those at risk to the operator queue.

The rule. An order is *pending its start* while it is ``accepted`` (not ``en_route``, not checked in).
Its start is at risk when

    seconds left until the start  <  travel estimate from where the caregiver is  +  margin

(strictly: exactly enough time left is not at risk). The travel estimate is DOMAIN §6's, computed by
:func:`dispatch.matching.travel_seconds` (straight line × ``dispatch.detour`` at
``dispatch.speed[urban|rural]``, by the elder's area).

*The start* is the start the caregiver was given: the visit's scheduled start (the window start, or a
day plan's start inside the window). An as-soon-as-possible order has no start to keep but its window
end, the latest start promised, so that is its start here (its scheduled start is the moment it was
accepted, already past).

*Where the caregiver is* is their last reported position, if it is at most
``stale_position_seconds`` old. With no position, or a stale one, we cannot see them: the estimate is
then from their home (the base every working day starts from), and in addition the start is at risk
from ``unlocated_seconds`` before it at the latest, however near home is — someone we cannot see who
has not set off that close to the start is worth an operator's call.

Only starts within ``lookahead_seconds`` of ``now`` are watched: a caregiver is not expected to set
off hours ahead. Every number is policy ``dispatch.start_risk[*]`` (plus the detour and speeds), read
through :func:`core.policy.load_policy` by the caller and passed in as a :class:`StartRiskPolicy`.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass

from core.geo import haversine_m
from core.policy import PolicySnapshot
from dispatch.matching import MatchPolicy, travel_seconds
from dispatch.policies import match_policy_from
from dispatch.states import EscalationReason

POLICY_KEY = "dispatch.start_risk"


@dataclass(frozen=True, slots=True)
class StartRiskPolicy:
    """The thresholds of the rule (seconds) and the travel model, from the policy valid on one day.

    ``refs`` name the policy rows applied (``key[scope]@valid_from``), for the record of a decision."""

    margin_s: int
    stale_position_s: int
    lookahead_s: int
    unlocated_s: int
    travel: MatchPolicy
    refs: tuple[str, ...] = ()


def start_risk_policy(snapshot: PolicySnapshot) -> StartRiskPolicy:
    """The rule's policy from a snapshot holding the ``dispatch.`` keys (rows over seeded defaults)."""
    entry = snapshot.entry(POLICY_KEY)
    detour = snapshot.entry("dispatch.detour")
    urban = snapshot.entry("dispatch.speed", "urban")
    rural = snapshot.entry("dispatch.speed", "rural")
    return StartRiskPolicy(
        margin_s=int(entry.number("margin_seconds")),
        stale_position_s=int(entry.number("stale_position_seconds")),
        lookahead_s=int(entry.number("lookahead_seconds")),
        unlocated_s=int(entry.number("unlocated_seconds")),
        travel=match_policy_from(snapshot),
        refs=tuple(e.ref() for e in (entry, detour, urban, rural)),
    )


@dataclass(frozen=True, slots=True)
class Fix:
    """A reported position (degrees) and when it was reported (UTC)."""

    lat: float
    lon: float
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class PendingStart:
    """An accepted order whose caregiver has not set off: what the rule needs to know about it."""

    order_id: int
    caregiver_id: int
    start_at: dt.datetime  # the start to keep (see the module docstring), UTC
    elder_lat: float
    elder_lon: float
    rural: bool
    home_lat: float  # the caregiver's home, the estimate's origin when we cannot see them
    home_lon: float
    position: Fix | None  # the caregiver's last reported position, if any


class Basis(enum.StrEnum):
    """Where the travel estimate starts from."""

    POSITION = "position"  # the last reported position, fresh enough
    HOME = "home"  # no position, or a stale one: the caregiver's home


@dataclass(frozen=True, slots=True)
class Assessment:
    """The rule applied to one order at ``now``. ``required_s`` is the time the start needs from now
    (travel + margin, or at least ``unlocated_s`` when the caregiver cannot be seen); at risk when
    ``seconds_left`` is less. ``watched`` is False beyond the lookahead (never at risk then)."""

    order_id: int
    caregiver_id: int
    at_risk: bool
    watched: bool
    basis: Basis
    travel_s: int
    seconds_left: float
    required_s: int
    position_age_s: float | None  # None: no position at all


def assess(order: PendingStart, *, now: dt.datetime, policy: StartRiskPolicy) -> Assessment:
    """Apply the rule to one order at ``now``."""
    left = (order.start_at - now).total_seconds()
    age = None if order.position is None else max(0.0, (now - order.position.at).total_seconds())
    located = order.position is not None and age is not None and age <= policy.stale_position_s
    if located and order.position is not None:
        origin, basis = (order.position.lat, order.position.lon), Basis.POSITION
    else:
        origin, basis = (order.home_lat, order.home_lon), Basis.HOME
    distance = haversine_m(origin[0], origin[1], order.elder_lat, order.elder_lon)
    travel = travel_seconds(distance, rural=order.rural, policy=policy.travel)
    required = travel + policy.margin_s
    if not located:
        required = max(required, policy.unlocated_s)
    watched = left <= policy.lookahead_s
    return Assessment(
        order_id=order.order_id,
        caregiver_id=order.caregiver_id,
        at_risk=watched and left < required,
        watched=watched,
        basis=basis,
        travel_s=travel,
        seconds_left=left,
        required_s=required,
        position_age_s=age,
    )


def starts_at_risk(
    orders: Iterable[PendingStart], *, now: dt.datetime, policy: StartRiskPolicy
) -> list[Assessment]:
    """The orders whose start is at risk at ``now``, by order id (the order the job locks them in)."""
    found = (assess(o, now=now, policy=policy) for o in orders)
    return sorted((a for a in found if a.at_risk), key=lambda a: a.order_id)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def reason_note(a: Assessment, policy: StartRiskPolicy) -> str:
    """The transition note of an escalation: the reason code first (``start_at_risk:``), then why (in
    minutes) and the rule's policy row; at most 200 characters."""
    if a.basis == Basis.POSITION and a.position_age_s is not None:
        origin = f"last position ({_minutes(a.position_age_s)} min old)"
    elif a.position_age_s is not None:
        origin = f"home (position {_minutes(a.position_age_s)} min old)"
    else:
        origin = "home (no position)"
    ref = policy.refs[0] if policy.refs else POLICY_KEY
    note = (
        f"{EscalationReason.START_AT_RISK.value}: caregiver {a.caregiver_id} not set off; "
        f"travel {_minutes(a.travel_s)} min from {origin}, {_minutes(a.seconds_left)} min to start, "
        f"needs {_minutes(a.required_s)}; {ref}"
    )
    return note[:200]
