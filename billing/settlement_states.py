"""The life of a settlement period: its transitions, who makes each, and why one is refused. Pure;
:mod:`billing.settlement` makes each transition with one conditional update
(``UPDATE … WHERE state IN (<allowed from>)``) and answers a refused one with :func:`refusal`'s code.

::

    open ──close──▶ closed ──(every district reviewed)──▶ reviewed ──approve──▶ approved
      ▲               │                                     │                       │
      └──reopen───────┴─────────────────────────────────────┘                      pay
                                                                                    ▼
                                                            locked ◀──lock──── paid (payment reference)

* close: at or after the cut-off, when the previous month's period is not open; admins and
  civil-affairs officers (the close is city-wide; closing again changes nothing and answers the same
  statements);
* reopen: admins, with a reason, before approval and while no later period is closed; the re-close
  only adds correcting entries;
* review: each district's officer (or an admin) marks the district's lines reviewed once every passed
  line has a decision; the last district moves the period to reviewed;
* approve, pay (with the payment reference), lock: admins. A locked period changes no more, for any
  role (a trigger of migration 0020 refuses it too).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from billing.settlement_models import PeriodState
from core.identity.models import Role

S = PeriodState


class Action(enum.StrEnum):
    CLOSE = "close"
    REOPEN = "reopen"
    REVIEW = "review"
    APPROVE = "approve"
    PAY = "pay"
    LOCK = "lock"


@dataclass(frozen=True, slots=True)
class Transition:
    sources: frozenset[PeriodState]
    target: PeriodState
    roles: frozenset[Role]


TRANSITIONS: Final[dict[Action, Transition]] = {
    Action.CLOSE: Transition(frozenset({S.OPEN}), S.CLOSED, frozenset({Role.ADMIN, Role.CIVIL_AFFAIRS})),
    Action.REOPEN: Transition(frozenset({S.CLOSED, S.REVIEWED}), S.OPEN, frozenset({Role.ADMIN})),
    Action.REVIEW: Transition(frozenset({S.CLOSED}), S.REVIEWED, frozenset({Role.ADMIN, Role.CIVIL_AFFAIRS})),
    Action.APPROVE: Transition(frozenset({S.REVIEWED}), S.APPROVED, frozenset({Role.ADMIN})),
    Action.PAY: Transition(frozenset({S.APPROVED}), S.PAID, frozenset({Role.ADMIN})),
    Action.LOCK: Transition(frozenset({S.PAID}), S.LOCKED, frozenset({Role.ADMIN})),
}

# Lines are decided, and districts reviewed, while the period is closed (not yet reviewed).
DECIDING: Final = frozenset({S.CLOSED})
# States after the close: the statements exist.
CLOSED_STATES: Final = frozenset({S.CLOSED, S.REVIEWED, S.APPROVED, S.PAID, S.LOCKED})


def refusal(state: PeriodState, action: Action) -> str | None:
    """The problem code refusing ``action`` on a period in ``state``, or None when it is allowed."""
    if state == S.LOCKED:
        return "settlement.period_locked"
    if state not in TRANSITIONS[action].sources:
        return "settlement.period_state"
    return None


def may(role: Role, action: Action) -> bool:
    return role in TRANSITIONS[action].roles
