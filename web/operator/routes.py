"""The operators' console: the alarm queue (live over the feed, no reload) and an alarm's page.

Every handler calls :mod:`callcentre.console`, which enforces the role and the district scope itself
(an alarm of another district is ``alarm.not_found``, a 404 page); the routes' own rules admit the
call centre's roles only (DOMAIN §9): operators, supervisors and admins work alarms, civil-affairs
officers read them. Forms post with the CSRF token (the layout gives it to htmx as a header) and
answer with a redirect to the alarm's page (post/redirect/get), or, asked by htmx, ``204`` and an
``HX-Trigger: queue-changed`` event for the queue to refresh itself.

The queue page renders the open alarms and the feed's cursor at that moment; ``console.js`` opens
the stream after that cursor, so nothing falls between the page and the stream, and on each event
reloads the rows (``/operator/queue/rows``). Rows shown to someone who works alarms are reported as
presented (``presented_at``, DOMAIN §7): the first console that shows an alarm sets it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any, Final

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, URLEncodedBody
from litestar.response import Redirect, Template

from callcentre import console
from callcentre.lifecycle import RESULTS, Action, ActionResult, ResponseAction, may
from callcentre.schemas import AlarmContext, QueuePage
from callcentre.stream_routes import console_cursor
from core.crud import Window
from core.errors import Invalid
from core.http import CurrentPrincipal, Db, Now
from core.identity.authz import Principal, allow
from core.identity.models import Role
from registry.scope import by_district
from registry.service.places import list_districts
from web.operator.labels import LABELS, VITALS
from web.pages import PAGE_ERRORS, password_first, render, translate

WORKERS: Final = (Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN)
READERS: Final = (*WORKERS, Role.CIVIL_AFFAIRS)
QUEUE_LIMIT: Final = 100
# The responder actions offered on an alarm's page, in the order an operator escalates.
RESPONDERS: Final = (
    ResponseAction.SEND_CAREGIVER,
    ResponseAction.SEND_COMMUNITY_WORKER,
    ResponseAction.CALL_120,
    ResponseAction.CALL_119,
    ResponseAction.CALL_110,
)
# Results of a phone call, as one-click buttons in the order of ActionResult (reached first).
CALL_RESULTS: Final = [r for r in ActionResult if r in RESULTS[ResponseAction.CALL_ELDER]]


class QueueFilter:
    """The queue page's filters, from its query string (repeated keys for several values)."""

    def __init__(self, request: Request[Any, Any, Any]) -> None:
        q = request.query_params
        self.status = q.get("status") or "open"
        self.types = [t for t in q.getall("type", []) if t] or None
        self.severities = [s for s in q.getall("severity", []) if s] or None
        try:
            self.districts = [int(d) for d in q.getall("district", []) if d] or None
        except ValueError:
            raise Invalid("district must be a district id.", field="district") from None

    def query(self) -> str:
        parts = [("status", self.status)]
        parts += [("type", t) for t in self.types or ()]
        parts += [("severity", s) for s in self.severities or ()]
        parts += [("district", str(d)) for d in self.districts or ()]
        return "&".join(f"{k}={v}" for k, v in parts)


async def _queue(db: Db, principal: Principal, now: dt.datetime, f: QueueFilter) -> QueuePage:
    page = await console.queue(
        db,
        principal,
        now=now,
        status=f.status,
        district_ids=f.districts,
        types=f.types,
        severities=f.severities,
        limit=QUEUE_LIMIT,
    )
    if may(principal, Action.PRESENT):
        unseen = [item.id for item in page.items if item.presented_at is None and item.cleared_at is None]
        if unseen:
            await console.mark_presented(db, principal, unseen, now=now)
    return page


async def _districts(db: Db, principal: Principal) -> list[tuple[int, str, str]]:
    """(id, name, English name) of the districts the principal's queue may show."""
    every = (await list_districts(session=db, window=Window(limit=200))).items
    mine = principal.district_ids if by_district(principal) else None
    return [(d.id, d.name, d.name_en) for d in every if mine is None or d.id in mine]


def _alarm_url(alarm_id: int, done: str | None = None) -> str:
    return f"/operator/alarms/{alarm_id}" + (f"?done={done}" if done else "")


def _after_change(request: Request[Any, Any, Any], alarm_id: int, done: str) -> Response[Any]:
    if request.headers.get("hx-request"):
        return Response(content=None, status_code=204, headers={"HX-Trigger": "queue-changed"})
    return Redirect(_alarm_url(alarm_id, done), status_code=303)


def _vitals_json(context: AlarmContext, _: Callable[[str], str]) -> str:
    """The chart's data: per vital sign, its label, unit, [epoch seconds] and [average]."""
    return json.dumps(
        [
            {
                "metric": series.metric,
                "label": _(VITALS.get(series.metric, series.metric)),
                "unit": series.unit,
                "t": [int(p.at.timestamp()) for p in series.points],
                "avg": [round(p.avg, 1) for p in series.points],
            }
            for series in context.vitals
        ]
    )


