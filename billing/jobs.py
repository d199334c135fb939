"""Billing's scheduled work. Each job flushes only; the scheduler's runner owns the transaction and
holds the job's advisory lock (:mod:`core.scheduler`). The composition root (``api.bootstrap``) lists
this module, so importing it registers the jobs.
"""

from __future__ import annotations

from billing import vouchers
from core.scheduler import JobContext, cron, schedule


async def issue_vouchers(ctx: JobContext) -> None:
    """The month's care vouchers: on the 1st to every elder entitled that day, later in the month to
    those entitled since (and everyone, if the 1st was missed). Idempotent: one per elder and month."""
    await vouchers.issue_vouchers(session=ctx.session, now=ctx.now)


# Daily at 00:10 Asia/Shanghai, and a minute after the scheduler starts: a scheduler that was down on
# the 1st issues the month's vouchers when it comes back, not the next night.
schedule.add("billing.issue_vouchers", issue_vouchers, cron(hour=0, minute=10), first_run_after_s=60)
