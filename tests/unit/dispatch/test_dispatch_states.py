"""Order state machine: every allowed transition, every rejected one, actors and cancellation costs."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from core.identity.models import Role
from dispatch.states import (
    ACTORS,
    SYSTEM,
    TERMINAL,
    TRANSITIONS,
    Actor,
    CancellationConsequence,
    CancellationPolicy,
    InvalidTransition,
    OrderState,
    cancellation,
    transition,
)

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 2, 2, 0, tzinfo=dt.UTC)
S = OrderState

HAPPY_PATH = [
    (S.CREATED, S.OFFERED, SYSTEM),
    (S.OFFERED, S.ACCEPTED, Role.CAREGIVER),
    (S.ACCEPTED, S.EN_ROUTE, Role.CAREGIVER),
    (S.EN_ROUTE, S.CHECKED_IN, Role.CAREGIVER),
    (S.CHECKED_IN, S.CHECKED_OUT, Role.CAREGIVER),
    (S.CHECKED_OUT, S.VERIFIED, SYSTEM),
    (S.VERIFIED, S.RATED, Role.ELDER),
]


@pytest.mark.parametrize(("current", "target", "actor"), HAPPY_PATH)
def test_happy_path(current: OrderState, target: OrderState, actor: Actor) -> None:
    t = transition(current, target, actor=actor, now=NOW)
    assert (t.from_state, t.to_state, t.actor, t.at) == (current, target, actor, NOW)


ALL_PAIRS = [(a, b) for a, b in itertools.product(OrderState, OrderState) if (a, b) not in TRANSITIONS]


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_every_unlisted_transition_is_rejected_for_every_actor(
    current: OrderState, target: OrderState
) -> None:
    for actor in ACTORS:
        with pytest.raises(InvalidTransition) as err:
            transition(current, target, actor=actor, now=NOW)
        assert err.value.reason == "not an allowed transition"


WRONG_ACTORS = [
    (a, b, actor) for (a, b), allowed in TRANSITIONS.items() for actor in ACTORS if actor not in allowed
]


@pytest.mark.parametrize(
    ("current", "target", "actor"), WRONG_ACTORS, ids=[f"{a}->{b}:{c}" for a, b, c in WRONG_ACTORS]
)
def test_allowed_transition_by_the_wrong_actor_is_rejected(
    current: OrderState, target: OrderState, actor: Actor
) -> None:
    with pytest.raises(InvalidTransition, match="actor may not"):
        transition(current, target, actor=actor, now=NOW)


def test_terminal_states_have_no_way_out() -> None:
    assert {a for a, _ in TRANSITIONS} & TERMINAL == set()
    # Every non-terminal state can reach a terminal state.
    for state in set(OrderState) - TERMINAL:
        seen, frontier = {state}, [state]
        while frontier:
            cur = frontier.pop()
            for a, b in TRANSITIONS:
                if a == cur and b not in seen:
                    seen.add(b)
                    frontier.append(b)
        assert seen & TERMINAL, state


def test_a_caregiver_cannot_verify_their_own_visit() -> None:
    with pytest.raises(InvalidTransition):
        transition(S.CHECKED_OUT, S.VERIFIED, actor=Role.CAREGIVER, now=NOW)


START = NOW + dt.timedelta(hours=3)
POLICY = CancellationPolicy(notice_s=2 * 3600, late_fee_fen=1000)
CANCEL_CASES = [
    ("elder, before any caregiver accepted", S.OFFERED, Role.ELDER, NOW, "free", 0),
    ("elder, accepted, 3 h ahead", S.ACCEPTED, Role.ELDER, NOW, "free", 0),
    (
        "family, accepted, 1 h ahead",
        S.ACCEPTED,
        Role.FAMILY,
        START - dt.timedelta(hours=1),
        "late_fee",
        1000,
    ),
    ("elder, caregiver on the way", S.EN_ROUTE, Role.ELDER, NOW, "late_fee", 1000),
    ("operator, 10 min ahead", S.ACCEPTED, Role.OPERATOR, START - dt.timedelta(minutes=10), "free", 0),
    ("provider, accepted", S.ACCEPTED, Role.PROVIDER_ADMIN, NOW, "redispatch", 0),
    ("provider, still created", S.CREATED, Role.PROVIDER_ADMIN, NOW, "free", 0),
]


@pytest.mark.parametrize(
    ("name", "state", "actor", "now", "consequence", "fee"), CANCEL_CASES, ids=[c[0] for c in CANCEL_CASES]
)
def test_cancellation_consequences(
    name: str, state: OrderState, actor: Actor, now: dt.datetime, consequence: str, fee: int
) -> None:
    got = cancellation(state=state, actor=actor, start=START, now=now, policy=POLICY)
    assert got.consequence == CancellationConsequence(consequence), name
    assert got.fee_fen == fee


def test_day_plans_assign_and_withdraw_only_as_the_system() -> None:
    # Publishing a day plan accepts a created order for its planned caregiver; a re-plan that finds
    # nobody for a planned visit not yet started hands it to the operator queue. Nobody else may.
    for current, target in ((S.CREATED, S.ACCEPTED), (S.ACCEPTED, S.ESCALATED)):
        t = transition(current, target, actor=SYSTEM, now=NOW)
        assert (t.from_state, t.to_state) == (current, target)
        for actor in set(ACTORS) - {SYSTEM}:
            with pytest.raises(InvalidTransition, match="actor may not"):
                transition(current, target, actor=actor, now=NOW)
    # The operator queue can then hand the order to someone by hand.
    assert Role.OPERATOR in TRANSITIONS[(S.ESCALATED, S.ACCEPTED)]


def test_only_independent_users_make_a_held_visit_payable() -> None:
    """Exception → verified (payable) is for a supervisor, civil affairs or an admin, never the provider
    side that is paid, nor the operator."""
    allowed = {a for a in ACTORS if (S.EXCEPTION, S.VERIFIED, a) not in WRONG_ACTORS}
    assert allowed == {Role.SUPERVISOR, Role.CIVIL_AFFAIRS, Role.ADMIN}
    for actor in (Role.PROVIDER_ADMIN, Role.CAREGIVER, Role.OPERATOR):
        with pytest.raises(InvalidTransition):
            transition(S.EXCEPTION, S.VERIFIED, actor=actor, now=NOW)
