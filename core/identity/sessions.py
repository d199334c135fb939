"""Login sessions: opaque random tokens, stored only as SHA-256 hashes; lock-out and rate limits.

Throttling state lives in the database, so several API processes share it: failed attempts are rows
of ``login_attempt`` (counted per source address), and an account's run of failures is on its
``app_user`` row, which an attempt locks (``SELECT … FOR UPDATE``) before reading, so concurrent
guesses at one account take turns and none is lost. The rules are in :mod:`core.identity.login_rules`.

A principal's scope is partly the kernel's (role, provider, districts) and partly the domains': which
elders a family member or a caregiver is tied to is the registry's business. Each domain contributes
its part through a :class:`ScopeLoader`; the composition root passes them in, so the kernel names
no domain."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, Protocol, TypedDict

from sqlalchemy import DateTime, String, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.clock import local_date
from core.errors import AccountLocked, DomainError, TooManyRequests, Unauthenticated
from core.identity.authz import Principal
from core.identity.login_rules import (
    POLICY_KEY,
    AccountPolicy,
    AddressPolicy,
    LoginPolicy,
    failures_so_far,
    lock_seconds,
    login_policy_from,
    retry_after_s,
)
from core.identity.models import AppUser, AuthSession, LoginAttempt, Role, UserDistrict
from core.identity.passwords import hash_password, verify_password
from core.policy import PolicyValue
from core.seed import AUTH_POLICY_DEFAULTS
from core.settings import Settings

# A real hash to verify against when the login is unknown, so timing does not reveal which users exist.
DUMMY_HASH = hash_password("eldercare-dummy-password")
# ``app_user.failed_logins`` is a SMALLINT; a count this high locks for the longest time anyway.
MAX_COUNT = 10_000


class ScopeFields(TypedDict, total=False):
    """The fields of :class:`~core.identity.authz.Principal` a domain's scope loader may fill, and
    ``rebuild_each_request``: true when that part depends on the time or on rows whose changes do not
    move the account's ``scope_epoch`` (then the principal is not cached, see :class:`PrincipalCache`)."""

    elder_ids: frozenset[int]
    served_elder_ids: frozenset[int]
    rebuild_each_request: bool


class ScopeLoader(Protocol):
    """A domain's part of a principal's scope: for the account ``user`` in ``role``, as of ``now``
    (a caregiver's elders depend on the time), the principal fields it fills. Read-only."""

    async def __call__(
        self, session: AsyncSession, user: AppUser, role: Role, now: dt.datetime
    ) -> ScopeFields: ...


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    """What a login attempt produced; ``error`` is raised by the caller after committing."""

    token: str | None
    user_id: int | None
    expires_at: dt.datetime | None
    error: DomainError | None


async def load_login_policy(*, session: AsyncSession, day: dt.date) -> LoginPolicy:
    """The sign-in throttling policy valid on ``day`` (policy ``auth.login_failures``). A scope with
    no row valid that day falls back to its seeded default row, the one home of those numbers."""
    rows = await session.execute(
        select(PolicyValue.scope, PolicyValue.value)
        .where(
            PolicyValue.key == POLICY_KEY,
            PolicyValue.valid_from <= day,
            PolicyValue.valid_to.is_(None) | (PolicyValue.valid_to >= day),
        )
        .order_by(PolicyValue.valid_from)
    )
    values = {p.scope: p.value for p in AUTH_POLICY_DEFAULTS if p.key == POLICY_KEY}
    values.update({str(scope): value for scope, value in rows})  # the latest valid_from wins
    return login_policy_from(values["account"], values["address"])


