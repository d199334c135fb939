"""The job registry and runner (core.scheduler) against the real PostgreSQL of the test database:
transactions per run, the cross-process advisory lock, failures contained, the APScheduler loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from core.scheduler import JobContext, JobRegistry, cron, every, run_job, run_scheduler
from core.settings import Settings
from tests.conftest import TEST_DB_URL

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)
SETTINGS = Settings(database_url=TEST_DB_URL, secret_key="x" * 32)


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    """An engine on the test server's ``postgres`` database: these tests need no tables."""
    from sqlalchemy.engine import make_url

    eng = create_async_engine(make_url(TEST_DB_URL).set(database="postgres"), pool_size=3)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def test_a_run_gets_a_session_in_a_transaction_and_the_clock(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    seen: list[tuple[dt.datetime, bool, int]] = []
    jobs = JobRegistry()

    @jobs.job("test.record", every(minutes=5))
    async def record(ctx: JobContext) -> None:
        one = await ctx.session.scalar(text("SELECT 1"))
        seen.append((ctx.now, ctx.session.in_transaction(), int(one or 0)))

    (job,) = list(jobs)
    assert await run_job(job, sessionmaker=sessionmaker, settings=SETTINGS, clock=lambda: NOW)
    assert seen == [(NOW, True, 1)]


async def test_a_job_locked_by_another_process_is_skipped(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    calls: list[str] = []
    jobs = JobRegistry()
    job = jobs.add("test.locked", lambda ctx: _append(calls, "ran"), every(minutes=1))
    async with engine.connect() as other:
        await other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": job.lock_key})
        try:
            assert not await run_job(job, sessionmaker=sessionmaker, settings=SETTINGS)
        finally:
            await other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": job.lock_key})
    assert calls == []
    assert await run_job(job, sessionmaker=sessionmaker, settings=SETTINGS)
    assert calls == ["ran"]


async def _append(calls: list[str], value: str) -> None:
    calls.append(value)


async def test_a_failing_run_is_rolled_back_and_contained(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    table = f"scheduler_probe_{os.getpid()}"
    jobs = JobRegistry()

    async def boom(ctx: JobContext) -> None:
        await ctx.session.execute(text(f"CREATE TABLE {table} (x int)"))
        raise RuntimeError("job failed on purpose")

    job = jobs.add("test.boom", boom, every(minutes=1))
    try:
        assert not await run_job(job, sessionmaker=sessionmaker, settings=SETTINGS)
        async with engine.connect() as conn:
            assert await conn.scalar(text(f"SELECT to_regclass('{table}')")) is None
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))


def test_job_names_are_unique() -> None:
    jobs = JobRegistry()
    jobs.add("test.once", lambda ctx: _append([], "x"), every(seconds=1))
    with pytest.raises(ValueError, match="already registered"):
        jobs.add("test.once", lambda ctx: _append([], "x"), every(seconds=1))


def test_cron_schedules_are_in_shanghai_time() -> None:
    trigger = cron(hour=2, minute=0)
    after = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)  # 20:00 in Shanghai
    fire = trigger.get_next_fire_time(None, after)
    assert fire is not None
    assert fire.astimezone(dt.UTC) == dt.datetime(2026, 11, 20, 18, 0, tzinfo=dt.UTC)  # 02:00 +08:00


async def test_run_scheduler_runs_jobs_on_their_trigger_until_stopped(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    runs: list[str] = []
    jobs = JobRegistry()
    jobs.add("test.tick", lambda ctx: _append(runs, "tick"), every(seconds=1))
    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduler(SETTINGS, sessionmaker=sessionmaker, stop=stop, jobs=jobs))
    for _ in range(60):
        if len(runs) >= 2:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert runs == ["tick", "tick"]
    await asyncio.sleep(1.2)
    assert runs == ["tick", "tick"]  # nothing runs after stop


async def test_a_job_may_first_run_shortly_after_start_instead_of_one_interval_later(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    runs: list[str] = []
    jobs = JobRegistry()
    jobs.add("test.hourly_soon", lambda ctx: _append(runs, "soon"), every(hours=1), first_run_after_s=0)
    jobs.add("test.hourly", lambda ctx: _append(runs, "late"), every(hours=1))
    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduler(SETTINGS, sessionmaker=sessionmaker, stop=stop, jobs=jobs))
    for _ in range(50):
        if runs:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert runs == ["soon"]


def test_the_day_plan_job_first_runs_within_minutes_of_start() -> None:
    from api.bootstrap import scheduled_jobs

    jobs = {job.name: job for job in scheduled_jobs()}
    plan = jobs["dispatch.plan_tomorrow"]
    assert plan.first_run_after_s is not None
    assert plan.first_run_after_s <= 300
    rebuild = jobs["dispatch.rebuild_dirty_plans"]
    assert rebuild.trigger.interval <= dt.timedelta(minutes=5)
