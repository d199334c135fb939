"""The ingest's scheduled jobs run through the platform scheduler (session → asyncpg driver connection)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from api.bootstrap import scheduled_jobs
from core.scheduler import run_job
from core.settings import Settings
from tests.conftest import TEST_NOW

pytestmark = pytest.mark.integration


async def test_every_ingest_job_runs_in_a_scheduler_transaction(
    engine: AsyncEngine, seeded: dict[str, object], test_settings: Settings
) -> None:
    registry = scheduled_jobs()
    ingest_jobs = [job for job in registry if job.name.startswith("ingest.")]
    assert {j.name for j in ingest_jobs} == {
        "ingest.maintain_telemetry",
        "ingest.refresh_rollups",
        "ingest.prune_dedup",
        "ingest.check_offline",
        "ingest.check_inactivity",
    }
    factory = async_sessionmaker(engine, expire_on_commit=False)
    for job in ingest_jobs:
        assert await run_job(job, sessionmaker=factory, settings=test_settings, clock=lambda: TEST_NOW), (
            job.name
        )

    # maintain_telemetry committed storage for the days ahead of the run's clock (native partitions;
    # TimescaleDB creates its chunks on insert).
    async with factory() as session:
        timescale = await session.scalar(
            text("SELECT count(*) > 0 FROM pg_extension WHERE extname = 'timescaledb'")
        )
        day = TEST_NOW.date() + dt.timedelta(days=3)
        found = await session.scalar(
            text("SELECT count(*) FROM pg_class WHERE relname = :name"), {"name": f"telemetry_p{day:%Y%m%d}"}
        )
    assert found == (0 if timescale else 1)
