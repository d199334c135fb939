"""Sign-in accounts, their roles (DOMAIN §9) and scopes, sessions and sign-in attempts.

An account's scope columns (``provider_id``, ``caregiver_id``, ``elder_id``, ``guardian_id``, and the
districts of ``user_district``) are foreign keys into the registry's tables, named by table as any
foreign key is; the kernel imports no domain code for them.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, enum_check, now_column


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


class AppUser(Base):
    __tablename__ = "app_user"
    __table_args__ = (
        enum_check("role", Role),
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
    # ``core.identity.login_rules``); a successful sign-in, a password change or an admin unlock clears them.
    failed_logins: Mapped[int] = mapped_column(SmallInteger, default=0)
    failed_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Set by an admin password reset: until the user picks their own, the API serves them little.
    password_change_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[dt.datetime] = now_column()
    # Moved on by the database (migration 0017's triggers) whenever anything a principal is built from
    # changes: this row (but its sign-in throttling columns and password hash), the account's districts,
    # its guardian's elders. The API's PrincipalCache compares it on every request.
    scope_epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


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
    created_at: Mapped[dt.datetime] = now_column()
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class LoginAttempt(Base):
    """Every login attempt, for rate limiting by source address and for the audit trail."""

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_ip_at", "ip", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[dt.datetime] = now_column()
    ip: Mapped[str | None] = mapped_column(INET)
    login: Mapped[str] = mapped_column(String(60))
    succeeded: Mapped[bool] = mapped_column(Boolean)
