"""Welfare visits' pure core: risk tiers from the dated rules (as seeded, and as edited), an officer's
override, and the next due day per tier across weeks, months and quarters."""

from __future__ import annotations

import datetime as dt

import pytest

from callcentre.seed import WELFARE_DEFAULTS
from callcentre.welfare import (
    ElderFacts,
    Override,
    Tier,
    TierSource,
    add_months,
    after_alarm_hours,
    age_on,
    clause_holds,
    next_due,
    risk_tier,
    visit_window,
)
from core.policy import PolicySnapshot, snapshot_from_rows

pytestmark = pytest.mark.unit

D = dt.date
TODAY = D(2026, 11, 20)
SEEDED = snapshot_from_rows(TODAY, [], WELFARE_DEFAULTS)


def facts(
    *,
    age: int = 75,
    living: str = "with_family",
    categories: tuple[str, ...] = (),
    level: int | None = None,
    dementia: bool = False,
    alarms: int = 0,
) -> ElderFacts:
    birth = D(TODAY.year - age, TODAY.month, TODAY.day)  # turns ``age`` today
    return ElderFacts(1, birth, living, frozenset(categories), level, dementia, alarms)


@pytest.mark.parametrize(
    ("elder", "tier"),
    [
        (facts(), Tier.NONE),  # with family, no hardship: not in the programme
        (facts(age=90), Tier.NONE),
        (facts(level=4), Tier.NONE),  # frail but cared for at home by family
        (facts(living="empty_nest"), Tier.LOW),
        (facts(categories=("low_income",)), Tier.LOW),
        (facts(categories=("veteran",)), Tier.NONE),  # not a hardship category of the rules
        (facts(living="alone"), Tier.MEDIUM),
        (facts(living="empty_nest", age=80), Tier.MEDIUM),
        (facts(living="empty_nest", age=79), Tier.LOW),
        (facts(living="empty_nest", level=2), Tier.MEDIUM),
        (facts(categories=("subsistence",), living="empty_nest"), Tier.MEDIUM),
        (facts(categories=("subsistence",), dementia=True), Tier.MEDIUM),
        (facts(categories=("low_income",), alarms=1), Tier.MEDIUM),
        (facts(living="alone", age=80), Tier.HIGH),
        (facts(living="alone", age=79), Tier.MEDIUM),
        (facts(living="empty_nest", dementia=True), Tier.HIGH),
        (facts(living="alone", level=3), Tier.HIGH),
        (facts(categories=("subsistence",), level=3), Tier.HIGH),
        (facts(categories=("destitute",), living="alone"), Tier.HIGH),
        (facts(living="empty_nest", alarms=2), Tier.HIGH),
        (facts(living="empty_nest", alarms=1), Tier.LOW),
    ],
)
def test_seeded_rules_give_the_tier(elder: ElderFacts, tier: Tier) -> None:
    decided = risk_tier(elder, SEEDED, TODAY)
    assert decided.tier == tier
    assert decided.source == TierSource.RULES
    assert (decided.clause is None) == (tier == Tier.NONE)


def test_age_counts_completed_years() -> None:
    assert age_on(D(1946, 11, 21), TODAY) == 79
    assert age_on(D(1946, 11, 20), TODAY) == 80
    assert age_on(D(1948, 2, 29), D(2027, 2, 28)) == 78
    assert age_on(D(1948, 2, 29), D(2027, 3, 1)) == 79


def test_an_override_valid_on_the_day_beats_the_rules() -> None:
    elder = facts(living="alone", age=85)  # high by the rules
    lowered = Override(Tier.LOW, D(2026, 11, 1), D(2026, 11, 30))
    assert risk_tier(elder, SEEDED, TODAY, lowered).tier == Tier.LOW
    assert risk_tier(elder, SEEDED, TODAY, lowered).source == TierSource.OVERRIDE
    assert risk_tier(elder, SEEDED, D(2026, 12, 1), lowered).tier == Tier.HIGH  # ended
    assert risk_tier(elder, SEEDED, D(2026, 10, 31), lowered).tier == Tier.HIGH  # not begun
    raised = Override(Tier.HIGH, TODAY, None)
    assert risk_tier(facts(), SEEDED, TODAY, raised).tier == Tier.HIGH  # brought into the programme
    assert risk_tier(elder, SEEDED, TODAY, Override(Tier.NONE, TODAY, None)).tier == Tier.NONE


