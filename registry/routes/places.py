"""``/api/v1/districts``, ``/streets``, ``/communities``: read by everyone signed in, written by admins."""

from __future__ import annotations

from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, JSONBody

from core.http import PAGINATION, CurrentPrincipal, Db, PageWindow, page
from core.identity.authz import allow, authenticated
from core.identity.models import Role
from registry.routes.params import DistrictCode, Id32Query, NamePrefix
from registry.schemas.places import (
    CommunityCreate,
    CommunityPage,
    CommunityRead,
    CommunityUpdate,
    DistrictCreate,
    DistrictPage,
    DistrictRead,
    DistrictUpdate,
    StreetCreate,
    StreetPage,
    StreetRead,
    StreetUpdate,
    community_read,
    district_read,
    street_read,
)
from registry.service import places
from registry.service.places import PlaceFilter

ADMIN = allow(Role.ADMIN)


class PlaceController(Controller):
    path = "/api/v1"
    tags = ["places"]  # noqa: RUF012
    dependencies = PAGINATION

    # --- districts ---

    @get("/districts", opt=authenticated(), summary="List districts (county-level divisions)")
    async def list_districts(self, db: Db, window: PageWindow) -> DistrictPage:
        return page(await places.list_districts(session=db, window=window), district_read)

    @get("/districts/{district_id:int}", opt=authenticated(), summary="One district")
    async def get_district(self, db: Db, district_id: FromPath[int]) -> DistrictRead:
        return district_read(await places.get_district(session=db, district_id=district_id))

    @post("/districts", opt=ADMIN, summary="Create a district")
    async def create_district(
        self, db: Db, principal: CurrentPrincipal, data: JSONBody[DistrictCreate]
    ) -> DistrictRead:
        return district_read(await places.create_district(session=db, actor=principal, data=data))

    @patch("/districts/{district_id:int}", opt=ADMIN, summary="Change a district")
    async def update_district(
        self, db: Db, principal: CurrentPrincipal, district_id: FromPath[int], data: JSONBody[DistrictUpdate]
    ) -> DistrictRead:
        d = await places.update_district(session=db, actor=principal, district_id=district_id, changes=data)
        return district_read(d)

    @delete("/districts/{district_id:int}", opt=ADMIN, summary="Delete an unused district")
    async def delete_district(self, db: Db, principal: CurrentPrincipal, district_id: FromPath[int]) -> None:
        await places.delete_district(session=db, actor=principal, district_id=district_id)

    # --- streets ---

    @get("/streets", opt=authenticated(), summary="List streets and townships")
    async def list_streets(
        self,
        db: Db,
        window: PageWindow,
        district_id: Id32Query = None,
        district_code: DistrictCode = None,
        name: NamePrefix = None,
    ) -> StreetPage:
        filters = PlaceFilter(district_id=district_id, district_code=district_code, name_prefix=name)
        return page(await places.list_streets(session=db, filters=filters, window=window), street_read)

    @get("/streets/{street_id:int}", opt=authenticated(), summary="One street or township")
    async def get_street(self, db: Db, street_id: FromPath[int]) -> StreetRead:
        return street_read(await places.get_street(session=db, street_id=street_id))

    @post("/streets", opt=ADMIN, summary="Create a street or township")
    async def create_street(
        self, db: Db, principal: CurrentPrincipal, data: JSONBody[StreetCreate]
    ) -> StreetRead:
        return street_read(await places.create_street(session=db, actor=principal, data=data))

    @patch("/streets/{street_id:int}", opt=ADMIN, summary="Change a street or township")
    async def update_street(
        self, db: Db, principal: CurrentPrincipal, street_id: FromPath[int], data: JSONBody[StreetUpdate]
    ) -> StreetRead:
        s = await places.update_street(session=db, actor=principal, street_id=street_id, changes=data)
        return street_read(s)

    @delete("/streets/{street_id:int}", opt=ADMIN, summary="Delete an unused street")
    async def delete_street(self, db: Db, principal: CurrentPrincipal, street_id: FromPath[int]) -> None:
        await places.delete_street(session=db, actor=principal, street_id=street_id)

    # --- communities ---

    @get("/communities", opt=authenticated(), summary="List communities and villages")
    async def list_communities(
        self,
        db: Db,
        window: PageWindow,
        street_id: Id32Query = None,
        district_id: Id32Query = None,
        district_code: DistrictCode = None,
        name: NamePrefix = None,
    ) -> CommunityPage:
        filters = PlaceFilter(
            district_id=district_id, district_code=district_code, street_id=street_id, name_prefix=name
        )
        return page(await places.list_communities(session=db, filters=filters, window=window), community_read)

    @get("/communities/{community_id:int}", opt=authenticated(), summary="One community or village")
    async def get_community(self, db: Db, community_id: FromPath[int]) -> CommunityRead:
        return community_read(await places.get_community(session=db, community_id=community_id))

    @post("/communities", opt=ADMIN, summary="Create a community or village")
    async def create_community(
        self, db: Db, principal: CurrentPrincipal, data: JSONBody[CommunityCreate]
    ) -> CommunityRead:
        return community_read(await places.create_community(session=db, actor=principal, data=data))

    @patch("/communities/{community_id:int}", opt=ADMIN, summary="Change a community or village")
    async def update_community(
        self,
        db: Db,
        principal: CurrentPrincipal,
        community_id: FromPath[int],
        data: JSONBody[CommunityUpdate],
    ) -> CommunityRead:
        c = await places.update_community(
            session=db, actor=principal, community_id=community_id, changes=data
        )
        return community_read(c)

    @delete("/communities/{community_id:int}", opt=ADMIN, summary="Delete an unused community")
    async def delete_community(
        self, db: Db, principal: CurrentPrincipal, community_id: FromPath[int]
    ) -> None:
        await places.delete_community(session=db, actor=principal, community_id=community_id)
