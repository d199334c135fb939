"""The policy API's wire types: the commands :mod:`core.policy_service` takes (``PolicyCreate``,
``PolicyEnd``) and what ``/api/v1/policies`` answers."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec

from core.policy_rules import RowStatus
from core.types import NO_NUL, Day, Input

# Keys are dotted lower-case names with at least one dot (``subsidy.ltc``, ``alarm.vitals.spo2``).
KEY_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$"
# Scopes: ``*``, a code, a category, a band (``100+``, ``80-89``), a level.
SCOPE_PATTERN = r"^(\*|[A-Za-z0-9][A-Za-z0-9_.+\-]*)$"

PolicyKey = Annotated[
    str, msgspec.Meta(min_length=3, max_length=80, pattern=KEY_PATTERN, description="Policy key")
]
PolicyScope = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=40,
        pattern=SCOPE_PATTERN,
        description="Scope (``*``, a service code, a category, a level, a band…)",
    ),
]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
PolicyValueIn = Annotated[
    dict[str, Any],
    msgspec.Meta(
        max_length=50,
        description="The value: the same fields and JSON types as the key's seeded default",
    ),
]


class PolicyCreate(Input):
    """A new dated row. ``valid_from`` is today or later (Asia/Shanghai); ``valid_to`` (inclusive) is
    open-ended when absent; ``source`` says where the value comes from (a decree, a decision) and why."""

    key: PolicyKey
    value: PolicyValueIn
    valid_from: Day
    source: Reason
    scope: PolicyScope = "*"
    valid_to: Day | None = None


class PolicyEnd(Input):
    """A row's new last day (inclusive; ``null``: open-ended again), today or later, and why."""

    valid_to: Day | None
    reason: Reason


Origin = Literal["row", "default"]


class PolicyInEffectRead(msgspec.Struct):
    """The value of one (key, scope) on the day: a row of ``policy_value`` (``origin`` ``row``, with its
    id) or, when the table has no row valid that day, the seeded default (``origin`` ``default``, no id,
    ``valid_from`` the policy epoch)."""

    key: str
    scope: str
    value: dict[str, Any]
    valid_from: dt.date
    valid_to: dt.date | None
    source: str
    origin: Origin
    row_id: int | None


class PolicyInEffectList(msgspec.Struct):
    on: dt.date
    items: list[PolicyInEffectRead]


class PolicyRowRead(msgspec.Struct):
    """One dated row, and where it stands today (Asia/Shanghai): ``future`` (not started: may be
    deleted), ``in_effect`` (the row applied), ``superseded`` (valid, but a row with a later
    ``valid_from`` applies) or ``ended``."""

    id: int
    key: str
    scope: str
    value: dict[str, Any]
    valid_from: dt.date
    valid_to: dt.date | None
    source: str
    created_at: dt.datetime
    status: RowStatus


class PolicyHistory(msgspec.Struct):
    """Every row of a key (of one scope, when asked), oldest ``valid_from`` first."""

    key: str
    scope: str | None
    items: list[PolicyRowRead]
