"""Scheduled welfare visits (探访关爱): the cadence visits that have fallen due, and the visit after a
CRITICAL alarm. Registered on :data:`core.scheduler.schedule` when imported (``api.bootstrap`` lists
this module). Each run is one transaction under the job's advisory lock; the unique keys of
``welfare_visit`` make a second run, or a second scheduler, place nothing again.
"""

from __future__ import annotations

from callcentre import welfare_service
from core.scheduler import JobContext, every, schedule

# Hourly: a due day is a whole day, so an hour's delay is nothing; the first run soon after start.
DUE_INTERVAL_S = 3600
# Every five minutes: the after-alarm visit has 24 hours (policy) and should be offered early in them.
AFTER_ALARM_INTERVAL_S = 300


async def place_due_visits(ctx: JobContext) -> None:
    await welfare_service.place_due_visits(session=ctx.session, now=ctx.now)


async def place_after_alarm_visits(ctx: JobContext) -> None:
    await welfare_service.place_after_alarm_visits(session=ctx.session, now=ctx.now)


schedule.add(
    "callcentre.welfare_due_visits", place_due_visits, every(seconds=DUE_INTERVAL_S), first_run_after_s=90
)
schedule.add(
    "callcentre.welfare_after_alarm_visits", place_after_alarm_visits, every(seconds=AFTER_ALARM_INTERVAL_S)
)
