"""The alarm lifecycle (callcentre.lifecycle): every transition and every refused one, as tables."""

from __future__ import annotations

from dataclasses import replace

import pytest

from callcentre.lifecycle import (
    Action,
    ActionInvalid,
    ActionResult,
    AlarmAlreadyAcknowledged,
    AlarmAlreadyClaimed,
    AlarmAlreadyCleared,
    AlarmFacts,
    AlarmForbidden,
    AlarmNotActive,
    AlarmNotCleared,
    AlarmNotFound,
    Assignee,
    AssigneeInvalid,
    ResponseAction,
    check_action,
    decide,
    may_be_assigned,
    sees_district,
)
from callcentre.timeline import EventKind as K
from core.errors import DomainError
from core.identity.authz import Principal
from core.identity.models import Role

D1, D2 = 11, 22
ME, OTHER = 100, 200


def who(role: Role, user_id: int = ME, *districts: int) -> Principal:
    return Principal(user_id=user_id, username=f"u{user_id}", role=role, district_ids=frozenset(districts))


OPERATOR = who(Role.OPERATOR, ME, D1)
SUPERVISOR = who(Role.SUPERVISOR, ME, D1)
ADMIN = who(Role.ADMIN, ME)
CITYWIDE_OPERATOR = who(Role.OPERATOR, ME)
CIVIL = who(Role.CIVIL_AFFAIRS, ME, D1)

NEW = AlarmFacts(id=1, district_id=D1, active=True, acknowledged=False, assignee_id=None)
MINE = replace(NEW, assignee_id=ME)
THEIRS = replace(NEW, assignee_id=OTHER)
ACKED_MINE = replace(MINE, acknowledged=True)
ACKED_THEIRS = replace(THEIRS, acknowledged=True)
CLEARED = replace(ACKED_MINE, active=False)
ELSEWHERE = replace(NEW, district_id=D2)
NO_DISTRICT = replace(NEW, district_id=None)


# --- Accepted transitions: (alarm, principal, action) -> (after, events) ---------------------------

ACCEPTED = [
    # claiming
    (NEW, OPERATOR, Action.CLAIM, MINE, (K.CLAIMED,)),
    (MINE, OPERATOR, Action.CLAIM, MINE, ()),
    (ACKED_MINE, OPERATOR, Action.CLAIM, ACKED_MINE, ()),
    # acknowledging (claims an unassigned alarm)
    (NEW, OPERATOR, Action.ACKNOWLEDGE, ACKED_MINE, (K.CLAIMED, K.ACKNOWLEDGED)),
    (MINE, OPERATOR, Action.ACKNOWLEDGE, ACKED_MINE, (K.ACKNOWLEDGED,)),
    (THEIRS, SUPERVISOR, Action.ACKNOWLEDGE, ACKED_THEIRS, (K.ACKNOWLEDGED,)),
    (THEIRS, ADMIN, Action.ACKNOWLEDGE, ACKED_THEIRS, (K.ACKNOWLEDGED,)),
    # recording an action (acknowledges first if nobody had)
    (NEW, OPERATOR, Action.RECORD_ACTION, ACKED_MINE, (K.CLAIMED, K.ACKNOWLEDGED, K.ACTION)),
    (ACKED_MINE, OPERATOR, Action.RECORD_ACTION, ACKED_MINE, (K.ACTION,)),
    (ACKED_THEIRS, SUPERVISOR, Action.RECORD_ACTION, ACKED_THEIRS, (K.ACTION,)),
    # clearing
    (ACKED_MINE, OPERATOR, Action.CLEAR, CLEARED, (K.CLEARED,)),
    (NEW, OPERATOR, Action.CLEAR, CLEARED, (K.CLAIMED, K.ACKNOWLEDGED, K.CLEARED)),
    (MINE, OPERATOR, Action.CLEAR, CLEARED, (K.ACKNOWLEDGED, K.CLEARED)),
    (ACKED_THEIRS, ADMIN, Action.CLEAR, replace(ACKED_THEIRS, active=False), (K.CLEARED,)),
    # commenting: active or cleared, anyone's
    (THEIRS, OPERATOR, Action.COMMENT, THEIRS, (K.COMMENT,)),
    (CLEARED, OPERATOR, Action.COMMENT, CLEARED, (K.COMMENT,)),
    # reopening: back with its acknowledgement and assignee
    (CLEARED, OPERATOR, Action.REOPEN, ACKED_MINE, (K.REOPENED,)),
    (CLEARED, SUPERVISOR, Action.REOPEN, ACKED_MINE, (K.REOPENED,)),
    # presented once, only while active
    (NEW, OPERATOR, Action.PRESENT, replace(NEW, presented=True), (K.PRESENTED,)),
    (replace(NEW, presented=True), OPERATOR, Action.PRESENT, replace(NEW, presented=True), ()),
    (CLEARED, OPERATOR, Action.PRESENT, CLEARED, ()),
    # reading
    (CLEARED, CIVIL, Action.VIEW, CLEARED, ()),
    (NEW, CITYWIDE_OPERATOR, Action.VIEW, NEW, ()),
    (NO_DISTRICT, ADMIN, Action.VIEW, NO_DISTRICT, ()),
    (ELSEWHERE, CITYWIDE_OPERATOR, Action.CLAIM, replace(ELSEWHERE, assignee_id=ME), (K.CLAIMED,)),
]


