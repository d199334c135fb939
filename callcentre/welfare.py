"""Welfare visits (探访关爱, caring visits) — the pure core: an elder's risk tier and the next due date.

Elders living alone or in hardship get caring visits by risk (issue #11): high weekly, medium monthly,
low quarterly, and one within 24 h after a CRITICAL alarm. Every number and every rule here is dated
policy data (``callcentre.seed``):

* ``welfare.risk`` — one row per tier (scope ``high``, ``medium``, ``low``), ``{"any": [clause, …]}``.
  A tier applies when any of its clauses holds; a clause holds when all of its conditions do:
  ``living`` (the elder's living situation is one of), ``categories`` (the elder holds one of these
  hardship categories on the day), ``min_age`` (years on the day), ``min_level`` (the final level of
  the assessment valid on the day, GB/T 42195), ``dementia`` (true: diagnosed), ``min_critical_alarms``
  (CRITICAL alarms in the last ``welfare.recent_alarms.days``). Tiers are tried high → medium → low;
  no clause of any tier holding means the elder is not in the programme (tier ``none``).
* ``welfare.cadence`` — ``{"high": {"days": 7}, "medium": {"months": 1}, "low": {"months": 3},
  "after_critical_hours": 24, "window": {"start": "09:00", "end": "17:00"}}``.
* An officer's override per elder (``welfare_override``, dated) beats the computed tier.

No session, no clock: ``today`` is passed in. Tested as tables in ``tests/unit/callcentre``.
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.policy import PolicySnapshot

RISK_POLICY = "welfare.risk"
CADENCE_POLICY = "welfare.cadence"
RECENT_ALARMS_POLICY = "welfare.recent_alarms"
POLICY_PREFIXES = ("welfare.",)


class Tier(enum.StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NONE = "none"  # not in the programme: no cadence visits (nor after-alarm visits)


RANKED_TIERS: tuple[Tier, ...] = (Tier.HIGH, Tier.MEDIUM, Tier.LOW)


class VisitReason(enum.StrEnum):
    CADENCE = "cadence"
    AFTER_ALARM = "after_alarm"


class TierSource(enum.StrEnum):
    RULES = "rules"
    OVERRIDE = "override"


@dataclass(frozen=True, slots=True)
class ElderFacts:
    """What the risk rules read about one elder, as of a day."""

    elder_id: int
    birth_on: dt.date
    living_situation: str  # registry.models.LivingSituation
    categories: frozenset[str]  # subsidy categories held on the day
    assessment_level: int | None  # final level of the assessment valid on the day
    dementia: bool  # the elder's record or the valid assessment says so
    critical_alarms: int  # CRITICAL alarms within the recent window


@dataclass(frozen=True, slots=True)
class Override:
    """An officer's tier for an elder over ``valid_from`` … ``valid_to`` (inclusive; None: open)."""

    tier: Tier
    valid_from: dt.date
    valid_to: dt.date | None

    def valid_on(self, day: dt.date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True, slots=True)
class Assessed:
    """The tier decided for an elder, where it came from, and (for rules) the clause that held."""

    tier: Tier
    source: TierSource
    clause: Mapping[str, Any] | None = None


def age_on(birth_on: dt.date, day: dt.date) -> int:
    """Completed years on ``day`` (a 29 February birthday counts from 1 March in common years)."""
    return day.year - birth_on.year - ((day.month, day.day) < (birth_on.month, birth_on.day))


def clause_holds(clause: Mapping[str, Any], facts: ElderFacts, day: dt.date) -> bool:
    """Whether every condition of ``clause`` holds for ``facts`` on ``day``. An unknown condition is an
    error (a typo in policy data must not silently widen or narrow the programme)."""
    for name, want in clause.items():
        if name == "living":
            ok = facts.living_situation in want
        elif name == "categories":
            ok = bool(facts.categories & set(want))
        elif name == "min_age":
            ok = age_on(facts.birth_on, day) >= want
        elif name == "min_level":
            ok = facts.assessment_level is not None and facts.assessment_level >= want
        elif name == "dementia":
            ok = facts.dementia is bool(want)
        elif name == "min_critical_alarms":
            ok = facts.critical_alarms >= want
        else:
            raise ValueError(f"{RISK_POLICY}: unknown condition {name!r}")
        if not ok:
            return False
    return True


def clauses_of(policy: PolicySnapshot, tier: Tier) -> Sequence[Mapping[str, Any]]:
    value = policy.find(RISK_POLICY, tier.value)
    if value is None:
        return ()
    clauses = value.value.get("any", [])
    if not isinstance(clauses, list):
        raise TypeError(f"{RISK_POLICY}[{tier.value}]: 'any' is not a list")
    return clauses


def computed_tier(facts: ElderFacts, policy: PolicySnapshot, day: dt.date) -> Assessed:
    """The tier the dated rules give: the first of high, medium, low with a clause that holds."""
    for tier in RANKED_TIERS:
        for clause in clauses_of(policy, tier):
            if clause_holds(clause, facts, day):
                return Assessed(tier, TierSource.RULES, clause)
    return Assessed(Tier.NONE, TierSource.RULES)


def risk_tier(
    facts: ElderFacts, policy: PolicySnapshot, day: dt.date, override: Override | None = None
) -> Assessed:
    """The elder's tier on ``day``: an override valid that day, else the rules."""
    if override is not None and override.valid_on(day):
        return Assessed(override.tier, TierSource.OVERRIDE)
    return computed_tier(facts, policy, day)


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus whole calendar months, clamped to the month's last day (31 Jan + 1 → 28/29 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(day.day, last))


def interval_after(day: dt.date, tier: Tier, policy: PolicySnapshot) -> dt.date | None:
    """The day one cadence interval of ``tier`` after ``day`` (None for tier none or no cadence)."""
    if tier == Tier.NONE:
        return None
    spec = policy.value(CADENCE_POLICY).get(tier.value)
    if not isinstance(spec, Mapping):
        return None
    days, months = spec.get("days", 0), spec.get("months", 0)
    if not isinstance(days, int) or not isinstance(months, int) or (days <= 0 and months <= 0):
        raise TypeError(f"{CADENCE_POLICY}: {tier.value} needs positive 'days' or 'months'")
    return add_months(day, months) + dt.timedelta(days=days)


def next_due(
    *, tier: Tier, last_visit_on: dt.date | None, policy: PolicySnapshot, today: dt.date
) -> dt.date | None:
    """The day the next cadence visit is due: one interval after the last welfare visit, or today when
    there has been none; None when the elder is not in the programme. A due day before ``today`` is
    overdue (it is returned as is, so the plan can show how late it is)."""
    if tier == Tier.NONE:
        return None
    if last_visit_on is None:
        return today
    return interval_after(last_visit_on, tier, policy)


def after_alarm_hours(policy: PolicySnapshot) -> float:
    """Hours after a CRITICAL alarm within which the welfare visit must take place."""
    return policy.number(CADENCE_POLICY, "after_critical_hours")


def recent_alarm_days(policy: PolicySnapshot) -> float:
    return policy.number(RECENT_ALARMS_POLICY, "days")


def visit_window(policy: PolicySnapshot) -> tuple[dt.time, dt.time]:
    """The local hours (Asia/Shanghai) in which a cadence visit is ordered on its due day."""
    window = policy.value(CADENCE_POLICY).get("window", {})
    start, end = dt.time.fromisoformat(window["start"]), dt.time.fromisoformat(window["end"])
    if end <= start:
        raise ValueError(f"{CADENCE_POLICY}: window ends before it starts")
    return start, end
