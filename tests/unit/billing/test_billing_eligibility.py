"""Entitlements on a date (DOMAIN §4): status, the assessment in force, LTC coverage, categories with
their dates, the age and living situation a category asks, and the single most generous category."""

from __future__ import annotations

import datetime as dt

import pytest

from billing.eligibility import AssessmentFact, ElderFacts, age_on, entitlements_on, level_on
from billing.rules import Entitlements
from tests.unit.billing.packs import DEFAULT, PILOT, day, elder

pytestmark = pytest.mark.unit

ALWAYS = dt.date(2026, 1, 1)
PACK = DEFAULT[day(15)]


def on(facts: ElderFacts, d: dt.date) -> Entitlements:
    return entitlements_on(facts, d, DEFAULT[d])


# (case, facts, day, expected entitlements)
CASES: list[tuple[str, ElderFacts, dt.date, Entitlements]] = [
    ("nothing recorded: nothing", elder(), day(15), Entitlements()),
    ("level 2 assessed: the voucher", elder(level=2), day(15), Entitlements(voucher_level=2)),
    ("level 1: below the voucher's level", elder(level=1), day(15), Entitlements()),
    (
        "LTC-covered at level 4: LTC and the voucher",
        elder(level=4, ltc=True),
        day(15),
        Entitlements(ltc_level=4, voucher_level=4),
    ),
    ("LTC-covered at level 1: no LTC rule for the level", elder(level=1, ltc=True), day(15), Entitlements()),
    ("LTC coverage without a valid assessment: no LTC", elder(ltc=True), day(15), Entitlements()),
    (
        "an assessment that expired the day before",
        elder(level=3, ltc=True, assessed_on=dt.date(2025, 11, 15), valid_until=day(14)),
        day(15),
        Entitlements(),
    ),
    (
        "an assessment made after the day does not count yet",
        elder(level=3, assessed_on=day(16)),
        day(15),
        Entitlements(),
    ),
    (
        "a category held on the day",
        elder(categories=[("low_income", ALWAYS, None)]),
        day(15),
        Entitlements(local_category="low_income"),
    ),
    (
        "a category ending on the 15th still holds on the 15th",
        elder(categories=[("low_income", ALWAYS, day(15))]),
        day(15),
        Entitlements(local_category="low_income"),
    ),
    (
        "… and no longer on the 16th",
        elder(categories=[("low_income", ALWAYS, day(15))]),
        day(16),
        Entitlements(),
    ),
    (
        "a category starting on the 16th",
        elder(categories=[("veteran", day(16), None)]),
        day(15),
        Entitlements(),
    ),
    (
        "the most generous: the highest rate (低保 90 % over 低收入 70 %)",
        elder(categories=[("low_income", ALWAYS, None), ("subsistence", ALWAYS, None)]),
        day(15),
        Entitlements(local_category="subsistence"),
    ),
    (
        "equal rate and budget: the same choice whatever the order held (by name)",
        elder(
            categories=[
                ("veteran", ALWAYS, None),
                ("low_income", ALWAYS, None),
                ("family_planning", ALWAYS, None),
            ]
        ),
        day(15),
        Entitlements(local_category="family_planning"),
    ),
    (
        "高龄独居: 80 on the day and living alone",
        elder(birth_on=dt.date(1946, 11, 15), living="alone", categories=[("elderly_alone", ALWAYS, None)]),
        day(15),
        Entitlements(local_category="elderly_alone"),
    ),
    (
        "高龄独居: 80 only tomorrow",
        elder(birth_on=dt.date(1946, 11, 16), living="alone", categories=[("elderly_alone", ALWAYS, None)]),
        day(15),
        Entitlements(),
    ),
    (
        "高龄独居: an empty nest qualifies",
        elder(
            birth_on=dt.date(1930, 1, 1), living="empty_nest", categories=[("elderly_alone", ALWAYS, None)]
        ),
        day(15),
        Entitlements(local_category="elderly_alone"),
    ),
    (
        "高龄独居: living with family does not",
        elder(
            birth_on=dt.date(1930, 1, 1), living="with_family", categories=[("elderly_alone", ALWAYS, None)]
        ),
        day(15),
        Entitlements(),
    ),
    (
        "a category with no rule in the policy is ignored",
        elder(categories=[("no_such_category", ALWAYS, None)]),
        day(15),
        Entitlements(),
    ),
    (
        "deceased on the 15th: entitled that day",
        elder(level=3, ltc=True, status="deceased", status_on=day(15)),
        day(15),
        Entitlements(ltc_level=3, voucher_level=3),
    ),
    (
        "deceased on the 15th: nothing on the 16th",
        elder(
            level=3, ltc=True, categories=[("destitute", ALWAYS, None)], status="deceased", status_on=day(15)
        ),
        day(16),
        Entitlements(ended="deceased"),
    ),
    (
        "moved away on the 10th: nothing after it",
        elder(level=2, status="moved", status_on=day(10)),
        day(11),
        Entitlements(ended="moved"),
    ),
    (
        "in hospital: still entitled (the settlement flags the visits)",
        elder(level=2, status="hospitalised", status_on=day(1)),
        day(15),
        Entitlements(voucher_level=2),
    ),
]


@pytest.mark.parametrize(("facts", "d", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_entitlements_on_a_day(facts: ElderFacts, d: dt.date, expected: Entitlements) -> None:
    assert on(facts, d) == expected


def test_the_latest_valid_assessment_decides_the_level() -> None:
    facts = ElderFacts(
        elder_id=1,
        birth_on=dt.date(1940, 1, 1),
        living_situation="alone",
        assessments=(
            AssessmentFact(7, 3, dt.date(2026, 3, 1), dt.date(2027, 2, 28)),
            AssessmentFact(9, 1, day(10), dt.date(2027, 11, 9)),  # reassessed: better
            AssessmentFact(8, 4, day(10), dt.date(2027, 11, 9)),  # same day, lower id: not the latest
        ),
    )
    assert level_on(facts, day(9)) == 3
    assert level_on(facts, day(10)) == 1
    assert on(facts, day(9)).voucher_level == 3
    assert on(facts, day(10)).voucher_level is None


def test_ages_in_completed_years() -> None:
    assert age_on(dt.date(1946, 11, 15), day(14)) == 79
    assert age_on(dt.date(1946, 11, 15), day(15)) == 80
    leap = dt.date(1944, 2, 29)
    assert age_on(leap, dt.date(2026, 2, 28)) == 81
    assert age_on(leap, dt.date(2026, 3, 1)) == 82


def test_the_rule_pack_decides_who_has_ltc() -> None:
    facts = elder(level=2, ltc=True)
    assert entitlements_on(facts, day(15), PILOT[day(15)]).ltc_level == 2
    # A pack without an LTC rule for level 2 (a city that starts at level 3) gives no LTC.
    no_level_2 = type(PACK)(order=PACK.order, ltc={3: PACK.ltc[3]}, voucher=PACK.voucher, local=PACK.local)
    assert entitlements_on(facts, day(15), no_level_2) == Entitlements(voucher_level=2)
