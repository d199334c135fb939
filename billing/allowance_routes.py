"""HTTP edge of the allowance rosters: ``/api/v1/billing/allowances``. Handlers parse, call one use case
of :mod:`billing.allowance_service` or :mod:`billing.exports` (which apply the caller's scope) and
serialise."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final, Literal

from litestar import Controller, Response, get, post
from litestar.params import JSONBody, QueryParameter

from billing import allowance_service as service
from billing import exports
from billing.allowance_schemas import (
    MONTH_PATTERN,
    AllowanceGenerate,
    AllowanceGeneratedRead,
    AllowanceRosterRead,
    ChangeText,
    KindText,
    generated_read,
    roster_read,
)
from billing.allowances import AllowanceKind, Change, parse_month
from billing.downloads import FileOperation, FormatQuery, file_response
from billing.xlsx import XLSX_MEDIA_TYPE
from core.crud import Window
from core.errors import Invalid
from core.http import CurrentPrincipal, Db, Now
from core.identity.authz import allow
from core.identity.models import Role
from core.types import Id32Query, check_day

R = Role
# Civil-affairs officers run the allowances of their districts; admins see the whole city. The roster
# itself is city-wide (one per month and allowance), so an officer's generation recomputes every
# district's lines, from the same facts and policy (audited); what each reads is its own districts'.
ALLOWANCE_STAFF: Final = allow(R.CIVIL_AFFAIRS, R.ADMIN)

MonthQuery = Annotated[str, QueryParameter(pattern=MONTH_PATTERN, description="The month, YYYY-MM")]
KindQuery = Annotated[
    KindText, QueryParameter(description="old_age (高龄津贴) or disability (经济困难失能老年人护理补贴)")
]
ChangeQuery = Annotated[
    ChangeText | None,
    QueryParameter(description="Only these lines: added (新增), changed, continued or stopped (停发)"),
]
Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Rows per page (1-200)")]
Offset = Annotated[int, QueryParameter(ge=0, le=1_000_000, description="Rows to skip")]
LangQuery = Annotated[
    Literal["zh", "en"], QueryParameter(description="Headers and words: zh (default) or en")
]


def month_of(text: str, *, field: str = "month") -> dt.date:
    """A ``YYYY-MM`` query or body value as the month's first day; a 422 naming ``field`` otherwise."""
    try:
        month = parse_month(text)
    except ValueError:
        raise Invalid(f"{field}={text[:20]!r} is not a month (YYYY-MM).", field=field) from None
    return check_day(month, field=field)


class AllowanceController(Controller):
    path = "/api/v1/billing/allowances"
    tags = ["billing"]  # noqa: RUF012

    @get(
        "/",
        opt=ALLOWANCE_STAFF,
        summary="A month's allowance roster (发放名册) with each line's reason, paged",
        description=(
            "The stored roster of `month` for `kind`, its totals over the lines you see (an officer: "
            "their districts; an admin: the city) and a page of them, by district then elder. "
            "`change=added` is the month's additions (新增明细), `change=stopped` its stoppages "
            "(停发明细). A month follows the facts of the last day of the month before: a new age "
            "band starts the month after the birthday month, payment stops the month after a death "
            "or a move, a late registration is back-paid. 404 `allowance.roster_not_found` until "
            "the month is generated (on the 1st, or `POST`)."
        ),
    )
    async def read(
        self,
        db: Db,
        principal: CurrentPrincipal,
        month: MonthQuery,
        kind: KindQuery,
        change: ChangeQuery = None,
        district_id: Id32Query = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> AllowanceRosterRead:
        view = await service.read_roster(
            session=db,
            actor=principal,
            kind=AllowanceKind(kind),
            month=month_of(month),
            window=Window(limit, offset),
            change=None if change is None else Change(change),
            district_id=district_id,
        )
        return roster_read(view)

    @post(
        "/",
        opt=ALLOWANCE_STAFF,
        status_code=200,
        summary="Generate a month's allowance roster, or regenerate it while it is open",
        description=(
            "One roster per month and allowance, stored. The current month's is `open`: generating "
            "it again recomputes it from the facts and policy as they are now (the same facts give the "
            "same lines: `lines_changed` false, the same `checksum`). A month that is over is "
            "generated once if it never was, and then `closed`: 409 `allowance.roster_closed`. A later "
            "month is 422 `allowance.month_not_started`; a month before the platform's first, "
            "`allowance.month_before_start`. A policy row the rules cannot apply (a disability scope "
            "that is not a level) is 409 `allowance.policy_invalid`, naming it. Audited."
        ),
    )
    async def generate(
        self, db: Db, principal: CurrentPrincipal, now: Now, data: JSONBody[AllowanceGenerate]
    ) -> AllowanceGeneratedRead:
        generated = await service.generate_roster(
            session=db,
            kind=AllowanceKind(data.kind),
            month=month_of(data.month),
            actor=principal,
            now=now,
        )
        totals = await service.scoped_totals(db, principal, generated.roster)
        return generated_read(generated, totals)

    @get(
        "/export",
        opt=ALLOWANCE_STAFF,
        media_type=XLSX_MEDIA_TYPE,
        operation_class=FileOperation,
        summary="Download a month's allowance roster as XLSX or CSV",
        description=(
            "The lines you see, as the roster shows them. XLSX: the roster (发放名册), the additions "
            "(新增明细) and the stoppages (停发明细), one sheet each with a frozen header row and a "
            "totals row (合计), amounts in yuan with two decimals, and a notes sheet (说明: month, "
            "state, policy applied, checksum). CSV: the roster alone, UTF-8 with a byte-order mark. "
            "The totals are the sums of the rows, equal to the roster's totals in your scope. Audited."
        ),
    )
    async def export(
        self,
        db: Db,
        principal: CurrentPrincipal,
        month: MonthQuery,
        kind: KindQuery,
        file_format: FormatQuery = "xlsx",
        lang: LangQuery = "zh",
    ) -> Response[bytes]:
        file = await exports.allowance_roster_export(
            session=db,
            actor=principal,
            kind=AllowanceKind(kind),
            month=month_of(month),
            fmt=file_format,
            lang=lang,
        )
        return file_response(file)


CONTROLLERS = (AllowanceController,)
