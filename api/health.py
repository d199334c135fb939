"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Controller, MediaType, Response, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text

from api.bootstrap import metrics_exporters
from core.identity.authz import public
from core.notify import stats as notify_stats

log = structlog.get_logger(__name__)


class HealthController(Controller):
    tags = ["ops"]  # noqa: RUF012

    @get("/health", opt=public(), summary="Liveness: the process is up")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready", opt=public(), summary="Readiness: the database answers and is migrated")
    async def ready(self, state: State) -> Response[dict[str, Any]]:
        try:
            async with state.sessionmaker() as session:
                version = await session.scalar(text("SELECT version_num FROM alembic_version LIMIT 1"))
        except Exception as exc:  # any failure means "not ready", with the reason
            return Response({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
        return Response({"status": "ready", "database": "ok", "schema": version})

    @get(
        "/metrics",
        opt=public(),
        media_type=MediaType.TEXT,
        summary="Prometheus metrics",
        include_in_schema=False,
    )
    async def metrics(self, state: State) -> Response[bytes]:
        # The outbox's figures come from the database, so every API process reports them, whichever
        # process delivers; so do the domains' own (the scheduler's escalation heartbeats). A database
        # that does not answer leaves them as they were.
        try:
            async with state.sessionmaker() as session:
                stats = await notify_stats.outbox_stats(session, now=state.clock())
                notify_stats.export(stats)
                for export in metrics_exporters():
                    await export(session)
        except Exception as exc:  # metrics must render even when the database is down
            log.warning("metrics.outbox_unavailable", error=type(exc).__name__)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
