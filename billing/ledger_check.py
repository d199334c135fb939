"""The ledger's consistency check: it proves the books balance and that every paid line links to
exactly one verified visit, and reports what it finds (a ``ledger_check`` row, a log event, metrics).
It never repairs: a finding is for a person to investigate and correct with a reversal or a
correcting entry.

What it proves (each a set-based query; a finding lists up to :data:`EXAMPLES` examples):

* ``totals``: Σ debits_posted = Σ credits_posted over all accounts, and both equal Σ of the transfers;
* ``accounts``: each account's totals equal the sums of the transfers debiting and crediting it, and
  its latest balance-history row;
* ``references``: every transfer names existing accounts and batch, a reversal an existing transfer;
  every batch holds the count and sum of transfers it says;
* ``paid_lines``: every paid line (the current revision of a visit's line in its period, payable, not
  rejected at review) links to a visit that exists and is verified, and no visit has paid lines in two
  periods;
* ``reconciliation``: per period and part (each payer, the co-pay), what the ledger moved to the
  providers equals what the period's paid lines say.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import structlog
from prometheus_client import Gauge
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from billing.ledger_models import AccountKind, LedgerCheck, TransferKind
from billing.settlement_policy import PAYERS
from core.crud import Window

log = structlog.get_logger(__name__)

EXAMPLES: Final = 10
PROBLEMS = Gauge("eldercare_ledger_check_problems", "Problems the last ledger check found")
LAST_RUN = Gauge("eldercare_ledger_check_last_run_timestamp_seconds", "When the ledger check last ran")

_PART_VALUES: Final = ", ".join(f"('{p}', p.{p}_fen)" for p in (*PAYERS, "copay"))
_CHECKS: Final[dict[str, str]] = {
    "totals": """
        SELECT 'accounts' AS what, sum(debits_posted) AS debits, sum(credits_posted) AS credits
          FROM ledger_account
        HAVING coalesce(sum(debits_posted), 0) <> coalesce(sum(credits_posted), 0)
            OR coalesce(sum(debits_posted), 0) <> (SELECT coalesce(sum(amount_fen), 0) FROM ledger_transfer)
    """,
    "accounts": """
        WITH legs AS (
            SELECT debit_account_id AS id, amount_fen AS d, 0::bigint AS c FROM ledger_transfer
            UNION ALL SELECT credit_account_id, 0, amount_fen FROM ledger_transfer
        ), sums AS (SELECT id, sum(d) AS d, sum(c) AS c FROM legs GROUP BY id),
        hist AS (
            SELECT DISTINCT ON (account_id) account_id, debits_posted, credits_posted FROM ledger_balance
             ORDER BY account_id, posted_at DESC, batch_id DESC
        )
        SELECT a.id AS account_id, a.debits_posted, a.credits_posted, coalesce(s.d, 0) AS transfer_debits,
               coalesce(s.c, 0) AS transfer_credits, h.debits_posted AS history_debits,
               h.credits_posted AS history_credits
          FROM ledger_account a
          LEFT JOIN sums s ON s.id = a.id
          LEFT JOIN hist h ON h.account_id = a.id
         WHERE a.debits_posted <> coalesce(s.d, 0) OR a.credits_posted <> coalesce(s.c, 0)
            OR (h.account_id IS NOT NULL AND (h.debits_posted, h.credits_posted)
                                             <> (a.debits_posted, a.credits_posted))
            OR (h.account_id IS NULL AND s.id IS NOT NULL)
    """,
    "references": """
        SELECT t.id AS transfer_id, 'account' AS missing FROM ledger_transfer t
         WHERE NOT EXISTS (SELECT 1 FROM ledger_account a WHERE a.id = t.debit_account_id)
            OR NOT EXISTS (SELECT 1 FROM ledger_account a WHERE a.id = t.credit_account_id)
        UNION ALL
        SELECT t.id, 'batch' FROM ledger_transfer t
         WHERE NOT EXISTS (SELECT 1 FROM ledger_batch b WHERE b.id = t.batch_id)
        UNION ALL
        SELECT t.id, 'reversed transfer' FROM ledger_transfer t
         WHERE t.reverses_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM ledger_transfer o WHERE o.id = t.reverses_id)
        UNION ALL
        SELECT b.id, 'batch totals' FROM ledger_batch b
          LEFT JOIN (SELECT batch_id, count(*) AS n, sum(amount_fen) AS amount FROM ledger_transfer
                      GROUP BY batch_id) t ON t.batch_id = b.id
         WHERE (coalesce(t.n, 0), coalesce(t.amount, 0)) <> (b.transfer_count, b.amount_fen)
    """,
    "paid_lines": """
        WITH cur AS (
            SELECT DISTINCT ON (l.visit_id, l.period_id) l.id, l.visit_id, l.period_id, l.payable
              FROM settlement_line l ORDER BY l.visit_id, l.period_id, l.revision DESC
        ), paid AS (
            SELECT c.* FROM cur c
             WHERE c.payable AND NOT EXISTS (SELECT 1 FROM settlement_line_decision d
                                              WHERE d.line_id = c.id AND d.decision = 'rejected')
        )
        SELECT p.id AS line_id, p.visit_id,
               CASE WHEN v.id IS NULL THEN 'no such visit' ELSE 'visit not verified' END AS problem
          FROM paid p LEFT JOIN visit v ON v.id = p.visit_id
         WHERE v.id IS NULL OR v.verification <> 'verified'
        UNION ALL
        SELECT min(p.id), p.visit_id, 'paid in ' || count(*) || ' periods' FROM paid p
         GROUP BY p.visit_id HAVING count(*) > 1
    """,
    "reconciliation": f"""
        WITH cur AS (
            SELECT DISTINCT ON (l.visit_id, l.period_id) l.*
              FROM settlement_line l ORDER BY l.visit_id, l.period_id, l.revision DESC
        ), paid AS (
            SELECT c.* FROM cur c
             WHERE c.payable AND NOT EXISTS (SELECT 1 FROM settlement_line_decision d
                                              WHERE d.line_id = c.id AND d.decision = 'rejected')
        ), lines AS (
            SELECT p.period_id, x.part, sum(x.amount) AS amount
              FROM paid p CROSS JOIN LATERAL (VALUES {_PART_VALUES})
                   x(part, amount)
             GROUP BY p.period_id, x.part
        ), moved AS (
            SELECT t.period_id, t.part,
                   sum(CASE WHEN cr.kind = '{AccountKind.PROVIDER_RECEIVABLE.value}' THEN t.amount_fen
                            ELSE -t.amount_fen END) AS amount
              FROM ledger_transfer t
              JOIN ledger_account cr ON cr.id = t.credit_account_id
              JOIN ledger_account dr ON dr.id = t.debit_account_id
             WHERE t.period_id IS NOT NULL AND t.part IS NOT NULL
               AND t.kind IN ('{TransferKind.SHARE.value}', '{TransferKind.COPAY.value}',
                              '{TransferKind.CORRECTION.value}', '{TransferKind.REVERSAL.value}')
               AND '{AccountKind.PROVIDER_RECEIVABLE.value}' IN (cr.kind, dr.kind)
             GROUP BY t.period_id, t.part
        )
        SELECT coalesce(l.period_id, m.period_id) AS period_id, coalesce(l.part, m.part) AS part,
               coalesce(l.amount, 0) AS lines_fen, coalesce(m.amount, 0) AS ledger_fen
          FROM lines l FULL JOIN moved m ON m.period_id = l.period_id AND m.part = l.part
         WHERE coalesce(l.amount, 0) <> coalesce(m.amount, 0)
    """,  # noqa: S608 - constants only
}


def _jsonable(row: Any) -> dict[str, Any]:
    return {k: (int(v) if isinstance(v, int) else v if v is None or isinstance(v, str) else str(v))
            for k, v in row._mapping.items()}  # fmt: skip


async def run_check(session: AsyncSession, *, now: dt.datetime) -> LedgerCheck:
    """Run every check, record and report the result; repairs nothing."""
    findings: dict[str, Any] = {}
    problems = 0
    for name, sql in _CHECKS.items():
        rows = (await session.execute(text(sql))).all()
        if rows:
            problems += len(rows)
            findings[name] = {"count": len(rows), "examples": [_jsonable(r) for r in rows[:EXAMPLES]]}
    debits, credits, transfers = (
        await session.execute(
            text(
                "SELECT (SELECT coalesce(sum(debits_posted), 0) FROM ledger_account), "
                "(SELECT coalesce(sum(credits_posted), 0) FROM ledger_account), "
                "(SELECT count(*) FROM ledger_transfer)"
            )
        )
    ).one()
    check = LedgerCheck(
        ran_at=now,
        ok=problems == 0,
        debits_fen=int(debits),
        credits_fen=int(credits),
        transfers=int(transfers),
        problems=problems,
        findings=findings,
    )
    session.add(check)
    await session.flush()
    PROBLEMS.set(problems)
    LAST_RUN.set(now.timestamp())
    if problems:
        log.error("ledger.check_failed", check_id=check.id, problems=problems, kinds=sorted(findings))
    else:
        log.info("ledger.check_ok", check_id=check.id, transfers=int(transfers), debits_fen=int(debits))
    return check


async def latest(session: AsyncSession, *, window: Window) -> list[LedgerCheck]:
    """The latest runs, newest first."""
    rows = await session.scalars(
        select(LedgerCheck).order_by(LedgerCheck.id.desc()).limit(window.limit).offset(window.offset)
    )
    return list(rows)
