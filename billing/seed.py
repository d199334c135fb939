"""Billing's seed: the payers' policy defaults (DOMAIN §4), written to ``policy_value``.

Who pays what share of a visit: long-term-care insurance (长护险), the national care voucher (养老服务消费
补贴), the local government's purchase of home care by subsidy category (政府购买居家养老服务), and the
allowances paid to the elder (高龄津贴, 护理补贴). Amounts in fen, rates in basis points. Tags as in
DOMAIN.md: [R] official, [S] secondary source, [E] estimate / sensible default.

Each payer's value names its payment model (``model``: ``per_visit``, a rate within a monthly budget,
Xiaogan's default; or ``per_day``, 按床日, ``budget_fen`` then being the cap per service day), read by
:mod:`billing.rules`, which also checks new values through the policy API (:data:`POLICY_CHECKS`).
"""

from __future__ import annotations

from typing import Any

from billing.rules import PaymentModel, check_subsidy_value
from core.identity.models import Role
from core.seed import DomainSeed, PolicyChecks, PolicyDefault, PolicyEditors
from dispatch.seed import SERVICE_CODES

_SRC_LTC = "DOMAIN §4.1 长护险: rate per Shanghai [S], budgets by level [E]"
_SRC_VOUCHER = "DOMAIN §4.2 养老服务消费补贴 from 2026-01-01 [R]; rate/services [E]"
_SRC_LOCAL = "DOMAIN §4.3 政府购买居家养老服务 category defaults [E]"
# Every payer of Xiaogan's rule pack pays a rate per visit within a monthly budget (DOMAIN §4).
_MODEL = PaymentModel.PER_VISIT.value


def _policy_defaults() -> tuple[PolicyDefault, ...]:
    out: list[PolicyDefault] = [
        PolicyDefault(
            "subsidy.waterfall", "*", {"order": ["ltc", "voucher", "local"]}, "DOMAIN §4 payer order [R]"
        )
    ]
    for level, budget_yuan in ((2, 600), (3, 900), (4, 1200)):
        out.append(
            PolicyDefault(
                "subsidy.ltc",
                str(level),
                {
                    "model": _MODEL,
                    "rate_bp": 9000,
                    "budget_fen": budget_yuan * 100,
                    "services": ["CARE", "BATH", "CLEAN"],
                },
                _SRC_LTC,
            )
        )
    out.append(
        PolicyDefault(
            "subsidy.voucher",
            "*",
            {
                "model": _MODEL,
                "rate_bp": 5000,
                "budget_fen": 80_000,
                "min_level": 2,
                "services": ["MEAL", "CLEAN", "BATH", "ESCORT", "MEDESC", "CARE"],
            },
            _SRC_VOUCHER,
        )
    )
    # A month's voucher expires at the end of its month ("unused budget expires at month end"), or
    # ``grace_days`` later: the days after it in which the month's voucher account stays open.
    out.append(PolicyDefault("subsidy.voucher_expiry", "*", {"grace_days": 0}, _SRC_VOUCHER))
    local = (
        ("destitute", 10_000, 600, None),  # 特困供养
        ("subsistence", 9000, 400, None),  # 低保
        ("low_income", 7000, 300, None),  # 低保边缘 / 低收入
        ("family_planning", 7000, 300, None),  # 计划生育特殊家庭
        ("veteran", 7000, 300, None),  # 重点优抚对象
        ("elderly_alone", 5000, 200, 80),  # 高龄独居/空巢
    )
    for category, rate_bp, budget_yuan, min_age in local:
        value: dict[str, Any] = {
            "model": _MODEL,
            "rate_bp": rate_bp,
            "budget_fen": budget_yuan * 100,
            "services": list(SERVICE_CODES),
        }
        if min_age is not None:
            value["min_age"] = min_age
        out.append(PolicyDefault("subsidy.local", category, value, _SRC_LOCAL))
    for scope, lo, hi, yuan in (("80-89", 80, 89, 50), ("90-99", 90, 99, 100), ("100+", 100, None, 300)):
        out.append(
            PolicyDefault(
                "allowance.old_age",
                scope,
                {"min_age": lo, "max_age": hi, "fen": yuan * 100},
                "DOMAIN §4 高龄津贴 Hubei default [E]",
            )
        )
    for level, yuan in ((2, 100), (3, 200), (4, 300)):
        out.append(
            PolicyDefault(
                "allowance.disability",
                str(level),
                {"fen": yuan * 100, "categories": ["destitute", "subsistence", "low_income"]},
                "DOMAIN §4 经济困难失能老年人护理补贴 [E]",
            )
        )
    # Back-pay (补发) for a late registration: at most this many months before the first month paid.
    out.append(
        PolicyDefault(
            "allowance.backpay",
            "*",
            {"months": 12},
            "DOMAIN §4 back-pay for late registration; window [E]",
        )
    )
    return tuple(out)


_SRC_SETTLE = "issue #12 monthly settlement, project default [E]"

# Monthly settlement (billing.settlement, billing.adjudication, billing.signals).
SETTLEMENT_DEFAULTS: tuple[PolicyDefault, ...] = (
    # The cut-off of a month's period: this day of the next month, at this hour, Asia/Shanghai.
    # Visits verified later are settled as adjustments in the next open period.
    PolicyDefault("settlement.cutoff", "*", {"day": 5, "hour": 0}, _SRC_SETTLE),
    # A line is rejected for units not matching the visit when it was on site for less than this share
    # of the ordered (billed) duration; and for not being contracted when no signed service agreement
    # covers it, if agreements are required.
    PolicyDefault(
        "settlement.adjudication", "*", {"units_min_bp": 8000, "agreement_required": True}, _SRC_SETTLE
    ),
    # Review signals: check-ins too far apart flag when the time between them is under this share of
    # the dispatch travel estimate; a provider's month billing more than jump_bp of its average over
    # the previous `jump_months` months (and at least jump_min_fen more) flags a jump.
    PolicyDefault(
        "settlement.signals",
        "*",
        {"travel_slack_bp": 5000, "jump_bp": 15_000, "jump_months": 3, "jump_min_fen": 100_000},
        _SRC_SETTLE,
    ),
)

POLICY_DEFAULTS: tuple[PolicyDefault, ...] = _policy_defaults() + SETTLEMENT_DEFAULTS

# The payers' rates and budgets and the allowances are billing's policy: the civil-affairs officers who
# run billing change them, besides admins (issue #12). The only copy of that rule: the policy API
# derives its role checks from it (``core.policy_rules``).
POLICY_EDITORS: tuple[PolicyEditors, ...] = (
    PolicyEditors("subsidy.", frozenset({Role.CIVIL_AFFAIRS})),
    PolicyEditors("allowance.", frozenset({Role.CIVIL_AFFAIRS})),
)

# What the policy API refuses in a subsidy value beyond its shape (an unknown model, a rate over 100 %…).
POLICY_CHECKS: tuple[PolicyChecks, ...] = (PolicyChecks("subsidy.", check_subsidy_value),)

SEED = DomainSeed(policies=POLICY_DEFAULTS, policy_editors=POLICY_EDITORS, policy_checks=POLICY_CHECKS)
