"""Request-scoped dependencies: the unit of work, the principal, the clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Unauthenticated
from core.identity.authz import Principal


async def provide_db(state: State) -> AsyncGenerator[AsyncSession, None]:
    """One transaction per request: committed when the handler returns, rolled back on error."""
    session: AsyncSession = state.sessionmaker()
    try:
        yield session
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    finally:
        await session.close()


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal | None = request.scope.get("principal")  # type: ignore[assignment]
    if principal is None:
        raise Unauthenticated("Sign in first.")
    return principal


def provide_now(state: State) -> dt.datetime:
    clock = state.clock
    now: dt.datetime = clock()
    return now
