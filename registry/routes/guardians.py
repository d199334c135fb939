"""``/api/v1/guardians`` and ``/api/v1/elders/{id}/guardians`` (links)."""

from __future__ import annotations

from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody

from core.http import PAGINATION, CurrentPrincipal, Db, Now, PageWindow, page
from core.identity.authz import allow
from core.identity.models import Role
from core.types import PhoneIn
from registry.routes.params import NamePrefix
from registry.schemas.guardians import (
    ElderGuardianRead,
    GuardianCreate,
    GuardianPage,
    GuardianRead,
    GuardianUpdate,
    LinkCreate,
    guardian_read,
    link_read,
)
from registry.service import guardians

READ = allow(Role.ADMIN, Role.CIVIL_AFFAIRS, Role.OPERATOR, Role.SUPERVISOR, Role.FAMILY)
WRITE = allow(Role.ADMIN, Role.CIVIL_AFFAIRS)
# Not the care-view roles (caregiver, provider admin): guardians' names and phones are not what a
# visit needs; during a visit the elder's emergency contacts are in their view (DOMAIN §9).
LINKS_READ = allow(Role.ADMIN, Role.CIVIL_AFFAIRS, Role.OPERATOR, Role.SUPERVISOR, Role.FAMILY, Role.ELDER)


class GuardianController(Controller):
    path = "/api/v1"
    tags = ["guardians"]  # noqa: RUF012
    dependencies = PAGINATION

    @get("/guardians", opt=READ, summary="List the guardians you may see")
    async def list_guardians(
        self,
        db: Db,
        principal: CurrentPrincipal,
        window: PageWindow,
        name: NamePrefix = None,
        phone: FromQuery[PhoneIn | None] = None,
    ) -> GuardianPage:
        result = await guardians.list_guardians(
            session=db, actor=principal, name_prefix=name, phone=phone, window=window
        )
        return page(result, guardian_read)

    @get("/guardians/{guardian_id:int}", opt=READ, summary="One guardian")
    async def get_guardian(
        self, db: Db, principal: CurrentPrincipal, guardian_id: FromPath[int]
    ) -> GuardianRead:
        return guardian_read(
            await guardians.get_guardian(session=db, actor=principal, guardian_id=guardian_id)
        )

    @post("/guardians", opt=WRITE, summary="Create a guardian, optionally linked to an elder")
    async def create_guardian(
        self, db: Db, principal: CurrentPrincipal, now: Now, data: JSONBody[GuardianCreate]
    ) -> GuardianRead:
        return guardian_read(await guardians.create_guardian(session=db, actor=principal, data=data, now=now))

    @patch("/guardians/{guardian_id:int}", opt=WRITE, summary="Change a guardian")
    async def update_guardian(
        self, db: Db, principal: CurrentPrincipal, guardian_id: FromPath[int], data: JSONBody[GuardianUpdate]
    ) -> GuardianRead:
        view = await guardians.update_guardian(
            session=db, actor=principal, guardian_id=guardian_id, changes=data
        )
        return guardian_read(view)

    @delete("/guardians/{guardian_id:int}", opt=allow(Role.ADMIN), summary="Delete a guardian")
    async def delete_guardian(self, db: Db, principal: CurrentPrincipal, guardian_id: FromPath[int]) -> None:
        await guardians.delete_guardian(session=db, actor=principal, guardian_id=guardian_id)

    @get("/elders/{elder_id:int}/guardians", opt=LINKS_READ, summary="An elder's guardians, primary first")
    async def list_links(
        self, db: Db, principal: CurrentPrincipal, elder_id: FromPath[int]
    ) -> list[ElderGuardianRead]:
        return [
            link_read(v) for v in await guardians.list_links(session=db, actor=principal, elder_id=elder_id)
        ]

    @post("/elders/{elder_id:int}/guardians", opt=WRITE, summary="Link a guardian to an elder")
    async def link(
        self, db: Db, principal: CurrentPrincipal, elder_id: FromPath[int], data: JSONBody[LinkCreate]
    ) -> ElderGuardianRead:
        view = await guardians.link_guardian(
            session=db,
            actor=principal,
            elder_id=elder_id,
            guardian_id=data.guardian_id,
            relation=data.relation,
            is_primary=data.is_primary,
        )
        return link_read(view)

    @delete("/elders/{elder_id:int}/guardians/{guardian_id:int}", opt=WRITE, summary="Unlink a guardian")
    async def unlink(
        self, db: Db, principal: CurrentPrincipal, elder_id: FromPath[int], guardian_id: FromPath[int]
    ) -> None:
        await guardians.unlink_guardian(
            session=db, actor=principal, elder_id=elder_id, guardian_id=guardian_id
        )