async def address_retry_after_s(
    *, session: AsyncSession, ip: str, now: dt.datetime, policy: AddressPolicy
) -> int | None:
    """Seconds until ``ip`` may try again, or ``None`` when it has failed fewer than
    ``policy.max_failures`` times in the last ``policy.window_s`` seconds. Only failures count."""
    window = dt.timedelta(seconds=policy.window_s)
    # The max_failures-th latest failure in the window: once it leaves the window, there is room.
    nth = await session.scalar(
        select(LoginAttempt.at)
        .where(LoginAttempt.ip == ip, LoginAttempt.at > now - window, LoginAttempt.succeeded.is_(False))
        .order_by(LoginAttempt.at.desc())
        .offset(policy.max_failures - 1)
        .limit(1)
    )
    return None if nth is None else retry_after_s(nth + window, now)


def account_locked(locked_until: dt.datetime, now: dt.datetime) -> AccountLocked:
    return AccountLocked(
        "Too many failed attempts; try again later.",
        locked_until=locked_until.isoformat(),
        retry_after_s=retry_after_s(locked_until, now),
    )


async def locked_user(*, session: AsyncSession, user: AppUser, now: dt.datetime) -> AccountLocked | None:
    """Lock the user's row for this transaction (concurrent attempts on one account take turns,
    each seeing the others' count) and say whether the account is locked out."""
    await session.refresh(
        user, attribute_names=["failed_logins", "failed_login_at", "locked_until"], with_for_update=True
    )
    if user.locked_until is not None and user.locked_until > now:
        return account_locked(user.locked_until, now)
    return None


async def count_failure(
    *,
    session: AsyncSession,
    user: AppUser,
    now: dt.datetime,
    policy: AccountPolicy,
    ip: str | None,
    action: str = "login_failed",
    actor: Principal | None = None,
) -> AccountLocked | None:
    """Count a wrong password for ``user`` (whose row :func:`locked_user` has locked) and lock the
    account if the run of failures has earned it; returns the lock-out, if any. The caller commits
    even though its request fails. ``action`` and ``actor`` (if signed in) go to the audit trail."""
    failures = min(failures_so_far(user.failed_logins, user.failed_login_at, now, policy) + 1, MAX_COUNT)
    lock_s = lock_seconds(failures, policy)
    user.failed_logins, user.failed_login_at = failures, now
    user.locked_until = now + dt.timedelta(seconds=lock_s) if lock_s else None
    await session.flush()
    audit.record(session, actor=actor, action=action, entity="app_user", entity_id=user.id, ip=ip)
    if user.locked_until is None:
        return None
    audit.record(
        session,
        actor=None,
        action="locked",
        entity="app_user",
        entity_id=user.id,
        after={"failures": failures, "locked_until": user.locked_until},
        ip=ip,
    )
    return account_locked(user.locked_until, now)


def clear_failures(user: AppUser) -> None:
    user.failed_logins, user.failed_login_at, user.locked_until = 0, None, None


async def attempt_login(
    *, session: AsyncSession, login: str, password: str, ip: str | None, now: dt.datetime, settings: Settings
) -> LoginOutcome:
    """Check credentials and open a session. Failures are recorded, so the caller must commit
    even when ``error`` is set, and raise it afterwards.

    Refused without a try (nothing recorded, nothing counted): an address over its failure budget
    (429 ``auth.rate_limited``) and a locked account (423 ``auth.locked``), the right password
    included. Both carry ``retry_after_s``. Successful sign-ins never count against anything."""
    policy = await load_login_policy(session=session, day=local_date(now))
    if ip is not None:
        wait_s = await address_retry_after_s(session=session, ip=ip, now=now, policy=policy.address)
        if wait_s is not None:
            return LoginOutcome(
                None,
                None,
                None,
                TooManyRequests("Too many failed sign-ins from this address.", retry_after_s=wait_s),
            )

    user = await session.scalar(select(AppUser).where(or_(AppUser.username == login, AppUser.phone == login)))
    if user is None or not user.is_active:
        verify_password(DUMMY_HASH, password)
        session.add(LoginAttempt(at=now, ip=ip, login=login[:60], succeeded=False))
        return LoginOutcome(None, None, None, _invalid())
    locked = await locked_user(session=session, user=user, now=now)
    if locked is not None:
        return LoginOutcome(None, user.id, None, locked)
    if not verify_password(user.password_hash, password):
        session.add(LoginAttempt(at=now, ip=ip, login=login[:60], succeeded=False))
        locked = await count_failure(session=session, user=user, now=now, policy=policy.account, ip=ip)
        return LoginOutcome(None, user.id, None, locked or _invalid())

    clear_failures(user)
    token = secrets.token_urlsafe(32)
    expires_at = now + dt.timedelta(seconds=settings.session_ttl_seconds)
    session.add(
        AuthSession(token_hash=token_hash(token), user_id=user.id, created_at=now, expires_at=expires_at)
    )
    session.add(LoginAttempt(at=now, ip=ip, login=login[:60], succeeded=True))
    audit.record(session, actor=None, action="login", entity="app_user", entity_id=user.id, ip=ip)
    return LoginOutcome(token, user.id, expires_at, None)


