"""Sign-in over the API: success, wrong password, lock-out, logout, per-address rate limiting."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import AppUser, LoginAttempt
from core.settings import Settings
from tests.conftest import DEMO_PASSWORD, TEST_NOW
from tests.integration.registry_support import make_client, problem_code

pytestmark = pytest.mark.integration
LOGIN = "/api/v1/auth/login"


@pytest.fixture
async def client(
    test_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(test_settings, sessionmaker) as c:
        yield c


async def test_login_by_username_or_phone_and_logout(client: httpx.AsyncClient, db: AsyncSession) -> None:
    r = await client.post(LOGIN, json={"login": "demo_elder", "password": DEMO_PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert (body["token_type"], body["role"], body["username"]) == ("Bearer", "elder", "demo_elder")
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await client.get("/api/v1/auth/me", headers=headers)).json()["username"] == "demo_elder"

    phone = await db.scalar(select(AppUser.phone).where(AppUser.username == "demo_elder"))
    assert phone is not None
    by_phone = await client.post(LOGIN, json={"login": phone, "password": DEMO_PASSWORD})
    assert by_phone.json()["username"] == "demo_elder"

    out = await client.post("/api/v1/auth/logout", headers=headers)
    assert out.status_code == 204
    after = await client.get("/api/v1/auth/me", headers=headers)
    assert (after.status_code, problem_code(after)) == (401, "auth.required")
    # The other session is unaffected.
    other = {"Authorization": f"Bearer {by_phone.json()['access_token']}"}
    assert (await client.get("/api/v1/auth/me", headers=other)).status_code == 200


async def test_wrong_password_and_unknown_user_look_the_same(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    wrong = await client.post(LOGIN, json={"login": "demo_operator", "password": "not-the-password"})
    unknown = await client.post(LOGIN, json={"login": "nobody_here", "password": "not-the-password"})
    assert (wrong.status_code, problem_code(wrong)) == (401, "auth.invalid_credentials")
    assert (unknown.status_code, problem_code(unknown)) == (401, "auth.invalid_credentials")
    assert wrong.json()["detail"] == unknown.json()["detail"]
    failures = await db.scalar(
        select(AppUser.failed_logins)
        .where(AppUser.username == "demo_operator")
        .execution_options(populate_existing=True)
    )
    assert failures == 1
    for body in ({"login": "demo_operator"}, {"login": 5, "password": "x"}, {"login": "", "password": "x"}):
        r = await client.post(LOGIN, json=body)
        assert (r.status_code, problem_code(r)) == (422, "validation.invalid"), body


async def test_repeated_failures_lock_the_account(
    client: httpx.AsyncClient, db: AsyncSession, test_settings: Settings
) -> None:
    for _ in range(test_settings.login_max_failures):
        r = await client.post(LOGIN, json={"login": "demo_supervisor", "password": "guessing-wrong"})
        assert r.status_code == 401
    locked = await client.post(LOGIN, json={"login": "demo_supervisor", "password": DEMO_PASSWORD})
    assert (locked.status_code, problem_code(locked)) == (423, "auth.locked")
    assert locked.json()["locked_until"].startswith(str(TEST_NOW.date()))
    # Other accounts are unaffected.
    assert (
        await client.post(LOGIN, json={"login": "demo_operator", "password": DEMO_PASSWORD})
    ).status_code == 200


async def test_logins_are_rate_limited_per_address(
    test_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession
) -> None:
    # The budget of this minute is already spent by earlier attempts from 10.9.8.7.
    db.add_all(
        LoginAttempt(at=TEST_NOW, ip="10.9.8.7", login="demo_admin", succeeded=False)
        for _ in range(test_settings.login_rate_per_minute)
    )
    await db.commit()
    async with make_client(test_settings, sessionmaker, client_addr=("10.9.8.7", 40000)) as busy:
        r = await busy.post(LOGIN, json={"login": "demo_admin", "password": DEMO_PASSWORD})
        assert (r.status_code, problem_code(r)) == (429, "auth.rate_limited")
    async with make_client(test_settings, sessionmaker, client_addr=("10.9.8.8", 40000)) as quiet:
        r = await quiet.post(LOGIN, json={"login": "demo_admin", "password": DEMO_PASSWORD})
        assert r.status_code == 200
