"""The supervisor's page: the service levels of a shift (DOMAIN §7: 97.5 % acknowledged within 60 s,
99 % within 180 s; the targets are policy ``alarm.ack_sla``, read by :func:`callcentre.console.kpis`),
overall and by operator, alarm type and district, with a chart of the share acknowledged within 60 s.

The period is given in Asia/Shanghai wall time (``?from=``/``?to=``, ``YYYY-MM-DDTHH:MM`` as a
``datetime-local`` input sends it); by default the shift so far: from local midnight to now.
Supervisors, admins and civil-affairs officers read their districts' figures; an operator reads the
figures of the alarms they answered (the console decides, as for the API).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Final

from litestar import Controller, Request, get
from litestar.response import Template

from callcentre import console
from callcentre.schemas import Kpis
from core.clock import SHANGHAI
from core.errors import Invalid
from core.http import CurrentPrincipal, Db, Now
from core.identity.authz import allow
from core.identity.models import Role
from web.operator.labels import LABELS
from web.pages import PAGE_ERRORS, password_first, render

READERS: Final = (Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN, Role.CIVIL_AFFAIRS)
LOCAL_FORMAT: Final = "%Y-%m-%dT%H:%M"


def _local(value: str | None, *, field: str, default: dt.datetime) -> dt.datetime:
    """A ``datetime-local`` value read as Asia/Shanghai wall time (aware), or ``default``."""
    if not value:
        return default
    try:
        return dt.datetime.strptime(value, LOCAL_FORMAT).replace(tzinfo=SHANGHAI)
    except ValueError:
        raise Invalid(f"{field} must be a local time YYYY-MM-DDTHH:MM.", field=field) from None


def _chart_json(k: Kpis) -> str:
    """The chart's data: per alarm type, the share acknowledged within 60 s (percent), and the target."""
    rows = [t for t in k.by_type if t.figures.ack_within_60s.share_bp is not None]
    return json.dumps(
        {
            "types": [t.type for t in rows],
            "share": [(t.figures.ack_within_60s.share_bp or 0) / 100 for t in rows],
            "target": k.overall.ack_within_60s.target_bp / 100,
        }
    )


class SupervisorPages(Controller):
    path = "/supervisor"
    include_in_schema = False
    guards = [password_first]  # noqa: RUF012
    exception_handlers = PAGE_ERRORS

    @get("/", opt=allow(*READERS))
    async def figures(
        self, request: Request[Any, Any, Any], db: Db, principal: CurrentPrincipal, now: Now
    ) -> Template:
        local_now = now.astimezone(SHANGHAI)
        midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
        start = _local(request.query_params.get("from"), field="from", default=midnight)
        end = _local(request.query_params.get("to"), field="to", default=local_now + dt.timedelta(minutes=1))
        kpis = await console.kpis(db, principal, start=start, end=end, now=now)
        return render(
            request,
            "supervisor/figures.html",
            nav_key="figures",
            k=kpis,
            start=start.astimezone(SHANGHAI).strftime(LOCAL_FORMAT),
            end=end.astimezone(SHANGHAI).strftime(LOCAL_FORMAT),
            chart_json=_chart_json(kpis),
            labels=LABELS,
        )


CONTROLLERS = (SupervisorPages,)