@pytest.mark.parametrize(("alarm", "principal", "action", "after", "events"), ACCEPTED)
def test_accepted(
    alarm: AlarmFacts, principal: Principal, action: Action, after: AlarmFacts, events: tuple[K, ...]
) -> None:
    change = decide(alarm, principal, action)
    assert (change.after, change.events) == (after, events)
    assert change.before == alarm
    assert change.changed == bool(events)
    assert change.claimed == (K.CLAIMED in events)
    assert change.acknowledges == (K.ACKNOWLEDGED in events)


# --- Refused transitions: (alarm, principal, action) -> error and code ----------------------------

REFUSED = [
    # the role, whatever the alarm (403)
    (NEW, CIVIL, Action.CLAIM, AlarmForbidden, "alarm.forbidden"),
    (NEW, CIVIL, Action.ACKNOWLEDGE, AlarmForbidden, "alarm.forbidden"),
    (NEW, CIVIL, Action.COMMENT, AlarmForbidden, "alarm.forbidden"),
    (NEW, CIVIL, Action.CLEAR, AlarmForbidden, "alarm.forbidden"),
    (NEW, CIVIL, Action.PRESENT, AlarmForbidden, "alarm.forbidden"),
    (ELSEWHERE, CIVIL, Action.CLEAR, AlarmForbidden, "alarm.forbidden"),
    (NEW, OPERATOR, Action.ASSIGN, AlarmForbidden, "alarm.forbidden"),
    *(
        (NEW, who(role, ME, D1), action, AlarmForbidden, "alarm.forbidden")
        for role in (Role.FAMILY, Role.CAREGIVER, Role.ELDER, Role.PROVIDER_ADMIN)
        for action in (Action.VIEW, Action.CLAIM, Action.CLEAR)
    ),
    # the district (404)
    (ELSEWHERE, OPERATOR, Action.VIEW, AlarmNotFound, "alarm.not_found"),
    (ELSEWHERE, OPERATOR, Action.CLAIM, AlarmNotFound, "alarm.not_found"),
    (ELSEWHERE, SUPERVISOR, Action.CLEAR, AlarmNotFound, "alarm.not_found"),
    (ELSEWHERE, CIVIL, Action.VIEW, AlarmNotFound, "alarm.not_found"),
    (NO_DISTRICT, OPERATOR, Action.VIEW, AlarmNotFound, "alarm.not_found"),
    (NEW, who(Role.CIVIL_AFFAIRS, ME), Action.VIEW, AlarmNotFound, "alarm.not_found"),
    # the state (409)
    (CLEARED, OPERATOR, Action.CLEAR, AlarmAlreadyCleared, "alarm.already_cleared"),
    (CLEARED, ADMIN, Action.CLEAR, AlarmAlreadyCleared, "alarm.already_cleared"),
    (CLEARED, OPERATOR, Action.ACKNOWLEDGE, AlarmNotActive, "alarm.not_active"),
    (replace(CLEARED, acknowledged=False), OPERATOR, Action.ACKNOWLEDGE, AlarmNotActive, "alarm.not_active"),
    (CLEARED, OPERATOR, Action.CLAIM, AlarmNotActive, "alarm.not_active"),
    (CLEARED, OPERATOR, Action.RECORD_ACTION, AlarmNotActive, "alarm.not_active"),
    (CLEARED, SUPERVISOR, Action.ASSIGN, AlarmNotActive, "alarm.not_active"),
    (ACKED_MINE, OPERATOR, Action.ACKNOWLEDGE, AlarmAlreadyAcknowledged, "alarm.already_acknowledged"),
    (ACKED_THEIRS, SUPERVISOR, Action.ACKNOWLEDGE, AlarmAlreadyAcknowledged, "alarm.already_acknowledged"),
    (NEW, OPERATOR, Action.REOPEN, AlarmNotCleared, "alarm.not_cleared"),
    # someone else holds it (409)
    (THEIRS, OPERATOR, Action.CLAIM, AlarmAlreadyClaimed, "alarm.already_claimed"),
    (THEIRS, SUPERVISOR, Action.CLAIM, AlarmAlreadyClaimed, "alarm.already_claimed"),
    (THEIRS, ADMIN, Action.CLAIM, AlarmAlreadyClaimed, "alarm.already_claimed"),
    (THEIRS, OPERATOR, Action.ACKNOWLEDGE, AlarmAlreadyClaimed, "alarm.already_claimed"),
    (ACKED_THEIRS, OPERATOR, Action.RECORD_ACTION, AlarmAlreadyClaimed, "alarm.already_claimed"),
    (ACKED_THEIRS, OPERATOR, Action.CLEAR, AlarmAlreadyClaimed, "alarm.already_claimed"),
]


