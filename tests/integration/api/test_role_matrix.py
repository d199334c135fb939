"""The role matrix: every route of the app × every role (and anonymous) against its declared rule.

A route is *allowed* for a role when the answer is anything but 401/403, and *denied* when it is
401 (anonymous) or 403 (signed in, wrong role). Requests are harmless: ids that do not exist and
empty JSON bodies, so allowed calls end in 404/422 problems rather than changes. A route without a
rule fails :func:`test_every_route_declares_a_role_rule`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.identity.authz import ANY_AUTHENTICATED, PUBLIC, rule_allows
from core.identity.models import Role
from core.settings import Settings
from tests.conftest import TEST_NOW, asgi_transport
from tests.support.registry import headers_for

pytestmark = pytest.mark.integration

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
PARAM = re.compile(r"\{(\w+):(\w+)\}")


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str  # as declared, e.g. /api/v1/elders/{elder_id:int}
    rule: object
    handler: str

    @property
    def url(self) -> str:
        """A concrete URL: ids that do not exist (0), "x" for strings and file paths."""
        return PARAM.sub(lambda m: "0" if m.group(2) == "int" else "x", self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.handler})"


def _framework_options(handler: HTTPRouteHandler) -> bool:
    """Litestar adds an OPTIONS handler to every path itself; it is not one of our routes."""
    return handler.http_methods == {"OPTIONS"} and handler.fn.__module__ == "litestar.routes.http"


def endpoints(app: Litestar) -> Iterator[Endpoint]:
    for route in app.routes:
        assert isinstance(route, HTTPRoute), (
            f"unexpected non-HTTP route {route.path}: give it a rule and a test"
        )
        for handler in route.route_handlers:
            if _framework_options(handler):
                continue
            for method in sorted(handler.http_methods):
                yield Endpoint(method, route.path, handler.opt.get("roles"), handler.handler_name)


def valid_rule(rule: object) -> bool:
    if rule in (PUBLIC, ANY_AUTHENTICATED):
        return True
    return isinstance(rule, frozenset) and bool(rule) and all(isinstance(r, Role) for r in rule)


@pytest.fixture
def app(test_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> Litestar:
    from api.app import create_app

    return create_app(test_settings, sessionmaker=sessionmaker, clock=lambda: TEST_NOW)


def test_every_route_declares_a_role_rule(app: Litestar) -> None:
    found = list(endpoints(app))
    assert len(found) > 50, "the walk found the registry routes"
    missing = [str(e) for e in found if not valid_rule(e.rule)]
    assert missing == [], f"routes without a valid role rule: {missing}"


def test_every_documented_operation_is_walked(app: Litestar) -> None:
    """The OpenAPI schema lists no operation the matrix would miss."""
    walked = {(e.method, PARAM.sub(r"{\1}", e.path)) for e in endpoints(app)}
    schema = app.openapi_schema.to_schema()
    documented = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method.upper() in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}
    }
    assert documented, "the schema has operations"
    assert documented - walked == set()


async def test_role_matrix(app: Litestar, client: httpx.AsyncClient, db: AsyncSession) -> None:
    tokens = {role: await headers_for(db, f"demo_{role.value}") for role in Role}
    # Web forms sit behind the CSRF middleware: carry its token so they reach the role guard.
    await client.get("/login")
    csrf = client.cookies.get("ec_csrf")
    failures: list[str] = []
    checked = 0
    for endpoint in endpoints(app):
        for role in [None, *Role]:
            if role is None:
                headers: dict[str, str] = {}
            elif endpoint.path.endswith("/logout"):
                headers = await headers_for(db, f"demo_{role.value}")  # logging out revokes the token
            else:
                headers = dict(tokens[role])
            if endpoint.method not in SAFE and csrf:
                headers["x-csrf-token"] = csrf
            body: dict[str, Any] | None = {} if endpoint.method in {"POST", "PUT", "PATCH"} else None
            r = await client.request(endpoint.method, endpoint.url, json=body, headers=headers)
            checked += 1
            who = role.value if role else "anonymous"
            expected_allowed = rule_allows(endpoint.rule, role)
            if r.status_code >= 500:
                failures.append(f"{endpoint} as {who}: {r.status_code} {r.text[:200]}")
            elif expected_allowed and r.status_code in (401, 403):
                failures.append(f"{endpoint} as {who}: denied ({r.status_code}) but the rule allows it")
            elif not expected_allowed:
                want = (401, "auth.required") if role is None else (403, "auth.forbidden")
                got = (
                    r.status_code,
                    r.json().get("code") if r.headers.get("content-type", "").endswith("json") else None,
                )
                if got != want:
                    failures.append(f"{endpoint} as {who}: got {got}, rule says {want}")
    assert checked > 500
    assert failures == [], "\n".join(failures)


async def test_a_route_without_a_rule_is_caught(
    test_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession
) -> None:
    """The walk flags a rule-less route, and the global guard refuses it even to admins."""
    from litestar import get

    from api.app import create_app

    @get("/api/v1/forgotten-rule", sync_to_thread=False)
    def forgotten() -> dict[str, str]:
        return {"oops": "open"}

    app = create_app(
        test_settings, sessionmaker=sessionmaker, clock=lambda: TEST_NOW, extra_handlers=[forgotten]
    )
    flagged = [e for e in endpoints(app) if not valid_rule(e.rule)]
    assert [(e.method, e.path) for e in flagged] == [("GET", "/api/v1/forgotten-rule")]
    admin = await headers_for(db, "demo_admin")
    transport = asgi_transport(app, client=("testclient", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        r = await c.get("/api/v1/forgotten-rule", headers=admin)
    assert (r.status_code, r.json()["code"]) == (403, "auth.no_rule")
