"""Users: admins manage roles and scopes; changes that matter end the user's sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import AppUser, AuditLog, Caregiver, Provider
from core.settings import Settings
from tests.integration.registry_support import district_id, headers_for, make_client, problem_code

pytestmark = pytest.mark.integration
PASSWORD = "a-long-test-passphrase"


@pytest.fixture
async def client(
    test_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(test_settings, sessionmaker) as c:
        yield c


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    r = await client.post("/api/v1/auth/login", json={"login": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_admin_creates_a_scoped_user_who_can_sign_in(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await headers_for(db, "demo_admin")
    hanchuan = await district_id(db, "420984")
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


async def test_roles_carry_exactly_their_scope(client: httpx.AsyncClient, db: AsyncSession) -> None:
    admin = await headers_for(db, "demo_admin")
    provider_id = await db.scalar(select(Provider.id).limit(1))
    caregiver = await db.scalar(select(Caregiver).order_by(Caregiver.id.desc()).limit(1))
    assert caregiver is not None
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


async def test_user_admin_guards(client: httpx.AsyncClient, db: AsyncSession) -> None:
    admin = await headers_for(db, "demo_admin")
    me = await db.scalar(select(AppUser.id).where(AppUser.username == "demo_admin"))
    demoted = await client.patch(f"/api/v1/users/{me}", json={"role": "operator"}, headers=admin)
    assert (demoted.status_code, problem_code(demoted)) == (409, "user.self")
    assert (await client.delete(f"/api/v1/users/{me}", headers=admin)).status_code == 409
    # Users with history stay (the audit trail must keep naming them); deactivate them instead.
    civil_id = await db.scalar(select(AppUser.id).where(AppUser.username == "demo_civil_affairs"))
    civil = await headers_for(db, "demo_civil_affairs")
    elder_id = (await client.get("/api/v1/elders", params={"limit": 1}, headers=civil)).json()["items"][0][
        "id"
    ]
    await client.get(f"/api/v1/elders/{elder_id}", headers=civil)  # an audited read
    kept = await client.delete(f"/api/v1/users/{civil_id}", headers=admin)
    assert (kept.status_code, problem_code(kept)) == (409, "user.has_history")
    # Only admins manage users.
    assert (await client.get("/api/v1/users", headers=civil)).status_code == 403

    locked = await db.scalar(select(AppUser).where(AppUser.username == "demo_operator"))
    assert locked is not None
    r = await client.patch(f"/api/v1/users/{locked.id}", json={"unlock": True}, headers=admin)
    assert (r.json()["failed_logins"], r.json()["locked_until"]) == (0, None)
    listed = (await client.get("/api/v1/users", params={"role": "civil_affairs"}, headers=admin)).json()
    assert {u["role"] for u in listed["items"]} == {"civil_affairs"}
