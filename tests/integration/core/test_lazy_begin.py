"""The API pool's lazily begun transactions (``core.db.begin_lazily``), on a real engine: reads make
no BEGIN/COMMIT, the first write (or lock) begins the one transaction the rest of the unit of work
runs in, a rollback undoes it, and a connection goes back to the pool lazy again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.app import API_POOL
from core import audit
from core.db import (
    BEGIN_AT_ONCE,
    begin_at_once_when_asked,
    begin_lazily,
    begin_now,
    make_engine,
    make_sessionmaker,
)
from core.settings import Settings

pytestmark = pytest.mark.integration

XACT_START = text("SELECT transaction_timestamp()")


@pytest.fixture
async def lazy(test_settings: Settings, migrated_db: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine: AsyncEngine = make_engine(test_settings, **{**API_POOL, "pool_size": 1, "max_overflow": 0})
    begin_lazily(engine)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS lazy_probe (x int)"))
        await conn.execute(text("TRUNCATE lazy_probe"))
    yield make_sessionmaker(engine)
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE lazy_probe"))
    await engine.dispose()


async def _in_transaction(db: AsyncSession) -> bool:
    """Whether two statements in a row run in one transaction (begun earlier): they then share its
    start; in autocommit each statement is a transaction of its own, started at least 20 ms apart."""
    first = await db.scalar(XACT_START)
    await asyncio.sleep(0.02)
    return bool(first == await db.scalar(XACT_START))


async def test_reads_run_without_begin_and_a_write_begins_one_transaction(
    lazy: async_sessionmaker[AsyncSession],
) -> None:
    async with lazy() as db:
        assert not await _in_transaction(db)
        assert not await _in_transaction(db)
        await db.execute(text("INSERT INTO lazy_probe VALUES (1)"))
        assert await _in_transaction(db)
        await db.execute(text("INSERT INTO lazy_probe VALUES (2)"))
        await db.rollback()
        assert await db.scalar(text("SELECT count(*) FROM lazy_probe")) == 0
        assert not await _in_transaction(db)  # back from the pool: lazy again

        await db.execute(text("INSERT INTO lazy_probe VALUES (3)"))
        await db.execute(text("INSERT INTO lazy_probe VALUES (4)"))
        await db.commit()
        assert await db.scalar(text("SELECT count(*) FROM lazy_probe")) == 2


async def test_a_row_lock_begins_the_transaction_and_is_held_until_the_commit(
    lazy: async_sessionmaker[AsyncSession], migrated_db: str, test_settings: Settings
) -> None:
    async with lazy() as db:
        await db.execute(text("INSERT INTO lazy_probe VALUES (7)"))
        await db.commit()
        await db.execute(text("SELECT x FROM lazy_probe WHERE x = 7 FOR UPDATE"))
        assert await _in_transaction(db)
        other = make_engine(test_settings, pool_size=1, max_overflow=0)
        try:
            async with other.connect() as conn:
                await conn.execute(text("SET lock_timeout = '100ms'"))
                with pytest.raises(Exception, match="lock"):
                    await conn.execute(text("SELECT x FROM lazy_probe WHERE x = 7 FOR UPDATE"))
        finally:
            await other.dispose()
        await db.commit()


async def test_begin_now_begins_before_raw_driver_calls(lazy: async_sessionmaker[AsyncSession]) -> None:
    async with lazy() as db:
        await begin_now(db)
        assert await _in_transaction(db)
        await db.rollback()
        assert not await _in_transaction(db)


async def test_the_audit_row_of_a_read_commits_by_itself_or_joins_the_transaction(
    lazy: async_sessionmaker[AsyncSession],
) -> None:
    count = text("SELECT count(*) FROM audit_log WHERE entity = 'lazy_probe'")
    try:
        async with lazy() as db:
            await audit.record_read(db, actor=None, entity="lazy_probe", entity_id=1, fields=["id_number"])
            assert not await _in_transaction(db)  # no BEGIN: it committed by itself
            await db.rollback()
            assert await db.scalar(count) == 1

            await db.execute(text("INSERT INTO lazy_probe VALUES (1)"))
            await audit.record_read(db, actor=None, entity="lazy_probe", entity_id=2, fields=["id_number"])
            await db.rollback()  # in a transaction: it goes with it
            assert await db.scalar(count) == 1
    finally:
        async with lazy() as db:
            await db.execute(text("DELETE FROM audit_log WHERE entity = 'lazy_probe'"))
            await db.commit()


async def test_a_session_marked_begin_at_once_is_one_transaction_from_its_first_read(
    lazy: async_sessionmaker[AsyncSession],
) -> None:
    begin_at_once_when_asked(lazy)
    async with lazy() as db:
        db.info[BEGIN_AT_ONCE] = True  # what the API marks for a request that may write
        assert await _in_transaction(db)
        await db.rollback()
    async with lazy() as db:
        assert not await _in_transaction(db)