def test_rules_are_dated_data_a_later_row_changes_the_tier() -> None:
    # From 2027 the bureau makes every empty-nest elder medium: a new dated row, no code change.
    rows = [("welfare.risk", "medium", {"any": [{"living": ["empty_nest"]}]}, D(2027, 1, 1), None)]
    before = snapshot_from_rows(TODAY, rows, WELFARE_DEFAULTS)
    after = snapshot_from_rows(D(2027, 1, 1), rows, WELFARE_DEFAULTS)
    elder = facts(living="empty_nest")
    assert risk_tier(elder, before, TODAY).tier == Tier.LOW
    assert risk_tier(elder, after, D(2027, 1, 1)).tier == Tier.MEDIUM
    assert risk_tier(facts(living="alone"), after, D(2027, 1, 1)).tier == Tier.LOW  # its clause is gone


def test_an_unknown_condition_is_an_error_not_a_silent_match() -> None:
    with pytest.raises(ValueError, match="unknown condition 'min_agee'"):
        clause_holds({"min_agee": 80}, facts(), TODAY)


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (D(2026, 1, 31), 1, D(2026, 2, 28)),
        (D(2028, 1, 31), 1, D(2028, 2, 29)),
        (D(2026, 11, 30), 3, D(2027, 2, 28)),
        (D(2026, 12, 15), 1, D(2027, 1, 15)),
        (D(2026, 5, 31), 3, D(2026, 8, 31)),
        (D(2026, 11, 20), 12, D(2027, 11, 20)),
    ],
)
def test_add_months_clamps_to_the_month_end(day: dt.date, months: int, expected: dt.date) -> None:
    assert add_months(day, months) == expected


@pytest.mark.parametrize(
    ("tier", "last", "due"),
    [
        (Tier.HIGH, None, TODAY),  # never visited: due today
        (Tier.HIGH, D(2026, 11, 13), D(2026, 11, 20)),  # weekly
        (Tier.HIGH, D(2026, 11, 20), D(2026, 11, 27)),
        (Tier.HIGH, D(2026, 12, 28), D(2027, 1, 4)),  # across the year
        (Tier.HIGH, D(2026, 10, 1), D(2026, 10, 8)),  # overdue: returned as is
        (Tier.MEDIUM, D(2026, 10, 20), D(2026, 11, 20)),  # monthly
        (Tier.MEDIUM, D(2026, 1, 31), D(2026, 2, 28)),
        (Tier.MEDIUM, D(2026, 12, 31), D(2027, 1, 31)),
        (Tier.LOW, D(2026, 8, 20), D(2026, 11, 20)),  # quarterly
        (Tier.LOW, D(2026, 11, 30), D(2027, 2, 28)),
        (Tier.LOW, None, TODAY),
        (Tier.NONE, None, None),
        (Tier.NONE, D(2026, 1, 1), None),
    ],
)
def test_next_due_per_tier(tier: Tier, last: dt.date | None, due: dt.date | None) -> None:
    assert next_due(tier=tier, last_visit_on=last, policy=SEEDED, today=TODAY) == due


def test_cadence_weeks_months_quarters_over_a_year() -> None:
    """Visited on each due day of 2026 from 1 January: 53 weekly (1 Jan + 52 weeks is 31 Dec), 12
    monthly and 4 quarterly visits."""
    for tier, count in ((Tier.HIGH, 53), (Tier.MEDIUM, 12), (Tier.LOW, 4)):
        day: dt.date | None = D(2026, 1, 1)
        seen = []
        while day is not None and day <= D(2026, 12, 31):
            seen.append(day)
            day = next_due(tier=tier, last_visit_on=day, policy=SEEDED, today=day)
        assert len(seen) == count, tier
        assert len(set(seen)) == count


def test_the_cadence_is_dated_data() -> None:
    rows = [
        (
            "welfare.cadence",
            "*",
            {
                "high": {"days": 3},
                "medium": {"days": 14},
                "low": {"months": 2},
                "after_critical_hours": 12,
                "window": {"start": "08:00", "end": "18:00"},
            },
            D(2027, 1, 1),
            None,
        )
    ]
    later: PolicySnapshot = snapshot_from_rows(D(2027, 1, 1), rows, WELFARE_DEFAULTS)
    day = D(2027, 1, 1)
    assert next_due(tier=Tier.HIGH, last_visit_on=day, policy=later, today=day) == D(2027, 1, 4)
    assert next_due(tier=Tier.MEDIUM, last_visit_on=day, policy=later, today=day) == D(2027, 1, 15)
    assert next_due(tier=Tier.LOW, last_visit_on=day, policy=later, today=day) == D(2027, 3, 1)
    assert after_alarm_hours(later) == 12
    assert after_alarm_hours(SEEDED) == 24
    assert visit_window(later) == (dt.time(8), dt.time(18))
    assert visit_window(SEEDED) == (dt.time(9), dt.time(17))
