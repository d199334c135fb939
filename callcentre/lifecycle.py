"""The alarm's lifecycle as operators work it (DOMAIN §7, after ThingsBoard): pure rules.

An alarm is *active* or *cleared*, *unacknowledged* or *acknowledged*, and has an *assignee* (or
none). Given an alarm's facts, who asks (a :class:`~core.identity.authz.Principal`) and what they ask
for (an :class:`Action`), :func:`decide` answers the alarm's facts after the change and the timeline
events it writes, or refuses with a :class:`core.errors.DomainError` of a stable code. No session, no
clock: :mod:`callcentre.console` reads the facts, asks here, and writes the answer with a conditional
``UPDATE`` that holds only if the facts are still those decided on.

Who (DOMAIN §9):

* operators and supervisors work alarms in their districts (city-wide when they have none); admins
  everywhere; civil-affairs officers only read, in their districts; every other role is refused
  (``alarm.forbidden``, 403). An alarm outside the reader's districts does not exist for them
  (``alarm.not_found``, 404), so its existence is not revealed.
* supervisors and admins assign (and re-assign) an alarm to an operator or supervisor who may work it.

The rules of handling:

* one operator works an alarm: claiming an unassigned alarm makes the claimer its assignee, and
  nobody claims an alarm another user holds (``alarm.already_claimed``: of concurrent claims one
  wins); an operator cannot acknowledge, act on or clear an alarm another user holds either, while
  supervisors and admins may step in on any (and take it over by assigning it; a supervisor
  may assign it to themself).
* acknowledging, recording an action and clearing an unassigned alarm claim it too; recording an
  action on or clearing an unacknowledged alarm acknowledges it first (whoever calls back or clears
  an alarm has answered it; the ``acknowledged`` event is written before the action's).
* an alarm is acknowledged once (``alarm.already_acknowledged``), cleared once
  (``alarm.already_cleared``); nothing but a comment or a reopen touches a cleared alarm
  (``alarm.not_active``); only a cleared alarm is reopened (``alarm.not_cleared``), and it comes back
  with its acknowledgement and assignee (the record keeps its first answer for the service levels).
* a comment may be added to an active or a cleared alarm (notes after the event are part of the
  record).
* claiming an alarm one already holds, or assigning it to its assignee, changes nothing and writes
  no event.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Final

from callcentre.timeline import EventKind
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.identity.authz import Principal
from core.identity.models import Role
from registry.scope import by_district, sees_all_elders

# --- Errors (stable codes) ---------------------------------------------------------------------------


class AlarmNotFound(NotFound):
    code = "alarm.not_found"


class AlarmForbidden(Forbidden):
    code = "alarm.forbidden"


class AlarmNotActive(Conflict):
    code = "alarm.not_active"


class AlarmAlreadyCleared(Conflict):
    code = "alarm.already_cleared"


class AlarmAlreadyClaimed(Conflict):
    code = "alarm.already_claimed"


class AlarmAlreadyAcknowledged(Conflict):
    code = "alarm.already_acknowledged"


class AlarmNotCleared(Conflict):
    code = "alarm.not_cleared"


class AssigneeInvalid(Invalid):
    code = "alarm.assignee_invalid"


class ActionInvalid(Invalid):
    code = "alarm.action_invalid"


def not_found(alarm_id: int) -> AlarmNotFound:
    return AlarmNotFound(f"No alarm with id {alarm_id}.")


# --- Vocabulary --------------------------------------------------------------------------------------


class Action(enum.StrEnum):
    """What someone asks to do with an alarm."""

    VIEW = "view"
    PRESENT = "present"  # the alarm reached their console
    CLAIM = "claim"
    ASSIGN = "assign"
    ACKNOWLEDGE = "acknowledge"
    COMMENT = "comment"
    RECORD_ACTION = "record_action"
    CLEAR = "clear"
    REOPEN = "reopen"


class Outcome(enum.StrEnum):
    """Why an alarm was cleared. The first four are the issue's codes; the last three are finer codes
    of a real emergency (DOMAIN §7), counted as real emergencies in the figures."""

    REAL_EMERGENCY = "real_emergency"
    FALSE_ALARM = "false_alarm"
    TEST = "test"
    TECHNICAL = "technical"
    RESOLVED_ON_PHONE = "resolved_on_phone"
    RESOLVED_ON_SITE = "resolved_on_site"
    SENT_TO_HOSPITAL = "sent_to_hospital"


class ResponseAction(enum.StrEnum):
    """What an operator did about an alarm (DOMAIN §7 actions)."""

    CALL_ELDER = "call_elder"
    CALL_CONTACT = "call_contact"  # the emergency contact at ``contact_position``
    SEND_CAREGIVER = "send_caregiver"
    SEND_COMMUNITY_WORKER = "send_community_worker"
    CALL_120 = "call_120"  # ambulance
    CALL_119 = "call_119"  # fire
    CALL_110 = "call_110"  # police


class ActionResult(enum.StrEnum):
    REACHED = "reached"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    WRONG_NUMBER = "wrong_number"
    DISPATCHED = "dispatched"
    ARRIVED = "arrived"
    DECLINED = "declined"


_CALL_RESULTS: Final = frozenset(
    {ActionResult.REACHED, ActionResult.NO_ANSWER, ActionResult.BUSY, ActionResult.WRONG_NUMBER}
)
_SEND_RESULTS: Final = frozenset({ActionResult.DISPATCHED, ActionResult.ARRIVED, ActionResult.DECLINED})
# An emergency number answers (or not) and sends help, which then arrives.
_EMERGENCY_RESULTS: Final = frozenset(
    {
        ActionResult.REACHED,
        ActionResult.NO_ANSWER,
        ActionResult.BUSY,
        ActionResult.DISPATCHED,
        ActionResult.ARRIVED,
    }
)
# Which results each action can have.
RESULTS: Final[dict[ResponseAction, frozenset[ActionResult]]] = {
    ResponseAction.CALL_ELDER: _CALL_RESULTS,
    ResponseAction.CALL_CONTACT: _CALL_RESULTS,
    ResponseAction.SEND_CAREGIVER: _SEND_RESULTS,
    ResponseAction.SEND_COMMUNITY_WORKER: _SEND_RESULTS,
    ResponseAction.CALL_120: _EMERGENCY_RESULTS,
    ResponseAction.CALL_119: _EMERGENCY_RESULTS,
    ResponseAction.CALL_110: _EMERGENCY_RESULTS,
}

# Roles (DOMAIN §9).
WORKERS: Final = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})
READERS: Final = WORKERS | {Role.CIVIL_AFFAIRS}
ASSIGNERS: Final = frozenset({Role.SUPERVISOR, Role.ADMIN})
# Who an alarm may be assigned to: the call centre's own staff.
ASSIGNABLE: Final = frozenset({Role.OPERATOR, Role.SUPERVISOR})
# Who may step in on an alarm another user holds.
OVERSEERS: Final = frozenset({Role.SUPERVISOR, Role.ADMIN})

_WHO: Final[dict[Action, frozenset[Role]]] = {
    Action.VIEW: READERS,
    Action.PRESENT: WORKERS,
    Action.CLAIM: WORKERS,
    Action.ASSIGN: ASSIGNERS,
    Action.ACKNOWLEDGE: WORKERS,
    Action.COMMENT: WORKERS,
    Action.RECORD_ACTION: WORKERS,
    Action.CLEAR: WORKERS,
    Action.REOPEN: WORKERS,
}


@dataclass(frozen=True, slots=True)
class AlarmFacts:
    """What the rules read of an alarm: its district (``None``: an alarm of no elder, seen city-wide
    only) and its state."""

    id: int
    district_id: int | None
    active: bool
    acknowledged: bool
    assignee_id: int | None
    presented: bool = False


@dataclass(frozen=True, slots=True)
class Assignee:
    """A user an alarm is to be assigned to, as the rules need them."""

    user_id: int
    role: Role
    district_ids: frozenset[int]
    is_active: bool = True


@dataclass(frozen=True, slots=True)
class Change:
    """The alarm after the change and the events to record, in order (none: nothing changed).

    ``claimed``: the change makes ``after.assignee_id`` the assignee (assigned_at moves);
    ``acknowledges``: it acknowledges the alarm (acknowledged_at/by are set)."""

    before: AlarmFacts
    after: AlarmFacts
    events: tuple[EventKind, ...]
    claimed: bool = False
    acknowledges: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.events)


# --- The rules ---------------------------------------------------------------------------------------


def may(principal: Principal, action: Action) -> bool:
    """Whether the principal's role may ask for ``action`` at all (whatever the alarm)."""
    return principal.role in _WHO[action]