def _invalid() -> Unauthenticated:
    return Unauthenticated("Wrong username or password.", code="auth.invalid_credentials")


async def revoke(*, session: AsyncSession, token: str, now: dt.datetime) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.token_hash == token_hash(token), AuthSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_user_sessions(
    *, session: AsyncSession, user_id: int, now: dt.datetime, keep_token: str | None = None
) -> None:
    """End every open session of the user, except the one of ``keep_token`` if given. Revoked
    tokens stop working at once: :func:`principal_for_token` reads the session row on every request
    (a cached principal included)."""
    stmt = update(AuthSession).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
    if keep_token is not None:
        stmt = stmt.where(AuthSession.token_hash != token_hash(keep_token))
    await session.execute(stmt.values(revoked_at=now))


@dataclass(frozen=True, slots=True)
class _Cached:
    user_id: int
    epoch: int
    principal: Principal
    # For a principal whose domain scope is rebuilt every request: the account's scope columns
    # (a transient copy, in no session) that the scope loaders read.
    rebuild_from: AppUser | None


class PrincipalCache:
    """The principals built for live tokens in this process, each with the account's
    ``scope_epoch`` at the time it was built.

    Reused only after the request's own query has found the token live (not revoked, not expired,
    the account active) and the epoch unchanged, so a revoked token fails on its very next request
    and a change of role or scope (which moves the epoch on, in the database) shows on the next
    request, in every API process. The part of a principal whose scope depends on the time (a
    caregiver's visits: :data:`ScopeFields` ``rebuild_each_request``) is loaded again every request."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, _Cached] = {}

    def get(self, key: str, user_id: int, epoch: int) -> _Cached | None:
        hit = self._entries.get(key)
        if hit is None or hit.user_id != user_id or hit.epoch != epoch:
            return None
        return hit

    def put(self, key: str, entry: _Cached) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # tokens come and go; a full cache simply starts over
        self._entries[key] = entry

    def __len__(self) -> int:
        return len(self._entries)


# Built once: the live-token check every request makes (its compiled form is cached by SQLAlchemy).
_LIVE_SESSION: Final = (
    select(AppUser.id, AppUser.scope_epoch)
    .join(AuthSession, AuthSession.user_id == AppUser.id)
    .where(
        AuthSession.token_hash == bindparam("key", type_=String),
        AuthSession.revoked_at.is_(None),
        AuthSession.expires_at > bindparam("now", type_=DateTime(timezone=True)),
        AppUser.is_active.is_(True),
    )
)


async def principal_for_token(
    *,
    session: AsyncSession,
    token: str,
    now: dt.datetime,
    scope_loaders: Sequence[ScopeLoader],
    cache: PrincipalCache | None = None,
    request_scope: bool = True,
) -> Principal | None:
    """The principal behind a live session token, or ``None``. One query when ``cache`` holds the
    principal at the account's current ``scope_epoch``; otherwise it is built and kept there.

    A cached principal whose domain scope is rebuilt every request (``rebuild_each_request``) has it
    loaded again, unless ``request_scope`` is false (a route that reads none of it): then it comes
    without it, ``elder_ids`` and ``served_elder_ids`` empty."""
    key = token_hash(token)
    # On the session's connection, in Core: the ORM's statement handling was a fifth of this query's cost.
    connection = await session.connection()
    live = (await connection.execute(_LIVE_SESSION, {"key": key, "now": now})).one_or_none()
    if live is None:
        return None
    user_id, epoch = live
    if cache is not None:
        hit = cache.get(key, user_id, epoch)
        if hit is not None and hit.rebuild_from is None:
            return hit.principal
        if hit is not None and hit.rebuild_from is not None and not request_scope:
            return replace(hit.principal, elder_ids=frozenset(), served_elder_ids=frozenset())
        if hit is not None and hit.rebuild_from is not None:
            scope = await _load_scope(session, hit.rebuild_from, hit.principal.role, now, scope_loaders)
            return replace(
                hit.principal,
                elder_ids=scope.get("elder_ids", frozenset()),
                served_elder_ids=scope.get("served_elder_ids", frozenset()),
            )
    user = await session.get(AppUser, user_id)
    if user is None:  # pragma: no cover - the row was just read
        return None
    principal, each_request = await _build_principal(
        session=session, user=user, now=now, scope_loaders=scope_loaders
    )
    # The epoch read above, not the row's now: a change committed in between is seen next time.
    if cache is not None:
        copy = _scope_columns(user) if each_request else None
        cache.put(key, _Cached(user_id, epoch, principal, copy))
    return principal


def _scope_columns(user: AppUser) -> AppUser:
    """A transient copy of the account's columns that scope loaders read (in no session)."""
    return AppUser(
        id=user.id,
        username=user.username,
        role=user.role,
        provider_id=user.provider_id,
        caregiver_id=user.caregiver_id,
        elder_id=user.elder_id,
        guardian_id=user.guardian_id,
    )


