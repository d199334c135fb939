"""``/api/v1/elders`` and their sub-resources; ``/api/v1/assessments``.

Everyone signed in may call the read routes, but sees only the elders their scope admits (the
service layer decides; an elder outside it is a 404). Master data is written by admins and the
district's civil-affairs officers; families maintain emergency contacts and, with elders, block lists.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from core.http import PAGINATION, CurrentPrincipal, Db, Now, Page, PageWindow, page
from core.identity.authz import ALL_ROLES, allow
from core.identity.models import Role
from registry.models import ElderStatus, LivingSituation
from registry.routes.params import DistrictCode, Id32Query, NamePrefix
from registry.schemas.assessments import AssessmentCreate, AssessmentPage, AssessmentRead, assessment_read
from registry.schemas.elders import (
    BlockedRead,
    BlockIn,
    CategoryIn,
    CategoryRead,
    CategoryUpdate,
    ContactRead,
    ContactsReplace,
    ElderCareRead,
    ElderCreate,
    ElderPage,
    ElderRead,
    ElderUpdate,
    LtcIn,
    LtcRead,
    LtcUpdate,
    StatusChange,
    blocked_read,
    category_read,
    contact_read,
    elder_full_read,
    ltc_read,
)
from registry.service import assessments, elders
from registry.service.elders import ElderFilter

EVERYONE = allow(*sorted(ALL_ROLES))
MASTER_DATA = allow(Role.ADMIN, Role.CIVIL_AFFAIRS)
CONTACTS = allow(Role.ADMIN, Role.CIVIL_AFFAIRS, Role.FAMILY)
BLOCKLIST_READ = allow(
    Role.ADMIN,
    Role.CIVIL_AFFAIRS,
    Role.OPERATOR,
    Role.SUPERVISOR,
    Role.FAMILY,
    Role.ELDER,
    Role.PROVIDER_ADMIN,
)
BLOCKLIST_WRITE = allow(Role.ADMIN, Role.CIVIL_AFFAIRS, Role.FAMILY, Role.ELDER)
IdNumberQuery = Annotated[
    str | None, QueryParameter(min_length=15, max_length=18, pattern=r"^[0-9]{17}[0-9Xx]$")
]
LevelQuery = Annotated[int | None, QueryParameter(ge=0, le=4, description="Current ability level 0-4")]


class ElderController(Controller):
    path = "/api/v1/elders"
    tags = ["elders"]  # noqa: RUF012
    dependencies = PAGINATION

    @get("/", opt=EVERYONE, summary="List the elders you may see (ID numbers masked)")
    async def list_elders(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        window: PageWindow,
        district_code: DistrictCode = None,
        district_id: Id32Query = None,
        street_id: Id32Query = None,
        community_id: Id32Query = None,
        status: FromQuery[ElderStatus | None] = None,
        living_situation: FromQuery[LivingSituation | None] = None,
        name: NamePrefix = None,
        has_dementia: FromQuery[bool | None] = None,
        level: LevelQuery = None,
        id_number: IdNumberQuery = None,
    ) -> ElderPage:
        filters = ElderFilter(
            district_code=district_code,
            district_id=district_id,
            street_id=street_id,
            community_id=community_id,
            status=status.value if status else None,
            living_situation=living_situation.value if living_situation else None,
            name_prefix=name,
            has_dementia=has_dementia,
            level=level,
            id_number=id_number,
        )
        result = await elders.list_elders(
            session=db, actor=principal, filters=filters, window=window, now=now
        )
        return Page(items=result.items, total=result.total, limit=result.limit, offset=result.offset)

    @post("/", opt=MASTER_DATA, summary="Register an elder")
    async def create_elder(
        self, db: Db, principal: CurrentPrincipal, now: Now, data: JSONBody[ElderCreate]
    ) -> ElderRead:
        view = await elders.create_elder(session=db, actor=principal, data=data, now=now)
        return elder_full_read(view)

    @get(
        "/{elder_id:int}",
        opt=EVERYONE,
        summary="One elder; the ID number is unmasked for civil affairs and admins (audited)",
    )
    async def get_elder(
        self, db: Db, principal: CurrentPrincipal, now: Now, elder_id: FromPath[int]
    ) -> ElderRead | ElderCareRead:
        return await elders.get_elder(session=db, actor=principal, elder_id=elder_id, now=now)

    @patch("/{elder_id:int}", opt=MASTER_DATA, summary="Change an elder's master data")
    async def update_elder(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        elder_id: FromPath[int],
        data: JSONBody[ElderUpdate],
    ) -> ElderRead:
        view = await elders.update_elder(
            session=db, actor=principal, elder_id=elder_id, changes=data, now=now
        )
        return elder_full_read(view)

    @delete("/{elder_id:int}", opt=allow(Role.ADMIN), summary="Erase an elder entered by mistake")
    async def delete_elder(self, db: Db, principal: CurrentPrincipal, elder_id: FromPath[int]) -> None:
        await elders.delete_elder(session=db, actor=principal, elder_id=elder_id)

    @post("/{elder_id:int}/status", opt=MASTER_DATA, status_code=200, summary="Record a status change")
    async def change_status(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        elder_id: FromPath[int],
        data: JSONBody[StatusChange],
    ) -> ElderRead:
        view = await elders.change_status(
            session=db, actor=principal, elder_id=elder_id, status=data.status.value, on=data.on, now=now
        )
        return elder_full_read(view)

    @put("/{elder_id:int}/contacts", opt=CONTACTS, summary="Replace the ordered emergency contacts")
    async def replace_contacts(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        elder_id: FromPath[int],
        data: JSONBody[ContactsReplace],
    ) -> list[ContactRead]:
        rows = await elders.replace_contacts(
            session=db, actor=principal, elder_id=elder_id, contacts=data.contacts, now=now
        )
        return [contact_read(c) for c in rows]

    # --- subsidy categories ---

    @post("/{elder_id:int}/categories", opt=MASTER_DATA, summary="Add a subsidy category")
    async def add_category(
        self, db: Db, principal: CurrentPrincipal, elder_id: FromPath[int], data: JSONBody[CategoryIn]
    ) -> CategoryRead:
        row = await elders.add_category(session=db, actor=principal, elder_id=elder_id, data=data)
        return category_read(row)

    @patch(
        "/{elder_id:int}/categories/{category_id:int}", opt=MASTER_DATA, summary="Change a subsidy category"
    )
    async def update_category(
        self,
        db: Db,
        principal: CurrentPrincipal,
        elder_id: FromPath[int],
        category_id: FromPath[int],
        data: JSONBody[CategoryUpdate],
    ) -> CategoryRead:
        row = await elders.update_category(
            session=db, actor=principal, elder_id=elder_id, category_id=category_id, changes=data
        )
        return category_read(row)

    @delete(
        "/{elder_id:int}/categories/{category_id:int}", opt=MASTER_DATA, summary="Remove a subsidy category"
    )
    async def delete_category(
        self, db: Db, principal: CurrentPrincipal, elder_id: FromPath[int], category_id: FromPath[int]
    ) -> None:
        await elders.delete_category(session=db, actor=principal, elder_id=elder_id, category_id=category_id)

    # --- long-term-care insurance ---

    @post("/{elder_id:int}/ltc-coverages", opt=MASTER_DATA, summary="Add long-term-care insurance coverage")
    async def add_ltc(
        self, db: Db, principal: CurrentPrincipal, elder_id: FromPath[int], data: JSONBody[LtcIn]
    ) -> LtcRead:
        row = await elders.add_ltc_coverage(session=db, actor=principal, elder_id=elder_id, data=data)
        return ltc_read(row)

    @patch("/{elder_id:int}/ltc-coverages/{coverage_id:int}", opt=MASTER_DATA, summary="Change LTC coverage")
    async def update_ltc(
        self,
        db: Db,
        principal: CurrentPrincipal,
        elder_id: FromPath[int],
        coverage_id: FromPath[int],
        data: JSONBody[LtcUpdate],
    ) -> LtcRead:
        row = await elders.update_ltc_coverage(
            session=db, actor=principal, elder_id=elder_id, coverage_id=coverage_id, changes=data
        )
        return ltc_read(row)

    @delete("/{elder_id:int}/ltc-coverages/{coverage_id:int}", opt=MASTER_DATA, summary="Remove LTC coverage")
    async def delete_ltc(
        self, db: Db, principal: CurrentPrincipal, elder_id: FromPath[int], coverage_id: FromPath[int]
    ) -> None:
        await elders.delete_ltc_coverage(
            session=db, actor=principal, elder_id=elder_id, coverage_id=coverage_id
        )

    # --- blocked caregivers ---

    @get(
        "/{elder_id:int}/blocked-caregivers",
        opt=BLOCKLIST_READ,
        summary="Caregivers never sent to this elder",
    )
    async def list_blocked(
        self, db: Db, principal: CurrentPrincipal, elder_id: FromPath[int]
    ) -> list[BlockedRead]:
        return [
            blocked_read(b) for b in await elders.list_blocked(session=db, actor=principal, elder_id=elder_id)
        ]

    @post(
        "/{elder_id:int}/blocked-caregivers", opt=BLOCKLIST_WRITE, summary="Block a caregiver for this elder"
    )
    async def block(
        self, db: Db, principal: CurrentPrincipal, now: Now, elder_id: FromPath[int], data: JSONBody[BlockIn]
    ) -> BlockedRead:
        view = await elders.block_caregiver(
            session=db,
            actor=principal,
            elder_id=elder_id,
            caregiver_id=data.caregiver_id,
            reason=data.reason,
            now=now,
        )
        return blocked_read(view)

    @delete(
        "/{elder_id:int}/blocked-caregivers/{caregiver_id:int}",
        opt=BLOCKLIST_WRITE,
        summary="Unblock a caregiver",
    )
    async def unblock(
        self, db: Db, principal: CurrentPrincipal, elder_id: FromPath[int], caregiver_id: FromPath[int]
    ) -> None:
        await elders.unblock_caregiver(
            session=db, actor=principal, elder_id=elder_id, caregiver_id=caregiver_id
        )

    # --- assessments ---

    @get("/{elder_id:int}/assessments", opt=EVERYONE, summary="An elder's ability assessments, newest first")
    async def list_assessments(
        self, db: Db, principal: CurrentPrincipal, window: PageWindow, elder_id: FromPath[int]
    ) -> AssessmentPage:
        result = await assessments.list_assessments(
            session=db, actor=principal, elder_id=elder_id, window=window
        )
        return page(result, assessment_read)

    @post(
        "/{elder_id:int}/assessments",
        opt=MASTER_DATA,
        summary="Record an ability assessment (GB/T 42195-2022); levels are computed",
    )
    async def create_assessment(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        elder_id: FromPath[int],
        data: JSONBody[AssessmentCreate],
    ) -> AssessmentRead:
        row = await assessments.create_assessment(
            session=db, actor=principal, elder_id=elder_id, data=data, now=now
        )
        return assessment_read(row)


class AssessmentController(Controller):
    path = "/api/v1/assessments"
    tags = ["elders"]  # noqa: RUF012

    @get("/{assessment_id:int}", opt=EVERYONE, summary="One ability assessment")
    async def get_assessment(
        self, db: Db, principal: CurrentPrincipal, assessment_id: FromPath[int]
    ) -> AssessmentRead:
        return assessment_read(
            await assessments.get_assessment(session=db, actor=principal, assessment_id=assessment_id)
        )