def sees_district(principal: Principal, district_id: int | None) -> bool:
    """The registry's district rule (:func:`registry.scope.by_district`) applied to an alarm's
    district: admins and unscoped call-centre staff see every alarm; operators, supervisors and
    civil-affairs officers with districts those of their districts (an alarm of no elder has no
    district: city-wide readers only)."""
    if principal.role not in READERS:
        return False
    if sees_all_elders(principal):
        return True
    if by_district(principal):
        return district_id is not None and district_id in principal.district_ids
    return False


def check_role(principal: Principal, action: Action) -> None:
    """:class:`AlarmForbidden` unless the role may ask for ``action``."""
    if not may(principal, action):
        raise AlarmForbidden(f"A {principal.role.value} may not {action.value.replace('_', ' ')} alarms.")


def check_action(action: ResponseAction, result: ActionResult, contact_position: int | None) -> None:
    """:class:`ActionInvalid` for a result the action cannot have, or a contact position given to an
    action other than ``call_contact`` (or missing from it)."""
    if result not in RESULTS[action]:
        allowed = ", ".join(sorted(r.value for r in RESULTS[action]))
        raise ActionInvalid(f"{action.value} has results {allowed}, not {result.value}.", field="result")
    if (action == ResponseAction.CALL_CONTACT) != (contact_position is not None):
        raise ActionInvalid(
            "contact_position is given with call_contact, and only with it.", field="contact_position"
        )