async def _load_scope(
    session: AsyncSession, user: AppUser, role: Role, now: dt.datetime, scope_loaders: Sequence[ScopeLoader]
) -> ScopeFields:
    scope: ScopeFields = {}
    for load in scope_loaders:
        scope.update(await load(session, user, role, now))
    return scope


async def principal_for_user(
    *, session: AsyncSession, user: AppUser, now: dt.datetime, scope_loaders: Sequence[ScopeLoader]
) -> Principal:
    """The user's role and scope as of ``now``: the kernel's part (role, provider, districts) and
    what each of ``scope_loaders`` adds (e.g. the registry's elders of a family member or caregiver)."""
    principal, _ = await _build_principal(session=session, user=user, now=now, scope_loaders=scope_loaders)
    return principal


async def _build_principal(
    *, session: AsyncSession, user: AppUser, now: dt.datetime, scope_loaders: Sequence[ScopeLoader]
) -> tuple[Principal, bool]:
    """The principal, and whether its scope must be rebuilt on every request (it depends on time)."""
    role = Role(user.role)
    districts = frozenset(
        (await session.scalars(select(UserDistrict.district_id).where(UserDistrict.user_id == user.id))).all()
    )
    scope = await _load_scope(session, user, role, now, scope_loaders)
    each_request = scope.get("rebuild_each_request", False)
    principal = Principal(
        user_id=user.id,
        username=user.username,
        role=role,
        display_name=user.display_name,
        provider_id=user.provider_id,
        caregiver_id=user.caregiver_id,
        elder_id=user.elder_id,
        guardian_id=user.guardian_id,
        district_ids=districts,
        password_change_required=user.password_change_required,
        elder_ids=scope.get("elder_ids", frozenset()),
        served_elder_ids=scope.get("served_elder_ids", frozenset()),
    )
    return principal, each_request
