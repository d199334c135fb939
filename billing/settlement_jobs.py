"""Settlement's scheduled work (flushes only; the scheduler's runner owns each run's transaction and
an advisory lock per job, so two schedulers never run one at once):

* ``billing.open_period``: the current month's period exists (on the 1st, and hourly as a safety net;
  idempotent);
* ``billing.close_due_periods``: the oldest open period whose cut-off has passed (and whose previous
  period is closed) is closed by the platform; one per run, as a close is big;
* ``billing.ledger_check``: the ledger consistency check (:mod:`billing.ledger_check`), daily at
  03:00; it reports and never repairs.
"""

from __future__ import annotations

import structlog
from sqlalchemy import select

from billing import ledger_check, settlement
from billing.settlement_models import PeriodState, SettlementPeriod
from core.clock import local_date
from core.scheduler import JobContext, cron, schedule

log = structlog.get_logger(__name__)


@schedule.job("billing.open_period", cron(minute=5))
async def open_period(ctx: JobContext) -> None:
    await settlement.ensure_period(session=ctx.session, month=local_date(ctx.now))


@schedule.job("billing.close_due_periods", cron(minute=20))
async def close_due_periods(ctx: JobContext) -> None:
    due = await ctx.session.scalar(
        select(SettlementPeriod.id)
        .where(SettlementPeriod.state == PeriodState.OPEN.value, SettlementPeriod.cutoff_at <= ctx.now)
        .order_by(SettlementPeriod.month)
        .limit(1)
    )
    if due is not None:
        result = await settlement.close_period(session=ctx.session, actor=None, period_id=due, now=ctx.now)
        log.info("settlement.scheduled_close", period_id=due, statements=len(result.statements))


@schedule.job("billing.ledger_check", cron(hour=3, minute=0))
async def check_ledger(ctx: JobContext) -> None:
    await ledger_check.run_check(ctx.session, now=ctx.now)
