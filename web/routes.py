"""Server-rendered pages: sign-in with an HttpOnly SameSite cookie, CSRF-protected forms, a home page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import URLEncodedBody
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router

from core.errors import AccountLocked, DomainError, Forbidden, TooManyRequests
from core.http import SESSION_COOKIE, Db, Now, client_ip, session_cookie
from core.identity.authz import Principal, public
from core.identity.sessions import revoke
from core.identity.signin import LoginRequest, PasswordChange, change_password_with, login_with
from registry.service.figures import Figures, area_figures
from web.i18n import pick_locale, translator

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
LANG_COOKIE = "ec_lang"


def _context(request: Request[Any, Any, Any], **extra: Any) -> dict[str, Any]:
    locale = pick_locale(
        request.query_params.get("lang"),
        request.cookies.get(LANG_COOKIE),
        request.headers.get("accept-language"),
    )
    return {"locale": locale, "t": translator(locale), "user": request.scope.get("principal"), **extra}


def _page(request: Request[Any, Any, Any], name: str, *, status_code: int = 200, **extra: Any) -> Template:
    ctx = _context(request, **extra)
    page = Template(template_name=name, context=ctx, status_code=status_code)
    if request.query_params.get("lang"):
        page.set_cookie(LANG_COOKIE, ctx["locale"], httponly=True, samesite="lax", max_age=365 * 86400)
    return page


def _figures(f: Figures) -> list[tuple[str, int]]:
    """The home page's figures as (message key, number), in display order."""
    return [
        ("fig.elders", f.elders),
        *((f"fig.living.{k.value}", n) for k, n in f.elders_by_living_situation.items()),
        *((f"fig.category.{k.value}", n) for k, n in f.elders_by_category.items()),
        ("fig.providers", f.providers),
        ("fig.caregivers", f.caregivers),
        ("fig.devices", f.devices),
        ("fig.devices_online", f.devices_online),
    ]


class WebController(Controller):
    include_in_schema = False

    @get("/", opt=public())
    async def home(self, request: Request[Any, Any, Any], db: Db, now: Now) -> Template | Redirect:
        principal: Principal | None = request.scope.get("principal")  # type: ignore[assignment]
        if principal is None:
            return Redirect("/login")
        if principal.password_change_required:  # after an admin reset: nothing else until it is done
            return Redirect("/password")
        t = translator(_context(request)["locale"])
        try:
            area = await area_figures(session=db, actor=principal, now=now)
        except Forbidden:  # figures are for staff: the service decides, for this page as for the API
            return _page(request, "home.html", figures=[], scope_label=t["scope.own"])
        if area.district_ids is None:
            scope_label = t["scope.all"]
        else:
            scope_label = t["scope.districts"].format(n=len(area.district_ids))
        return _page(request, "home.html", figures=_figures(area), scope_label=scope_label)

    @get("/login", opt=public())
    async def login_form(self, request: Request[Any, Any, Any]) -> Template:
        return _page(request, "login.html", error=None, login_value="")

    @post("/login", opt=public(), status_code=303)
    async def login(
        self,
        request: Request[Any, Any, Any],
        state: State,
        data: URLEncodedBody[dict[str, str]],
    ) -> Response[Any]:
        login = (data.get("login") or "").strip()[:60]
        password = (data.get("password") or "")[:200]
        t = translator(_context(request)["locale"])
        try:
            LoginRequest(login=login, password=password)
            token = await login_with(state, login=login, password=password, ip=client_ip(request))
        except DomainError as exc:
            message = t["login.failed"]
            if isinstance(exc, AccountLocked):
                message = t["login.locked"]
            elif isinstance(exc, TooManyRequests):
                message = t["login.rate"]
            page = _page(request, "login.html", status_code=exc.status, error=message, login_value=login)
            retry = exc.extra.get("retry_after_s")
            if isinstance(retry, int):  # as the API's problem responses say it
                page.headers["Retry-After"] = str(retry)
            return page
        except msgspec.ValidationError:  # empty or over-long fields
            return _page(request, "login.html", status_code=422, error=t["login.failed"], login_value=login)
        response = Redirect("/", status_code=303)
        response.set_cookie(
            session_cookie(
                token.access_token,
                max_age=state.settings.session_ttl_seconds,
                secure=state.settings.secure_cookies,
            )
        )
        return response

    @get("/password", opt=public())
    async def password_form(self, request: Request[Any, Any, Any]) -> Template | Redirect:
        if request.scope.get("principal") is None:
            return Redirect("/login")
        return _page(request, "password.html", error=None, done=False)

    @post("/password", opt=public(), status_code=200)
    async def password(
        self,
        request: Request[Any, Any, Any],
        state: State,
        data: URLEncodedBody[dict[str, str]],
    ) -> Template | Redirect:
        """The API's password change (``POST /api/v1/auth/password``) as a form: the same checks,
        the same counting of a wrong current password, the same revocation of other sessions.
        Own transaction, like sign-in: a wrong current password is committed before answering."""
        principal: Principal | None = request.scope.get("principal")  # type: ignore[assignment]
        token = request.cookies.get(SESSION_COOKIE)
        if principal is None or token is None:
            return Redirect("/login")
        t = translator(_context(request)["locale"])
        new_password = data.get("new_password") or ""
        if new_password != (data.get("confirm_password") or ""):
            return _page(request, "password.html", status_code=422, error=t["password.mismatch"], done=False)
        try:
            change = msgspec.convert(
                {"current_password": data.get("current_password") or "", "new_password": new_password},
                PasswordChange,
            )
        except msgspec.ValidationError:
            return _page(request, "password.html", status_code=422, error=t["password.rules"], done=False)
        error = await change_password_with(
            state, principal=principal, token=token, change=change, ip=client_ip(request)
        )
        if error is not None:
            message = t["login.locked"] if isinstance(error, AccountLocked) else t["password.failed"]
            if error.code == "auth.password_unchanged":
                message = t["password.unchanged"]
            page = _page(request, "password.html", status_code=error.status, error=message, done=False)
            retry = error.extra.get("retry_after_s")
            if isinstance(retry, int):
                page.headers["Retry-After"] = str(retry)
            return page
        return _page(request, "password.html", error=None, done=True)

    @post("/logout", opt=public(), status_code=303)
    async def logout(self, request: Request[Any, Any, Any], db: Db, state: State) -> Redirect:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await revoke(session=db, token=token, now=state.clock())
        response = Redirect("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response


def web_handlers() -> list[Any]:
    static = create_static_files_router(
        path="/static/web", directories=[STATIC], opt=public(), include_in_schema=False, name="web-static"
    )
    return [WebController, static]