def may_be_assigned(assignee: Assignee, alarm: AlarmFacts) -> bool:
    """An active operator or supervisor who sees the alarm's district may be assigned it."""
    if not assignee.is_active or assignee.role not in ASSIGNABLE:
        return False
    as_principal = Principal(
        user_id=assignee.user_id, username="", role=assignee.role, district_ids=assignee.district_ids
    )
    return sees_district(as_principal, alarm.district_id)


def _hold(alarm: AlarmFacts, principal: Principal) -> tuple[AlarmFacts, bool]:
    """The alarm held by whoever works on it: claimed by the principal if nobody holds it; refused to
    an operator if someone else does."""
    if alarm.assignee_id is None:
        return replace(alarm, assignee_id=principal.user_id), True
    if alarm.assignee_id != principal.user_id and principal.role not in OVERSEERS:
        raise AlarmAlreadyClaimed(f"Alarm {alarm.id} is held by another user.", assignee_id=alarm.assignee_id)
    return alarm, False


def _active(alarm: AlarmFacts, action: Action) -> None:
    if not alarm.active:
        raise AlarmNotActive(f"Alarm {alarm.id} is cleared; it cannot be {_PAST[action]}.")


_PAST: Final = {
    Action.CLAIM: "claimed",
    Action.ASSIGN: "assigned",
    Action.ACKNOWLEDGE: "acknowledged",
    Action.RECORD_ACTION: "acted on",
    Action.PRESENT: "presented",
}


def decide(  # noqa: C901 - one branch per action, in the order of the module docstring
    alarm: AlarmFacts,
    principal: Principal,
    action: Action,
    *,
    assignee: Assignee | None = None,
) -> Change:
    """The change ``action`` by ``principal`` makes to ``alarm``, or a refusal (a DomainError).

    Checks, in this order: the role may ask for the action at all (403, whatever the alarm); the
    alarm is in the principal's districts (404); the alarm's state allows it (409); the assignee
    (``ASSIGN`` only) may work the alarm (422)."""
    check_role(principal, action)
    if not sees_district(principal, alarm.district_id):
        raise not_found(alarm.id)
    if action == Action.VIEW:
        return Change(alarm, alarm, ())
    if action == Action.PRESENT:
        if alarm.presented or not alarm.active:
            return Change(alarm, alarm, ())
        return Change(alarm, replace(alarm, presented=True), (EventKind.PRESENTED,))
    if action == Action.COMMENT:
        return Change(alarm, alarm, (EventKind.COMMENT,))
    if action == Action.REOPEN:
        if alarm.active:
            raise AlarmNotCleared(f"Alarm {alarm.id} is active; only a cleared alarm is reopened.")
        return Change(alarm, replace(alarm, active=True), (EventKind.REOPENED,))
    if action == Action.CLEAR and not alarm.active:
        raise AlarmAlreadyCleared(f"Alarm {alarm.id} is already cleared.")
    _active(alarm, action)
    if action == Action.ASSIGN:
        if assignee is None or not may_be_assigned(assignee, alarm):
            raise AssigneeInvalid(
                "The assignee must be an active operator or supervisor who works the alarm's district.",
                field="user_id",
            )
        if alarm.assignee_id == assignee.user_id:
            return Change(alarm, alarm, ())
        return Change(
            alarm, replace(alarm, assignee_id=assignee.user_id), (EventKind.ASSIGNED,), claimed=True
        )
    if action == Action.CLAIM and alarm.assignee_id not in (None, principal.user_id):
        # Claiming is taking a free alarm, for everyone: a supervisor takes one over by assigning it.
        raise AlarmAlreadyClaimed(f"Alarm {alarm.id} is held by another user.", assignee_id=alarm.assignee_id)
    held, claimed = _hold(alarm, principal)
    events: list[EventKind] = [EventKind.CLAIMED] if claimed else []
    if action == Action.CLAIM:
        return Change(alarm, held, tuple(events), claimed=claimed)
    if action == Action.ACKNOWLEDGE:
        if alarm.acknowledged:
            raise AlarmAlreadyAcknowledged(f"Alarm {alarm.id} is already acknowledged.")
        after = replace(held, acknowledged=True)
        return Change(alarm, after, (*events, EventKind.ACKNOWLEDGED), claimed=claimed, acknowledges=True)
    # Recording an action or clearing: whoever does it has answered the alarm.
    acknowledges = not alarm.acknowledged
    if acknowledges:
        events.append(EventKind.ACKNOWLEDGED)
    if action == Action.RECORD_ACTION:
        events.append(EventKind.ACTION)
        after = replace(held, acknowledged=True)
    else:  # CLEAR
        events.append(EventKind.CLEARED)
        after = replace(held, acknowledged=True, active=False)
    return Change(alarm, after, tuple(events), claimed=claimed, acknowledges=acknowledges)