@pytest.mark.parametrize(("alarm", "principal", "action", "error", "code"), REFUSED)
def test_refused(
    alarm: AlarmFacts, principal: Principal, action: Action, error: type[DomainError], code: str
) -> None:
    with pytest.raises(error) as caught:
        decide(alarm, principal, action, assignee=Assignee(OTHER, Role.OPERATOR, frozenset({D1})))
    assert caught.value.code == code


def test_refusals_have_their_http_status() -> None:
    statuses = {error: error.status for *_, error, _ in REFUSED}
    assert statuses[AlarmForbidden] == 403
    assert statuses[AlarmNotFound] == 404
    assert {statuses[e] for e in (AlarmNotActive, AlarmAlreadyCleared, AlarmAlreadyClaimed)} == {409}


# --- Assigning ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assignee", "alarm", "allowed"),
    [
        (Assignee(OTHER, Role.OPERATOR, frozenset({D1})), NEW, True),
        (Assignee(OTHER, Role.SUPERVISOR, frozenset({D1, D2})), NEW, True),
        (Assignee(OTHER, Role.OPERATOR, frozenset()), ELSEWHERE, True),  # city-wide
        (Assignee(OTHER, Role.OPERATOR, frozenset()), NO_DISTRICT, True),
        (Assignee(OTHER, Role.OPERATOR, frozenset({D2})), NEW, False),
        (Assignee(OTHER, Role.OPERATOR, frozenset({D1})), NO_DISTRICT, False),
        (Assignee(OTHER, Role.OPERATOR, frozenset({D1}), is_active=False), NEW, False),
        (Assignee(OTHER, Role.ADMIN, frozenset()), NEW, False),
        (Assignee(OTHER, Role.CIVIL_AFFAIRS, frozenset({D1})), NEW, False),
        (Assignee(OTHER, Role.CAREGIVER, frozenset()), NEW, False),
    ],
)
def test_who_may_be_assigned(assignee: Assignee, alarm: AlarmFacts, allowed: bool) -> None:
    assert may_be_assigned(assignee, alarm) is allowed
    if allowed:
        change = decide(alarm, ADMIN, Action.ASSIGN, assignee=assignee)
        assert (change.after.assignee_id, change.events, change.claimed) == (OTHER, (K.ASSIGNED,), True)
    else:
        with pytest.raises(AssigneeInvalid) as caught:
            decide(alarm, ADMIN, Action.ASSIGN, assignee=assignee)
        assert (caught.value.code, caught.value.status) == ("alarm.assignee_invalid", 422)


