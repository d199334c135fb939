"""Elders with their emergency contacts, subsidy categories, long-term-care coverage and status."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import msgspec

from core.http import Page, component_key
from core.types import UNSET, Day, Id32, Id64, Input, Lat, Lon, Name, PhoneIn, Unset
from registry.idcard import mask_id_number
from registry.models import (
    ElderCategory,
    ElderStatus,
    EmergencyContact,
    Gender,
    LivingSituation,
    LtcCoverage,
    SubsidyCategory,
)
from registry.schemas.common import Address, Code, IdNumberIn, Notes, Reason, Relation

if TYPE_CHECKING:
    # The service takes this module's request bodies as its commands; its views appear here only in
    # the read converters' annotations, so the import is the type checker's alone (no cycle).
    from registry.service.elders import BlockedView, ElderView

# At most this many emergency contacts per elder, checked on the body and by the service.
MAX_CONTACTS = 5


class ContactIn(Input):
    name: Name
    relation: Relation
    phone: PhoneIn


class ContactRead(msgspec.Struct):
    position: int
    name: str
    relation: str
    phone: str


class CategoryIn(Input):
    """A subsidy category held from ``valid_from`` to ``valid_to`` (inclusive; null = open-ended)."""

    category: SubsidyCategory
    valid_from: Day
    valid_to: Day | None = None


class CategoryUpdate(Input):
    category: SubsidyCategory | Unset = UNSET
    valid_from: Day | Unset = UNSET
    valid_to: Day | Unset | None = UNSET


class CategoryRead(msgspec.Struct):
    id: int
    category: str
    valid_from: dt.date
    valid_to: dt.date | None


class LtcIn(Input):
    """Long-term-care insurance (长护险) coverage; ``valid_to`` inclusive, null = open-ended."""

    policy_no: Code
    valid_from: Day
    valid_to: Day | None = None


class LtcUpdate(Input):
    policy_no: Code | Unset = UNSET
    valid_from: Day | Unset = UNSET
    valid_to: Day | Unset | None = UNSET


class LtcRead(msgspec.Struct):
    id: int
    policy_no: str
    valid_from: dt.date
    valid_to: dt.date | None


class ElderCreate(Input):
    """``gender`` and ``birth_on`` default to what the ID number encodes; ``lat``/``lon`` to the
    community's centre."""

    name: Name
    id_number: IdNumberIn
    address: Address
    community_id: Id32
    living_situation: LivingSituation
    gender: Gender | None = None
    birth_on: Day | None = None
    phone: PhoneIn | None = None
    lat: Lat | None = None
    lon: Lon | None = None
    has_dementia: bool = False
    allows_any_gender_bathing: bool = False
    medical_notes: Notes = ""
    contacts: Annotated[list[ContactIn], msgspec.Meta(max_length=MAX_CONTACTS)] = msgspec.field(
        default_factory=list
    )
    categories: Annotated[list[CategoryIn], msgspec.Meta(max_length=20)] = msgspec.field(default_factory=list)
    ltc_coverages: Annotated[list[LtcIn], msgspec.Meta(max_length=20)] = msgspec.field(default_factory=list)


class ElderUpdate(Input):
    name: Name | Unset = UNSET
    id_number: IdNumberIn | Unset = UNSET
    gender: Gender | Unset = UNSET
    birth_on: Day | Unset = UNSET
    phone: PhoneIn | Unset | None = UNSET
    address: Address | Unset = UNSET
    lat: Lat | Unset = UNSET
    lon: Lon | Unset = UNSET
    community_id: Id32 | Unset = UNSET
    living_situation: LivingSituation | Unset = UNSET
    has_dementia: bool | Unset = UNSET
    allows_any_gender_bathing: bool | Unset = UNSET
    medical_notes: Notes | Unset = UNSET


class StatusChange(Input):
    """The elder became ``status`` on ``on`` (a local date, not in the future)."""

    status: ElderStatus
    on: Day


class ContactsReplace(Input):
    """The complete ordered list; the first contact is called first."""

    contacts: Annotated[list[ContactIn], msgspec.Meta(max_length=MAX_CONTACTS)]


