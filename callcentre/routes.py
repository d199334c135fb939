"""HTTP edge of the call centre, ``/api/v1/callcentre``: the alarm queue, an alarm's context and
timeline, the operators' actions on it, and the service-level figures (issue #11).

Handlers parse, call one :mod:`callcentre.console` use case and return its structs; the use case
enforces the role and the district scope again (an alarm outside one's districts is a 404
``alarm.not_found``), so the pages calling it directly are held to the same rules.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from callcentre import console
from callcentre.console import QueueStatus
from callcentre.contract import AlarmType, Severity
from callcentre.schemas import (
    ActionIn,
    AlarmContext,
    AlarmState,
    AssignIn,
    ClearIn,
    CommentIn,
    Kpis,
    PresentedIn,
    PresentedRead,
    QueuePage,
    ReopenIn,
    TimelineEvent,
)
from core.clock import SHANGHAI, local_date
from core.crud import MAX_LIMIT
from core.errors import Invalid
from core.http import CurrentPrincipal, Db, Now
from core.identity.authz import allow
from core.identity.models import Role
from core.types import check_day, parse_day

R = Role
# Who reads alarms and figures (civil-affairs officers only read, in their districts), who works
# them, who assigns them (DOMAIN §9).
READING = allow(R.OPERATOR, R.SUPERVISOR, R.CIVIL_AFFAIRS, R.ADMIN)
WORKING = allow(R.OPERATOR, R.SUPERVISOR, R.ADMIN)
ASSIGNING = allow(R.SUPERVISOR, R.ADMIN)

StatusQuery = Annotated[
    QueueStatus,
    QueryParameter(description="open (default), unacknowledged, acknowledged, unassigned, mine or cleared"),
]
DistrictsQuery = Annotated[
    list[int] | None,
    QueryParameter(name="district_id", max_items=20, description="Districts (repeat the parameter)"),
]
TypesQuery = Annotated[
    list[AlarmType] | None, QueryParameter(name="type", max_items=20, description="Alarm types, e.g. SOS")
]
SeveritiesQuery = Annotated[
    list[Severity] | None, QueryParameter(name="severity", max_items=4, description="Severities")
]
LimitQuery = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Alarms per page (1-200)")]
CursorQuery = Annotated[
    str | None,
    QueryParameter(max_length=120, pattern=r"^[A-Za-z0-9_-]+$", description="The `next` of the page before"),
]
FromQuery = Annotated[
    str | None,
    QueryParameter(
        name="from",
        max_length=40,
        description="Start: a day (YYYY-MM-DD, Asia/Shanghai, from its midnight) or an instant with a "
        "time zone; default today's midnight",
    ),
]
ToQuery = Annotated[
    str | None,
    QueryParameter(
        name="to",
        max_length=40,
        description="End: a day (YYYY-MM-DD, Asia/Shanghai, up to the end of it) or an instant with a "
        "time zone (excluded); default now",
    ),
]


def parse_instant(text: str, *, field: str, end_of_day: bool) -> dt.datetime:
    """A query value: a local day (its midnight, or the next midnight for an end) or an aware instant."""
    if len(text) == 10:
        day = parse_day(text, field=field)
        midnight = dt.datetime.combine(day, dt.time(), SHANGHAI)
        return midnight + dt.timedelta(days=1) if end_of_day else midnight
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(
            f"{field} is neither a day (YYYY-MM-DD) nor an ISO 8601 instant.", field=field
        ) from None
    if at.utcoffset() is None:
        raise Invalid(
            f"{field} needs a time zone (e.g. …+08:00).", code="time.timezone_required", field=field
        )
    return check_day(at, field=field)


class CallCentreController(Controller):
    path = "/api/v1/callcentre"
    tags = ["callcentre"]  # noqa: RUF012

    @get("/alarms", opt=READING, summary="The alarm queue: open alarms by severity, then age")
    async def list_alarms(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        status: StatusQuery = QueueStatus.OPEN,
        district_id: DistrictsQuery = None,
        alarm_type: TypesQuery = None,
        severity: SeveritiesQuery = None,
        limit: LimitQuery = 50,
        after: CursorQuery = None,
    ) -> QueuePage:
        return await console.queue(
            db,
            principal,
            now=now,
            status=status.value,
            district_ids=district_id,
            types=None if alarm_type is None else [t.value for t in alarm_type],
            severities=None if severity is None else [s.value for s in severity],
            limit=limit,
            after=after,
        )

    @get("/alarms/{alarm_id:int}", opt=READING, summary="An alarm and everything needed to handle it")
    async def get_alarm(
        self, db: Db, principal: CurrentPrincipal, now: Now, alarm_id: FromPath[int]
    ) -> AlarmContext:
        return await console.alarm_context(db, principal, alarm_id, now=now)

    @get("/alarms/{alarm_id:int}/timeline", opt=READING, summary="An alarm's timeline, oldest first")
    async def get_timeline(
        self, db: Db, principal: CurrentPrincipal, now: Now, alarm_id: FromPath[int]
    ) -> list[TimelineEvent]:
        return await console.timeline(db, principal, alarm_id, now=now)

    @post(
        "/alarms/presented",
        opt=WORKING,
        status_code=200,
        summary="Report alarms shown on your console (sets presented_at the first time)",
    )
    async def presented(
        self, db: Db, principal: CurrentPrincipal, now: Now, data: JSONBody[PresentedIn]
    ) -> PresentedRead:
        shown = await console.mark_presented(db, principal, data.alarm_ids, now=now)
        return PresentedRead(alarm_ids=shown)

    @post("/alarms/{alarm_id:int}/claim", opt=WORKING, status_code=200, summary="Take an unassigned alarm")
    async def claim(
        self, db: Db, principal: CurrentPrincipal, now: Now, alarm_id: FromPath[int]
    ) -> AlarmState:
        return await console.claim(db, principal, alarm_id, now=now)

    @post(
        "/alarms/{alarm_id:int}/assign",
        opt=ASSIGNING,
        status_code=200,
        summary="Give an alarm to an operator or supervisor",
    )
    async def assign(
        self, db: Db, principal: CurrentPrincipal, now: Now, alarm_id: FromPath[int], data: JSONBody[AssignIn]
    ) -> AlarmState:
        return await console.assign(db, principal, alarm_id, user_id=data.user_id, now=now)

    @post("/alarms/{alarm_id:int}/ack", opt=WORKING, status_code=200, summary="Acknowledge an alarm")
    async def acknowledge(
        self, db: Db, principal: CurrentPrincipal, now: Now, alarm_id: FromPath[int]
    ) -> AlarmState:
        return await console.acknowledge(db, principal, alarm_id, now=now)

    @post("/alarms/{alarm_id:int}/comments", opt=WORKING, status_code=200, summary="Add a note to an alarm")
    async def add_comment(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        alarm_id: FromPath[int],
        data: JSONBody[CommentIn],
    ) -> AlarmState:
        return await console.comment(db, principal, alarm_id, text=data.text, now=now)

    @post(
        "/alarms/{alarm_id:int}/actions",
        opt=WORKING,
        status_code=200,
        summary="Record a call-back or a responder sent, with its result",
    )
    async def record_action(
        self, db: Db, principal: CurrentPrincipal, now: Now, alarm_id: FromPath[int], data: JSONBody[ActionIn]
    ) -> AlarmState:
        return await console.record_action(
            db,
            principal,
            alarm_id,
            action=data.action.value,
            result=data.result.value,
            contact_position=data.contact_position,
            note=data.note,
            now=now,
        )

    @post(
        "/alarms/{alarm_id:int}/clear", opt=WORKING, status_code=200, summary="Clear an alarm with an outcome"
    )
    async def clear(
        self, db: Db, principal: CurrentPrincipal, now: Now, alarm_id: FromPath[int], data: JSONBody[ClearIn]
    ) -> AlarmState:
        return await console.clear(
            db, principal, alarm_id, outcome=data.outcome.value, note=data.note, now=now
        )

    @post("/alarms/{alarm_id:int}/reopen", opt=WORKING, status_code=200, summary="Reopen a cleared alarm")
    async def reopen(
        self, db: Db, principal: CurrentPrincipal, now: Now, alarm_id: FromPath[int], data: JSONBody[ReopenIn]
    ) -> AlarmState:
        return await console.reopen(db, principal, alarm_id, reason=data.reason, now=now)

    @get(
        "/kpis",
        opt=READING,
        summary="Service levels of the alarms received in a period, by operator, type and district",
    )
    async def get_kpis(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        start: FromQuery = None,
        end: ToQuery = None,
    ) -> Kpis:
        begin = (
            parse_instant(start, field="from", end_of_day=False)
            if start
            else dt.datetime.combine(local_date(now), dt.time(), SHANGHAI)
        )
        finish = parse_instant(end, field="to", end_of_day=True) if end else now
        return await console.kpis(db, principal, start=begin, end=finish, now=now)


CONTROLLERS = (CallCentreController,)
