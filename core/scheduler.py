"""Scheduled work: the schedule that domains add their jobs to, and an APScheduler 3 runner for it.

A domain declares its jobs in its own ``jobs.py``::

    from core.scheduler import JobContext, every, schedule

    @schedule.job("<domain>.<what>", every(seconds=30))
    async def expire_something(ctx: JobContext) -> None:
        await service.expire_something(session=ctx.session, now=ctx.now)

and the composition root (``api.bootstrap``) lists that module, so it is imported (registering the
jobs) before the scheduler starts. The kernel names no domain: :func:`run_scheduler` runs the jobs
it is given.

Each run gets its own session inside one transaction, which the runner commits (or rolls back on an
error): jobs flush, they do not commit. A PostgreSQL advisory lock taken in that transaction makes a
job exclusive across processes, so two scheduler instances never run the same job at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import SHANGHAI, Clock, utc_now
from core.settings import Settings

log = structlog.get_logger()

# The job runs in progress in this process, awaited when draining at shutdown.
RUNNING: set[asyncio.Task[object]] = set()


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job run gets: a session inside the run's transaction, the run's instant, the settings."""

    session: AsyncSession
    now: dt.datetime
    settings: Settings


JobFunc = Callable[[JobContext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Job:
    """A named, scheduled unit of work. ``name`` is constant (``domain.what``); it is the job id,
    the log key and the advisory-lock key."""

    name: str
    func: JobFunc
    trigger: BaseTrigger
    # Seconds after the scheduler starts for the first run; None: when the trigger first fires (for
    # ``every`` one interval after start).
    first_run_after_s: int | None = None

    @property
    def lock_key(self) -> int:
        """A stable signed 64-bit key for ``pg_try_advisory_xact_lock``."""
        return int.from_bytes(hashlib.sha256(self.name.encode()).digest()[:8], "big", signed=True)


class JobRegistry:
    """Jobs by name. Names are unique; registering one twice is an error."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def add(
        self, name: str, func: JobFunc, trigger: BaseTrigger, *, first_run_after_s: int | None = None
    ) -> Job:
        if name in self._jobs:
            raise ValueError(f"Job {name!r} is already registered.")
        job = Job(name, func, trigger, first_run_after_s)
        self._jobs[name] = job
        return job

    def job(self, name: str, trigger: BaseTrigger) -> Callable[[JobFunc], JobFunc]:
        """Decorator form of ``add``."""

        def register(func: JobFunc) -> JobFunc:
            self.add(name, func, trigger)
            return func

        return register

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    def __len__(self) -> int:
        return len(self._jobs)

    def names(self) -> list[str]:
        return sorted(self._jobs)


# The platform's jobs: each domain's jobs module adds its own when imported.
schedule = JobRegistry()


def every(*, seconds: int = 0, minutes: int = 0, hours: int = 0) -> IntervalTrigger:
    """A fixed interval (seconds/minutes/hours add up), first run one interval after start."""
    return IntervalTrigger(seconds=seconds, minutes=minutes, hours=hours, timezone=dt.UTC)


def cron(**fields: str | int) -> CronTrigger:
    """A cron schedule in Asia/Shanghai wall-clock time, e.g. ``cron(day=1, hour=2)`` for 02:00 on the
    first of every month, China time (fields as in APScheduler's ``CronTrigger``)."""
    return CronTrigger(timezone=SHANGHAI, **fields)


async def run_job(
    job: Job,
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: Clock = utc_now,
) -> bool:
    """One run of ``job`` in its own transaction. Returns ``False`` if another process holds the job's
    lock (the run is skipped). Errors are logged and the transaction rolled back; they do not
    propagate, so one failing run does not stop the schedule."""
    started = time.perf_counter()
    task = asyncio.current_task()
    if task is not None:
        RUNNING.add(task)
    try:
        async with sessionmaker() as session, session.begin():
            locked = await session.scalar(select(func.pg_try_advisory_xact_lock(job.lock_key)))
            if not locked:
                log.info("scheduler.job_skipped", job=job.name, reason="locked elsewhere")
                return False
            await job.func(JobContext(session=session, now=clock(), settings=settings))
    except Exception:
        log.exception("scheduler.job_failed", job=job.name)
        return False
    finally:
        if task is not None:
            RUNNING.discard(task)
    log.debug("scheduler.job_finished", job=job.name, ms=round((time.perf_counter() - started) * 1000, 1))
    return True


def build_scheduler(
    jobs: JobRegistry,
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: Clock = utc_now,
) -> AsyncIOScheduler:
    """An ``AsyncIOScheduler`` (not started) with every job of ``jobs``. Missed runs are coalesced into
    one, a job never overlaps itself, and a run more than 5 minutes late is skipped. A job with
    ``first_run_after_s`` first runs that many seconds after the scheduler starts, then on its trigger."""
    scheduler = AsyncIOScheduler(
        timezone=dt.UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
    )
    # APScheduler fires on the real clock; the injected clock only gives each run its ``now``.
    started = dt.datetime.now(dt.UTC)
    for job in jobs:
        first = {}
        if job.first_run_after_s is not None:
            first["next_run_time"] = started + dt.timedelta(seconds=job.first_run_after_s)
        scheduler.add_job(
            run_job,
            trigger=job.trigger,
            id=job.name,
            name=job.name,
            args=[job],
            kwargs={"sessionmaker": sessionmaker, "settings": settings, "clock": clock},
            **first,
        )
    return scheduler


async def run_scheduler(
    settings: Settings,
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    stop: asyncio.Event,
    jobs: JobRegistry,
    clock: Clock = utc_now,
    drain_timeout_s: float = 30.0,
) -> None:
    """Run the schedule until ``stop`` is set, then let runs in progress finish (up to
    ``drain_timeout_s`` seconds) before shutting down."""
    scheduler = build_scheduler(jobs, sessionmaker=sessionmaker, settings=settings, clock=clock)
    scheduler.start()
    log.info("scheduler.started", jobs=jobs.names())
    try:
        await stop.wait()
    finally:
        scheduler.pause()
        if RUNNING:
            await asyncio.wait(set(RUNNING), timeout=drain_timeout_s)
        scheduler.shutdown(wait=False)
        log.info("scheduler.stopped")
