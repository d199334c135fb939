"""Billing's scheduled work. Each job flushes only; the scheduler's runner owns the transaction and
holds the job's advisory lock (:mod:`core.scheduler`). The composition root (``api.bootstrap``) lists
this module, so importing it registers the jobs.
"""

from __future__ import annotations

from billing import vouchers
from core.scheduler import JobContext, cron, schedule


# Daily at 00:10 Asia/Shanghai: on the 1st it issues the month's vouchers; later in the month it issues
# to elders who became entitled since (and catches up a missed 1st). Idempotent (one per elder-month).
@schedule.job("billing.issue_vouchers", cron(hour=0, minute=10))
async def issue_vouchers(ctx: JobContext) -> None:
    await vouchers.issue_vouchers(session=ctx.session, now=ctx.now)
