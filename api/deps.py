"""Request-scoped dependencies: the unit of work, the principal, the clock.

One database session per request, shared by the role guard (which reads the principal through it)
and the handler (``db``): :func:`request_session` opens it on first use, :func:`provide_db` commits
it when the handler returns (rolls back on error), and :func:`session_middleware` closes it after the
response, committing first the read-only transaction of a request whose handler took no ``db``."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.types import ASGIApp, Receive, Scope, Send
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import BEGIN_AT_ONCE
from core.errors import Unauthenticated
from core.identity.authz import Principal

_SESSION = "eldercare.db"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def request_session(scope: Scope, state: State) -> AsyncSession:
    """The request's session, opened on first use (by the guard or the ``db`` dependency)."""
    session: AsyncSession | None = scope.get(_SESSION)  # type: ignore[assignment]
    if session is None:
        session = state.sessionmaker()
        # A request that may write is one transaction from its first statement (the guard's) on; a
        # safe one begins only if it writes (core.db.begin_lazily).
        session.info[BEGIN_AT_ONCE] = scope.get("method") not in SAFE_METHODS
        scope[_SESSION] = session  # type: ignore[literal-required]
    return session


async def provide_db(request: Request[Any, Any, Any], state: State) -> AsyncGenerator[AsyncSession, None]:
    """One transaction per request: committed when the handler returns, rolled back on error."""
    session = request_session(request.scope, state)
    try:
        yield session
        await session.commit()
    except BaseException:
        await session.rollback()
        raise


def session_middleware(app: ASGIApp) -> ASGIApp:
    """Closes the request's session, if one was opened. A transaction still open here only read (the
    guard's, for a handler without ``db``): it is committed, which ends it as a rollback would, but
    does not undo a separate unit of work nested in it (the tests run every session on one connection)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        finally:
            session: AsyncSession | None = scope.pop(_SESSION, None)  # type: ignore[misc]
            if session is not None:
                try:
                    if session.in_transaction():
                        await session.commit()
                finally:
                    await session.close()

    return middleware


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal | None = request.scope.get("principal")  # type: ignore[assignment]
    if principal is None:
        raise Unauthenticated("Sign in first.")
    return principal


def provide_now(state: State) -> dt.datetime:
    clock = state.clock
    now: dt.datetime = clock()
    return now
