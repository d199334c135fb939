"""HTTP edge of service agreements (服务协议): ``/api/v1/agreements``. Handlers parse, call one use case
of :mod:`dispatch.agreements` (which applies the actor's scope and the rest of each rule) and
serialise."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter

from core.crud import Window
from core.http import CurrentPrincipal, Db, Now
from core.identity.authz import allow
from core.identity.models import Role
from core.types import UNSET, Id32Query, Id64Query, Unset
from dispatch import agreements
from dispatch.agreement_schemas import (
    AgreementCreate,
    AgreementEndRead,
    AgreementPage,
    AgreementRead,
    AgreementUpdate,
    SignatureCreate,
    TerminationIn,
    agreement_end_read,
    agreement_page,
    agreement_read,
)
from dispatch.models import AgreementParty, SignatureMethod

R = Role
# A provider admin drafts (and revises its unsigned drafts) for its own provider.
DRAFTING = allow(R.PROVIDER_ADMIN)
# The parties: the provider admin (its provider's), the elder and the elder's family.
PARTIES = allow(R.ELDER, R.FAMILY, R.PROVIDER_ADMIN)
# The parties, civil affairs (their districts), operators and admins (all): registry.scope.
READ_AGREEMENTS = allow(R.ELDER, R.FAMILY, R.PROVIDER_ADMIN, R.OPERATOR, R.CIVIL_AFFAIRS, R.ADMIN)

Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Rows per page (1-200)")]
Offset = Annotated[int, QueryParameter(ge=0, le=1_000_000, description="Rows to skip")]
StateQuery = Annotated[
    str | None,
    QueryParameter(
        name="state", pattern=r"^(draft|signed|terminated)$", description="draft, signed or terminated"
    ),
]


class AgreementController(Controller):
    path = "/api/v1/agreements"
    tags = ["agreements"]  # noqa: RUF012

    @post(
        "/",
        opt=DRAFTING,
        summary="Draft a service agreement between an elder (or their guardian) and your provider",
        description=(
            "The items quote the catalogue prices valid on `valid_from` (policy `service.price_fen`, with "
            "the row's reference). The provider and the elder's side (the elder, or `guardian_id`) then "
            "sign it (`POST /{id}/signatures`); a signed agreement is required before recurring orders "
            "with the provider, for the services and days it covers."
        ),
    )
    async def draft(
        self, db: Db, principal: CurrentPrincipal, now: Now, data: JSONBody[AgreementCreate]
    ) -> AgreementRead:
        terms = agreements.AgreementTerms(
            elder_id=data.elder_id,
            services=tuple(data.services),
            valid_from=data.valid_from,
            valid_to=data.valid_to,
            guardian_id=data.guardian_id,
        )
        return agreement_read(
            await agreements.draft_agreement(session=db, actor=principal, terms=terms, now=now)
        )

    @get("/", opt=READ_AGREEMENTS, summary="Service agreements in your scope, newest first")
    async def list_agreements(
        self,
        db: Db,
        principal: CurrentPrincipal,
        agreement_state: StateQuery = None,
        elder_id: Id64Query = None,
        provider_id: Id32Query = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> AgreementPage:
        result = await agreements.list_agreements(
            session=db,
            actor=principal,
            window=Window(limit, offset),
            elder_id=elder_id,
            provider_id=provider_id,
            state=agreement_state,
        )
        return agreement_page(result)

    @get(
        "/{agreement_id:int}",
        opt=READ_AGREEMENTS,
        summary="One service agreement with its items and signatures",
    )
    async def get_agreement(
        self, db: Db, principal: CurrentPrincipal, agreement_id: FromPath[int]
    ) -> AgreementRead:
        return agreement_read(
            await agreements.visible_agreement(session=db, actor=principal, agreement_id=agreement_id)
        )

    @patch("/{agreement_id:int}", opt=DRAFTING, summary="Revise a draft nobody has signed yet")
    async def revise(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        agreement_id: FromPath[int],
        data: JSONBody[AgreementUpdate],
    ) -> AgreementRead:
        changes = agreements.TermChanges(
            services=UNSET if isinstance(data.services, Unset) else tuple(data.services),
            valid_from=data.valid_from,
            valid_to=data.valid_to,
            guardian_id=data.guardian_id,
        )
        agreement = await agreements.revise_agreement(
            session=db, actor=principal, agreement_id=agreement_id, changes=changes, now=now
        )
        return agreement_read(agreement)

    @post(
        "/{agreement_id:int}/signatures",
        opt=PARTIES,
        status_code=200,
        summary="Sign a draft for your party (the last required signature makes it signed)",
    )
    async def sign(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        agreement_id: FromPath[int],
        data: JSONBody[SignatureCreate],
    ) -> AgreementRead:
        signature = agreements.SignatureIn(
            party=AgreementParty(data.party),
            method=SignatureMethod(data.method),
            signer_name=data.signer_name,
            document_ref=data.document_ref,
        )
        agreement = await agreements.sign_agreement(
            session=db, actor=principal, agreement_id=agreement_id, signature=signature, now=now
        )
        return agreement_read(agreement)

    @post(
        "/{agreement_id:int}/terminate",
        opt=PARTIES,
        status_code=200,
        summary="Terminate an agreement; series orders it no longer covers are cancelled or listed",
    )
    async def terminate(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        agreement_id: FromPath[int],
        data: JSONBody[TerminationIn],
    ) -> AgreementEndRead:
        end = await agreements.terminate_agreement(
            session=db,
            actor=principal,
            agreement_id=agreement_id,
            reason=data.reason,
            effective_on=data.effective_on,
            now=now,
        )
        return agreement_end_read(end)


CONTROLLERS = (AgreementController,)
