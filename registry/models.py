"""The core domain tables shared by every domain: places, people, providers, devices, users, audit.

Conventions: singular snake_case table names, ``_at`` for UTC ``timestamptz``, ``_on`` for dates,
money in integer fen, one declarative base with a constraint naming convention.
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
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    Time,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        dt.datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
    }


def _now_col() -> Mapped[dt.datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Role(enum.StrEnum):
    """DOMAIN §9."""

    ELDER = "elder"
    FAMILY = "family"
    CAREGIVER = "caregiver"
    PROVIDER_ADMIN = "provider_admin"
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    CIVIL_AFFAIRS = "civil_affairs"
    ADMIN = "admin"


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


class DeviceKind(enum.StrEnum):
    SOS_BUTTON = "sos_button"
    FALL_SENSOR = "fall_sensor"
    SMOKE = "smoke"
    GAS = "gas"
    WATER_LEAK = "water_leak"
    DOOR = "door"
    MOTION = "motion"
    BED = "bed"
    GPS_WATCH = "gps_watch"
    VITALS_BAND = "vitals_band"
    GATEWAY = "gateway"


def _enum_check(column: str, values: type[enum.StrEnum]) -> CheckConstraint:
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


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
        _enum_check("gender", Gender),
        _enum_check("living_situation", LivingSituation),
        _enum_check("status", ElderStatus),
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
    created_at: Mapped[dt.datetime] = _now_col()
    updated_at: Mapped[dt.datetime] = _now_col()

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
        _enum_check("category", SubsidyCategory),
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
    created_at: Mapped[dt.datetime] = _now_col()


# --- Families, providers, caregivers -----------------------------------------------------------


class Guardian(Base):
    """A family member or guardian (家属/监护人)."""

    __tablename__ = "guardian"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    phone: Mapped[str] = mapped_column(String(11), index=True)
    created_at: Mapped[dt.datetime] = _now_col()


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
    created_at: Mapped[dt.datetime] = _now_col()


class ProviderDistrict(Base):
    """Districts a provider is contracted to serve."""

    __tablename__ = "provider_district"

    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id", ondelete="CASCADE"), primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("district.id"), primary_key=True, index=True)


class Caregiver(Base):
    __tablename__ = "caregiver"
    __table_args__ = (
        _enum_check("gender", Gender),
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
    created_at: Mapped[dt.datetime] = _now_col()

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
    created_at: Mapped[dt.datetime] = _now_col()


# --- Devices ------------------------------------------------------------------------------------


class Gateway(Base):
    """A home gateway (Zigbee2MQTT hub); its id appears in ``eldercare/v1/z2m/{uid}``."""

    __tablename__ = "gateway"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    uid: Mapped[str] = mapped_column(String(40), unique=True)
    elder_id: Mapped[int | None] = mapped_column(ForeignKey("elder.id", ondelete="SET NULL"), index=True)
    model: Mapped[str] = mapped_column(String(60))
    serial: Mapped[str] = mapped_column(String(60), unique=True)
    status: Mapped[str] = mapped_column(String(12), default="active")
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = _now_col()


class Device(Base):
    """A home device; ``uid`` is the id used in its MQTT topic and username."""

    __tablename__ = "device"
    __table_args__ = (
        _enum_check("kind", DeviceKind),
        CheckConstraint("power IN ('mains', 'battery')", name="power_valid"),
        CheckConstraint("status IN ('active', 'inactive', 'revoked')", name="status_valid"),
        UniqueConstraint("gateway_id", "friendly_name", name="uq_device_gateway_friendly_name"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    uid: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    model: Mapped[str] = mapped_column(String(60))
    serial: Mapped[str] = mapped_column(String(60), unique=True)
    elder_id: Mapped[int | None] = mapped_column(ForeignKey("elder.id", ondelete="SET NULL"), index=True)
    gateway_id: Mapped[int | None] = mapped_column(ForeignKey("gateway.id", ondelete="SET NULL"), index=True)
    friendly_name: Mapped[str | None] = mapped_column(String(60))
    power: Mapped[str] = mapped_column(String(8), default="battery")
    status: Mapped[str] = mapped_column(String(12), default="active")
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    online: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = _now_col()


# --- Users, sessions, audit ---------------------------------------------------------------------


class AppUser(Base):
    __tablename__ = "app_user"
    __table_args__ = (
        _enum_check("role", Role),
        CheckConstraint("role <> 'provider_admin' OR provider_id IS NOT NULL", name="provider_scoped"),
        CheckConstraint("role <> 'caregiver' OR caregiver_id IS NOT NULL", name="caregiver_scoped"),
        CheckConstraint("role <> 'elder' OR elder_id IS NOT NULL", name="elder_scoped"),
        CheckConstraint("role <> 'family' OR guardian_id IS NOT NULL", name="family_scoped"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    phone: Mapped[str | None] = mapped_column(String(11), unique=True)
    display_name: Mapped[str] = mapped_column(String(40))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("provider.id"))
    caregiver_id: Mapped[int | None] = mapped_column(ForeignKey("caregiver.id"))
    elder_id: Mapped[int | None] = mapped_column(ForeignKey("elder.id"))
    guardian_id: Mapped[int | None] = mapped_column(ForeignKey("guardian.id"))
    locale: Mapped[str] = mapped_column(String(8), default="zh-CN")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The running count of failed sign-ins, its last failure and the lock it earned (see
    # ``core.login_rules``); a successful sign-in, a password change or an admin unlock clears them.
    failed_logins: Mapped[int] = mapped_column(SmallInteger, default=0)
    failed_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Set by an admin password reset: until the user picks their own, the API serves them little.
    password_change_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[dt.datetime] = _now_col()


class UserDistrict(Base):
    """Districts a civil-affairs officer (or operator team) is responsible for."""

    __tablename__ = "user_district"

    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"), primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("district.id"), primary_key=True)


class AuthSession(Base):
    """A login session; only a hash of the bearer token / cookie value is stored."""

    __tablename__ = "auth_session"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = _now_col()
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class LoginAttempt(Base):
    """Every login attempt, for rate limiting by source address and for the audit trail."""

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_ip_at", "ip", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[dt.datetime] = _now_col()
    ip: Mapped[str | None] = mapped_column(INET)
    login: Mapped[str] = mapped_column(String(60))
    succeeded: Mapped[bool] = mapped_column(Boolean)


class AuditLog(Base):
    """Every state change and every read of unmasked personal data: who, when, what, before/after."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_entity", "entity", "entity_id"),
        Index("ix_audit_log_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[dt.datetime] = _now_col()
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    actor_role: Mapped[str | None] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(30))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str | None] = mapped_column(String(40))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    ip: Mapped[str | None] = mapped_column(INET)
    request_id: Mapped[str | None] = mapped_column(String(40))


class PolicyValue(Base):
    """Dated policy data (prices, subsidy rates, caps, thresholds): never constants in code.

    ``key`` names the policy (e.g. ``subsidy.voucher.rate_bp``), ``scope`` narrows it (a service code,
    a category, a district code or ``*``); the row valid on a date is the one with the latest
    ``valid_from`` not after it and ``valid_to`` (inclusive) not before it.
    """

    __tablename__ = "policy_value"
    __table_args__ = (
        UniqueConstraint("key", "scope", "valid_from", name="uq_policy_value_key_scope_from"),
        CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="range_valid"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(80))
    scope: Mapped[str] = mapped_column(String(40), server_default=text("'*'"))
    value: Mapped[dict[str, Any]] = mapped_column(JSONB)
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = _now_col()
