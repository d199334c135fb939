"""Request-scoped dependencies: the unit of work, the principal, the clock."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncSession

from core.authz import Principal
from core.errors import Unauthenticated


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


def client_ip(request: Request[Any, Any, Any]) -> str | None:
    """The peer address, or ``None`` when it is not an IP address (e.g. an in-process test client)."""
    host = request.client.host if request.client else None
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None
