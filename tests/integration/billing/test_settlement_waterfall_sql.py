"""The close's set-based waterfall (:func:`billing.settlement_close.waterfall_sql`, window sums in
PostgreSQL) gives the same shares as the sequential rule (:func:`billing.settlement_pricing.
price_sequential`) on random months: random prices, rates, budgets, payers that do not apply, budgets
already partly used by other periods, payers paying per day, and every waterfall order."""

from __future__ import annotations

import datetime as dt
import itertools
import random

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from billing.settlement_close import _W_TABLE, waterfall_sql
from billing.settlement_policy import PAYERS
from billing.settlement_pricing import PayerTerms, SeqLine, price_sequential

pytestmark = pytest.mark.integration

_PAYER_COLUMNS = ", ".join(
    f"{p}_ok boolean, {p}_rate int, {p}_budget int, {p}_per_day boolean, {p}_used bigint" for p in PAYERS
)
_P_TABLE = f"""
CREATE TEMP TABLE _p (
    visit_id bigint, elder_id bigint, service_month date, service_on date, service_at timestamptz,
    amount_fen int, ord text, entitled boolean, exact boolean,
    {_PAYER_COLUMNS}
)
"""
MONTH = dt.date(2026, 10, 1)


def _month(
    rnd: random.Random, order: tuple[str, ...], per_day: frozenset[str], first_id: int
) -> list[SeqLine]:
    """One elder's month: up to 25 visits on random days, each payer's terms constant over the month
    (the close gives months whose terms change to the sequential rule itself)."""
    terms = {
        p: PayerTerms(
            ok=rnd.random() < 0.7,
            rate_bp=rnd.choice([3000, 5000, 7000, 9000, 10_000, rnd.randint(1, 10_000)]),
            budget_fen=rnd.choice([0, 1, 2_000, 20_000, 60_000, rnd.randint(0, 100_000)]),
            per_day=p in per_day,
        )
        for p in PAYERS
    }
    days = sorted(rnd.randint(1, 31) for _ in range(rnd.randint(1, 25)))
    out = []
    for i, day in enumerate(days):
        d = MONTH.replace(day=day)
        # Some visits cover only some payers (a service one of them does not cover).
        line_terms = {p: t if rnd.random() < 0.9 else PayerTerms(False, t.rate_bp, t.budget_fen, t.per_day)
                      for p, t in terms.items()}  # fmt: skip
        out.append(
            SeqLine(
                first_id + i, d, MONTH, rnd.choice([1, 5, 999, 1200, 4000, 6000, 60_000]), order, line_terms
            )
        )
    return out


@pytest.mark.parametrize("seed", range(6))
async def test_the_sql_waterfall_equals_the_sequential_rule(db: AsyncSession, seed: int) -> None:
    rnd = random.Random(seed)
    order = list(itertools.permutations(PAYERS))[seed % 6]
    per_day = frozenset(p for p in PAYERS if rnd.random() < 0.3)
    await db.execute(text("DROP TABLE IF EXISTS _p"))
    await db.execute(text("DROP TABLE IF EXISTS _w"))
    await db.execute(text(_P_TABLE))
    await db.execute(text(_W_TABLE))
    expected: dict[int, dict[str, int]] = {}
    rows = []
    for elder in range(1, 41):
        lines = _month(rnd, order, per_day, elder * 1000)
        # What other periods already paid of this month (and of each day, for per-day payers).
        used = {
            (p, t.per_day, line.day if t.per_day else MONTH): rnd.choice([0, 0, 500, 30_000])
            for line in lines
            for p, t in line.terms.items()
        }
        for line, priced in zip(lines, price_sequential(lines, used), strict=True):
            expected[line.key] = dict(priced.shares)
            row: dict[str, object] = {
                "visit_id": line.key,
                "elder_id": elder,
                "service_month": MONTH,
                "service_on": line.day,
                # The same minute for some visits of a day: the visit id breaks the tie, as in the close.
                "service_at": dt.datetime.combine(line.day, dt.time(9), dt.UTC),
                "amount_fen": line.amount_fen,
                "ord": ",".join(order),
            }
            for p, t in line.terms.items():
                row |= {
                    f"{p}_ok": t.ok,
                    f"{p}_rate": t.rate_bp,
                    f"{p}_budget": t.budget_fen,
                    f"{p}_per_day": t.per_day,
                    f"{p}_used": used[(p, t.per_day, line.day if t.per_day else MONTH)],
                }
            rows.append(row)
    columns = list(rows[0])
    await db.execute(
        text(f"INSERT INTO _p ({', '.join(columns)}, entitled, exact) "
             f"VALUES ({', '.join(':' + c for c in columns)}, true, false)"),
        rows,
    )  # fmt: skip
    await db.execute(text(waterfall_sql(order, sorted(per_day))), {"ord": ",".join(order)})
    got = {
        r[0]: dict(zip(PAYERS, r[1:], strict=True))
        for r in await db.execute(text(f"SELECT visit_id, {', '.join(f'{p}_fen' for p in PAYERS)} FROM _w"))
    }
    assert got == expected