def test_assigning_takes_an_alarm_from_its_holder_and_to_the_same_holder_changes_nothing() -> None:
    to_other = Assignee(OTHER, Role.OPERATOR, frozenset({D1}))
    taken = decide(ACKED_MINE, SUPERVISOR, Action.ASSIGN, assignee=to_other)
    assert taken.after == ACKED_THEIRS
    again = decide(ACKED_THEIRS, SUPERVISOR, Action.ASSIGN, assignee=to_other)
    assert not again.changed
    with pytest.raises(AssigneeInvalid):
        decide(NEW, SUPERVISOR, Action.ASSIGN, assignee=None)


# --- Scope and actions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "district", "sees"),
    [
        (ADMIN, None, True),
        (ADMIN, D2, True),
        (CITYWIDE_OPERATOR, D2, True),
        (OPERATOR, D1, True),
        (OPERATOR, D2, False),
        (OPERATOR, None, False),
        (CIVIL, D1, True),
        (CIVIL, D2, False),
        (who(Role.CIVIL_AFFAIRS, ME), D1, False),  # an officer of no district sees none
        (who(Role.FAMILY, ME, D1), D1, False),
    ],
)
def test_sees_district(principal: Principal, district: int | None, sees: bool) -> None:
    assert sees_district(principal, district) is sees


@pytest.mark.parametrize(
    ("action", "result", "position", "ok"),
    [
        (ResponseAction.CALL_ELDER, ActionResult.REACHED, None, True),
        (ResponseAction.CALL_ELDER, ActionResult.NO_ANSWER, None, True),
        (ResponseAction.CALL_CONTACT, ActionResult.BUSY, 2, True),
        (ResponseAction.SEND_CAREGIVER, ActionResult.DISPATCHED, None, True),
        (ResponseAction.SEND_COMMUNITY_WORKER, ActionResult.ARRIVED, None, True),
        (ResponseAction.CALL_120, ActionResult.DISPATCHED, None, True),
        (ResponseAction.CALL_119, ActionResult.REACHED, None, True),
        (ResponseAction.CALL_110, ActionResult.ARRIVED, None, True),
        (ResponseAction.CALL_ELDER, ActionResult.DISPATCHED, None, False),
        (ResponseAction.SEND_CAREGIVER, ActionResult.WRONG_NUMBER, None, False),
        (ResponseAction.CALL_120, ActionResult.DECLINED, None, False),
        (ResponseAction.CALL_CONTACT, ActionResult.REACHED, None, False),  # which contact?
        (ResponseAction.CALL_ELDER, ActionResult.REACHED, 1, False),  # a position for nobody
    ],
)
def test_action_results(action: ResponseAction, result: ActionResult, position: int | None, ok: bool) -> None:
    if ok:
        check_action(action, result, position)
    else:
        with pytest.raises(ActionInvalid) as caught:
            check_action(action, result, position)
        assert caught.value.code == "alarm.action_invalid"
