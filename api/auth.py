"""Authentication (bearer token for the API, HttpOnly cookie for the web), the role guard, and the
``/api/v1/auth`` routes over the sign-in logic of :mod:`core.identity.signin` (which the web forms
share)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers.base import BaseRouteHandler
from litestar.params import JSONBody

from api.deps import SAFE_METHODS, request_session
from core.errors import Forbidden, Unauthenticated
from core.http import SESSION_COOKIE, CurrentPrincipal, Db, Now, client_ip
from core.identity.authz import (
    PUBLIC,
    WITHOUT_REQUEST_SCOPE,
    Principal,
    authenticated,
    during_password_change,
    public,
    rule_allows,
)
from core.identity.sessions import principal_for_token, revoke
from core.identity.signin import LoginRequest, PasswordChange, TokenResponse, change_password_with, login_with


def _token(connection: ASGIConnection[Any, Any, Any, Any]) -> tuple[str | None, bool]:
    """The session token and whether it came from the cookie (which needs CSRF protection)."""
    header = connection.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None, False
    return connection.cookies.get(SESSION_COOKIE), True


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Global guard: every route must declare a role rule; anonymous users reach only public ones.

    API writes need the bearer token: the cookie is accepted on ``/api`` only for safe methods, and
    on web forms only behind the CSRF middleware.
    """
    rule = handler.opt.get("roles")
    if rule is None and connection.scope.get("method") == "OPTIONS":
        return  # Litestar's automatic OPTIONS answer: only an Allow header, no data
    if rule is None:
        raise Forbidden("This route declares no role rule.", code="auth.no_rule")
    token, from_cookie = _token(connection)
    principal: Principal | None = None
    if token:
        state = connection.app.state
        principal = await principal_for_token(
            session=request_session(connection.scope, state),
            token=token,
            now=state.clock(),
            scope_loaders=state.scope_loaders,
            cache=state.principal_cache,
            request_scope=not handler.opt.get(WITHOUT_REQUEST_SCOPE, False),
        )
        if (
            principal is not None
            and from_cookie
            and connection.url.path.startswith("/api/")
            and connection.scope.get("method") not in SAFE_METHODS
        ):
            principal = None
    connection.scope["principal"] = principal  # type: ignore[typeddict-unknown-key]
    if rule == PUBLIC:
        return
    if principal is None:
        raise Unauthenticated("Sign in first.")
    if not rule_allows(rule, principal.role):
        raise Forbidden(f"Role {principal.role.value} may not use this route.")
    if (
        principal.password_change_required
        and connection.url.path.startswith("/api/")
        and not handler.opt.get("during_password_change")
    ):
        raise Forbidden(
            "Choose a new password first (POST /api/v1/auth/password).", code="auth.password_change_required"
        )


class MeResponse(msgspec.Struct):
    user_id: int
    username: str
    display_name: str
    role: str
    provider_id: int | None
    caregiver_id: int | None
    elder_id: int | None
    district_ids: list[int]
    elder_ids: list[int]
    password_change_required: bool


def me_of(p: Principal) -> MeResponse:
    return MeResponse(
        user_id=p.user_id,
        username=p.username,
        display_name=p.display_name,
        role=p.role.value,
        provider_id=p.provider_id,
        caregiver_id=p.caregiver_id,
        elder_id=p.elder_id,
        district_ids=sorted(p.district_ids),
        elder_ids=sorted(p.elder_ids),
        password_change_required=p.password_change_required,
    )


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]  # noqa: RUF012

    @post("/login", opt=public(), status_code=200, summary="Sign in; returns a bearer token")
    async def login(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[LoginRequest]
    ) -> TokenResponse:
        return await login_with(state, login=data.login, password=data.password, ip=client_ip(request))

    @post(
        "/password",
        opt=during_password_change(authenticated()),
        status_code=204,
        summary="Change one's own password; every other session of the user ends",
    )
    async def change_password(
        self,
        request: Request[Any, Any, Any],
        state: State,
        principal: CurrentPrincipal,
        data: JSONBody[PasswordChange],
    ) -> None:
        """The current password is required; a wrong one counts as a failed sign-in (423
        ``auth.locked`` once the account is locked). The session making the change stays valid.

        Own transaction, like sign-in: a wrong current password is committed before raising."""
        token, _ = _token(request)
        if token is None:  # not reached: the guard found a principal through a token
            raise Unauthenticated("Sign in first.")
        error = await change_password_with(
            state, principal=principal, token=token, change=data, ip=client_ip(request)
        )
        if error is not None:
            raise error

    @post(
        "/logout",
        opt=during_password_change(authenticated()),
        status_code=204,
        summary="Revoke the current session",
    )
    async def logout(self, request: Request[Any, Any, Any], db: Db, now: Now) -> Response[None]:
        token, _ = _token(request)
        if token:
            await revoke(session=db, token=token, now=now)
        response: Response[None] = Response(content=None, status_code=204)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @get("/me", opt=during_password_change(authenticated()), summary="The signed-in user and their scope")
    async def me(self, principal: CurrentPrincipal) -> MeResponse:
        return me_of(principal)
