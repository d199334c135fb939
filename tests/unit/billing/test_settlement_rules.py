"""Settlement's pure rules, as tables: adjudication's reasons and their order, the payable outcomes,
the sequential waterfall (caps, orders, per-day budgets, what other periods used), the review
signals, the period's transitions, the cut-off, and the canonical statement."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from billing.adjudication import (
    HARD_ORDER,
    PUBLIC_ONLY,
    REASON_LABELS,
    AdjudicationPolicy,
    Reason,
    VisitFacts,
    hard_reason,
    payable,
    public_reason,
)
from billing.seed import POLICY_DEFAULTS
from billing.settlement_models import PeriodState
from billing.settlement_policy import PAYERS, cutoff_at, day_policy
from billing.settlement_pricing import PayerTerms, SeqLine, price_sequential, round_half_up_bp
from billing.settlement_states import Action, may, refusal
from billing.signals import Signal, SignalPolicy, billing_jump, overloaded, signal_codes, too_far_apart
from billing.statements import canonical, checksum, sha256_hex
from core.geo import haversine_m
from core.identity.models import Role
from core.policy import snapshot_from_rows

POLICY = AdjudicationPolicy(units_min_bp=8000, agreement_required=True)
OK = VisitFacts(
    open_exception=False,
    verified_by_cutoff=True,
    duplicate=False,
    service_matches_order=True,
    hourly=True,
    duration_s=3600,
    on_site_s=3600,
    contracted=True,
    agreement_covered=True,
)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, None),
        ({"open_exception": True, "verified_by_cutoff": False}, Reason.UNRESOLVED_EXCEPTION),
        ({"verified_by_cutoff": False}, Reason.NO_VERIFIED_VISIT),
        ({"duplicate": True, "on_site_s": 10}, Reason.DUPLICATE),
        ({"service_matches_order": False}, Reason.UNITS_MISMATCH),
        ({"on_site_s": 2879}, Reason.UNITS_MISMATCH),  # under 80 % of an hour
        ({"on_site_s": 2880}, None),  # exactly 80 %
        ({"on_site_s": None}, Reason.UNITS_MISMATCH),
        ({"hourly": False, "on_site_s": 60}, None),  # a meal or a visit is one unit
        ({"contracted": False}, Reason.NOT_CONTRACTED),
        ({"agreement_covered": False}, Reason.NOT_CONTRACTED),
    ],
)
def test_hard_reasons_in_their_order(changes: dict[str, object], reason: Reason | None) -> None:
    assert hard_reason(dataclasses.replace(OK, **changes), POLICY) is reason  # type: ignore[arg-type]


def test_agreements_are_required_only_by_policy() -> None:
    lax = AdjudicationPolicy(units_min_bp=8000, agreement_required=False)
    assert hard_reason(dataclasses.replace(OK, agreement_covered=False), lax) is None


@pytest.mark.parametrize(
    ("entitled", "covered", "public", "amount", "reason"),
    [
        (False, False, 0, 4000, Reason.NOT_ELIGIBLE),
        (True, False, 0, 4000, Reason.NOT_COVERED),
        (True, True, 0, 4000, Reason.CAP_REACHED),
        (True, True, 1, 4000, None),
        (True, True, 0, 0, None),
    ],
)
def test_public_reasons(
    entitled: bool, covered: bool, public: int, amount: int, reason: Reason | None
) -> None:
    assert public_reason(entitled=entitled, covered=covered, public_fen=public, amount_fen=amount) is reason


def test_reasons_are_numbered_labelled_and_split_between_visit_and_payers() -> None:
    assert [int(r) for r in Reason] == list(range(1, 9))
    assert set(REASON_LABELS) == set(Reason)
    assert set(HARD_ORDER) | PUBLIC_ONLY == set(Reason)
    assert payable(None)
    assert all(payable(r) for r in PUBLIC_ONLY)
    assert not any(payable(r) for r in HARD_ORDER)


def _terms(ok: bool, rate: int, budget: int, per_day: bool = False) -> PayerTerms:
    return PayerTerms(ok=ok, rate_bp=rate, budget_fen=budget, per_day=per_day)


def _line(key: int, amount: int, day: int = 1, **terms: PayerTerms) -> SeqLine:
    d = dt.date(2026, 10, day)
    return SeqLine(
        key, d, d.replace(day=1), amount, PAYERS, {p: terms.get(p, _terms(False, 0, 0)) for p in PAYERS}
    )


def test_round_half_up() -> None:
    assert [round_half_up_bp(5000, a) for a in (1, 2, 3, 5)] == [1, 1, 2, 3]
    assert round_half_up_bp(9000, 5) == 5  # 4.5 → 5
    assert round_half_up_bp(7000, 4000) == 2800


def test_a_cap_hit_mid_month_and_the_payers_after_it() -> None:
    # LTC 90 % within 600 yuan; the voucher 50 % of what is left within 800 yuan.
    ltc, voucher = _terms(True, 9000, 60_000), _terms(True, 5000, 80_000)
    priced = price_sequential([_line(i, 30_000, i + 1, ltc=ltc, voucher=voucher) for i in range(3)])
    assert [p.shares["ltc"] for p in priced] == [27_000, 27_000, 6_000]
    # Unpaid after LTC: 3000, 3000, 24000; the voucher pays half of each.
    assert [p.shares["voucher"] for p in priced] == [1_500, 1_500, 12_000]
    assert [p.copay_fen for p in priced] == [1_500, 1_500, 12_000]
    assert all(sum(p.shares.values()) + p.copay_fen == 30_000 for p in priced)


def test_other_periods_use_the_budget_first_and_per_day_budgets_start_afresh() -> None:
    local = _terms(True, 10_000, 1_000, per_day=True)
    lines = [_line(1, 800, 1, local=local), _line(2, 800, 1, local=local), _line(3, 800, 2, local=local)]
    priced = price_sequential(lines, {("local", True, dt.date(2026, 10, 1)): 500})
    assert [p.shares["local"] for p in priced] == [500, 0, 800]
    assert [p.copay_fen for p in priced] == [300, 800, 0]


def test_a_payer_that_does_not_apply_pays_nothing_and_the_order_decides() -> None:
    ltc, local = _terms(False, 9000, 60_000), _terms(True, 5000, 20_000)
    line = dataclasses.replace(_line(1, 1_000, ltc=ltc, local=local), order=("local", "ltc"))
    (priced,) = price_sequential([line])
    assert priced.shares == {"local": 500, "ltc": 0}
    assert priced.copay_fen == 500


def test_signals() -> None:
    policy = SignalPolicy(
        travel_slack_bp=5000, jump_bp=15_000, jump_months=3, jump_min_fen=100_000,
        urban_speed_kmh=15, rural_speed_kmh=30, detour_bp=13_000,
    )  # fmt: skip
    assert overloaded(9, 8)
    assert not overloaded(8, 8)
    km = haversine_m(30.92, 113.91, 30.92, 114.0)  # about 8.6 km
    # 8.6 km × 1.3 at 15 km/h is about 45 minutes; half of it is the slack.
    assert too_far_apart(km, 10 * 60, rural=False, policy=policy)
    assert not too_far_apart(km, 30 * 60, rural=False, policy=policy)
    assert not too_far_apart(km, 15 * 60, rural=True, policy=policy)  # 30 km/h in the country
    assert billing_jump(400_000, [200_000, 200_000, 200_000], policy)
    assert not billing_jump(250_000, [200_000, 200_000, 200_000], policy)
    assert not billing_jump(100_000, [10_000], policy)  # ten times as much, but under 1,000 yuan more
    assert not billing_jump(400_000, [], policy)
    assert signal_codes(Signal.CAREGIVER_OVERLOAD | Signal.HOSPITAL_DAY) == [
        "caregiver_overload",
        "hospital_day",
    ]


@pytest.mark.parametrize(
    ("state", "action", "code"),
    [
        (PeriodState.OPEN, Action.CLOSE, None),
        (PeriodState.OPEN, Action.APPROVE, "settlement.period_state"),
        (PeriodState.CLOSED, Action.REVIEW, None),
        (PeriodState.CLOSED, Action.REOPEN, None),
        (PeriodState.REVIEWED, Action.REOPEN, None),
        (PeriodState.REVIEWED, Action.APPROVE, None),
        (PeriodState.APPROVED, Action.REOPEN, "settlement.period_state"),
        (PeriodState.APPROVED, Action.PAY, None),
        (PeriodState.PAID, Action.LOCK, None),
        (PeriodState.PAID, Action.PAY, "settlement.period_state"),
        (PeriodState.LOCKED, Action.LOCK, "settlement.period_locked"),
        (PeriodState.LOCKED, Action.REOPEN, "settlement.period_locked"),
    ],
)
def test_transitions(state: PeriodState, action: Action, code: str | None) -> None:
    assert refusal(state, action) == code


def test_who_moves_a_period() -> None:
    assert may(Role.CIVIL_AFFAIRS, Action.CLOSE)
    assert may(Role.CIVIL_AFFAIRS, Action.REVIEW)
    assert not may(Role.CIVIL_AFFAIRS, Action.APPROVE)
    assert all(may(Role.ADMIN, a) for a in Action)
    assert not any(may(Role.PROVIDER_ADMIN, a) for a in Action)


def test_the_cutoff_is_the_fifth_of_the_next_month_in_xiaogan() -> None:
    snap = snapshot_from_rows(dt.date(2026, 11, 1), [], POLICY_DEFAULTS)
    assert cutoff_at(dt.date(2026, 10, 1), snap) == dt.datetime(2026, 11, 4, 16, tzinfo=dt.UTC)
    assert cutoff_at(dt.date(2026, 12, 1), snap) == dt.datetime(2027, 1, 4, 16, tzinfo=dt.UTC)


def test_the_day_policy_reads_the_seeded_payers() -> None:
    day = day_policy(snapshot_from_rows(dt.date(2026, 10, 1), [], POLICY_DEFAULTS))
    assert day.order == ("ltc", "voucher", "local")
    rows = {(r.payer, r.scope): r for r in day.rows}
    assert rows[("ltc", "3")].budget_fen == 90_000
    assert rows[("voucher", "*")].min_level == 2
    assert rows[("local", "elderly_alone")].min_age == 80
    assert (day.units_min_bp, day.agreement_required) == (8000, True)


def test_statements_are_canonical() -> None:
    a = canonical({"b": 1, "a": {"z": [1, 2], "y": "孝感"}})
    assert a == '{"a":{"y":"孝感","z":[1,2]},"b":1}'
    assert sha256_hex(a) == sha256_hex(canonical({"a": {"z": [1, 2], "y": "孝感"}, "b": 1}))
    assert checksum([("provider", 2, "x"), ("district", 1, "y")]) == checksum(
        [("district", 1, "y"), ("provider", 2, "x")]
    )
