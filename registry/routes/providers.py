"""``/api/v1/providers`` (+ districts served) and ``/api/v1/caregivers`` (+ certificates)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from core.http import PAGINATION, CurrentPrincipal, Db, Now, PageWindow, page
from core.identity.authz import allow
from core.identity.models import Role
from registry.models import Gender
from registry.routes.params import Id32Query, NamePrefix
from registry.schemas.caregivers import (
    CaregiverCreate,
    CaregiverPage,
    CaregiverRead,
    CaregiverUpdate,
    CertificateIn,
    CertificateRead,
    caregiver_read,
    certificate_read,
)
from registry.schemas.providers import (
    ProviderCreate,
    ProviderDistricts,
    ProviderPage,
    ProviderRead,
    ProviderUpdate,
    provider_read,
)
from registry.service import caregivers, providers
from registry.service.caregivers import CaregiverFilter

# Staff see all providers and caregivers; provider admins and caregivers only their own provider's.
READ = allow(
    Role.ADMIN, Role.OPERATOR, Role.SUPERVISOR, Role.CIVIL_AFFAIRS, Role.PROVIDER_ADMIN, Role.CAREGIVER
)
ADMIN = allow(Role.ADMIN)
MANAGE_CAREGIVERS = allow(Role.ADMIN, Role.PROVIDER_ADMIN)
SkillQuery = Annotated[
    str | None, QueryParameter(pattern=r"^[A-Z]{2,10}$", description="Service code, e.g. BATH")
]


class ProviderController(Controller):
    path = "/api/v1/providers"
    tags = ["providers"]  # noqa: RUF012
    dependencies = PAGINATION

    @get("/", opt=READ, summary="List providers")
    async def list_providers(
        self,
        db: Db,
        principal: CurrentPrincipal,
        window: PageWindow,
        district_id: Id32Query = None,
        is_active: FromQuery[bool | None] = None,
        name: NamePrefix = None,
    ) -> ProviderPage:
        result = await providers.list_providers(
            session=db,
            actor=principal,
            district_id=district_id,
            is_active=is_active,
            name_prefix=name,
            window=window,
        )
        return page(result, provider_read)

    @get("/{provider_id:int}", opt=READ, summary="One provider")
    async def get_provider(
        self, db: Db, principal: CurrentPrincipal, provider_id: FromPath[int]
    ) -> ProviderRead:
        return provider_read(
            await providers.get_provider(session=db, actor=principal, provider_id=provider_id)
        )

    @post("/", opt=ADMIN, summary="Register a provider")
    async def create_provider(
        self, db: Db, principal: CurrentPrincipal, now: Now, data: JSONBody[ProviderCreate]
    ) -> ProviderRead:
        return provider_read(await providers.create_provider(session=db, actor=principal, data=data, now=now))

    @patch("/{provider_id:int}", opt=ADMIN, summary="Change a provider")
    async def update_provider(
        self, db: Db, principal: CurrentPrincipal, provider_id: FromPath[int], data: JSONBody[ProviderUpdate]
    ) -> ProviderRead:
        view = await providers.update_provider(
            session=db, actor=principal, provider_id=provider_id, changes=data
        )
        return provider_read(view)

    @put("/{provider_id:int}/districts", opt=ADMIN, summary="Replace the districts a provider serves")
    async def set_districts(
        self,
        db: Db,
        principal: CurrentPrincipal,
        provider_id: FromPath[int],
        data: JSONBody[ProviderDistricts],
    ) -> ProviderRead:
        view = await providers.set_districts(
            session=db, actor=principal, provider_id=provider_id, district_ids=data.district_ids
        )
        return provider_read(view)

    @delete("/{provider_id:int}", opt=ADMIN, summary="Delete a provider with no caregivers or users")
    async def delete_provider(self, db: Db, principal: CurrentPrincipal, provider_id: FromPath[int]) -> None:
        await providers.delete_provider(session=db, actor=principal, provider_id=provider_id)


class CaregiverController(Controller):
    path = "/api/v1/caregivers"
    tags = ["providers"]  # noqa: RUF012
    dependencies = PAGINATION

    @get("/", opt=READ, summary="List caregivers (your own provider's, unless staff)")
    async def list_caregivers(
        self,
        db: Db,
        principal: CurrentPrincipal,
        window: PageWindow,
        provider_id: Id32Query = None,
        skill: SkillQuery = None,
        is_active: FromQuery[bool | None] = None,
        gender: FromQuery[Gender | None] = None,
        name: NamePrefix = None,
    ) -> CaregiverPage:
        filters = CaregiverFilter(
            provider_id=provider_id,
            skill=skill,
            is_active=is_active,
            gender=gender.value if gender else None,
            name_prefix=name,
        )
        return page(
            await caregivers.list_caregivers(session=db, actor=principal, filters=filters, window=window),
            caregiver_read,
        )

    @get("/{caregiver_id:int}", opt=READ, summary="One caregiver")
    async def get_caregiver(
        self, db: Db, principal: CurrentPrincipal, caregiver_id: FromPath[int]
    ) -> CaregiverRead:
        return caregiver_read(
            await caregivers.get_caregiver(session=db, actor=principal, caregiver_id=caregiver_id)
        )

    @post("/", opt=MANAGE_CAREGIVERS, summary="Register a caregiver")
    async def create_caregiver(
        self, db: Db, principal: CurrentPrincipal, now: Now, data: JSONBody[CaregiverCreate]
    ) -> CaregiverRead:
        return caregiver_read(
            await caregivers.create_caregiver(session=db, actor=principal, data=data, now=now)
        )

    @patch("/{caregiver_id:int}", opt=MANAGE_CAREGIVERS, summary="Change a caregiver")
    async def update_caregiver(
        self,
        db: Db,
        principal: CurrentPrincipal,
        caregiver_id: FromPath[int],
        data: JSONBody[CaregiverUpdate],
    ) -> CaregiverRead:
        row = await caregivers.update_caregiver(
            session=db, actor=principal, caregiver_id=caregiver_id, changes=data
        )
        return caregiver_read(row)

    @delete("/{caregiver_id:int}", opt=MANAGE_CAREGIVERS, summary="Delete a caregiver with no history")
    async def delete_caregiver(
        self, db: Db, principal: CurrentPrincipal, caregiver_id: FromPath[int]
    ) -> None:
        await caregivers.delete_caregiver(session=db, actor=principal, caregiver_id=caregiver_id)

    @post("/{caregiver_id:int}/certificates", opt=MANAGE_CAREGIVERS, summary="Add a certificate")
    async def add_certificate(
        self, db: Db, principal: CurrentPrincipal, caregiver_id: FromPath[int], data: JSONBody[CertificateIn]
    ) -> CertificateRead:
        cert = await caregivers.add_certificate(
            session=db, actor=principal, caregiver_id=caregiver_id, data=data
        )
        return certificate_read(cert)

    @delete(
        "/{caregiver_id:int}/certificates/{certificate_id:int}",
        opt=MANAGE_CAREGIVERS,
        summary="Remove a certificate",
    )
    async def delete_certificate(
        self, db: Db, principal: CurrentPrincipal, caregiver_id: FromPath[int], certificate_id: FromPath[int]
    ) -> None:
        await caregivers.delete_certificate(
            session=db, actor=principal, caregiver_id=caregiver_id, certificate_id=certificate_id
        )
