"""Scheduled dispatch work: offer expiry and re-dispatch, recurring-order materialisation, overdue
verification, callback sampling, tomorrow's day plans and the start-at-risk watch.

Each job is a plain ``async (session, now)`` function (flushes only; the runner owns the transaction),
listed in :data:`JOBS` with its interval in seconds, and registered on :data:`core.scheduler.schedule`
when this module is imported (the composition root, ``api.bootstrap``, lists this module).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from core.scheduler import JobContext, every, schedule
from dispatch import offers, orders, start_watch, visits
from dispatch.dayplans import plan as dayplan

DispatchJob = Callable[[AsyncSession, dt.datetime], Awaitable[int]]


async def expire_offers(session: AsyncSession, now: dt.datetime) -> int:
    """Offers past their 60 s deadline expire; each order goes to the next candidate or the operator
    queue. Returns the orders moved on."""
    return await offers.expire_and_redispatch(session=session, now=now)


async def materialise_recurring(session: AsyncSession, now: dt.datetime) -> int:
    """Create the next 14 days' orders of every active RRULE series. Returns the orders created."""
    return await orders.materialise_recurring(session=session, now=now)


async def verify_overdue(session: AsyncSession, now: dt.datetime) -> int:
    """Verify checked-out visits whose 24 h sign-off window has passed. Returns the visits verified."""
    return await visits.verify_overdue(session=session, now=now)


async def sample_callbacks(session: AsyncSession, now: dt.datetime) -> int:
    """Give ≥ 10 % (policy) of yesterday's verified visits a phone-callback task. Returns tasks made."""
    return await visits.sample_callbacks(session=session, now=now)


async def plan_tomorrow(session: AsyncSession, now: dt.datetime) -> int:
    """Plan and publish tomorrow's scheduled orders per provider (each planned order accepted with its
    visit; new orders are inserted into an existing plan without moving anything). Returns the plans."""
    return await dayplan.plan_tomorrow(session=session, now=now)


async def rebuild_dirty_plans(session: AsyncSession, now: dt.datetime) -> int:
    """Re-plan (minimal change) the days whose built plans an order placed or cancelled since has made
    stale. Returns the days re-planned."""
    return await dayplan.rebuild_dirty_plans(session=session, now=now)


async def escalate_starts_at_risk(session: AsyncSession, now: dt.datetime) -> int:
    """Accepted visits whose caregiver has not set off and can no longer be there by the start go to
    the operator queue, once each (policy ``dispatch.start_risk``). Returns the orders escalated."""
    return len(await start_watch.escalate_starts_at_risk(session=session, now=now))


# (constant name, function, interval in seconds, first run this many seconds after start or None for
# one interval after start)
JOBS: tuple[tuple[str, DispatchJob, int, int | None], ...] = (
    ("dispatch.expire_offers", expire_offers, 10, None),
    ("dispatch.materialise_recurring", materialise_recurring, 3600, 30),
    ("dispatch.verify_overdue", verify_overdue, 600, None),
    ("dispatch.sample_callbacks", sample_callbacks, 3600, None),
    # Shortly after start (after the recurring orders are materialised), not an hour later: a restart
    # in the evening must not leave tomorrow unplanned for an hour.
    ("dispatch.plan_tomorrow", plan_tomorrow, 3600, 60),
    ("dispatch.rebuild_dirty_plans", rebuild_dirty_plans, 60, None),
    ("dispatch.escalate_starts_at_risk", escalate_starts_at_risk, 60, None),
)


def _runner(func: DispatchJob) -> Callable[[JobContext], Awaitable[None]]:
    async def run(ctx: JobContext) -> None:
        await func(ctx.session, ctx.now)

    run.__name__ = func.__name__
    return run


for _name, _func, _seconds, _first_s in JOBS:
    schedule.add(_name, _runner(_func), every(seconds=_seconds), first_run_after_s=_first_s)
