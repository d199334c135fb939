"""Signing in and changing one's own password, for every edge: the API's ``/auth`` routes and the
web forms run the same code, so they count failures, lock accounts and revoke sessions alike.

Framework-free: the edge passes its app state (:class:`SignInState`) and the request's source address.
Both operations own their transaction, because a failure must be committed even though the request
fails (a wrong password is counted, a lock-out recorded) before the error is raised or shown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import DomainError, Unauthenticated
from core.identity.authz import Principal
from core.identity.credentials import change_password
from core.identity.passwords import Password
from core.identity.sessions import ScopeLoader, attempt_login, principal_for_token
from core.settings import Settings
from core.types import Input


class SignInState(Protocol):
    """What signing in needs of the running app (Litestar's ``app.state`` has it): the session
    factory, the settings, the clock and the domains' scope loaders."""

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Callable[[], dt.datetime]: ...
    @property
    def scope_loaders(self) -> Sequence[ScopeLoader]: ...


class LoginRequest(Input):
    login: str = msgspec.field(name="login")
    password: str

    def __post_init__(self) -> None:
        super().__post_init__()
        # Checked here, not in Meta: the web form builds this Struct directly, which skips Meta.
        if not (1 <= len(self.login) <= 60) or not (1 <= len(self.password) <= 200):
            raise msgspec.ValidationError("login must be 1–60 and password 1–200 characters")
        if "\x00" in self.login:  # PostgreSQL text cannot hold it; no login contains it
            raise msgspec.ValidationError("login may not contain NUL characters")


class TokenResponse(msgspec.Struct):
    access_token: str
    token_type: str
    expires_at: dt.datetime
    role: str
    username: str
    # After an admin reset: only /auth/me, /auth/password and /auth/logout answer until it is done.
    password_change_required: bool


class PasswordChange(Input):
    current_password: str
    new_password: Password

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= len(self.current_password) <= 200:
            raise msgspec.ValidationError("current_password must be 1–200 characters")


async def change_password_with(
    state: SignInState, *, principal: Principal, token: str, change: PasswordChange, ip: str | None
) -> DomainError | None:
    """The signed-in user's password change (API and web form alike), in its own committed
    transaction: a wrong current password is counted even though the request fails. Returns the
    error for the caller to report, or ``None`` once changed."""
    async with state.sessionmaker() as session, session.begin():
        return await change_password(
            session=session,
            actor=principal,
            token=token,
            current_password=change.current_password,
            new_password=change.new_password,
            ip=ip,
            now=state.clock(),
        )


async def login_with(state: SignInState, *, login: str, password: str, ip: str | None) -> TokenResponse:
    """Own transaction: a failed attempt (counter, lock-out, audit) is committed before raising."""
    now = state.clock()
    async with state.sessionmaker() as session, session.begin():
        outcome = await attempt_login(
            session=session, login=login, password=password, ip=ip, now=now, settings=state.settings
        )
    if outcome.error is not None:
        raise outcome.error
    if outcome.token is None or outcome.expires_at is None:
        raise Unauthenticated("Sign-in failed.", code="auth.invalid_credentials")
    async with state.sessionmaker() as session:
        principal = await principal_for_token(
            session=session, token=outcome.token, now=now, scope_loaders=state.scope_loaders
        )
    if principal is None:
        raise Unauthenticated("Sign-in failed.", code="auth.invalid_credentials")
    return TokenResponse(
        access_token=outcome.token,
        token_type="Bearer",  # noqa: S106 - the OAuth token type, not a secret
        expires_at=outcome.expires_at,
        role=principal.role.value,
        username=principal.username,
        password_change_required=principal.password_change_required,
    )
