"""Server-rendered pages everyone shares: sign-in with an HttpOnly SameSite cookie, CSRF-protected
forms, the password change and a home page. The role's own pages are in ``web/<role>/``."""

from __future__ import annotations

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
from web.i18n import N_
from web.operator.routes import CONTROLLERS as OPERATOR_CONTROLLERS
from web.pages import STATIC, principal_of, render, translate
from web.supervisor.routes import CONTROLLERS as SUPERVISOR_CONTROLLERS

FIGURE_LABELS = {
    "elders": N_("Registered elders"),
    "living.alone": N_("Living alone"),
    "living.empty_nest": N_("Empty-nest"),
    "living.with_family": N_("Living with family"),
    "category.destitute": N_("State-supported destitute"),
    "category.subsistence": N_("Subsistence allowance"),
    "category.low_income": N_("Low income"),
    "category.family_planning": N_("Special family-planning family"),
    "category.veteran": N_("Priority veterans"),
    "category.elderly_alone": N_("80+ alone or empty-nest"),
    "providers": N_("Providers"),
    "caregivers": N_("Caregivers"),
    "devices": N_("Devices"),
    "devices_online": N_("Devices online"),
}


def _figures(f: Figures) -> list[tuple[str, str, int]]:
    """The home page's figures as (key, label msgid, number), in display order."""
    keys: list[tuple[str, int]] = [
        ("elders", f.elders),
        *((f"living.{k.value}", n) for k, n in f.elders_by_living_situation.items()),
        *((f"category.{k.value}", n) for k, n in f.elders_by_category.items()),
        ("providers", f.providers),
        ("caregivers", f.caregivers),
        ("devices", f.devices),
        ("devices_online", f.devices_online),
    ]
    return [(f"fig.{key}", FIGURE_LABELS[key], n) for key, n in keys]


class WebController(Controller):
    include_in_schema = False

    @get("/", opt=public())
    async def home(self, request: Request[Any, Any, Any], db: Db, now: Now) -> Template | Redirect:
        principal: Principal | None = principal_of(request)
        if principal is None:
            return Redirect("/login")
        if principal.password_change_required:  # after an admin reset: nothing else until it is done
            return Redirect("/password")
        _ = translate(request)
        try:
            area = await area_figures(session=db, actor=principal, now=now)
        except Forbidden:  # figures are for staff: the service decides, for this page as for the API
            return render(request, "home.html", figures=[], scope_label=_("Your own records"), nav_key="home")
        if area.district_ids is None:
            scope_label = _("Whole city")
        else:
            scope_label = _("{n} district(s)").format(n=len(area.district_ids))
        return render(request, "home.html", figures=_figures(area), scope_label=scope_label, nav_key="home")

    @get("/login", opt=public())
    async def login_form(self, request: Request[Any, Any, Any]) -> Template:
        return render(request, "login.html", error=None, login_value="")

    @post("/login", opt=public(), status_code=303)
    async def login(
        self,
        request: Request[Any, Any, Any],
        state: State,
        data: URLEncodedBody[dict[str, str]],
    ) -> Response[Any]:
        login = (data.get("login") or "").strip()[:60]
        password = (data.get("password") or "")[:200]
        _ = translate(request)
        try:
            LoginRequest(login=login, password=password)
            token = await login_with(state, login=login, password=password, ip=client_ip(request))
        except DomainError as exc:
            message = _("Wrong username or password")
            if isinstance(exc, AccountLocked):
                message = _("Too many failed attempts; try again later")
            elif isinstance(exc, TooManyRequests):
                message = _("Too many failed sign-ins from this network; try again later")
            page = render(request, "login.html", status_code=exc.status, error=message, login_value=login)
            retry = exc.extra.get("retry_after_s")
            if isinstance(retry, int):  # as the API's problem responses say it
                page.headers["Retry-After"] = str(retry)
            return page
        except msgspec.ValidationError:  # empty or over-long fields
            return render(
                request,
                "login.html",
                status_code=422,
                error=_("Wrong username or password"),
                login_value=login,
            )
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
        if principal_of(request) is None:
            return Redirect("/login")
        return render(request, "password.html", error=None, done=False)

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
        principal = principal_of(request)
        token = request.cookies.get(SESSION_COOKIE)
        if principal is None or token is None:
            return Redirect("/login")
        _ = translate(request)
        new_password = data.get("new_password") or ""
        if new_password != (data.get("confirm_password") or ""):
            error = _("The two new passwords differ")
            return render(request, "password.html", status_code=422, error=error, done=False)
        try:
            change = msgspec.convert(
                {"current_password": data.get("current_password") or "", "new_password": new_password},
                PasswordChange,
            )
        except msgspec.ValidationError:
            error = _("The new password must be 10 to 200 characters")
            return render(request, "password.html", status_code=422, error=error, done=False)
        failure = await change_password_with(
            state, principal=principal, token=token, change=change, ip=client_ip(request)
        )
        if failure is not None:
            if isinstance(failure, AccountLocked):
                message = _("Too many failed attempts; try again later")
            elif failure.code == "auth.password_unchanged":
                message = _("The new password must differ")
            else:
                message = _("The current password is wrong")
            page = render(request, "password.html", status_code=failure.status, error=message, done=False)
            retry = failure.extra.get("retry_after_s")
            if isinstance(retry, int):
                page.headers["Retry-After"] = str(retry)
            return page
        return render(request, "password.html", error=None, done=True)

    @post("/logout", opt=public(), status_code=303)
    async def logout(self, request: Request[Any, Any, Any], db: Db, state: State) -> Redirect:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await revoke(session=db, token=token, now=state.clock())
        response = Redirect("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response


def web_handlers() -> list[Any]:
    """Every page of the web app and its static files (``/static/web/``)."""
    static = create_static_files_router(
        path="/static/web", directories=[STATIC], opt=public(), include_in_schema=False, name="web-static"
    )
    return [WebController, *OPERATOR_CONTROLLERS, *SUPERVISOR_CONTROLLERS, static]
