"""Wire types of the quote (``GET /api/v1/billing/quote``): amounts in integer fen, rates in basis
points, dates Asia/Shanghai. Payers carry their names in Chinese and English."""

from __future__ import annotations

import datetime as dt
from typing import Final

import msgspec

from billing.quote import Quote
from billing.rules import Entitlements, Payer, PayerShare

# The payers' names (zh-CN first, English), for clients to show as they are.
PAYER_NAMES: Final[dict[Payer, tuple[str, str]]] = {
    Payer.LTC: ("长护险", "Long-term-care insurance"),
    Payer.VOUCHER: ("养老服务消费补贴", "National care voucher"),
    Payer.LOCAL: ("政府购买居家养老服务", "Government-purchased home care"),
}


class EntitlementsRead(msgspec.Struct):
    """What the elder is entitled to on the day: LTC at an ability level, the voucher (with the level
    that earns it), the one local category applied; ``ended`` (deceased, moved) when nothing is."""

    ltc_level: int | None
    voucher_level: int | None
    local_category: str | None
    ended: str | None


class PayerShareRead(msgspec.Struct):
    """One payer's part. ``reason``: ``paid`` (rate × what was unpaid), ``capped`` (cut to what
    remained of its budget), ``budget_spent``, ``not_covered`` (the service), ``not_eligible`` (the
    elder, that day). ``budget_fen`` is the budget per ``model`` period (a month for ``per_visit``, a
    service day for ``per_day``), ``used_before_fen`` what the payer had paid in that period before this
    visit, ``remaining_after_fen`` what is left after it. ``policy_ref`` names the policy row applied."""

    payer: str
    name_zh: str
    name_en: str
    share_fen: int
    reason: str
    rate_bp: int | None
    uncapped_fen: int
    model: str | None
    budget_fen: int | None
    used_before_fen: int
    remaining_after_fen: int | None
    scope: str | None
    policy_ref: str | None


class QuoteRead(msgspec.Struct):
    """A visit's price split between its payers and the elder's co-pay (``copay_fen``); the shares and
    the co-pay sum to ``amount_fen`` = ``unit_price_fen`` × ``units`` (rounded half-up).
    ``month_visits``: the verified visits of the month before it, whose use of the budgets is counted."""

    elder_id: int
    service: str
    on: dt.date
    units: float
    unit: str
    unit_price_fen: int
    amount_fen: int
    shares: list[PayerShareRead]
    copay_fen: int
    entitlements: EntitlementsRead
    month_visits: int


def entitlements_read(e: Entitlements) -> EntitlementsRead:
    return EntitlementsRead(e.ltc_level, e.voucher_level, e.local_category, e.ended)


def share_read(s: PayerShare) -> PayerShareRead:
    zh, en = PAYER_NAMES[s.payer]
    rule = s.rule
    return PayerShareRead(
        payer=s.payer.value,
        name_zh=zh,
        name_en=en,
        share_fen=s.share_fen,
        reason=s.reason.value,
        rate_bp=None if rule is None else rule.rate_bp,
        uncapped_fen=s.uncapped_fen,
        model=None if rule is None else rule.model.value,
        budget_fen=None if rule is None else rule.budget_fen,
        used_before_fen=s.used_before_fen,
        remaining_after_fen=(
            None if rule is None else max(0, rule.budget_fen - s.used_before_fen - s.share_fen)
        ),
        scope=None if rule is None else rule.scope,
        policy_ref=None if rule is None else rule.ref,
    )


def quote_read(q: Quote) -> QuoteRead:
    return QuoteRead(
        elder_id=q.elder_id,
        service=q.service,
        on=q.on,
        units=float(q.units),
        unit=q.unit,
        unit_price_fen=q.unit_price_fen,
        amount_fen=q.pricing.amount_fen,
        shares=[share_read(s) for s in q.shares],
        copay_fen=q.pricing.copay_fen,
        entitlements=entitlements_read(q.entitlements),
        month_visits=q.month_visits,
    )
