"""Login sessions: opaque random tokens, stored only as SHA-256 hashes; lock-out and rate limits."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.authz import Principal
from core.errors import AccountLocked, DomainError, TooManyRequests, Unauthenticated
from core.models import AppUser, AuthSession, ElderGuardian, LoginAttempt, Role, UserDistrict
from core.passwords import hash_password, verify_password
from core.settings import Settings

# A real hash to verify against when the login is unknown, so timing does not reveal which users exist.
DUMMY_HASH = hash_password("eldercare-dummy-password")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    """What a login attempt produced; ``error`` is raised by the caller after committing."""

    token: str | None
    user_id: int | None
    expires_at: dt.datetime | None
    error: DomainError | None


async def attempt_login(
    *, session: AsyncSession, login: str, password: str, ip: str | None, now: dt.datetime, settings: Settings
) -> LoginOutcome:
    """Check credentials and open a session. Failures are recorded, so the caller must commit
    even when ``error`` is set, and raise it afterwards."""
    if ip is not None:
        recent = await session.scalar(
            select(func.count())
            .select_from(LoginAttempt)
            .where(LoginAttempt.ip == ip, LoginAttempt.at > now - dt.timedelta(minutes=1))
        )
        if (recent or 0) >= settings.login_rate_per_minute:
            return LoginOutcome(None, None, None, TooManyRequests("Too many login attempts; wait a minute."))

    user = await session.scalar(
        select(AppUser).where(or_(AppUser.username == login, AppUser.phone == login)).with_for_update()
    )
    session.add(LoginAttempt(at=now, ip=ip, login=login[:60], succeeded=False))
    if user is None or not user.is_active:
        verify_password(DUMMY_HASH, password)
        return LoginOutcome(
            None, None, None, Unauthenticated("Wrong username or password.", code="auth.invalid_credentials")
        )
    if user.locked_until is not None and user.locked_until > now:
        return LoginOutcome(
            None,
            user.id,
            None,
            AccountLocked(
                "Too many failed attempts; try again later.", locked_until=user.locked_until.isoformat()
            ),
        )
    if not verify_password(user.password_hash, password):
        failures = user.failed_logins + 1
        locked_until = (
            now + dt.timedelta(seconds=settings.login_lockout_seconds)
            if failures >= settings.login_max_failures
            else None
        )
        await session.execute(
            update(AppUser)
            .where(AppUser.id == user.id)
            .values(failed_logins=0 if locked_until else failures, locked_until=locked_until)
        )
        audit.record(session, actor=None, action="login_failed", entity="app_user", entity_id=user.id, ip=ip)
        if locked_until is not None:
            audit.record(session, actor=None, action="locked", entity="app_user", entity_id=user.id, ip=ip)
        return LoginOutcome(
            None,
            user.id,
            None,
            Unauthenticated("Wrong username or password.", code="auth.invalid_credentials"),
        )

    await session.execute(
        update(AppUser).where(AppUser.id == user.id).values(failed_logins=0, locked_until=None)
    )
    token = secrets.token_urlsafe(32)
    expires_at = now + dt.timedelta(seconds=settings.session_ttl_seconds)
    session.add(
        AuthSession(token_hash=token_hash(token), user_id=user.id, created_at=now, expires_at=expires_at)
    )
    session.add(LoginAttempt(at=now, ip=ip, login=login[:60], succeeded=True))
    audit.record(session, actor=None, action="login", entity="app_user", entity_id=user.id, ip=ip)
    return LoginOutcome(token, user.id, expires_at, None)


async def revoke(*, session: AsyncSession, token: str, now: dt.datetime) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.token_hash == token_hash(token), AuthSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def principal_for_token(*, session: AsyncSession, token: str, now: dt.datetime) -> Principal | None:
    """The principal behind a live session token, or ``None``."""
    row = (
        await session.execute(
            select(AppUser)
            .join(AuthSession, AuthSession.user_id == AppUser.id)
            .where(
                AuthSession.token_hash == token_hash(token),
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > now,
                AppUser.is_active.is_(True),
            )
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    return await principal_for_user(session=session, user=row)


async def principal_for_user(*, session: AsyncSession, user: AppUser) -> Principal:
    role = Role(user.role)
    districts = frozenset(
        (await session.scalars(select(UserDistrict.district_id).where(UserDistrict.user_id == user.id))).all()
    )
    elder_ids: frozenset[int] = frozenset()
    if role == Role.FAMILY and user.guardian_id is not None:
        elder_ids = frozenset(
            (
                await session.scalars(
                    select(ElderGuardian.elder_id).where(ElderGuardian.guardian_id == user.guardian_id)
                )
            ).all()
        )
    elif role == Role.ELDER and user.elder_id is not None:
        elder_ids = frozenset({user.elder_id})
    return Principal(
        user_id=user.id,
        username=user.username,
        role=role,
        display_name=user.display_name,
        provider_id=user.provider_id,
        caregiver_id=user.caregiver_id,
        elder_id=user.elder_id,
        guardian_id=user.guardian_id,
        district_ids=districts,
        elder_ids=elder_ids,
    )
