"""Engine and session factory. Services flush; the request, job or consumer commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from core.settings import Settings


def make_engine(settings: Settings, **kwargs: object) -> AsyncEngine:
    opts: dict[str, object] = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 10}
    opts.update(kwargs)
    return create_async_engine(settings.database_url, **opts)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A unit of work for jobs and consumers: commit on success, roll back on error."""
    async with factory() as session, session.begin():
        yield session
