"""Properties of the waterfall over random rule packs, entitlements and months of visits (Hypothesis):
the parts sum to the price, no part is negative, no payer exceeds its budget in any period, each share
is at most its rate of what was unpaid, and pricing the same month again gives the same result."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.rules import (
    Entitlements,
    MonthPricing,
    Payer,
    PayerRule,
    PaymentModel,
    Period,
    RulePack,
    ShareReason,
    VisitLine,
    period_of,
    price_month,
    rate_share_fen,
)
from dispatch.seed import SERVICE_CODES

pytestmark = pytest.mark.unit

START = dt.date(2026, 11, 20)
DAYS = 20  # the visits fall in the last days of one month and the first of the next
LEVELS = (2, 3, 4)
CATEGORIES = ("destitute", "subsistence", "elderly_alone")
PROPERTY_SETTINGS = settings(max_examples=100, deadline=None, database=None)


def rules(payer: Payer, scope: str) -> st.SearchStrategy[PayerRule]:
    return st.builds(
        PayerRule,
        payer=st.just(payer),
        scope=st.just(scope),
        model=st.sampled_from(PaymentModel),
        rate_bp=st.integers(0, 10_000),
        budget_fen=st.integers(0, 150_000),
        # One draw for the set of services covered (a bit per catalogue service), not one per service.
        services=st.integers(0, 2 ** len(SERVICE_CODES) - 1).map(
            lambda bits: frozenset(c for i, c in enumerate(SERVICE_CODES) if bits >> i & 1)
        ),
    )


# Built once: a strategy made afresh on every draw costs more than the test itself.
LTC_RULES = {lv: rules(Payer.LTC, str(lv)) for lv in LEVELS}
VOUCHER_RULE = st.none() | rules(Payer.VOUCHER, "*")
LOCAL_RULES = {c: rules(Payer.LOCAL, c) for c in CATEGORIES}
ORDERS = st.permutations(list(Payer))


@st.composite
def rule_packs(draw: st.DrawFn) -> RulePack:
    return RulePack(
        order=tuple(draw(ORDERS)),
        ltc={lv: draw(s) for lv, s in LTC_RULES.items()},
        voucher=draw(VOUCHER_RULE),
        local={c: draw(s) for c, s in LOCAL_RULES.items()},
    )


entitlements = st.builds(
    Entitlements,
    ltc_level=st.none() | st.sampled_from(LEVELS),
    voucher_level=st.none() | st.sampled_from(LEVELS),
    local_category=st.none() | st.sampled_from(CATEGORIES),
)


DAY_LIST = [START + dt.timedelta(days=i) for i in range(DAYS)]
ENTITLEMENT_DAYS = st.lists(entitlements, min_size=DAYS, max_size=DAYS)
VISITS = st.lists(
    st.tuples(st.sampled_from(DAY_LIST), st.sampled_from(SERVICE_CODES), st.integers(0, 120_000)), max_size=30
)
CHANGE_DAY = st.integers(0, DAYS)


@st.composite
def months(
    draw: st.DrawFn,
) -> tuple[list[VisitLine], dict[dt.date, Entitlements], dict[dt.date, RulePack]]:
    """Visits in any order over 20 days across a month's end, each day's entitlements, and two rule
    packs with the second in force from a random day (a policy change within the period)."""
    first, second = draw(rule_packs()), draw(rule_packs())
    change = draw(CHANGE_DAY)
    days = DAY_LIST
    packs = {d: (first if i < change else second) for i, d in enumerate(days)}
    ents = dict(zip(days, draw(ENTITLEMENT_DAYS), strict=True))
    visits = draw(VISITS)
    lines = [VisitLine(i + 1, d, s, amount) for i, (d, s, amount) in enumerate(visits)]
    return lines, ents, packs


MONTHS = months()


def check_month(month: MonthPricing, lines: list[VisitLine]) -> None:
    running: dict[tuple[Payer, Period], int] = {}
    assert [v.line for v in month.visits] == lines
    for v in month.visits:
        p = v.pricing
        assert p.amount_fen == v.line.amount_fen
        assert sum(s.share_fen for s in p.shares) + p.copay_fen == p.amount_fen
        assert p.copay_fen >= 0
        unpaid = p.amount_fen
        for s in p.shares:
            assert s.share_fen >= 0
            if s.rule is None or not s.rule.covers(v.line.service):
                assert s.share_fen == 0
                unpaid -= s.share_fen
                continue
            key = (s.payer, period_of(s.rule.model, v.line.day))
            before = running.get(key, 0)
            assert s.used_before_fen == before
            # Never beyond the budget of the day's rule, nor beyond its rate of what was unpaid.
            assert s.share_fen <= max(0, s.rule.budget_fen - before)
            assert s.share_fen <= s.uncapped_fen == min(rate_share_fen(s.rule.rate_bp, unpaid), unpaid)
            if s.reason is ShareReason.PAID:
                assert s.share_fen == s.uncapped_fen
            running[key] = before + s.share_fen
            unpaid -= s.share_fen
        assert unpaid == p.copay_fen
    assert {k: v for k, v in running.items() if v} == {k: v for k, v in month.used.items() if v}
    # Over a whole period a payer pays the elder at most the largest budget of its rules in force in
    # that period (each visit being capped by the budget of its own day).
    largest: dict[tuple[Payer, Period], int] = {}
    for v in month.visits:
        for s in v.pricing.shares:
            if s.rule is not None:
                key = (s.payer, period_of(s.rule.model, v.line.day))
                largest[key] = max(largest.get(key, 0), s.rule.budget_fen)
    for key, used in month.used.items():
        assert used <= largest[key]


@PROPERTY_SETTINGS
@given(MONTHS)
def test_parts_sum_none_negative_no_cap_exceeded(
    month: tuple[list[VisitLine], Mapping[dt.date, Entitlements], Mapping[dt.date, RulePack]],
) -> None:
    lines, ents, packs = month
    check_month(price_month(lines, ents, packs), lines)


@PROPERTY_SETTINGS
@given(MONTHS)
def test_pricing_again_gives_the_same(
    month: tuple[list[VisitLine], Mapping[dt.date, Entitlements], Mapping[dt.date, RulePack]],
) -> None:
    lines, ents, packs = month
    once = price_month(lines, ents, packs)
    assert price_month(list(lines), dict(ents), dict(packs)) == once
    # A month priced in two halves (the same order) uses the budgets the same way: the second half
    # sees what the first used through the lines it is priced after.
    assert price_month(lines[: len(lines) // 2], ents, packs).visits == once.visits[: len(lines) // 2]
