"""The demo seed's tests: a PostgreSQL database of their own (``<test database>_h_seed`` on the test
server, a fixed name), migrated with Alembic as the CLI does and seeded twice, each run in its own
committed transaction, so the tests can check both what the first run made and that the second
added nothing. The database is dropped after the package's tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from api.bootstrap import domain_seeds
from core.settings import PROJECT_ROOT
from demo.seed import SeedSummary, seed_demo
from tests.conftest import TEST_DB_URL

_SERVER, _BASE = TEST_DB_URL.rsplit("/", 1)  # the test server (ELDERCARE_TEST_DATABASE_URL), another database
DB_NAME = f"{_BASE}_h_seed"
ADMIN_DSN = _SERVER.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
DB_URL = f"{_SERVER}/{DB_NAME}"
TODAY = dt.date(2026, 11, 20)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="package")
async def engine() -> AsyncIterator[AsyncEngine]:
    await _admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    await _admin(f'CREATE DATABASE "{DB_NAME}"')
    migrate = await asyncio.create_subprocess_exec(
        str(PROJECT_ROOT / ".venv/bin/alembic"),
        "-x",
        f"url={DB_URL}",
        "upgrade",
        "heads",
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await migrate.communicate()
    assert migrate.returncode == 0, stderr.decode()
    eng = create_async_engine(DB_URL, pool_size=2, max_overflow=0)
    try:
        yield eng
    finally:
        await eng.dispose()
        await _admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


@pytest.fixture(scope="package")
async def seeded(engine: AsyncEngine) -> tuple[SeedSummary, SeedSummary]:
    """Seed twice, each in its own committed transaction, as two separate runs of the CLI would."""
    factory = async_sessionmaker(engine, expire_on_commit=False)
    summaries = []
    for _ in range(2):
        async with factory() as session, session.begin():
            summaries.append(await seed_demo(session, today=TODAY, domains=domain_seeds()))
    return summaries[0], summaries[1]


@pytest.fixture
async def db(engine: AsyncEngine, seeded: object) -> AsyncIterator[AsyncSession]:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        yield session
