"""Sign-in over the API: success, wrong password, logout; throttling (policy ``auth.login_failures``,
seeded: an account locks from its 5th failure in a row for 30 s, doubling per further failure up to
15 min; an address may fail 100 times in 10 min; successes never count); password change.

Each test runs inside the rolled-back test transaction; clients share a movable clock and may come
from different source addresses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.audit import AuditLog
from core.identity.models import AppUser, LoginAttempt, Role
from core.identity.passwords import hash_password
from core.policy import PolicyValue
from core.settings import Settings
from tests.conftest import DEMO_PASSWORD, TEST_NOW
from tests.support.dispatch import Clock
from tests.support.registry import make_client, problem_code

pytestmark = pytest.mark.integration
LOGIN = "/api/v1/auth/login"
PASSWORD = "/api/v1/auth/password"
ME = "/api/v1/auth/me"
Connect = Callable[[str], httpx.AsyncClient]


@pytest.fixture
def clock() -> Clock:
    return Clock(TEST_NOW)


@pytest.fixture
async def client(
    test_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(test_settings, sessionmaker, clock=clock) as c:
        yield c


@pytest.fixture
def from_address(
    test_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock
) -> Connect:
    """``async with from_address("10.0.0.1") as c``: a client whose requests come from that address."""
    return lambda ip: make_client(test_settings, sessionmaker, client_addr=(ip, 40000), clock=clock)


async def _sign_in(client: httpx.AsyncClient, login: str, password: str = DEMO_PASSWORD) -> httpx.Response:
    return await client.post(LOGIN, json={"login": login, "password": password})


async def _bearer(client: httpx.AsyncClient, login: str, password: str = DEMO_PASSWORD) -> dict[str, str]:
    r = await _sign_in(client, login, password)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def _failures(db: AsyncSession, username: str) -> tuple[int, dt.datetime | None]:
    row = (
        await db.execute(
            select(AppUser.failed_logins, AppUser.locked_until)
            .where(AppUser.username == username)
            .execution_options(populate_existing=True)
        )
    ).one()
    return int(row[0]), row[1]


async def test_login_by_username_or_phone_and_logout(client: httpx.AsyncClient, db: AsyncSession) -> None:
    r = await client.post(LOGIN, json={"login": "demo_elder", "password": DEMO_PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert (body["token_type"], body["role"], body["username"]) == ("Bearer", "elder", "demo_elder")
    assert body["password_change_required"] is False
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await client.get(ME, headers=headers)).json()["username"] == "demo_elder"

    phone = await db.scalar(select(AppUser.phone).where(AppUser.username == "demo_elder"))
    assert phone is not None
    by_phone = await client.post(LOGIN, json={"login": phone, "password": DEMO_PASSWORD})
    assert by_phone.json()["username"] == "demo_elder"

    out = await client.post("/api/v1/auth/logout", headers=headers)
    assert out.status_code == 204
    after = await client.get(ME, headers=headers)
    assert (after.status_code, problem_code(after)) == (401, "auth.required")
    # The other session is unaffected.
    other = {"Authorization": f"Bearer {by_phone.json()['access_token']}"}
    assert (await client.get(ME, headers=other)).status_code == 200


async def test_wrong_password_and_unknown_user_look_the_same(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    wrong = await client.post(LOGIN, json={"login": "demo_operator", "password": "not-the-password"})
    unknown = await client.post(LOGIN, json={"login": "nobody_here", "password": "not-the-password"})
    assert (wrong.status_code, problem_code(wrong)) == (401, "auth.invalid_credentials")
    assert (unknown.status_code, problem_code(unknown)) == (401, "auth.invalid_credentials")
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert (await _failures(db, "demo_operator")) == (1, None)
    for body in ({"login": "demo_operator"}, {"login": 5, "password": "x"}, {"login": "", "password": "x"}):
        r = await client.post(LOGIN, json=body)
        assert (r.status_code, problem_code(r)) == (422, "validation.invalid"), body


# --- Per address: only failures count --------------------------------------------------------------


async def test_fifty_operators_behind_one_address_all_sign_in(
    from_address: Connect, db: AsyncSession
) -> None:
    """A call centre behind one NAT address starts its shift: every sign-in succeeds."""
    shared_hash = hash_password(DEMO_PASSWORD)  # one Argon2 run for fifty accounts
    db.add_all(
        AppUser(
            username=f"shift_op_{i:02d}",
            display_name=f"接线员{i:02d}",
            password_hash=shared_hash,
            role=Role.OPERATOR.value,
            failed_logins=0,
            created_at=TEST_NOW,
        )
        for i in range(50)
    )
    await db.commit()
    async with from_address("10.20.30.40") as centre:
        statuses = [(await _sign_in(centre, f"shift_op_{i:02d}")).status_code for i in range(50)]
    assert statuses == [200] * 50


async def test_failures_from_one_address_are_throttled(
    from_address: Connect, db: AsyncSession, clock: Clock
) -> None:
    ip = "10.9.8.7"
    # Successes never count; 99 failures five minutes ago and one now fill the budget of 100 in 10 min.
    db.add_all(LoginAttempt(at=TEST_NOW, ip=ip, login="demo_admin", succeeded=True) for _ in range(300))
    db.add_all(
        LoginAttempt(at=TEST_NOW - dt.timedelta(minutes=5), ip=ip, login=f"guess{i}", succeeded=False)
        for i in range(99)
    )
    await db.commit()
    async with from_address(ip) as busy, from_address("10.9.8.8") as quiet:
        last = await _sign_in(busy, "nobody_here", "a-wrong-guess")
        assert (last.status_code, problem_code(last)) == (401, "auth.invalid_credentials")
        r = await _sign_in(busy, "demo_admin")  # even the right password: the address is refused
        assert (r.status_code, problem_code(r)) == (429, "auth.rate_limited")
        # Room again when the 100th-latest failure (five minutes old) leaves the ten-minute window.
        assert (r.headers["retry-after"], r.json()["retry_after_s"]) == ("300", 300)
        assert (await _sign_in(quiet, "demo_admin")).status_code == 200
        clock.advance(seconds=299)
        assert (await _sign_in(busy, "demo_admin")).status_code == 429
        clock.advance(seconds=1)
        assert (await _sign_in(busy, "demo_admin")).status_code == 200


# --- Per account: progressive lock-out ----------------------------------------------------------------


async def test_failures_lock_the_account_progressively(
    client: httpx.AsyncClient, db: AsyncSession, clock: Clock
) -> None:
    for n in range(1, 5):
        r = await _sign_in(client, "demo_supervisor", "guessing-wrong")
        assert (r.status_code, problem_code(r)) == (401, "auth.invalid_credentials")
        assert (await _failures(db, "demo_supervisor")) == (n, None)
    # The 5th failure in a row locks for 30 s; while locked even the right password is refused,
    # and refusals neither count nor extend the lock.
    r = await _sign_in(client, "demo_supervisor", "guessing-wrong")
    assert (r.status_code, problem_code(r)) == (423, "auth.locked")
    assert (r.headers["retry-after"], r.json()["retry_after_s"]) == ("30", 30)
    until = TEST_NOW + dt.timedelta(seconds=30)
    assert r.json()["locked_until"] == until.isoformat()
    clock.advance(seconds=29)
    for password in (DEMO_PASSWORD, "guessing-wrong"):
        r = await _sign_in(client, "demo_supervisor", password)
        assert (r.status_code, problem_code(r), r.json()["retry_after_s"]) == (423, "auth.locked", 1)
    assert (await _failures(db, "demo_supervisor")) == (5, until)
    # Each further failure doubles the lock: 60 s, 120 s, ...
    clock.advance(seconds=1)
    r = await _sign_in(client, "demo_supervisor", "guessing-wrong")
    assert (r.status_code, r.json()["retry_after_s"]) == (423, 60)
    clock.advance(seconds=60)
    r = await _sign_in(client, "demo_supervisor", "guessing-wrong")
    assert (r.status_code, r.json()["retry_after_s"]) == (423, 120)
    locks = await db.scalar(
        select(AuditLog.after)
        .where(AuditLog.action == "locked", AuditLog.entity == "app_user")
        .order_by(AuditLog.id.desc())
        .limit(1)
    )
    assert locks is not None
    assert locks["failures"] == 7
    # Other accounts are unaffected; after the lock the right password works and clears the count.
    assert (await _sign_in(client, "demo_operator")).status_code == 200
    clock.advance(seconds=120)
    assert (await _sign_in(client, "demo_supervisor")).status_code == 200
    assert (await _failures(db, "demo_supervisor")) == (0, None)


async def test_the_longest_lock_is_the_policy_maximum_and_idle_counts_are_forgotten(
    client: httpx.AsyncClient, db: AsyncSession, clock: Clock
) -> None:
    # Policy data: the longest lock is 100 s; a count idle for an hour starts again.
    await db.execute(
        update(PolicyValue)
        .where(PolicyValue.key == "auth.login_failures", PolicyValue.scope == "account")
        .values(
            value={
                "max_failures": 2,
                "lock_seconds": 30,
                "max_lock_seconds": 100,
                "forget_after_seconds": 3600,
            }
        )
    )
    await db.commit()
    waits = []
    for _ in range(5):
        r = await _sign_in(client, "demo_caregiver", "guessing-wrong")
        waits.append(r.json().get("retry_after_s"))
        clock.advance(seconds=r.json().get("retry_after_s") or 0)
    assert waits == [None, 30, 60, 100, 100]
    clock.advance(hours=1)
    r = await _sign_in(client, "demo_caregiver", "guessing-wrong")
    assert (r.status_code, problem_code(r)) == (401, "auth.invalid_credentials")
    assert (await _failures(db, "demo_caregiver")) == (1, None)


# --- Password change -----------------------------------------------------------------------------------


async def test_changing_ones_password_needs_the_current_one_and_ends_other_sessions(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    mine = await _bearer(client, "demo_family")
    other = await _bearer(client, "demo_family")
    new = "a-brand-new-passphrase"

    wrong = await client.post(
        PASSWORD, json={"current_password": "not-it", "new_password": new}, headers=mine
    )
    assert (wrong.status_code, problem_code(wrong)) == (422, "auth.wrong_password")
    # A wrong current password is a failed sign-in: a stolen session cannot guess it freely.
    assert (await _failures(db, "demo_family")) == (1, None)
    for body, code in (
        ({"current_password": DEMO_PASSWORD, "new_password": "short"}, "validation.invalid"),
        ({"current_password": DEMO_PASSWORD, "new_password": DEMO_PASSWORD}, "auth.password_unchanged"),
        ({"new_password": new}, "validation.invalid"),
    ):
        r = await client.post(PASSWORD, json=body, headers=mine)
        assert (r.status_code, problem_code(r)) == (422, code), body
    anonymous = await client.post(PASSWORD, json={"current_password": DEMO_PASSWORD, "new_password": new})
    assert anonymous.status_code == 401

    changed = await client.post(
        PASSWORD, json={"current_password": DEMO_PASSWORD, "new_password": new}, headers=mine
    )
    assert changed.status_code == 204, changed.text
    # This session goes on; the other one ends at once.
    assert (await client.get(ME, headers=mine)).status_code == 200
    ended = await client.get(ME, headers=other)
    assert (ended.status_code, problem_code(ended)) == (401, "auth.required")
    assert (await _sign_in(client, "demo_family")).status_code == 401
    assert (await _sign_in(client, "demo_family", new)).status_code == 200
    user_id = await db.scalar(select(AppUser.id).where(AppUser.username == "demo_family"))
    audit = await db.scalar(
        select(AuditLog).where(AuditLog.action == "password_change", AuditLog.entity_id == str(user_id))
    )
    assert audit is not None
    assert (audit.actor_user_id, audit.actor_role) == (user_id, "family")
    assert (await _failures(db, "demo_family")) == (0, None)


async def test_wrong_current_passwords_lock_the_account(client: httpx.AsyncClient, db: AsyncSession) -> None:
    mine = await _bearer(client, "demo_provider_admin")
    body = {"current_password": "guessing-wrong", "new_password": "a-brand-new-passphrase"}
    codes = [problem_code(await client.post(PASSWORD, json=body, headers=mine)) for _ in range(6)]
    assert codes == ["auth.wrong_password"] * 4 + ["auth.locked"] * 2
    right = {**body, "current_password": DEMO_PASSWORD}
    locked = await client.post(PASSWORD, json=right, headers=mine)
    assert (locked.status_code, problem_code(locked)) == (423, "auth.locked")
    # Five counted (the 6th and the right one were refused unchecked), each in the audit trail.
    user_id = await db.scalar(select(AppUser.id).where(AppUser.username == "demo_provider_admin"))
    audited = await db.scalar(
        select(func.count())
        .select_from(AuditLog)
        .where(
            AuditLog.action == "password_change_failed",
            AuditLog.entity_id == str(user_id),
            AuditLog.actor_user_id == user_id,  # the signed-in user who tried
        )
    )
    assert audited == 5
    assert (await _failures(db, "demo_provider_admin"))[0] == 5
