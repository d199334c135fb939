"""Application factory: ``create_app(settings)`` mounts the kernel's edge (health, sign-in, users,
policy), every domain's controllers (from the composition root, ``api.bootstrap``) and the web pages."""

from __future__ import annotations

import gc
import itertools
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
from litestar import Litestar, Router
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, ControllerRouterHandler, Message, Receive, Scope, Send
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.auth import AuthController, authorize
from api.bootstrap import domain_controllers, scope_loaders
from api.controllers.policies import PolicyController
from api.controllers.users import UserController
from api.deps import provide_db, provide_now, provide_principal, session_middleware
from api.health import HealthController
from api.openapi import BEARER, LocalTimeSchema, document_operations
from api.problems import EXCEPTION_HANDLERS
from callcentre.feed import AlarmFeed
from callcentre.stream_routes import FEED_STATE_KEY
from core import audit
from core.clock import Clock, utc_now
from core.db import begin_at_once_when_asked, begin_lazily, make_engine, make_sessionmaker
from core.identity.authz import public
from core.identity.sessions import PrincipalCache
from core.logging import configure_logging
from core.settings import Settings
from web.pages import template_config as web_template_config
from web.routes import web_handlers

log = structlog.get_logger()

REQUESTS = Counter("eldercare_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("eldercare_http_request_seconds", "HTTP request latency", ["method", "route"])


# The API's pool: no ping before every checkout (two round trips per request); connections are
# replaced after half an hour instead, and a connection found dead (a database restart) invalidates
# the pool, so the requests after the one that met it get fresh connections. Its connections begin a
# transaction only at a request's first statement that needs one (core.db.begin_lazily): a read-only
# request makes no BEGIN/COMMIT round trips. A request with an unsafe method (one that may write) begins
# at its first statement, as before.
# All 20 connections stay open: with the default 10 + 10 overflow, 16 concurrent requests opened and
# closed an overflow connection (a new PostgreSQL backend, TLS negotiation) every few requests.
API_POOL: dict[str, object] = {
    "pool_pre_ping": False,
    "pool_recycle": 1800,
    "pool_size": 20,
    "max_overflow": 0,
}

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,40}")

# Request ids this process gives: a random prefix of its own and a counter (32 hex digits, like a
# UUID's, unique across processes and restarts without reading the system's randomness per request).
_ID_PREFIX = uuid.uuid4().hex[:16]
_ID_SEQUENCE = itertools.count(1)

# The metric children per (method, route[, status]): labels() looks them up by their values each time.
_COUNTERS: dict[tuple[str, str, str], Any] = {}
_TIMERS: dict[tuple[str, str], Any] = {}


