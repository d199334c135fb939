"""Users, their roles (DOMAIN §9) and scopes; managed by admins only (route rules).

Each role carries exactly the scope it needs: a provider admin a provider, a caregiver their
caregiver record (the provider follows from it), an elder their elder record, a family member their
guardian record, a civil-affairs officer one or more districts (operators and supervisors may have
districts too, for team views). Other scope fields must be empty.

The scope fields are foreign keys into the registry's tables. The kernel imports no domain, so the
rows they may refer to are found through the foreign keys themselves (:func:`_referred`): the
registry's tables are in the metadata of every process that serves these use cases.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import BigInteger, Column, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.audit import AuditLog
from core.crud import (
    MAX_BIGINT,
    MAX_INT,
    Paged,
    Window,
    delete_and_audit,
    get_or_404,
    in_key_range,
    like_prefix,
    page_of,
    unknown_reference,
)
from core.errors import Conflict, Invalid
from core.identity.authz import Principal
from core.identity.credentials import set_password
from core.identity.models import AppUser, Role, UserDistrict
from core.identity.passwords import hash_password
from core.identity.schemas import UserCreate, UserUpdate
from core.identity.sessions import clear_failures, revoke_user_sessions
from core.phone import normalise_phone
from core.types import Unset, given, given_or

REF_FIELDS: Final = ("provider_id", "caregiver_id", "elder_id", "guardian_id")
# The reference each role needs (caregivers also get their provider, derived).
ROLE_REF: Final[Mapping[Role, str | None]] = {
    Role.PROVIDER_ADMIN: "provider_id",
    Role.CAREGIVER: "caregiver_id",
    Role.ELDER: "elder_id",
    Role.FAMILY: "guardian_id",
    Role.CIVIL_AFFAIRS: None,
    Role.OPERATOR: None,
    Role.SUPERVISOR: None,
    Role.ADMIN: None,
}
DISTRICT_ROLES: Final = frozenset({Role.CIVIL_AFFAIRS, Role.OPERATOR, Role.SUPERVISOR})


def _referred(column: str, table: type[AppUser] | type[UserDistrict] = AppUser) -> Column[Any]:
    """The column a scope column refers to (its foreign key's target, e.g. ``provider.id``)."""
    (fk,) = table.__table__.c[column].foreign_keys
    return fk.column


async def _require_ref(session: AsyncSession, field: str, key: int) -> None:
    """A 422 ``reference.unknown`` naming ``field`` unless ``key`` is a row it may refer to."""
    target = _referred(field)
    limit = MAX_BIGINT if isinstance(target.type, BigInteger) else MAX_INT
    if (
        not in_key_range(key, limit=limit)
        or await session.scalar(select(target).where(target == key)) is None
    ):
        raise unknown_reference(field, key, target.table.name)


@dataclass(frozen=True, slots=True)
class UserView:
    user: AppUser
    district_ids: list[int]


@dataclass(frozen=True, slots=True)
class UserFilter:
    role: str | None = None
    provider_id: int | None = None
    district_id: int | None = None
    is_active: bool | None = None
    name_prefix: str | None = None


async def _district_ids(session: AsyncSession, user_ids: Sequence[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {uid: [] for uid in user_ids}
    if out:
        rows = await session.execute(
            select(UserDistrict.user_id, UserDistrict.district_id)
            .where(UserDistrict.user_id.in_(out))
            .order_by(UserDistrict.district_id)
        )
        for user_id, district_id in rows.all():
            out[user_id].append(district_id)
    return out


async def _scope(
    session: AsyncSession, role: Role, refs: Mapping[str, int | None], district_ids: Sequence[int]
) -> tuple[dict[str, int | None], list[int]]:
    """Check that ``refs``/``district_ids`` fit ``role`` and exist; returns the values to store."""
    needed = ROLE_REF[role]
    out: dict[str, int | None] = dict.fromkeys(REF_FIELDS)
    for field in REF_FIELDS:
        value = refs.get(field)
        if value is None:
            continue
        if field != needed and not (role == Role.CAREGIVER and field == "provider_id"):
            raise Invalid(f"Role {role.value} takes no {field}.", code="user.scope_mismatch", field=field)
        await _require_ref(session, field, value)
        out[field] = value
    if needed is not None and out[needed] is None:
        raise Invalid(f"Role {role.value} needs {needed}.", code="user.scope_missing", field=needed)
    if role == Role.CAREGIVER and out["caregiver_id"] is not None:
        caregiver_id = _referred("caregiver_id")  # caregiver.id; the caregiver's row has its provider
        provider_id = await session.scalar(
            select(caregiver_id.table.c.provider_id).where(caregiver_id == out["caregiver_id"])
        )
        if out["provider_id"] is not None and out["provider_id"] != provider_id:
            raise Invalid(
                "provider_id must be the caregiver's own provider.",
                code="user.scope_mismatch",
                field="provider_id",
            )
        out["provider_id"] = provider_id
    districts = sorted(set(district_ids))
    if districts and role not in DISTRICT_ROLES:
        raise Invalid(
            f"Role {role.value} takes no districts.", code="user.scope_mismatch", field="district_ids"
        )
    if role == Role.CIVIL_AFFAIRS and not districts:
        raise Invalid(
            "A civil-affairs officer needs at least one district.",
            code="user.scope_missing",
            field="district_ids",
        )
    valid = [d for d in districts if in_key_range(d, limit=MAX_INT)]
    district_id = _referred("district_id", UserDistrict)
    found = (
        set((await session.scalars(select(district_id).where(district_id.in_(valid)))).all())
        if valid
        else set()
    )
    for d in districts:
        if d not in found:
            raise unknown_reference("district_ids", d, "district")
    return out, districts


async def _unique(session: AsyncSession, field: str, value: str, except_id: int | None = None) -> None:
    existing = await session.scalar(select(AppUser.id).where(getattr(AppUser, field) == value))
    if existing is not None and existing != except_id:
        raise Conflict(f"Another user already has this {field}.", code="conflict.duplicate", field=field)


def _snapshot(user: AppUser, district_ids: Sequence[int]) -> dict[str, Any]:
    return audit.snapshot(user) | {"district_ids": list(district_ids)}


async def list_users(*, session: AsyncSession, filters: UserFilter, window: Window) -> Paged[UserView]:
    stmt = select(AppUser).order_by(AppUser.id)
    f = filters
    if f.role is not None:
        stmt = stmt.where(AppUser.role == f.role)
    if f.provider_id is not None:
        stmt = stmt.where(AppUser.provider_id == f.provider_id)
    if f.district_id is not None:
        stmt = stmt.where(
            AppUser.id.in_(select(UserDistrict.user_id).where(UserDistrict.district_id == f.district_id))
        )
    if f.is_active is not None:
        stmt = stmt.where(AppUser.is_active.is_(f.is_active))
    if f.name_prefix:
        pattern = like_prefix(f.name_prefix)
        stmt = stmt.where(AppUser.username.like(pattern) | AppUser.display_name.like(pattern))
    page = await page_of(session, stmt, window)
    districts = await _district_ids(session, [u.id for u in page.items])
    return Paged(
        items=[UserView(u, districts[u.id]) for u in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


async def get_user(*, session: AsyncSession, user_id: int) -> UserView:
    user = await get_or_404(session, AppUser, user_id, what="user")
    return UserView(user, (await _district_ids(session, [user.id]))[user.id])


async def create_user(
    *, session: AsyncSession, actor: Principal, data: UserCreate, now: dt.datetime
) -> UserView:
    """Create a login. ``password`` is hashed with Argon2id and never stored or logged in clear."""
    role = data.role
    refs_in = {
        "provider_id": data.provider_id,
        "caregiver_id": data.caregiver_id,
        "elder_id": data.elder_id,
        "guardian_id": data.guardian_id,
    }
    refs, districts = await _scope(session, role, refs_in, data.district_ids)
    await _unique(session, "username", data.username)
    phone = normalise_phone(data.phone) if data.phone else None
    if phone is not None:
        await _unique(session, "phone", phone)
    user = AppUser(
        username=data.username,
        phone=phone,
        display_name=data.display_name,
        password_hash=hash_password(data.password),
        role=role.value,
        locale=data.locale,
        is_active=data.is_active,
        failed_logins=0,
        created_at=now,
        **refs,
    )
    session.add(user)
    await session.flush()
    for district_id in districts:
        session.add(UserDistrict(user_id=user.id, district_id=district_id))
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="app_user",
        entity_id=user.id,
        after=_snapshot(user, districts),
    )
    return UserView(user, districts)


async def update_user(  # noqa: C901 - one independent branch per patchable field and its rule; a split would scatter the audit diff
    *, session: AsyncSession, actor: Principal, user_id: int, changes: UserUpdate, now: dt.datetime
) -> UserView:
    """Change the fields sent (the others keep their value). A new role clears scope fields it does
    not take; a new password, a deactivation or a change of role or scope ends the user's open
    sessions; ``unlock`` clears a lock-out."""
    user = await get_or_404(session, AppUser, user_id, what="user")
    current_districts = (await _district_ids(session, [user.id]))[user.id]
    before = _snapshot(user, current_districts)
    role = given_or(changes.role, Role(user.role))
    role_changed = role.value != user.role
    sent = given(changes)
    refs_in = {f: sent[f] if f in sent else (None if role_changed else getattr(user, f)) for f in REF_FIELDS}
    if role == Role.CAREGIVER and "caregiver_id" in sent and "provider_id" not in sent:
        refs_in["provider_id"] = None  # re-derived from the new caregiver
    district_in = given_or(
        changes.district_ids, [] if role_changed and role not in DISTRICT_ROLES else current_districts
    )
    refs, districts = await _scope(session, role, refs_in, district_in)
    scope_changed = (
        role_changed or districts != current_districts or any(refs[f] != getattr(user, f) for f in REF_FIELDS)
    )
    if user.id == actor.user_id and (role_changed or changes.is_active is False):
        raise Conflict("You cannot demote or deactivate yourself.", code="user.self")
    if not isinstance(changes.phone, Unset):
        phone = normalise_phone(changes.phone) if changes.phone else None
        if phone is not None:
            await _unique(session, "phone", phone, except_id=user.id)
        user.phone = phone
    user.display_name = given_or(changes.display_name, user.display_name)
    user.locale = given_or(changes.locale, user.locale)
    user.is_active = given_or(changes.is_active, user.is_active)
    user.role = role.value
    for field, value in refs.items():
        setattr(user, field, value)
    if districts != current_districts:
        await session.execute(delete(UserDistrict).where(UserDistrict.user_id == user.id))
        for district_id in districts:
            session.add(UserDistrict(user_id=user.id, district_id=district_id))
    if changes.unlock is True:
        clear_failures(user)
    password = given_or(changes.password, "")
    if password:
        # An admin-set password is known to the admin: the user must choose their own (as after a reset).
        await set_password(session=session, user=user, password=password, now=now, change_required=True)
    await session.flush()
    if changes.is_active is False or scope_changed:
        await revoke_user_sessions(session=session, user_id=user.id, now=now)
    after = _snapshot(user, districts)
    if password:
        after["password_changed"] = True
    if after != before:
        audit.record(
            session,
            actor=actor,
            action="update",
            entity="app_user",
            entity_id=user.id,
            before=before,
            after=after,
        )
    return UserView(user, districts)


async def reset_password(
    *, session: AsyncSession, actor: Principal, user_id: int, password: str | None, now: dt.datetime
) -> str | None:
    """An admin sets a user's password: the one given, or a generated temporary one (returned, shown
    once, never stored in clear). Every session of the user ends, any lock-out is cleared, and the
    user must choose their own password at the next sign-in. Admins change their own via
    ``/auth/password`` (which needs the current one)."""
    user = await get_or_404(session, AppUser, user_id, what="user")
    if user.id == actor.user_id:
        raise Conflict("Change your own password with your current one.", code="user.self")
    temporary = None
    if password is None:
        temporary = password = secrets.token_urlsafe(12)  # 16 characters, 96 random bits
    await set_password(session=session, user=user, password=password, now=now, change_required=True)
    audit.record(
        session,
        actor=actor,
        action="password_reset",
        entity="app_user",
        entity_id=user.id,
        after={
            "generated": temporary is not None,
            "password_change_required": True,
            "sessions_revoked": True,
        },
    )
    return temporary


async def unlock_user(*, session: AsyncSession, actor: Principal, user_id: int) -> UserView:
    """An admin ends a lock-out and clears the user's count of failed sign-ins (audited)."""
    user = await get_or_404(session, AppUser, user_id, what="user")
    before = {"failed_logins": user.failed_logins, "locked_until": user.locked_until}
    clear_failures(user)
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="unlock",
        entity="app_user",
        entity_id=user.id,
        before=before,
        after={"failed_logins": 0, "locked_until": None},
    )
    return await get_user(session=session, user_id=user.id)


async def delete_user(*, session: AsyncSession, actor: Principal, user_id: int) -> None:
    """Erase a login (its sessions go with it). The audit trail must keep naming who did what,
    by id in the audit trail, so only accounts that never acted can be erased; deactivate the rest."""
    user = await get_or_404(session, AppUser, user_id, what="user")
    if user.id == actor.user_id:
        raise Conflict("You cannot delete yourself.", code="user.self")
    acted = await session.scalar(select(AuditLog.id).where(AuditLog.actor_user_id == user.id).limit(1))
    if acted is not None:
        raise Conflict(
            "This user has acted on records; deactivate the account to keep the audit trail intact.",
            code="user.has_history",
        )
    await delete_and_audit(session, user, actor=actor, entity="app_user")
