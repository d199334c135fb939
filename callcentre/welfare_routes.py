"""``/api/v1/callcentre/welfare``: the welfare plan (探访关爱) and officers' tier overrides.

Reading: operators, supervisors and civil-affairs officers in their districts (city-wide for
unscoped call-centre staff), admins everywhere; an elder outside one's districts is 404. Overrides:
civil-affairs officers of the elder's district and admins, audited. Every other role 403."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter

from callcentre import welfare_service as service
from callcentre.welfare import Tier
from callcentre.welfare_schemas import OverrideIn, OverrideRead, PlanItemRead, PlanPageRead, VisitRead
from core.http import CurrentPrincipal, Db, Now
from core.identity.authz import allow
from core.identity.models import Role

READING = allow(Role.OPERATOR, Role.SUPERVISOR, Role.CIVIL_AFFAIRS, Role.ADMIN)
OVERRIDING = allow(Role.CIVIL_AFFAIRS, Role.ADMIN)

Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Rows per page (1-200)")]
After = Annotated[
    int | None, QueryParameter(ge=0, le=2**63 - 1, description="The last elder id of the previous page")
]
DistrictId = Annotated[int | None, QueryParameter(ge=1, le=2**31 - 1, description="Only this district")]
TierFilter = Annotated[
    str | None,
    QueryParameter(pattern=r"^(high|medium|low|none)$", description="Only this tier (default: all but none)"),
]


class WelfareController(Controller):
    path = "/api/v1/callcentre/welfare"
    tags = ["welfare"]  # noqa: RUF012

    @get("/plan", opt=READING, summary="The welfare-visit plan: tier, last visit, next due, order status")
    async def list_plan(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        district_id: DistrictId = None,
        tier: TierFilter = None,
        limit: Limit = 50,
        after: After = None,
    ) -> PlanPageRead:
        page = await service.plan(
            session=db,
            actor=principal,
            now=now,
            district_id=district_id,
            tier=None if tier is None else Tier(tier),
            limit=limit,
            after=after,
        )
        return PlanPageRead([plan_item(e) for e in page.items], page.has_more, page.next_after)

    @get("/plan/{elder_id:int}", opt=READING, summary="One elder's welfare-visit plan")
    async def get_plan(
        self, db: Db, principal: CurrentPrincipal, now: Now, elder_id: FromPath[int]
    ) -> PlanItemRead:
        return plan_item(await service.plan_entry(session=db, actor=principal, elder_id=elder_id, now=now))

    @put(
        "/overrides/{elder_id:int}",
        opt=OVERRIDING,
        summary="Set an elder's welfare tier from today (audited)",
    )
    async def set_override(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        elder_id: FromPath[int],
        data: JSONBody[OverrideIn],
    ) -> PlanItemRead:
        entry = await service.set_override(
            session=db, actor=principal, elder_id=elder_id, tier=Tier(data.tier), reason=data.reason, now=now
        )
        return plan_item(entry)

    @post(
        "/overrides/{elder_id:int}/clear",
        opt=OVERRIDING,
        status_code=200,
        summary="Clear an elder's welfare tier override from today (audited)",
    )
    async def clear_override(
        self, db: Db, principal: CurrentPrincipal, now: Now, elder_id: FromPath[int]
    ) -> PlanItemRead:
        return plan_item(
            await service.clear_override(session=db, actor=principal, elder_id=elder_id, now=now)
        )


def plan_item(e: service.PlanEntry) -> PlanItemRead:
    o, v = e.override, e.latest
    return PlanItemRead(
        elder_id=e.elder_id,
        name=e.name,
        district_id=e.district_id,
        tier=e.tier.value,
        source=e.source.value,
        override=None if o is None else OverrideRead(o.tier.value, o.valid_from, o.valid_to),
        last_visit_on=e.last_visit_on,
        next_due_on=e.next_due_on,
        open_order=e.open_order,
        latest_visit=None if v is None else VisitRead(v.due_on, v.reason, v.order_id, v.order_state),  # type: ignore[arg-type]
    )


CONTROLLERS = (WelfareController,)
