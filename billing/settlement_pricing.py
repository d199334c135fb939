"""The sequential payer waterfall over one elder's lines, in integer fen: the rule the close's SQL
computes set-based (:func:`billing.settlement_close.waterfall_sql`), and the one it uses itself for
the few elder-months whose budgets or order change within the period. Pure.

For each line in order and each payer in the line's waterfall order, the payer's share is
``min(round_half_up(rate × unpaid), unpaid, max(0, budget − used))`` where ``unpaid`` is the price
less the shares of the payers before it and ``used`` what the payer already paid the elder in the
budget period (the month, or the day for a payer paying per day), including ``used_before`` from other
periods; 0 when the payer's rule does not apply (``ok`` false: not entitled, or not covering the
service). The co-pay is what remains (DOMAIN §4).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PayerTerms:
    """A payer's rule as it applies to one line."""

    ok: bool
    rate_bp: int
    budget_fen: int
    per_day: bool = False


@dataclass(frozen=True, slots=True)
class SeqLine:
    """One line to price: its key (visit id), service day and month, price, waterfall order and each
    payer's terms (by payer name)."""

    key: int
    day: dt.date
    month: dt.date
    amount_fen: int
    order: tuple[str, ...]
    terms: Mapping[str, PayerTerms]


@dataclass(frozen=True, slots=True)
class PricedLine:
    key: int
    shares: Mapping[str, int]
    copay_fen: int


# A budget period: (payer, per day?, its first day).
PeriodKey = tuple[str, bool, dt.date]


def round_half_up_bp(rate_bp: int, amount_fen: int) -> int:
    """``rate_bp / 10000 × amount_fen`` rounded half-up (both non-negative)."""
    return (rate_bp * amount_fen + 5000) // 10_000


def price_sequential(
    lines: Sequence[SeqLine], used_before: Mapping[PeriodKey, int] | None = None
) -> list[PricedLine]:
    """Price ``lines`` (one elder's, in the order budgets are used) one after the other."""
    used = dict(used_before or {})
    out: list[PricedLine] = []
    for line in lines:
        unpaid = line.amount_fen
        shares: dict[str, int] = {}
        for payer in line.order:
            t = line.terms.get(payer)
            if t is None or not t.ok:
                shares[payer] = 0
                continue
            period = (payer, t.per_day, line.day if t.per_day else line.month)
            remaining = max(0, t.budget_fen - used.get(period, 0))
            share = min(round_half_up_bp(t.rate_bp, unpaid), unpaid, remaining)
            shares[payer] = share
            used[period] = used.get(period, 0) + share
            unpaid -= share
        out.append(PricedLine(line.key, shares, unpaid))
    return out
