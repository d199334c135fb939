"""What every page shares: the template engine (Jinja2 with gettext), the request's locale, the
per-role navigation, rendering, and errors as pages.

Pages live per role (``web/operator/``, ``web/supervisor/``, later ``web/family/``, ``web/caregiver/``,
``web/officer/``), each a ``routes.py`` with its controller and its templates in ``templates/<role>/``
extending ``base.html``. A page handler calls domain services, as an API handler does, and never
queries (an import-linter contract keeps SQL out of ``web``).

Errors: a page's controller sets :data:`PAGE_ERRORS` as its exception handlers. A browser (``Accept:
text/html``) gets an error page in its language, or the sign-in page when it is not signed in; any
other client gets the API's problem JSON, so the role matrix reads pages and API alike.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig
from litestar.types import ExceptionHandlersMap

from core.clock import SHANGHAI
from core.errors import DomainError
from core.identity.authz import Principal
from core.identity.models import Role
from web.i18n import N_, gettext_for, pick_locale, template_callables

TEMPLATES: Final = Path(__file__).parent / "templates"
STATIC: Final = Path(__file__).parent / "static"
LANG_COOKIE: Final = "ec_lang"

ROLE_NAMES: Final = {
    Role.ELDER: N_("Elder"),
    Role.FAMILY: N_("Family"),
    Role.CAREGIVER: N_("Caregiver"),
    Role.PROVIDER_ADMIN: N_("Provider admin"),
    Role.OPERATOR: N_("Operator"),
    Role.SUPERVISOR: N_("Supervisor"),
    Role.CIVIL_AFFAIRS: N_("Civil-affairs officer"),
    Role.ADMIN: N_("Administrator"),
}


@dataclass(frozen=True, slots=True)
class NavItem:
    href: str
    label: str  # a msgid; the layout translates it
    key: str  # marks the current page


# The call centre's pages, for the roles that work or watch alarms (DOMAIN §9).
QUEUE: Final = NavItem("/operator/queue", N_("Alarm queue"), "queue")
FIGURES: Final = NavItem("/supervisor", N_("Service levels"), "figures")
HOME: Final = NavItem("/", N_("Home"), "home")
NAV: Final[dict[Role, tuple[NavItem, ...]]] = {
    Role.OPERATOR: (HOME, QUEUE, FIGURES),
    Role.SUPERVISOR: (HOME, QUEUE, FIGURES),
    Role.CIVIL_AFFAIRS: (HOME, QUEUE, FIGURES),
    Role.ADMIN: (HOME, QUEUE, FIGURES),
}


def nav_for(principal: Principal | None) -> tuple[NavItem, ...]:
    """The navigation of a role's layout: its own pages, home for everyone signed in."""
    if principal is None:
        return ()
    return NAV.get(principal.role, (HOME,))


def locale_of(request: Request[Any, Any, Any]) -> str:
    return pick_locale(
        request.query_params.get("lang"),
        request.cookies.get(LANG_COOKIE),
        request.headers.get("accept-language"),
    )


def translate(request: Request[Any, Any, Any]) -> Any:
    """The request's ``gettext``."""
    return gettext_for(locale_of(request))


def principal_of(request: Request[Any, Any, Any]) -> Principal | None:
    principal: Principal | None = request.scope.get("principal")  # type: ignore[assignment]
    return principal


def local_time(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """An instant as Asia/Shanghai wall time (how every page shows time)."""
    return "" if value is None else value.astimezone(SHANGHAI).strftime(fmt)


def context(request: Request[Any, Any, Any], **extra: Any) -> dict[str, Any]:
    locale = locale_of(request)
    user = principal_of(request)
    return {
        "locale": locale,
        **template_callables(locale),
        "user": user,
        "role_names": ROLE_NAMES,
        "nav": nav_for(user),
        "path": request.url.path,
        **extra,
    }


def render(request: Request[Any, Any, Any], name: str, *, status_code: int = 200, **extra: Any) -> Template:
    ctx = context(request, **extra)
    page = Template(template_name=name, context=ctx, status_code=status_code)
    if request.query_params.get("lang"):
        page.set_cookie(LANG_COOKIE, ctx["locale"], httponly=True, samesite="lax", max_age=365 * 86400)
    return page


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja2 with autoescaping and the i18n extension (``{% trans %}``): ``gettext``/``ngettext``
    come from each page's context (:func:`context`), so one environment serves every locale."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local_time"] = local_time
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(env))


