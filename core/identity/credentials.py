"""Passwords of sign-in accounts: a user changes their own; an admin resets one (see
:mod:`core.identity.users`). Either way every other session of the user ends at once."""

from __future__ import annotations

import datetime as dt
import hmac

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.clock import local_date
from core.errors import DomainError, Invalid, Unauthenticated
from core.identity.authz import Principal
from core.identity.models import AppUser
from core.identity.passwords import hash_password, verify_password
from core.identity.sessions import (
    clear_failures,
    count_failure,
    load_login_policy,
    locked_user,
    revoke_user_sessions,
)


async def set_password(
    *,
    session: AsyncSession,
    user: AppUser,
    password: str,
    now: dt.datetime,
    change_required: bool,
    keep_token: str | None = None,
) -> None:
    """Store a new password (Argon2id), clear any lock-out, and end the user's sessions except
    ``keep_token``'s. ``change_required``: the user must choose their own before doing anything else."""
    user.password_hash = hash_password(password)
    user.password_change_required = change_required
    clear_failures(user)
    await session.flush()
    await revoke_user_sessions(session=session, user_id=user.id, now=now, keep_token=keep_token)


async def change_password(
    *,
    session: AsyncSession,
    actor: Principal,
    token: str,
    current_password: str,
    new_password: str,
    ip: str | None,
    now: dt.datetime,
) -> DomainError | None:
    """The signed-in user replaces their password; the session of ``token`` stays valid, all others
    end. Returns the error to raise after committing: a wrong ``current_password`` counts as a failed
    sign-in (so a stolen session cannot be used to guess the password) and may lock the account."""
    user = await session.scalar(select(AppUser).where(AppUser.id == actor.user_id))
    if user is None or not user.is_active:
        return Unauthenticated("Sign in first.")
    locked = await locked_user(session=session, user=user, now=now)
    if locked is not None:
        return locked
    if not verify_password(user.password_hash, current_password):
        policy = await load_login_policy(session=session, day=local_date(now))
        locked = await count_failure(
            session=session,
            user=user,
            now=now,
            policy=policy.account,
            ip=ip,
            action="password_change_failed",
            actor=actor,
        )
        return locked or Invalid(
            "The current password is wrong.", code="auth.wrong_password", field="current_password"
        )
    if hmac.compare_digest(new_password.encode(), current_password.encode()):
        return Invalid(
            "The new password must differ from the current one.",
            code="auth.password_unchanged",
            field="new_password",
        )
    await set_password(
        session=session, user=user, password=new_password, now=now, change_required=False, keep_token=token
    )
    audit.record(session, actor=actor, action="password_change", entity="app_user", entity_id=user.id, ip=ip)
    return None