class OperatorPages(Controller):
    path = "/operator"
    include_in_schema = False
    guards = [password_first]  # noqa: RUF012
    exception_handlers = PAGE_ERRORS

    @get("/queue", opt=allow(*READERS))
    async def queue_page(
        self, request: Request[Any, Any, Any], state: State, db: Db, principal: CurrentPrincipal, now: Now
    ) -> Template:
        f = QueueFilter(request)
        cursor = await console_cursor(state)  # before the read: what follows it is replayed
        page = await _queue(db, principal, now, f)
        return render(
            request,
            "operator/queue.html",
            nav_key="queue",
            page=page,
            filter=f,
            cursor=cursor,
            districts=await _districts(db, principal),
            works=may(principal, Action.ACKNOWLEDGE),
            labels=LABELS,
        )

    @get("/queue/rows", opt=allow(*READERS))
    async def queue_rows(
        self, request: Request[Any, Any, Any], db: Db, principal: CurrentPrincipal, now: Now
    ) -> Template:
        f = QueueFilter(request)
        page = await _queue(db, principal, now, f)
        return render(
            request,
            "operator/_queue_rows.html",
            page=page,
            works=may(principal, Action.ACKNOWLEDGE),
            labels=LABELS,
        )

    @get("/alarms/{alarm_id:int}", opt=allow(*READERS))
    async def alarm_page(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        alarm_id: FromPath[int],
    ) -> Template:
        context = await console.alarm_context(db, principal, alarm_id, now=now)
        if may(principal, Action.PRESENT) and context.alarm.presented_at is None and context.alarm.active:
            await console.mark_presented(db, principal, [alarm_id], now=now)
        return render(
            request,
            "operator/alarm.html",
            nav_key="queue",
            ctx=context,
            works=may(principal, Action.ACKNOWLEDGE),
            done=request.query_params.get("done"),
            labels=LABELS,
            call_results=CALL_RESULTS,
            responders=[(a, [r for r in ActionResult if r in RESULTS[a]]) for a in RESPONDERS],
            vitals_json=_vitals_json(context, translate(request)),
        )

    @post("/alarms/{alarm_id:int}/claim", opt=allow(*WORKERS), status_code=303)
    async def claim(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        alarm_id: FromPath[int],
    ) -> Response[Any]:
        await console.claim(db, principal, alarm_id, now=now)
        return _after_change(request, alarm_id, "claimed")

    @post("/alarms/{alarm_id:int}/ack", opt=allow(*WORKERS), status_code=303)
    async def acknowledge(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        alarm_id: FromPath[int],
    ) -> Response[Any]:
        await console.acknowledge(db, principal, alarm_id, now=now)
        return _after_change(request, alarm_id, "acknowledged")

    @post("/alarms/{alarm_id:int}/actions", opt=allow(*WORKERS), status_code=303)
    async def record_action(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        alarm_id: FromPath[int],
        data: URLEncodedBody[dict[str, str]],
    ) -> Response[Any]:
        position = data.get("contact_position") or None
        try:
            contact_position = int(position) if position is not None else None
        except ValueError:
            raise Invalid("contact_position must be a number.", field="contact_position") from None
        await console.record_action(
            db,
            principal,
            alarm_id,
            action=data.get("action", ""),
            result=data.get("result", ""),
            contact_position=contact_position,
            note=data.get("note", ""),
            now=now,
        )
        return _after_change(request, alarm_id, "action")

    @post("/alarms/{alarm_id:int}/comments", opt=allow(*WORKERS), status_code=303)
    async def comment(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        alarm_id: FromPath[int],
        data: URLEncodedBody[dict[str, str]],
    ) -> Response[Any]:
        await console.comment(db, principal, alarm_id, text=data.get("text", ""), now=now)
        return _after_change(request, alarm_id, "comment")

    @post("/alarms/{alarm_id:int}/clear", opt=allow(*WORKERS), status_code=303)
    async def clear(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        alarm_id: FromPath[int],
        data: URLEncodedBody[dict[str, str]],
    ) -> Response[Any]:
        await console.clear(
            db, principal, alarm_id, outcome=data.get("outcome", ""), note=data.get("note", ""), now=now
        )
        return _after_change(request, alarm_id, "cleared")

    @post("/alarms/{alarm_id:int}/reopen", opt=allow(*WORKERS), status_code=303)
    async def reopen(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        alarm_id: FromPath[int],
        data: URLEncodedBody[dict[str, str]],
    ) -> Response[Any]:
        await console.reopen(db, principal, alarm_id, reason=data.get("reason", ""), now=now)
        return _after_change(request, alarm_id, "reopened")


CONTROLLERS = (OperatorPages,)
