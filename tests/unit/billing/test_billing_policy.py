"""Subsidy rules as dated data: the rule pack parsed from billing's seeded defaults and from rows, the
payment model in each payer's value, and what the policy API refuses beyond a value's shape."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from billing.rules import (
    Payer,
    PaymentModel,
    SubsidyPolicyInvalid,
    check_subsidy_value,
    rule_packs,
)
from billing.seed import POLICY_CHECKS, POLICY_DEFAULTS
from core.errors import Invalid
from core.policy import PolicyDefault
from core.policy_rules import PolicyChecks, checked_value
from core.seed import DomainSeed, policy_checks
from tests.unit.billing.packs import DEFAULT, NOV, PILOT, day, packs, row

pytestmark = pytest.mark.unit


def defaults_of(key: str) -> list[dict[str, Any]]:
    return [d.value for d in POLICY_DEFAULTS if d.key == key]


def test_xiaogans_default_pack() -> None:
    pack = DEFAULT[day(1)]
    assert pack.order == (Payer.LTC, Payer.VOUCHER, Payer.LOCAL)
    assert {lv: (r.rate_bp, r.budget_fen, r.model) for lv, r in pack.ltc.items()} == {
        2: (9000, 60_000, PaymentModel.PER_VISIT),
        3: (9000, 90_000, PaymentModel.PER_VISIT),
        4: (9000, 120_000, PaymentModel.PER_VISIT),
    }
    assert pack.voucher is not None
    assert (pack.voucher.rate_bp, pack.voucher.budget_fen, pack.voucher.min_level) == (5000, 80_000, 2)
    assert not pack.voucher.covers("VISIT")
    assert not pack.voucher.covers("ERRAND")
    assert pack.local["elderly_alone"].min_age == 80
    assert pack.local["destitute"].generosity == (10_000, 60_000)
    assert pack.ltc[3].ref == "subsidy.ltc[3]@2026-01-01"


def test_the_pilot_pack_pays_ltc_per_day() -> None:
    pack = PILOT[day(1)]
    assert {r.model for r in pack.ltc.values()} == {PaymentModel.PER_DAY}
    assert pack.ltc[2].budget_fen == 5000
    assert pack.voucher == DEFAULT[day(1)].voucher


def test_a_row_applies_from_its_valid_from_and_ends_with_its_valid_to() -> None:
    value = {"model": "per_visit", "rate_bp": 9000, "budget_fen": 100_000, "services": ["CARE"]}
    rows = [("subsidy.ltc", "3", value, day(10), day(20))]
    by_day = rule_packs(rows, [day(9), day(10), day(20), day(21)], list(POLICY_DEFAULTS))
    assert [by_day[d].ltc[3].budget_fen for d in (day(9), day(10), day(20), day(21))] == [
        90_000,
        100_000,
        100_000,
        90_000,
    ]
    assert by_day[day(9)] is by_day[day(21)]  # the same rows in force: one parsed pack


def test_a_value_written_before_models_existed_is_per_visit() -> None:
    legacy = {"rate_bp": 9000, "budget_fen": 60_000, "services": ["CARE"]}
    pack = packs([row("subsidy.ltc", "2", legacy)], days=1)[NOV]
    assert pack.ltc[2].model is PaymentModel.PER_VISIT


def test_a_new_category_scope_is_a_new_local_rule() -> None:
    value = {"model": "per_visit", "rate_bp": 6000, "budget_fen": 25_000, "services": ["MEAL"]}
    pack = packs([row("subsidy.local", "disabled_veteran", value)], days=1)[NOV]
    assert pack.local["disabled_veteran"].rate_bp == 6000


UNPRICEABLE = [
    row("subsidy.ltc", "3", {"model": "per_week", "rate_bp": 9000, "budget_fen": 1, "services": []}),
    row("subsidy.ltc", "x", {"model": "per_visit", "rate_bp": 9000, "budget_fen": 1, "services": []}),
    row(
        "subsidy.local", "veteran", {"model": "per_visit", "rate_bp": "70%", "budget_fen": 1, "services": []}
    ),
    row(
        "subsidy.local",
        "veteran",
        {"model": "per_visit", "rate_bp": 7000, "budget_fen": 1, "services": "ALL"},
    ),
    row("subsidy.waterfall", "*", {"order": ["ltc", "insurer"]}),
]


@pytest.mark.parametrize("bad", UNPRICEABLE, ids=lambda r: f"{r[0]}[{r[1]}]")
def test_a_value_that_cannot_be_priced_with_is_a_problem_not_a_guess(bad: Any) -> None:
    with pytest.raises(SubsidyPolicyInvalid) as caught:
        packs([bad], days=1)
    assert caught.value.code == "billing.policy_invalid"


LTC = {"model": "per_visit", "rate_bp": 9000, "budget_fen": 60_000, "services": ["CARE"]}
# (key, scope, value, the fields refused)
CHECKS: list[tuple[str, str, dict[str, Any], list[str]]] = [
    ("subsidy.ltc", "2", LTC, []),
    ("subsidy.ltc", "2", {**LTC, "model": "per_day"}, []),
    ("subsidy.ltc", "2", {**LTC, "model": "monthly"}, ["value.model"]),
    ("subsidy.ltc", "2", {**LTC, "rate_bp": 10_001}, ["value.rate_bp"]),
    ("subsidy.ltc", "2", {**LTC, "rate_bp": 10_000}, []),
    ("subsidy.ltc", "5", LTC, ["scope"]),
    ("subsidy.ltc", "*", LTC, ["scope"]),
    ("subsidy.voucher", "*", {**LTC, "min_level": 5}, ["value.min_level"]),
    ("subsidy.waterfall", "*", {"order": ["local", "ltc"]}, []),
    ("subsidy.waterfall", "*", {"order": ["ltc", "ltc"]}, ["value.order"]),
    ("subsidy.waterfall", "*", {"order": ["ltc", "co_pay"]}, ["value.order"]),
    ("subsidy.voucher_expiry", "*", {"grace_days": 366}, []),
    ("subsidy.voucher_expiry", "*", {"grace_days": 367}, ["value.grace_days"]),
]


@pytest.mark.parametrize(("key", "scope", "value", "refused"), CHECKS)
def test_what_the_policy_api_refuses_beyond_the_shape(
    key: str, scope: str, value: dict[str, Any], refused: list[str]
) -> None:
    assert [e.field for e in check_subsidy_value(key, scope, value)] == refused


def test_the_policy_api_runs_billings_checks_after_the_shape() -> None:
    ok = checked_value(defaults_of("subsidy.ltc"), "subsidy.ltc", LTC, scope="3", checks=POLICY_CHECKS)
    assert ok == LTC
    with pytest.raises(Invalid) as caught:
        checked_value(
            defaults_of("subsidy.ltc"),
            "subsidy.ltc",
            {**LTC, "model": "per_month"},
            scope="3",
            checks=POLICY_CHECKS,
        )
    assert (caught.value.code, caught.value.extra["field"]) == ("policy.value_invalid", "value.model")
    # A shape error is reported first, alone: the domain's check sees only well-shaped values.
    with pytest.raises(Invalid) as shape:
        checked_value(
            defaults_of("subsidy.ltc"), "subsidy.ltc", {**LTC, "rate_bp": "x"}, checks=POLICY_CHECKS
        )
    assert shape.value.extra["field"] == "value.rate_bp"
    # Without the checks (another domain's key), only the shape is checked.
    assert checked_value(defaults_of("subsidy.ltc"), "subsidy.ltc", {**LTC, "model": "per_month"})


def test_a_domain_checks_only_keys_of_its_own() -> None:
    mine = PolicyDefault("mine.a", "*", {"n": 1}, "test")
    ok = DomainSeed(policies=(mine,), policy_checks=(PolicyChecks("mine.", lambda k, s, v: []),))
    assert policy_checks([ok]) == ok.policy_checks
    theirs = DomainSeed(policies=(mine,), policy_checks=(PolicyChecks("subsidy.", lambda k, s, v: []),))
    with pytest.raises(ValueError, match="subsidy"):
        policy_checks([theirs])


def test_every_payer_default_names_its_model() -> None:
    for d in POLICY_DEFAULTS:
        if d.key in ("subsidy.ltc", "subsidy.voucher", "subsidy.local"):
            assert d.value["model"] == "per_visit", (d.key, d.scope)
            assert check_subsidy_value(d.key, d.scope, d.value) == []
    assert dt.date(2026, 1, 1) <= NOV