class ElderRead(msgspec.Struct, tag_field="view", tag="full"):
    """``id_number`` is masked (``420902********123*``: region and sequence only) unless
    ``id_number_masked`` is false; ``birth_on`` is given only with the full number (null otherwise,
    since it is 8 of the hidden digits), ``age`` always. ``level`` is the final level (0-4) of the
    assessment valid today, null when there is none."""

    id: int
    name: str
    gender: str
    age: int
    birth_on: dt.date | None
    id_number: str
    id_number_masked: bool
    phone: str | None
    address: str
    lat: float
    lon: float
    community_id: int
    district_id: int
    living_situation: str
    has_dementia: bool
    allows_any_gender_bathing: bool
    medical_notes: str
    status: str
    status_on: dt.date | None
    level: int | None
    contacts: list[ContactRead]
    categories: list[CategoryRead]
    ltc_coverages: list[LtcRead]
    created_at: dt.datetime
    updated_at: dt.datetime


class ElderCareRead(msgspec.Struct, tag_field="view", tag="care"):
    """What a caregiver or provider admin sees of an elder (DOMAIN §9): what a visit needs. No ID
    number, birth date, subsidy categories or insurance; ``level`` as in the full view.
    ``contacts`` (emergency contacts) only while a visit of theirs is under way (on the way or on
    site), null otherwise."""

    id: int
    name: str
    gender: str
    age: int
    phone: str | None
    address: str
    lat: float
    lon: float
    community_id: int
    district_id: int
    living_situation: str
    has_dementia: bool
    allows_any_gender_bathing: bool
    medical_notes: str
    status: str
    level: int | None
    contacts: list[ContactRead] | None


class BlockIn(Input):
    caregiver_id: Id64
    reason: Reason = ""


class BlockedRead(msgspec.Struct):
    caregiver_id: int
    caregiver_name: str
    reason: str
    created_at: dt.datetime


def contact_read(c: EmergencyContact) -> ContactRead:
    return ContactRead(position=c.position, name=c.name, relation=c.relation, phone=c.phone)


def category_read(c: ElderCategory) -> CategoryRead:
    return CategoryRead(id=c.id, category=c.category, valid_from=c.valid_from, valid_to=c.valid_to)


def ltc_read(c: LtcCoverage) -> LtcRead:
    return LtcRead(id=c.id, policy_no=c.policy_no, valid_from=c.valid_from, valid_to=c.valid_to)


def elder_read(view: ElderView) -> ElderRead | ElderCareRead:
    """The elder as ``view`` says its reader may see it: the care view, or the full record (masked
    unless ``view.unmasked``)."""
    e = view.elder
    if view.care_only:
        return ElderCareRead(
            id=e.id,
            name=e.name,
            gender=e.gender,
            age=view.age,
            phone=e.phone,
            address=e.address,
            lat=e.lat,
            lon=e.lon,
            community_id=e.community_id,
            district_id=e.district_id,
            living_situation=e.living_situation,
            has_dementia=e.has_dementia,
            allows_any_gender_bathing=e.allows_any_gender_bathing,
            medical_notes=e.medical_notes,
            status=e.status,
            level=view.level,
            contacts=[contact_read(c) for c in e.contacts] if view.contacts_shown else None,
        )
    return elder_full_read(view)


def elder_full_read(view: ElderView) -> ElderRead:
    """The full record, for the master-data roles' writes and the roles not limited to the care view."""
    e = view.elder
    return ElderRead(
        id=e.id,
        name=e.name,
        gender=e.gender,
        age=view.age,
        birth_on=e.birth_on if view.unmasked else None,
        id_number=e.id_number if view.unmasked else mask_id_number(e.id_number),
        id_number_masked=not view.unmasked,
        phone=e.phone,
        address=e.address,
        lat=e.lat,
        lon=e.lon,
        community_id=e.community_id,
        district_id=e.district_id,
        living_situation=e.living_situation,
        has_dementia=e.has_dementia,
        allows_any_gender_bathing=e.allows_any_gender_bathing,
        medical_notes=e.medical_notes,
        status=e.status,
        status_on=e.status_on,
        level=view.level,
        contacts=[contact_read(c) for c in e.contacts],
        categories=[category_read(c) for c in e.categories],
        ltc_coverages=[ltc_read(c) for c in e.ltc_coverages],
        created_at=e.created_at,
        updated_at=e.updated_at,
    )


def blocked_read(b: BlockedView) -> BlockedRead:
    return BlockedRead(
        caregiver_id=b.caregiver_id, caregiver_name=b.caregiver_name, reason=b.reason, created_at=b.created_at
    )


# The paged list keeps the OpenAPI component name it had when these schemas were in api/schemas/
# (clients see it; see core.http.component_key).
ElderPage = Annotated[
    Page[ElderRead | ElderCareRead],
    component_key("Page_api.schemas.elders.ElderRead_api.schemas.elders.ElderCareRead_"),
]