class PasswordChangeFirst(DomainError):
    status = 403
    code = "auth.password_change_required"
    title = "Choose a new password first"


def password_first(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
    """Guard of the role pages: after an admin reset, nothing but the password page (as on the API)."""
    principal: Principal | None = connection.scope.get("principal")  # type: ignore[assignment]
    if principal is not None and principal.password_change_required:
        raise PasswordChangeFirst("Choose a new password first.")


# --- Errors as pages ------------------------------------------------------------------------------

ERROR_TITLES: Final = {
    403: N_("You may not open this page"),
    404: N_("Not found"),
    409: N_("That was not possible"),
    422: N_("Please check what you entered"),
}
GENERIC_PROBLEM: Final = N_("The request could not be carried out.")
# What a person is told for a problem code (the API's stable codes); others get a general message.
PROBLEM_MESSAGES: Final = {
    "auth.forbidden": N_("Your role does not give access to this page."),
    "auth.csrf": N_("The form has expired. Reload the page and try again."),
    "not_found": N_("There is no such page."),
    "alarm.not_found": N_("There is no such alarm in your districts."),
    "alarm.forbidden": N_("Your role may only read alarms, not act on them."),
    "alarm.not_active": N_("The alarm has been cleared already."),
    "alarm.already_cleared": N_("The alarm has been cleared already."),
    "alarm.already_claimed": N_("Another operator has taken this alarm."),
    "alarm.already_acknowledged": N_("The alarm has been acknowledged already."),
    "alarm.not_cleared": N_("The alarm is still active."),
    "alarm.superseded": N_("A newer alarm of the same kind is active; work on that one."),
    "alarm.busy": N_("The alarm is changing right now; try again."),
    "alarm.action_invalid": N_("That result does not fit that action."),
    "alarm.contact_unknown": N_("The elder has no emergency contact at that position."),
    "validation.invalid": N_("Some of what you entered is not valid."),
}


def wants_html(request: Request[Any, Any, Any]) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _problem_json(
    request: Request[Any, Any, Any], status: int, code: str, title: str, detail: str
) -> Response[Any]:
    body = {
        "type": "https://eldercare.example.org/problems/" + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.url.path,
    }
    return Response(content=body, status_code=status, media_type="application/problem+json")


def _error(request: Request[Any, Any, Any], status: int, code: str, title: str, detail: str) -> Response[Any]:
    htmx = bool(request.headers.get("hx-request"))
    if not (htmx or wants_html(request)):
        return _problem_json(request, status, code, title, detail)
    if status == 401:
        return Redirect("/login")
    if code == PasswordChangeFirst.code:
        return Redirect("/password")
    page = "error_inline.html" if htmx else "error.html"
    return render(
        request,
        page,
        status_code=status,
        code=code,
        status=status,
        title=ERROR_TITLES.get(status, ERROR_TITLES[409]),
        message=PROBLEM_MESSAGES.get(code, GENERIC_PROBLEM),
    )


def _domain(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    return _error(request, exc.status, exc.code, exc.title, exc.detail)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    code = {401: "auth.required", 403: "auth.forbidden", 404: "not_found"}.get(
        exc.status_code, f"http.{exc.status_code}"
    )
    if isinstance(exc, PermissionDeniedException) and "CSRF" in str(exc.detail):
        code = "auth.csrf"
    return _error(request, exc.status_code, code, str(exc.detail), "")


PAGE_ERRORS: Final[ExceptionHandlersMap] = {
    DomainError: _domain,
    NotAuthorizedException: _http,
    PermissionDeniedException: _http,
}
