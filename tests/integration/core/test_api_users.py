"""Users: admins manage roles and scopes; changes that matter end the user's sessions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import AuditLog
from core.identity.models import AppUser, Role
from tests.conftest import TEST_NOW
from tests.factories import HANCHUAN, XIAONAN, Factory
from tests.support.registry import problem_code

pytestmark = pytest.mark.integration
PASSWORD = "a-long-test-passphrase"


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    r = await client.post("/api/v1/auth/login", json={"login": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_admin_creates_a_scoped_user_who_can_sign_in(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    admin = (await make.admin()).headers
    hanchuan = (await make.district(HANCHUAN)).id
    await make.elder(HANCHUAN)
    body: dict[str, Any] = {
        "username": "ca_hanchuan",
        "display_name": "汉川民政",
        "password": PASSWORD,
        "role": "civil_affairs",
        "district_ids": [hanchuan],
        "phone": "13800990099",
    }
    created = await client.post("/api/v1/users", json=body, headers=admin)
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["district_ids"] == [hanchuan]
    assert "password" not in user
    assert "password_hash" not in user
    stored = await db.scalar(select(AppUser.password_hash).where(AppUser.id == user["id"]))
    assert stored is not None
    assert stored.startswith("$argon2id$")
    audit = await db.scalar(
        select(AuditLog).where(AuditLog.entity == "app_user", AuditLog.entity_id == str(user["id"]))
    )
    assert audit is not None
    assert audit.after is not None
    assert audit.after["password_hash"] == "<redacted>"

    officer = await login(client, "ca_hanchuan")
    me = (await client.get("/api/v1/auth/me", headers=officer)).json()
    assert (me["role"], me["district_ids"]) == ("civil_affairs", [hanchuan])
    elders = (await client.get("/api/v1/elders", params={"limit": 50}, headers=officer)).json()
    assert {e["district_id"] for e in elders["items"]} == {hanchuan}

    duplicate = await client.post("/api/v1/users", json=body, headers=admin)
    assert (duplicate.status_code, problem_code(duplicate)) == (409, "conflict.duplicate")

    # A new password ends the open sessions.
    changed = await client.patch(
        f"/api/v1/users/{user['id']}", json={"password": "another-passphrase"}, headers=admin
    )
    assert changed.status_code == 200
    assert (await client.get("/api/v1/auth/me", headers=officer)).status_code == 401
    officer = await login(client, "ca_hanchuan", "another-passphrase")
    # So does deactivation, and the login stops working.
    await client.patch(f"/api/v1/users/{user['id']}", json={"is_active": False}, headers=admin)
    assert (await client.get("/api/v1/auth/me", headers=officer)).status_code == 401
    refused = await client.post(
        "/api/v1/auth/login", json={"login": "ca_hanchuan", "password": "another-passphrase"}
    )
    assert refused.status_code == 401
    # A user who never acted can be erased.
    assert (await client.delete(f"/api/v1/users/{user['id']}", headers=admin)).status_code == 204


async def test_roles_carry_exactly_their_scope(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    admin = (await make.admin()).headers
    provider_id = (await make.provider()).id
    caregiver = await make.caregiver(await make.provider())
    base = {"display_name": "测试", "password": PASSWORD}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"username": "user1", "role": "provider_admin"}, 422, "user.scope_missing"),
        ({"username": "user2", "role": "civil_affairs"}, 422, "user.scope_missing"),
        ({"username": "user3", "role": "admin", "provider_id": provider_id}, 422, "user.scope_mismatch"),
        ({"username": "user4", "role": "admin", "district_ids": [1]}, 422, "user.scope_mismatch"),
        ({"username": "user5", "role": "family", "guardian_id": 999_999_999}, 422, "reference.unknown"),
        ({"username": "user6", "role": "civil_affairs", "district_ids": [99_999]}, 422, "reference.unknown"),
        ({"username": "user7", "role": "admin", "password": "short"}, 422, "validation.invalid"),
        ({"username": "Bad Name", "role": "admin"}, 422, "validation.invalid"),
        ({"username": "user8", "role": "superuser"}, 422, "validation.invalid"),
    ]
    for overrides, status, code in cases:
        r = await client.post("/api/v1/users", json={**base, **overrides}, headers=admin)
        assert (r.status_code, problem_code(r)) == (status, code), (overrides, r.text)

    # A caregiver's provider follows from the caregiver record.
    r = await client.post(
        "/api/v1/users",
        json={**base, "username": "cg_user", "role": "caregiver", "caregiver_id": caregiver.id},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    assert (r.json()["caregiver_id"], r.json()["provider_id"]) == (caregiver.id, caregiver.provider_id)
    # Changing the role clears the scope the new role does not take.
    promoted = await client.patch(
        f"/api/v1/users/{r.json()['id']}",
        json={"role": "provider_admin", "provider_id": provider_id},
        headers=admin,
    )
    assert promoted.status_code == 200, promoted.text
    assert (promoted.json()["caregiver_id"], promoted.json()["provider_id"]) == (None, provider_id)


async def test_user_admin_guards(client: httpx.AsyncClient, db: AsyncSession, make: Factory) -> None:
    admin_account = await make.admin()
    admin, me = admin_account.headers, admin_account.user_id
    demoted = await client.patch(f"/api/v1/users/{me}", json={"role": "operator"}, headers=admin)
    assert (demoted.status_code, problem_code(demoted)) == (409, "user.self")
    assert (await client.delete(f"/api/v1/users/{me}", headers=admin)).status_code == 409
    # Users with history stay (the audit trail must keep naming them); deactivate them instead.
    officer = await make.civil_affairs(XIAONAN)
    civil_id, civil = officer.user_id, officer.headers
    elder_id = (await make.elder(XIAONAN)).id
    await client.get(f"/api/v1/elders/{elder_id}", headers=civil)  # an audited read
    kept = await client.delete(f"/api/v1/users/{civil_id}", headers=admin)
    assert (kept.status_code, problem_code(kept)) == (409, "user.has_history")
    # Only admins manage users.
    assert (await client.get("/api/v1/users", headers=civil)).status_code == 403

    locked = (await make.account(Role.OPERATOR)).user
    locked.failed_logins, locked.locked_until = 5, TEST_NOW + dt.timedelta(minutes=5)
    await db.flush()
    r = await client.patch(f"/api/v1/users/{locked.id}", json={"unlock": True}, headers=admin)
    assert (r.json()["failed_logins"], r.json()["locked_until"]) == (0, None)
    listed = (await client.get("/api/v1/users", params={"role": "civil_affairs"}, headers=admin)).json()
    assert {u["role"] for u in listed["items"]} == {"civil_affairs"}


async def _user(db: AsyncSession, username: str) -> AppUser:
    user = await db.scalar(
        select(AppUser).where(AppUser.username == username).execution_options(populate_existing=True)
    )
    assert user is not None, username
    return user


async def test_an_admin_unlocks_a_locked_account_audited(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    admin = (await make.admin()).headers
    name = (await make.account(Role.OPERATOR, password=PASSWORD)).user.username
    for _ in range(5):
        await client.post("/api/v1/auth/login", json={"login": name, "password": "wrong-guess"})
    operator = await _user(db, name)
    assert operator.locked_until is not None
    refused = await client.post("/api/v1/auth/login", json={"login": name, "password": PASSWORD})
    assert (refused.status_code, problem_code(refused)) == (423, "auth.locked")

    r = await client.post(f"/api/v1/users/{operator.id}/unlock", headers=admin)
    assert r.status_code == 200, r.text
    assert (r.json()["failed_logins"], r.json()["locked_until"]) == (0, None)
    audit = await db.scalar(
        select(AuditLog).where(AuditLog.action == "unlock", AuditLog.entity_id == str(operator.id))
    )
    assert audit is not None
    assert audit.before is not None
    assert (audit.actor_role, audit.before["failed_logins"], audit.after) == (
        "admin",
        5,
        {"failed_logins": 0, "locked_until": None},
    )
    signed_in = await client.post("/api/v1/auth/login", json={"login": name, "password": PASSWORD})
    assert signed_in.status_code == 200


async def test_only_admins_unlock_or_reset(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    target = (await make.account(Role.CAREGIVER)).user
    target_hash = target.password_hash
    for role in (Role.OPERATOR, Role.SUPERVISOR, Role.CIVIL_AFFAIRS, Role.PROVIDER_ADMIN, Role.CAREGIVER,
                 Role.FAMILY):  # fmt: skip
        h = (await make.account(role)).headers
        unlock = await client.post(f"/api/v1/users/{target.id}/unlock", headers=h)
        reset = await client.post(f"/api/v1/users/{target.id}/password", json={}, headers=h)
        assert (unlock.status_code, reset.status_code) == (403, 403), role
    assert (await client.post(f"/api/v1/users/{target.id}/unlock")).status_code == 401
    me = await make.admin()
    admin = me.headers
    missing = await client.post("/api/v1/users/999999999/password", json={}, headers=admin)
    assert (missing.status_code, problem_code(missing)) == (404, "user.not_found")
    own = await client.post(f"/api/v1/users/{me.user_id}/password", json={}, headers=admin)
    assert (own.status_code, problem_code(own)) == (409, "user.self")
    # Nothing changed for the target.
    assert (await _user(db, target.username)).password_hash == target_hash


async def test_an_admin_reset_ends_every_session_and_requires_a_new_password(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    admin = (await make.admin()).headers
    officer = await make.account(Role.CIVIL_AFFAIRS, password=PASSWORD)
    user, name = officer.user, officer.user.username
    user.locked_until = TEST_NOW + dt.timedelta(minutes=5)
    await db.commit()
    sessions = [officer.headers, await make.headers(user)]

    r = await client.post(f"/api/v1/users/{user.id}/password", json={}, headers=admin)
    assert r.status_code == 200, r.text
    temporary = r.json()["temporary_password"]
    assert len(temporary) >= 10
    assert r.json()["password_change_required"] is True
    for h in sessions:
        gone = await client.get("/api/v1/auth/me", headers=h)
        assert (gone.status_code, problem_code(gone)) == (401, "auth.required")
    audit = await db.scalar(
        select(AuditLog).where(AuditLog.action == "password_reset", AuditLog.entity_id == str(user.id))
    )
    assert audit is not None
    assert audit.actor_role == "admin"
    assert temporary not in str(audit.after)

    # The old password is gone, the lock is cleared; the temporary one signs in to change it.
    old = await client.post("/api/v1/auth/login", json={"login": name, "password": PASSWORD})
    assert old.status_code == 401
    signed = await client.post("/api/v1/auth/login", json={"login": name, "password": temporary})
    assert signed.status_code == 200, signed.text
    assert signed.json()["password_change_required"] is True
    h = {"Authorization": f"Bearer {signed.json()['access_token']}"}
    blocked = await client.get("/api/v1/elders", headers=h)
    assert (blocked.status_code, problem_code(blocked)) == (403, "auth.password_change_required")
    assert (await client.get("/api/v1/auth/me", headers=h)).json()["password_change_required"] is True
    changed = await client.post(
        "/api/v1/auth/password",
        json={"current_password": temporary, "new_password": "my-own-passphrase"},
        headers=h,
    )
    assert changed.status_code == 204, changed.text
    assert (await client.get("/api/v1/elders", headers=h)).status_code == 200

    # An admin may also choose the password; the user must still replace it.
    r = await client.post(
        f"/api/v1/users/{user.id}/password", json={"new_password": "chosen-by-the-admin"}, headers=admin
    )
    assert (r.status_code, r.json()["temporary_password"]) == (200, None)
    assert (await client.get("/api/v1/auth/me", headers=h)).status_code == 401
    again = await client.post("/api/v1/auth/login", json={"login": name, "password": "chosen-by-the-admin"})
    assert again.json()["password_change_required"] is True
