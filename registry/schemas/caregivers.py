"""Caregivers (护理员) and their certificates."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from core.http import Page, component_key
from core.types import UNSET, Day, Id32, Input, Lat, Lon, Name, PhoneIn, Unset
from registry.models import Caregiver, Certificate, Gender
from registry.schemas.common import Code, LocalTime

# A catalogue service code (DOMAIN §3), e.g. MEAL, BATH, CARE.
Skill = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2,10}$")]
Weekday = Annotated[int, msgspec.Meta(ge=1, le=7)]
Skills = Annotated[list[Skill], msgspec.Meta(max_length=20)]
WorkDays = Annotated[list[Weekday], msgspec.Meta(min_length=1, max_length=7)]
Capacity = Annotated[int, msgspec.Meta(ge=1, le=24)]
CertificateKind = Literal["health", "eldercare_worker", "nurse"]


class CertificateIn(Input):
    """健康证 ``health`` (food handler), 养老护理员 ``eldercare_worker`` (level 5 初级 … 1 高级技师,
    required), ``nurse``. ``expires_on`` is the last valid day."""

    kind: CertificateKind
    number: Code
    issued_on: Day
    expires_on: Day
    level: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None


class CertificateRead(msgspec.Struct):
    id: int
    kind: str
    level: int | None
    number: str
    issued_on: dt.date
    expires_on: dt.date


class CaregiverCreate(Input):
    """Working hours are Asia/Shanghai local times (``08:00:00``); ``work_days`` are ISO weekdays
    (1 = Monday); ``daily_capacity`` is visits per day. ``provider_id`` defaults to the provider
    admin's own provider."""

    name: Name
    gender: Gender
    phone: PhoneIn
    shift_start: LocalTime
    shift_end: LocalTime
    home_lat: Lat
    home_lon: Lon
    provider_id: Id32 | None = None
    skills: Skills = msgspec.field(default_factory=list)
    work_days: WorkDays = msgspec.field(default_factory=lambda: [1, 2, 3, 4, 5])
    daily_capacity: Capacity = 8
    is_active: bool = True
    certificates: Annotated[list[CertificateIn], msgspec.Meta(max_length=10)] = msgspec.field(
        default_factory=list
    )


class CaregiverUpdate(Input):
    name: Name | Unset = UNSET
    gender: Gender | Unset = UNSET
    phone: PhoneIn | Unset = UNSET
    provider_id: Id32 | Unset = UNSET
    shift_start: LocalTime | Unset = UNSET
    shift_end: LocalTime | Unset = UNSET
    home_lat: Lat | Unset = UNSET
    home_lon: Lon | Unset = UNSET
    skills: Skills | Unset = UNSET
    work_days: WorkDays | Unset = UNSET
    daily_capacity: Capacity | Unset = UNSET
    is_active: bool | Unset = UNSET


class CaregiverRead(msgspec.Struct):
    id: int
    provider_id: int
    name: str
    gender: str
    phone: str
    skills: list[str]
    shift_start: dt.time
    shift_end: dt.time
    work_days: list[int]
    home_lat: float
    home_lon: float
    daily_capacity: int
    rating: float
    is_active: bool
    certificates: list[CertificateRead]
    created_at: dt.datetime


def certificate_read(c: Certificate) -> CertificateRead:
    return CertificateRead(
        id=c.id, kind=c.kind, level=c.level, number=c.number, issued_on=c.issued_on, expires_on=c.expires_on
    )


def caregiver_read(c: Caregiver) -> CaregiverRead:
    return CaregiverRead(
        id=c.id,
        provider_id=c.provider_id,
        name=c.name,
        gender=c.gender,
        phone=c.phone,
        skills=list(c.skills),
        shift_start=c.shift_start,
        shift_end=c.shift_end,
        work_days=list(c.work_days),
        home_lat=c.home_lat,
        home_lon=c.home_lon,
        daily_capacity=c.daily_capacity,
        rating=c.rating,
        is_active=c.is_active,
        certificates=[certificate_read(x) for x in c.certificates],
        created_at=c.created_at,
    )


# Paged lists keep the OpenAPI component names they had when these schemas were in api/schemas/
# (clients see them; see core.http.component_key).
CaregiverPage = Annotated[Page[CaregiverRead], component_key("Page_api.schemas.caregivers.CaregiverRead_")]