def _request_id(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` when well-formed, else a new one."""
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            incoming = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(incoming):
                return incoming
            break
    return f"{_ID_PREFIX}{next(_ID_SEQUENCE):016x}"


def _observe(method: str, route: str, status: int, elapsed_s: float) -> None:
    key = (method, route, str(status))
    counter = _COUNTERS.get(key)
    if counter is None:
        counter = _COUNTERS[key] = REQUESTS.labels(*key)
    counter.inc()
    timer = _TIMERS.get(key[:2])
    if timer is None:
        timer = _TIMERS[(method, route)] = LATENCY.labels(method, route)
    timer.observe(elapsed_s)


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    """Counts and times every HTTP request (Prometheus), logs one structured line for it, and gives it
    a request id (the caller's ``X-Request-ID`` when well-formed) that audit rows and logs carry."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        method = str(scope.get("method", ""))
        t0 = time.perf_counter()
        status = 500
        request_id = _request_id(scope)
        client = scope.get("client")
        token = audit.bind_request(ip=client[0] if client else None, request_id=request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            audit.unbind_request(token)
            elapsed = time.perf_counter() - t0
            _observe(method, scope.get("path_template") or "unmatched", status, elapsed)
            log.info(
                "http.request",
                method=method,
                path=scope["path"],
                status=status,
                ms=round(elapsed * 1000, 1),
            )
            structlog.contextvars.unbind_contextvars("request_id")

    return middleware


def _swagger_assets() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


def _freeze_startup_objects() -> None:
    """Move what start-up made (modules, routes, compiled statements: hundreds of thousands of
    objects that live as long as the process) out of the garbage collector's sight, so that its full
    collections, which pause every request in flight, only walk what requests made since."""
    gc.collect()
    gc.freeze()


def route_handlers() -> list[ControllerRouterHandler]:
    """Every controller of the platform: the kernel's, the domains' (listed in ``api.bootstrap``), the
    web pages'. The order is the OpenAPI document's order of operations."""
    return [
        HealthController,
        AuthController,
        UserController,
        PolicyController,
        *domain_controllers(),
        *web_handlers(),
    ]


def create_app(
    settings: Settings,
    *,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    clock: Clock = utc_now,
    extra_handlers: Sequence[ControllerRouterHandler] = (),
) -> Litestar:
    """Build the app. Tests pass their own ``sessionmaker`` (bound to a rolled-back transaction)
    and ``clock``; production builds an engine from ``settings``."""
    configure_logging(json=settings.log_json, level=settings.log_level)
    engine: AsyncEngine | None = None
    if sessionmaker is None:
        engine = make_engine(settings, **API_POOL)
        begin_lazily(engine)
        sessionmaker = make_sessionmaker(engine)
        begin_at_once_when_asked(sessionmaker)  # requests that may write: api.deps.request_session

    # The operators' live feed: one LISTEN connection per process, started with the app (see
    # callcentre.feed). Not for an app on an injected sessionmaker (in-process tests, no lifespan).
    feed = AlarmFeed(settings.asyncpg_dsn) if engine is not None else None

    async def _start_feed() -> None:
        if feed is not None:
            await feed.start()

    async def _dispose() -> None:
        if feed is not None:
            await feed.stop()
        if engine is not None:
            await engine.dispose()

    static = create_static_files_router(
        path="/static/swagger", directories=[_swagger_assets()], opt=public(), include_in_schema=False
    )

    openapi = OpenAPIConfig(
        title="Eldercare API 智慧养老服务平台",
        version="1",
        path="/api/schema",
        render_plugins=[
            SwaggerRenderPlugin(
                path="/",
                js_url="/static/swagger/swagger-ui-bundle.js",
                css_url="/static/swagger/swagger-ui.css",
                standalone_preset_js_url="/static/swagger/swagger-ui-standalone-preset.js",
            ),
            JsonRenderPlugin(path="/openapi.json"),
        ],
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http", scheme="bearer", description="Token from /api/v1/auth/login"
                )
            }
        ),
        openapi_router=Router(path="/api/schema", route_handlers=[], opt=public(), include_in_schema=False),
    )

    app = Litestar(
        route_handlers=[*route_handlers(), *extra_handlers, static],
        guards=[authorize],
        dependencies={
            "db": Provide(provide_db),
            "principal": Provide(provide_principal, sync_to_thread=False),
            "now": Provide(provide_now, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        template_config=web_template_config(),
        openapi_config=openapi,
        csrf_config=CSRFConfig(
            secret=settings.secret_key,
            cookie_name="ec_csrf",
            header_name="x-csrf-token",
            cookie_secure=settings.secure_cookies,
            cookie_httponly=False,
            exclude=["/api/"],
        ),
        # The domains' scope loaders: who a principal's role ties them to (core.identity.sessions).
        state=State(
            {
                "settings": settings,
                "sessionmaker": sessionmaker,
                "clock": clock,
                "scope_loaders": scope_loaders(),
                "principal_cache": PrincipalCache(),
                FEED_STATE_KEY: feed,
            }
        ),
        middleware=[metrics_middleware, session_middleware],
        on_startup=[_start_feed, _freeze_startup_objects],
        on_shutdown=[_dispose],
        debug=settings.debug,
        plugins=[LocalTimeSchema()],
    )
    document_operations(app)
    return app


def app_from_env() -> Litestar:
    """The app of ``eldercare serve --workers N``: each worker process builds its own, from the
    environment (``ELDERCARE_*``), with its own database pool and principal cache."""
    return create_app(Settings.from_env())
