"""Wire types of service agreements (``XCreate``/``XUpdate`` in, ``XRead`` out). Dates are Asia/Shanghai
calendar dates (``valid_to`` inclusive); instants ISO 8601 with a time zone; prices integer fen."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from core.crud import Paged
from core.types import NO_NUL, UNSET, Day, Id64, Input, Name, Unset
from dispatch.agreements import AgreementEnd, missing_parties, required_parties
from dispatch.models import ServiceAgreement
from dispatch.schemas import ServiceCode, ShortText

Services = Annotated[list[ServiceCode], msgspec.Meta(min_length=1, max_length=20)]
DocumentRef = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]


class AgreementCreate(Input):
    """A draft between the elder and your provider: the services it covers and its term. Give
    ``guardian_id`` (a guardian linked to the elder) when a guardian signs for the elder."""

    elder_id: Id64
    services: Services
    valid_from: Day
    valid_to: Day
    guardian_id: Id64 | None = None


class AgreementUpdate(Input):
    """A revision of a draft nobody has signed yet: the fields sent replace the draft's."""

    services: Services | Unset = UNSET
    valid_from: Day | Unset = UNSET
    valid_to: Day | Unset = UNSET
    guardian_id: Id64 | Unset | None = UNSET


class SignatureCreate(Input):
    """A signature. ``in_app``: the signed-in account signs for its own party (the provider admin as
    ``provider``, the elder as ``elder``, the agreement's guardian as ``guardian``). ``paper_scan``:
    the provider admin records a signed paper — the signer's name and the scan's reference."""

    party: Literal["elder", "guardian", "provider"]
    method: Literal["in_app", "paper_scan"] = "in_app"
    signer_name: Name | None = None
    document_ref: DocumentRef | None = None


class TerminationIn(Input):
    """Why, and from which day the agreement no longer covers services (default: today)."""

    reason: ShortText
    effective_on: Day | None = None


class AgreementItemRead(msgspec.Struct):
    service_code: str
    price_fen: int  # the unit price quoted, per ``unit``
    unit: str
    price_ref: str  # the policy row it was quoted from: service.price_fen[CODE]@valid_from


class SignatureRead(msgspec.Struct):
    party: str
    signer_name: str
    user_id: int | None  # the account that signed in the app
    method: str
    document_ref: str | None
    recorded_by_user_id: int | None
    signed_at: dt.datetime


class AgreementRead(msgspec.Struct):
    """A service agreement. ``state``: draft, signed or terminated. It covers a service on a day when
    signed, the day is in ``valid_from``..``valid_to`` and before ``terminated_on`` (if any)."""

    id: int
    elder_id: int
    provider_id: int
    guardian_id: int | None
    valid_from: dt.date
    valid_to: dt.date
    price_list_on: dt.date
    state: str
    items: list[AgreementItemRead]
    signatures: list[SignatureRead]
    required_parties: list[str]
    missing_parties: list[str]
    created_by_user_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    signed_at: dt.datetime | None
    terminated_at: dt.datetime | None
    terminated_on: dt.date | None
    terminated_by_user_id: int | None
    termination_reason: str | None


class AgreementPage(msgspec.Struct):
    items: list[AgreementRead]
    total: int
    limit: int
    offset: int


class AgreementEndRead(msgspec.Struct):
    """The agreement after termination; the orders of the elder's series with the provider it no
    longer covers: cancelled (no caregiver held them) and kept (a caregiver holds them: cancel each
    on its own, ``POST /api/v1/orders/{id}/cancel``)."""

    agreement: AgreementRead
    cancelled_order_ids: list[int]
    kept_order_ids: list[int]


def agreement_read(a: ServiceAgreement) -> AgreementRead:
    return AgreementRead(
        id=a.id,
        elder_id=a.elder_id,
        provider_id=a.provider_id,
        guardian_id=a.guardian_id,
        valid_from=a.valid_from,
        valid_to=a.valid_to,
        price_list_on=a.price_list_on,
        state=a.state,
        items=[AgreementItemRead(i.service_code, i.price_fen, i.unit, i.price_ref) for i in a.items],
        signatures=[
            SignatureRead(
                s.party,
                s.signer_name,
                s.user_id,
                s.method,
                s.document_ref,
                s.recorded_by_user_id,
                s.signed_at,
            )
            for s in a.signatures
        ],
        required_parties=[p.value for p in required_parties(a)],
        missing_parties=[p.value for p in missing_parties(a)] if a.state == "draft" else [],
        created_by_user_id=a.created_by_user_id,
        created_at=a.created_at,
        updated_at=a.updated_at,
        signed_at=a.signed_at,
        terminated_at=a.terminated_at,
        terminated_on=a.terminated_on,
        terminated_by_user_id=a.terminated_by_user_id,
        termination_reason=a.termination_reason,
    )


def agreement_page(p: Paged[ServiceAgreement]) -> AgreementPage:
    return AgreementPage([agreement_read(a) for a in p.items], p.total, p.limit, p.offset)


def agreement_end_read(e: AgreementEnd) -> AgreementEndRead:
    return AgreementEndRead(agreement_read(e.agreement), e.cancelled_order_ids, e.kept_order_ids)
