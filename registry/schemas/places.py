"""Districts, streets/townships, communities/villages."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from core.http import Page, component_key
from core.types import NO_NUL, UNSET, Id32, Input, Lat, Lon, Name, Unset
from registry.models import Community, District, Street
from registry.schemas.common import PlaceName

DistrictCode = Annotated[str, msgspec.Meta(pattern=r"^[1-8][0-9]{5}$")]
StreetCode = Annotated[str, msgspec.Meta(pattern=r"^[1-8][0-9]{8,11}$")]
CommunityCode = Annotated[str, msgspec.Meta(pattern=r"^[1-8][0-9]{8,14}$")]
EnName = Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=NO_NUL)]
DistrictKind = Literal["urban", "mixed", "rural"]


class DistrictRead(msgspec.Struct):
    id: int
    code: str
    name: str
    name_en: str
    kind: str
    lat: float
    lon: float


class DistrictCreate(Input):
    code: DistrictCode
    name: Name
    name_en: EnName
    kind: DistrictKind
    lat: Lat
    lon: Lon


class DistrictUpdate(Input):
    code: DistrictCode | Unset = UNSET
    name: Name | Unset = UNSET
    name_en: EnName | Unset = UNSET
    kind: DistrictKind | Unset = UNSET
    lat: Lat | Unset = UNSET
    lon: Lon | Unset = UNSET


class StreetRead(msgspec.Struct):
    id: int
    district_id: int
    code: str
    name: str
    is_township: bool


class StreetCreate(Input):
    district_id: Id32
    code: StreetCode
    name: PlaceName
    is_township: bool = False


class StreetUpdate(Input):
    district_id: Id32 | Unset = UNSET
    code: StreetCode | Unset = UNSET
    name: PlaceName | Unset = UNSET
    is_township: bool | Unset = UNSET


class CommunityRead(msgspec.Struct):
    id: int
    street_id: int
    code: str
    name: str
    is_village: bool
    lat: float
    lon: float


class CommunityCreate(Input):
    street_id: Id32
    code: CommunityCode
    name: PlaceName
    lat: Lat
    lon: Lon
    is_village: bool = False


class CommunityUpdate(Input):
    street_id: Id32 | Unset = UNSET
    code: CommunityCode | Unset = UNSET
    name: PlaceName | Unset = UNSET
    lat: Lat | Unset = UNSET
    lon: Lon | Unset = UNSET
    is_village: bool | Unset = UNSET


def district_read(d: District) -> DistrictRead:
    return DistrictRead(
        id=d.id, code=d.code, name=d.name, name_en=d.name_en, kind=d.kind, lat=d.lat, lon=d.lon
    )


def street_read(s: Street) -> StreetRead:
    return StreetRead(id=s.id, district_id=s.district_id, code=s.code, name=s.name, is_township=s.is_township)


def community_read(c: Community) -> CommunityRead:
    return CommunityRead(
        id=c.id,
        street_id=c.street_id,
        code=c.code,
        name=c.name,
        is_village=c.is_village,
        lat=c.lat,
        lon=c.lon,
    )


# Paged lists keep the OpenAPI component names they had when these schemas were in api/schemas/
# (clients see them; see core.http.component_key).
DistrictPage = Annotated[Page[DistrictRead], component_key("Page_api.schemas.places.DistrictRead_")]
StreetPage = Annotated[Page[StreetRead], component_key("Page_api.schemas.places.StreetRead_")]
CommunityPage = Annotated[Page[CommunityRead], component_key("Page_api.schemas.places.CommunityRead_")]
