"""Shared fixtures: a fresh, migrated test database with demo data, and per-test rollback.

Integration tests get ``db`` (an AsyncSession inside a transaction rolled back after the test)
and ``client`` (the real app whose every request runs inside that same transaction).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import asyncpg
import httpx
import pytest
from alembic import command
from alembic.config import Config
from litestar import Litestar
from sqlalchemy import select
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from core.settings import PROJECT_ROOT, Settings

TEST_DB_URL = os.environ.get(
    "ELDERCARE_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/eldercare_test"
)
# The clock the integration tests run at: a fixed instant, so seeded data and validity windows agree.
TEST_NOW = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)
DEMO_PASSWORD = "Eldercare-demo-2026"
Client = httpx.AsyncClient


def alembic_config(url: str) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["url"] = url
    return cfg


async def recreate_database(url: str) -> None:
    base, _, name = url.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")
    conn = await asyncpg.connect(base + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def asgi_transport(app: Litestar, *, client: tuple[str, int]) -> httpx.ASGITransport:
    """httpx's in-process transport for the app. httpx and Litestar each type the ASGI interface with
    their own scope types, which mypy cannot unify; this is the one cast between the two."""
    return httpx.ASGITransport(app=cast("Any", app), client=client)


@pytest.fixture(scope="session")
def test_settings() -> Settings:
    return Settings(
        database_url=TEST_DB_URL, secret_key="test-secret-" + "x" * 32, log_json=True, log_level="WARNING"
    )


@pytest.fixture(scope="session")
def migrated_db(test_settings: Settings) -> str:
    """Create the test database afresh and migrate it to head (once per session)."""
    asyncio.run(recreate_database(test_settings.database_url))
    command.upgrade(alembic_config(test_settings.database_url), "heads")
    return test_settings.database_url


@pytest.fixture(scope="session")
async def engine(migrated_db: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(migrated_db, pool_size=5, max_overflow=5)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
async def seeded(engine: AsyncEngine) -> dict[str, object]:
    """Reference and demo data, committed once for the whole session."""
    from api.bootstrap import domain_seeds
    from demo.seed import seed_demo

    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as session, session.begin():
        summary = await seed_demo(session, today=TEST_NOW.date(), domains=domain_seeds())
    return {"summary": summary}


@pytest.fixture
async def connection(engine: AsyncEngine, seeded: dict[str, object]) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        trans = await conn.begin()
        try:
            yield conn
        finally:
            await trans.rollback()


@pytest.fixture
def sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Sessions joined to the test's outer transaction; their commits become savepoints."""
    return async_sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture
async def db(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
async def client(
    test_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Client]:
    """The real app over an in-process ASGI transport, in the test's own event loop (Litestar's
    AsyncTestClient runs the app on a portal thread, where the test's connection cannot follow)."""
    from api.app import create_app

    app = create_app(test_settings, sessionmaker=sessionmaker, clock=lambda: TEST_NOW)
    transport = asgi_transport(app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def login(db: AsyncSession, test_settings: Settings) -> Callable[..., Awaitable[dict[str, str]]]:
    """``await login("demo_admin")`` → headers with that user's bearer token: a session as a sign-in
    at TEST_NOW opens it, without paying for Argon2 in every test (the sign-in itself is tested in
    ``tests/integration/core/test_api_auth.py`` and ``tests/integration/web/``)."""
    from core.identity.models import AppUser
    from tests.factories import open_session

    async def _login(username: str) -> dict[str, str]:
        user_id = await db.scalar(select(AppUser.id).where(AppUser.username == username))
        assert user_id is not None, username
        headers = await open_session(db, user_id, ttl_s=test_settings.session_ttl_seconds)
        await db.commit()
        return headers

    return _login
