"""Rule packs and elders the billing unit tests share: Xiaogan's default pack (billing's seeded
``subsidy.*`` defaults, DOMAIN §4) and a pilot city's pack that pays long-term-care insurance per
service day (按床日), built the way the platform builds them, from dated policy rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

from billing.eligibility import AssessmentFact, Coverage, DatedCategory, ElderFacts
from billing.pricing import SUBSIDY_DEFAULTS
from billing.rules import PolicyRow, RulePack, rule_packs

NOV: Final = dt.date(2026, 11, 1)
DEC: Final = dt.date(2026, 12, 1)
LTC_SERVICES: Final = ["CARE", "BATH", "CLEAN"]


def day(d: int, month: dt.date = NOV) -> dt.date:
    return month.replace(day=d)


def packs(rows: Sequence[PolicyRow] = (), *, first: dt.date = NOV, days: int = 61) -> dict[dt.date, RulePack]:
    """The pack of each day from ``first`` on, under ``rows`` and billing's seeded defaults."""
    return rule_packs(list(rows), [first + dt.timedelta(days=i) for i in range(days)], SUBSIDY_DEFAULTS)


def row(key: str, scope: str, value: dict[str, Any], valid_from: dt.date = NOV) -> PolicyRow:
    return (key, scope, value, valid_from, None)


# A pilot city: LTC pays 90 % of each visit, at most 50 yuan per service day (any level 2-4).
PILOT_LTC_DAILY_CAP: Final = 5000
PILOT_ROWS: Final[tuple[PolicyRow, ...]] = tuple(
    row(
        "subsidy.ltc",
        str(level),
        {"model": "per_day", "rate_bp": 9000, "budget_fen": PILOT_LTC_DAILY_CAP, "services": LTC_SERVICES},
        dt.date(2026, 1, 1),
    )
    for level in (2, 3, 4)
)
DEFAULT = packs()
PILOT = packs(PILOT_ROWS)


def elder(
    *,
    level: int | None = None,
    assessed_on: dt.date = dt.date(2026, 5, 1),
    valid_until: dt.date | None = None,
    ltc: bool = False,
    categories: Sequence[tuple[str, dt.date, dt.date | None]] = (),
    birth_on: dt.date = dt.date(1940, 3, 15),
    living: str = "with_family",
    status: str = "active",
    status_on: dt.date | None = None,
) -> ElderFacts:
    """An elder's facts: an assessment at ``level`` (valid a year unless ``valid_until``), LTC
    coverage since 2026-01-01 if ``ltc``, ``categories`` as (category, from, to)."""
    assessments: tuple[AssessmentFact, ...] = ()
    if level is not None:
        until = valid_until or assessed_on.replace(year=assessed_on.year + 1) - dt.timedelta(days=1)
        assessments = (AssessmentFact(1, level, assessed_on, until),)
    return ElderFacts(
        elder_id=1,
        birth_on=birth_on,
        living_situation=living,
        status=status,
        status_on=status_on,
        categories=tuple(DatedCategory(c, f, t) for c, f, t in categories),
        assessments=assessments,
        ltc=(Coverage(dt.date(2026, 1, 1)),) if ltc else (),
    )
