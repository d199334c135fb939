"""The payer waterfall (DOMAIN §4), case by case, every figure computed by hand.

Each case is an elder's facts, a rule pack per day and visits in order (day, service, price in fen);
each visit's expected (LTC, voucher, local, co-pay) in fen. Defaults (DOMAIN §4): LTC 90 %, budget by
level 2/3/4 = 600/900/1,200 yuan, covers CARE, BATH, CLEAN; voucher 50 %, 800 yuan, level ≥ 2, not
VISIT or ERRAND; local by category (低保 subsistence 90 %/400, 低收入 low income 70 %/300, 特困
destitute 100 %/600, …), every service.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from fractions import Fraction

import pytest

from billing.eligibility import ElderFacts, entitlements_by_day
from billing.rules import (
    Payer,
    RulePack,
    ShareReason,
    VisitLine,
    price_month,
    rate_share_fen,
    round_half_up,
    visit_amount_fen,
    visit_units,
)
from tests.unit.billing.packs import DEC, DEFAULT, NOV, PILOT, day, elder, packs, row

pytestmark = pytest.mark.unit

Split = tuple[int, int, int, int]  # LTC, voucher, local, co-pay (fen)
SUBSISTENCE_ALL_YEAR = ("subsistence", dt.date(2026, 1, 1), None)
VOUCHER_SERVICES = ["MEAL", "CLEAN", "BATH", "ESCORT", "MEDESC", "CARE"]


@dataclass(frozen=True)
class Case:
    name: str
    facts: ElderFacts
    visits: tuple[tuple[dt.date, str, int], ...]
    expected: tuple[Split, ...]
    rules: dict[dt.date, RulePack] = field(default_factory=lambda: DEFAULT)


CASES = [
    Case(
        "an LTC-insured elder at level 3 with 低保: LTC, then the voucher, then the local category",
        elder(level=3, ltc=True, categories=[SUBSISTENCE_ALL_YEAR]),
        ((day(2), "CARE", 6000),),
        # LTC 90 % of 6000 = 5400; voucher 50 % of 600 = 300; local 90 % of 300 = 270; rest 30.
        ((5400, 300, 270, 30),),
    ),
    Case(
        "services a payer does not cover get nothing from it",
        elder(level=3, ltc=True, categories=[SUBSISTENCE_ALL_YEAR]),
        ((day(2), "MEAL", 1200), (day(3), "VISIT", 3000)),
        # MEAL: not LTC's; voucher 600, local 90 % of 600 = 540. VISIT: neither LTC's nor the voucher's.
        ((0, 600, 540, 60), (0, 0, 2700, 300)),
    ),
    Case(
        "LTC's cap hit mid-month (level 2: 600 yuan), then a new month's fresh budget",
        elder(level=2, ltc=True),
        (
            *((day(d), "CARE", 12000) for d in (2, 3, 4, 5, 6)),
            (day(9), "CARE", 12000),
            (day(10), "CARE", 12000),
            (day(1, DEC), "CARE", 12000),
        ),
        (
            # 90 % of 12000 = 10800, five times: 54000 of 60000 used.
            *((10800, 600, 0, 600),) * 5,
            # 6000 left: LTC capped; the voucher takes 50 % of the 6000 unpaid.
            (6000, 3000, 0, 3000),
            (0, 6000, 0, 6000),
            # December: LTC's budget is whole again.
            (10800, 600, 0, 600),
        ),
    ),
    Case(
        "the voucher's cap (800 yuan a month)",
        elder(level=2),
        tuple((day(d), "CARE", 60000) for d in (2, 3, 4, 5)),
        ((0, 30000, 0, 30000), (0, 30000, 0, 30000), (0, 20000, 0, 40000), (0, 0, 0, 60000)),
    ),
    Case(
        "several categories at once: the most generous one (低保 over 低收入 and 高龄独居)",
        elder(
            birth_on=dt.date(1940, 3, 15),
            living="alone",
            categories=[
                ("low_income", dt.date(2026, 1, 1), None),
                ("elderly_alone", dt.date(2026, 1, 1), None),
                SUBSISTENCE_ALL_YEAR,
            ],
        ),
        ((day(2), "ERRAND", 1500),),
        ((0, 0, 1350, 150),),
    ),
    Case(
        "特困 destitute and 低保 at once: 100 %, no co-pay",
        elder(categories=[SUBSISTENCE_ALL_YEAR, ("destitute", dt.date(2026, 6, 1), None)]),
        ((day(2), "VISIT", 3000),),
        ((0, 0, 3000, 0),),
    ),
    Case(
        "a category that ends on the 15th (低保), followed by another (低收入) from the 16th",
        elder(
            categories=[
                ("subsistence", dt.date(2026, 1, 1), day(15)),
                ("low_income", day(16), None),
            ]
        ),
        ((day(15), "ERRAND", 1500), (day(16), "ERRAND", 1500), (day(1, DEC), "ERRAND", 1500)),
        ((0, 0, 1350, 150), (0, 0, 1050, 450), (0, 0, 1050, 450)),
    ),
    Case(
        "the local payer's month is one budget: the 16th's category gets what is left of it",
        elder(
            categories=[
                ("subsistence", dt.date(2026, 1, 1), day(15)),
                ("low_income", day(16), None),
            ]
        ),
        ((day(10), "CARE", 24000), (day(15), "CARE", 24000), (day(16), "CARE", 24000)),
        # 21600 of 40000; then 18400 (capped); low income's 30000 budget is already spent.
        ((0, 0, 21600, 2400), (0, 0, 18400, 5600), (0, 0, 0, 24000)),
    ),
    Case(
        "a death on the 10th: the day itself is paid, the next is not",
        elder(level=2, status="deceased", status_on=day(10)),
        ((day(10), "MEAL", 1200), (day(11), "MEAL", 1200)),
        ((0, 600, 0, 600), (0, 0, 0, 1200)),
    ),
    Case(
        "an assessment that expires on the 14th: no voucher from the 15th",
        elder(level=2, assessed_on=dt.date(2025, 11, 15), valid_until=day(14)),
        ((day(14), "MEAL", 1200), (day(15), "MEAL", 1200)),
        ((0, 600, 0, 600), (0, 0, 0, 1200)),
    ),
    Case(
        "half a fen is rounded up, and the co-pay takes the rest",
        elder(level=2, categories=[SUBSISTENCE_ALL_YEAR]),
        ((day(2), "ESCORT", 5250), (day(2), "MEAL", 1)),
        # voucher 2625; local 90 % of 2625 = 2362.5 → 2363; co-pay 262. 50 % of 1 fen = 1 fen.
        ((0, 2625, 2363, 262), (0, 1, 0, 0)),
    ),
    Case(
        "a rate changed from the 16th applies from the 16th",
        elder(level=2),
        ((day(15), "MEAL", 1200), (day(16), "MEAL", 1200)),
        ((0, 600, 0, 600), (0, 360, 0, 840)),
        packs(
            [
                row(
                    "subsidy.voucher",
                    "*",
                    {
                        "model": "per_visit",
                        "rate_bp": 3000,
                        "budget_fen": 80000,
                        "min_level": 2,
                        "services": VOUCHER_SERVICES,
                    },
                    day(16),
                )
            ]
        ),
    ),
    # The second rule pack, beside the default: a pilot city pays LTC 90 % up to 50 yuan a service day.
    Case(
        "pilot city, LTC per service day (按床日): capped per day, fresh the next day",
        elder(level=3, ltc=True),
        ((day(2), "CARE", 6000), (day(2), "CARE", 6000), (day(3), "CARE", 6000)),
        # 90 % of 6000 = 5400, capped at 5000; voucher 50 % of 1000. Second visit: the day's cap is spent.
        ((5000, 500, 0, 500), (0, 3000, 0, 3000), (5000, 500, 0, 500)),
        PILOT,
    ),
    Case(
        "the same visits under Xiaogan's default (per visit, monthly budget)",
        elder(level=3, ltc=True),
        ((day(2), "CARE", 6000), (day(2), "CARE", 6000), (day(3), "CARE", 6000)),
        ((5400, 300, 0, 300),) * 3,
    ),
]


def run(case: Case) -> list[Split]:
    lines = [VisitLine(i + 1, d, s, amount) for i, (d, s, amount) in enumerate(case.visits)]
    entitlements = entitlements_by_day(case.facts, (v.day for v in lines), case.rules)
    month = price_month(lines, entitlements, case.rules)
    out: list[Split] = []
    for v in month.visits:
        p = v.pricing
        assert sum(s.share_fen for s in p.shares) + p.copay_fen == p.amount_fen
        out.append(
            (p.share_fen(Payer.LTC), p.share_fen(Payer.VOUCHER), p.share_fen(Payer.LOCAL), p.copay_fen)
        )
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_waterfall_case(case: Case) -> None:
    assert run(case) == list(case.expected)


def reasons(case: Case, visit: int) -> dict[Payer, ShareReason]:
    lines = [VisitLine(i + 1, d, s, amount) for i, (d, s, amount) in enumerate(case.visits)]
    month = price_month(
        lines, entitlements_by_day(case.facts, (v.day for v in lines), case.rules), case.rules
    )
    return {s.payer: s.reason for s in month.visits[visit].pricing.shares}


def test_each_share_says_why() -> None:
    covered = CASES[1]  # MEAL then VISIT for an LTC-insured elder with 低保
    assert reasons(covered, 0) == {
        Payer.LTC: ShareReason.NOT_COVERED,
        Payer.VOUCHER: ShareReason.PAID,
        Payer.LOCAL: ShareReason.PAID,
    }
    cap = CASES[2]  # LTC level 2: capped on the 6th visit, spent on the 7th
    assert reasons(cap, 5)[Payer.LTC] is ShareReason.CAPPED
    assert reasons(cap, 6)[Payer.LTC] is ShareReason.BUDGET_SPENT
    assert reasons(cap, 7)[Payer.LTC] is ShareReason.PAID
    dead = CASES[8]
    assert set(reasons(dead, 1).values()) == {ShareReason.NOT_ELIGIBLE}


def test_the_month_reports_what_each_payer_used() -> None:
    case = CASES[2]
    lines = [VisitLine(i + 1, d, s, a) for i, (d, s, a) in enumerate(case.visits)]
    month = price_month(lines, entitlements_by_day(case.facts, (v.day for v in lines), case.rules), DEFAULT)
    assert month.total_fen(Payer.LTC) == 54000 + 6000 + 10800
    assert {k: v for k, v in month.used.items() if k[0] is Payer.LTC} == {
        (Payer.LTC, ("per_visit", NOV)): 60000,
        (Payer.LTC, ("per_visit", DEC)): 10800,
    }
    assert month.copay_fen == 5 * 600 + 3000 + 6000 + 600


def test_a_missing_day_is_an_error_not_a_zero() -> None:
    with pytest.raises(KeyError):
        price_month([VisitLine(1, day(2), "MEAL", 1200)], {}, DEFAULT)


ROUNDING = [
    (Fraction(1, 2), 1),
    (Fraction(3, 2), 2),
    (Fraction(5, 2), 3),
    (Fraction(249, 100), 2),
    (Fraction(0), 0),
    (7, 7),
]


@pytest.mark.parametrize(("value", "rounded"), ROUNDING)
def test_round_half_up(value: Fraction | int, rounded: int) -> None:
    assert round_half_up(value) == rounded


def test_rounding_refuses_negative_amounts() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        round_half_up(Fraction(-1, 2))


def test_rate_shares_and_visit_amounts() -> None:
    assert rate_share_fen(5000, 1) == 1
    assert rate_share_fen(9000, 5) == 5  # 4.5 → 5
    assert rate_share_fen(9000, 2625) == 2363
    # Hourly services count the ordered hours; meals and visits count one.
    assert visit_units("hour", 5400) == Fraction(3, 2)
    assert visit_units("meal", 5400) == 1
    assert visit_amount_fen(3500, visit_units("hour", 5400)) == 5250
    assert visit_amount_fen(3500, visit_units("hour", 1200)) == 1167  # 1166.67
    assert visit_amount_fen(4000, Fraction(1, 8)) == 500
    with pytest.raises(ValueError, match="0 s"):
        visit_units("hour", 0)
