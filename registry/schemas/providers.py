"""Providers (服务机构) and the districts they serve."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import msgspec

from core.http import Page, component_key
from core.types import NO_NUL, UNSET, Day, Id32, Input, PhoneIn, Unset
from registry.schemas.common import Address, Code

if TYPE_CHECKING:
    # The service takes this module's request bodies as its commands; its views appear here only in
    # the read converters' annotations, so the import is the type checker's alone (no cycle).
    from registry.service.providers import ProviderView

ProviderName = Annotated[str, msgspec.Meta(min_length=1, max_length=80, pattern=NO_NUL)]
DistrictIds = Annotated[list[Id32], msgspec.Meta(max_length=20)]


class ProviderCreate(Input):
    name: ProviderName
    licence_no: Code
    contract_no: Code
    contract_from: Day
    phone: PhoneIn
    address: Address
    contract_to: Day | None = None
    is_active: bool = True
    district_ids: DistrictIds = msgspec.field(default_factory=list)


class ProviderUpdate(Input):
    name: ProviderName | Unset = UNSET
    licence_no: Code | Unset = UNSET
    contract_no: Code | Unset = UNSET
    contract_from: Day | Unset = UNSET
    contract_to: Day | Unset | None = UNSET
    phone: PhoneIn | Unset = UNSET
    address: Address | Unset = UNSET
    is_active: bool | Unset = UNSET


class ProviderDistricts(Input):
    """The complete set of districts the provider is contracted to serve."""

    district_ids: DistrictIds


class ProviderRead(msgspec.Struct):
    id: int
    name: str
    licence_no: str
    contract_no: str
    contract_from: dt.date
    contract_to: dt.date | None
    phone: str
    address: str
    is_active: bool
    district_ids: list[int]
    created_at: dt.datetime


def provider_read(v: ProviderView) -> ProviderRead:
    p = v.provider
    return ProviderRead(
        id=p.id,
        name=p.name,
        licence_no=p.licence_no,
        contract_no=p.contract_no,
        contract_from=p.contract_from,
        contract_to=p.contract_to,
        phone=p.phone,
        address=p.address,
        is_active=p.is_active,
        district_ids=v.district_ids,
        created_at=p.created_at,
    )


# Paged lists keep the OpenAPI component names they had when these schemas were in api/schemas/
# (clients see them; see core.http.component_key).
ProviderPage = Annotated[Page[ProviderRead], component_key("Page_api.schemas.providers.ProviderRead_")]
