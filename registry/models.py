"""The registry's tables: places, elders (contacts, subsidy categories, long-term-care coverage,
assessments), guardians, providers, caregivers (certificates) and block lists.

Conventions (see :mod:`core.db`): singular snake_case table names, ``_at`` for UTC ``timestamptz``,
``_on`` for dates, one declarative base with a constraint naming convention.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Double,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, enum_check, now_column


class Gender(enum.StrEnum):
    MALE = "M"
    FEMALE = "F"


class LivingSituation(enum.StrEnum):
    ALONE = "alone"
    EMPTY_NEST = "empty_nest"
    WITH_FAMILY = "with_family"


class ElderStatus(enum.StrEnum):
    ACTIVE = "active"
    HOSPITALISED = "hospitalised"
    MOVED = "moved"
    DECEASED = "deceased"


class SubsidyCategory(enum.StrEnum):
    """DOMAIN §4, local government-purchased care categories."""

    DESTITUTE = "destitute"  # 特困供养 state-supported destitute
    SUBSISTENCE = "subsistence"  # 低保 subsistence allowance
    LOW_INCOME = "low_income"  # 低保边缘 / 低收入
    FAMILY_PLANNING = "family_planning"  # 计划生育特殊家庭
    VETERAN = "veteran"  # 重点优抚对象
    ELDERLY_ALONE = "elderly_alone"  # 80+ 高龄独居/空巢


# --- Places -------------------------------------------------------------------------------------


class District(Base):
    """A county-level division (区/县/市), DOMAIN §1."""

    __tablename__ = "district"
    __table_args__ = (CheckConstraint("kind IN ('urban', 'mixed', 'rural')", name="kind_valid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(6), unique=True)
    name: Mapped[str] = mapped_column(String(40))
    name_en: Mapped[str] = mapped_column(String(60))
    kind: Mapped[str] = mapped_column(String(10))
    lat: Mapped[float] = mapped_column(Double)
    lon: Mapped[float] = mapped_column(Double)


class Street(Base):
    """A street or township (街道/乡镇)."""

    __tablename__ = "street"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("district.id"), index=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    name: Mapped[str] = mapped_column(String(60))
    is_township: Mapped[bool] = mapped_column(Boolean, default=False)


class Community(Base):
    """A community or village (社区/村)."""

    __tablename__ = "community"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    street_id: Mapped[int] = mapped_column(ForeignKey("street.id"), index=True)
    code: Mapped[str] = mapped_column(String(15), unique=True)
    name: Mapped[str] = mapped_column(String(60))
    is_village: Mapped[bool] = mapped_column(Boolean, default=False)
    lat: Mapped[float] = mapped_column(Double)
    lon: Mapped[float] = mapped_column(Double)


# --- Elders -------------------------------------------------------------------------------------


class Elder(Base):
    __tablename__ = "elder"
    __table_args__ = (
        enum_check("gender", Gender),
        enum_check("living_situation", LivingSituation),
        enum_check("status", ElderStatus),
        CheckConstraint("lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180", name="position_valid"),
        CheckConstraint("(status = 'active') OR status_on IS NOT NULL", name="status_dated"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    gender: Mapped[str] = mapped_column(String(1))
    birth_on: Mapped[dt.date] = mapped_column(Date)
    # Stored once, in full; API reads mask it unless the role may see it (and the read is audited).
    id_number: Mapped[str] = mapped_column(String(18), unique=True)
    phone: Mapped[str | None] = mapped_column(String(11))
    address: Mapped[str] = mapped_column(String(200))
    lat: Mapped[float] = mapped_column(Double)
    lon: Mapped[float] = mapped_column(Double)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id"), index=True)
    # Denormalised from community → street → district so district scoping is one indexed predicate.
    district_id: Mapped[int] = mapped_column(ForeignKey("district.id"), index=True)
    living_situation: Mapped[str] = mapped_column(String(12))
    has_dementia: Mapped[bool] = mapped_column(Boolean, default=False)
    allows_any_gender_bathing: Mapped[bool] = mapped_column(Boolean, default=False)
    medical_notes: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(12), default=ElderStatus.ACTIVE.value)
    status_on: Mapped[dt.date | None] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = now_column()
    updated_at: Mapped[dt.datetime] = now_column()

    contacts: Mapped[list[EmergencyContact]] = relationship(
        order_by="EmergencyContact.position", cascade="all, delete-orphan", lazy="selectin"
    )
    categories: Mapped[list[ElderCategory]] = relationship(
        order_by="ElderCategory.valid_from", cascade="all, delete-orphan", lazy="selectin"
    )
    ltc_coverages: Mapped[list[LtcCoverage]] = relationship(
        order_by="LtcCoverage.valid_from", cascade="all, delete-orphan", lazy="selectin"
    )


class EmergencyContact(Base):
    __tablename__ = "emergency_contact"
    __table_args__ = (UniqueConstraint("elder_id", "position"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(SmallInteger)
    name: Mapped[str] = mapped_column(String(40))
    relation: Mapped[str] = mapped_column(String(20))
    phone: Mapped[str] = mapped_column(String(11))


class ElderCategory(Base):
    """A subsidy category held by an elder over a date range (valid_to inclusive, NULL = open)."""

    __tablename__ = "elder_category"
    __table_args__ = (
        enum_check("category", SubsidyCategory),
        CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="range_valid"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id", ondelete="CASCADE"), index=True)
    category: Mapped[str] = mapped_column(String(20))
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)


class LtcCoverage(Base):
    """Long-term-care insurance (长护险) coverage over a date range (valid_to inclusive)."""

    __tablename__ = "ltc_coverage"
    __table_args__ = (CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="range_valid"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id", ondelete="CASCADE"), index=True)
    policy_no: Mapped[str] = mapped_column(String(40))
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)


class Assessment(Base):
    """An ability assessment per GB/T 42195-2022; item scores are kept, not only the level."""

    __tablename__ = "assessment"
    __table_args__ = (
        CheckConstraint("total BETWEEN 0 AND 90", name="total_range"),
        CheckConstraint("preliminary_level BETWEEN 0 AND 4", name="preliminary_range"),
        CheckConstraint("final_level BETWEEN 0 AND 4", name="final_range"),
        Index("ix_assessment_elder_assessed", "elder_id", "assessed_on"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id", ondelete="CASCADE"))
    items: Mapped[dict[str, Any]] = mapped_column(JSONB)
    has_dementia_dx: Mapped[bool] = mapped_column(Boolean, default=False)
    has_other_mental_dx: Mapped[bool] = mapped_column(Boolean, default=False)
    recent_incidents: Mapped[list[str]] = mapped_column(ARRAY(String(20)), default=list)
    total: Mapped[int] = mapped_column(SmallInteger)
    preliminary_level: Mapped[int] = mapped_column(SmallInteger)
    final_level: Mapped[int] = mapped_column(SmallInteger)
    assessor: Mapped[str] = mapped_column(String(40))
    assessed_on: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = now_column()


# --- Families, providers, caregivers -----------------------------------------------------------


class Guardian(Base):
    """A family member or guardian (家属/监护人)."""

    __tablename__ = "guardian"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    phone: Mapped[str] = mapped_column(String(11), index=True)
    created_at: Mapped[dt.datetime] = now_column()


class ElderGuardian(Base):
    __tablename__ = "elder_guardian"

    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id", ondelete="CASCADE"), primary_key=True)
    guardian_id: Mapped[int] = mapped_column(
        ForeignKey("guardian.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    relation: Mapped[str] = mapped_column(String(20))
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)


class Provider(Base):
    """A home-care provider organisation (服务机构)."""

    __tablename__ = "provider"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    licence_no: Mapped[str] = mapped_column(String(40), unique=True)
    contract_no: Mapped[str] = mapped_column(String(40))
    contract_from: Mapped[dt.date] = mapped_column(Date)
    contract_to: Mapped[dt.date | None] = mapped_column(Date)
    phone: Mapped[str] = mapped_column(String(11))
    address: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = now_column()


class ProviderDistrict(Base):
    """Districts a provider is contracted to serve."""

    __tablename__ = "provider_district"

    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id", ondelete="CASCADE"), primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("district.id"), primary_key=True, index=True)


class Caregiver(Base):
    __tablename__ = "caregiver"
    __table_args__ = (
        enum_check("gender", Gender),
        CheckConstraint("daily_capacity BETWEEN 1 AND 24", name="capacity_range"),
        CheckConstraint("shift_end > shift_start", name="shift_order"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"), index=True)
    name: Mapped[str] = mapped_column(String(40))
    gender: Mapped[str] = mapped_column(String(1))
    phone: Mapped[str] = mapped_column(String(11))
    skills: Mapped[list[str]] = mapped_column(ARRAY(String(10)), default=list)
    # Working hours in Asia/Shanghai local time, and ISO weekdays worked (1 = Monday).
    shift_start: Mapped[dt.time] = mapped_column(Time)
    shift_end: Mapped[dt.time] = mapped_column(Time)
    work_days: Mapped[list[int]] = mapped_column(ARRAY(SmallInteger), default=lambda: [1, 2, 3, 4, 5])
    home_lat: Mapped[float] = mapped_column(Double)
    home_lon: Mapped[float] = mapped_column(Double)
    daily_capacity: Mapped[int] = mapped_column(SmallInteger, default=8)
    rating: Mapped[float] = mapped_column(Double, default=4.5)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = now_column()

    certificates: Mapped[list[Certificate]] = relationship(
        order_by="Certificate.expires_on", cascade="all, delete-orphan", lazy="selectin"
    )


class Certificate(Base):
    """A caregiver certificate: 健康证 food-handler health cert, 养老护理员 elder-care worker (level 1–5)."""

    __tablename__ = "certificate"
    __table_args__ = (
        CheckConstraint("kind IN ('health', 'eldercare_worker', 'nurse')", name="kind_valid"),
        CheckConstraint("level IS NULL OR level BETWEEN 1 AND 5", name="level_range"),
        CheckConstraint("expires_on >= issued_on", name="dates_valid"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    caregiver_id: Mapped[int] = mapped_column(ForeignKey("caregiver.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    # 养老护理员 levels: 5 初级 … 1 高级技师; "level 4 or above" means level <= 4.
    level: Mapped[int | None] = mapped_column(SmallInteger)
    number: Mapped[str] = mapped_column(String(40))
    issued_on: Mapped[dt.date] = mapped_column(Date)
    expires_on: Mapped[dt.date] = mapped_column(Date)


class ElderBlockedCaregiver(Base):
    """Caregivers an elder or family does not want to see again."""

    __tablename__ = "elder_blocked_caregiver"

    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id", ondelete="CASCADE"), primary_key=True)
    caregiver_id: Mapped[int] = mapped_column(
        ForeignKey("caregiver.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = now_column()


class ElderAbsence(Base):
    """A dated stay away from home: in hospital (``hospital``) or elsewhere (``away``), from ``from_on``
    to ``to_on`` (inclusive; NULL while it lasts). Settlement flags home visits billed for such days
    (billing's review signals); kept minimal: the dates and where, as registered by staff."""

    __tablename__ = "elder_absence"
    __table_args__ = (
        CheckConstraint("kind IN ('hospital', 'away')", name="kind_valid"),
        CheckConstraint("to_on IS NULL OR to_on >= from_on", name="range_valid"),
        Index("ix_elder_absence_elder_from", "elder_id", "from_on"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10))
    from_on: Mapped[dt.date] = mapped_column(Date)
    to_on: Mapped[dt.date | None] = mapped_column(Date)
    note: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = now_column()
