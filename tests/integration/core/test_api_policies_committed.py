"""The policy API with committed transactions, as in production: every change is announced on the
``policy_changed`` channel (payload: the key) once it commits, and two admins adding the same row at
once get one 201 and one 409.

These tests commit (a NOTIFY is delivered only on commit), so they write rows of their own far-future
day and remove them, their audit rows and the test's sign-in session afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.audit import AuditLog
from core.identity.models import AppUser, AuthSession
from core.identity.sessions import token_hash
from core.policy import POLICY_CHANGED, PolicyValue
from core.settings import Settings
from tests.conftest import TEST_DB_URL
from tests.factories import open_session
from tests.support.registry import make_client, problem_code

pytestmark = pytest.mark.integration

DSN = TEST_DB_URL.replace("postgresql+asyncpg://", "postgresql://")
KEY = "alarm.low_battery"
# Far from any day another test uses, so that what these tests commit never meets them.
FAR = dt.date(2199, 1, 1)
URL = "/api/v1/policies"


def body(valid_from: dt.date = FAR, pct: int = 12) -> dict[str, Any]:
    return {
        "key": KEY,
        "value": {"pct": pct},
        "valid_from": valid_from.isoformat(),
        "source": "committed test",
    }


@dataclass
class Committed:
    client: httpx.AsyncClient
    admin: dict[str, str]


async def _cleanup(factory: async_sessionmaker[AsyncSession]) -> None:
    """Remove this module's rows (from :data:`FAR` on) and their audit rows."""
    far = FAR.isoformat()
    async with factory() as s, s.begin():
        await s.execute(delete(PolicyValue).where(PolicyValue.key == KEY, PolicyValue.valid_from >= FAR))
        await s.execute(
            delete(AuditLog).where(
                AuditLog.entity == "policy_value",
                (AuditLog.after["valid_from"].astext >= far) | (AuditLog.before["valid_from"].astext >= far),
            )
        )


@pytest.fixture
async def committed(test_settings: Settings, engine: AsyncEngine, seeded: object) -> AsyncIterator[Committed]:
    """The real app on sessions that commit, and an admin's bearer headers (a committed session)."""
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as s:
        admin_id = await s.scalar(select(AppUser.id).where(AppUser.username == "demo_admin"))
        assert admin_id is not None
        headers = await open_session(s, admin_id)
        await s.commit()
    try:
        async with make_client(test_settings, factory) as client:
            yield Committed(client, headers)
    finally:
        await _cleanup(factory)
        token = headers["Authorization"].removeprefix("Bearer ")
        async with factory() as s, s.begin():
            await s.execute(delete(AuthSession).where(AuthSession.token_hash == token_hash(token)))


async def _heard(queue: asyncio.Queue[str], timeout: float = 5.0) -> str:  # noqa: ASYNC109
    return await asyncio.wait_for(queue.get(), timeout)


async def test_every_change_is_announced_once_committed(committed: Committed) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(DSN)
    await listener.add_listener(POLICY_CHANGED, lambda _c, _pid, _ch, payload: heard.put_nowait(payload))
    try:
        client, admin = committed.client, committed.admin
        created = await client.post(URL, json=body(), headers=admin)
        assert created.status_code == 201, created.text
        assert await _heard(heard) == KEY
        row_url = f"{URL}/rows/{created.json()['id']}"
        ended = await client.patch(row_url, json={"valid_to": "2199-06-30", "reason": "test"}, headers=admin)
        assert ended.status_code == 200, ended.text
        assert await _heard(heard) == KEY
        assert (await client.delete(row_url, headers=admin)).status_code == 204
        assert await _heard(heard) == KEY
        # A refused change announces nothing (its transaction is rolled back).
        assert (await client.post(URL, json=body(valid_from=FAR), headers=admin)).status_code == 201
        assert await _heard(heard) == KEY
        dup = await client.post(URL, json=body(valid_from=FAR, pct=13), headers=admin)
        assert (dup.status_code, problem_code(dup)) == (409, "policy.duplicate")
        bad = await client.post(URL, json={**body(), "value": {"pct": -1}}, headers=admin)
        assert bad.status_code == 422
        await asyncio.sleep(0.3)
        assert heard.empty()
    finally:
        await listener.close()


async def _waiting_inserts(pg: asyncpg.Connection) -> int:
    count: int = await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO policy_value%'"
    )
    return count


async def _until_waiting(pg: asyncpg.Connection, n: int, timeout_s: float = 10.0) -> int:
    """The number of inserts into policy_value waiting on a lock, once it reaches ``n`` (or at the
    timeout): another backend's state can only be polled."""
    deadline = time.monotonic() + timeout_s
    waiting = await _waiting_inserts(pg)
    while waiting < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        waiting = await _waiting_inserts(pg)
    return waiting


async def test_two_admins_adding_the_same_row_at_once_one_wins(committed: Committed) -> None:
    client, admin = committed.client, committed.admin
    # A third writer holds the same (key, scope, valid_from) uncommitted, so both requests are
    # in flight, each blocked on the unique index, before either can finish.
    blocker = await asyncpg.connect(DSN)
    watcher = await asyncpg.connect(DSN)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(
            "INSERT INTO policy_value (key, scope, value, valid_from, source)"
            " VALUES ($1, '*', '{\"pct\": 1}', $2, 'x')",
            KEY,
            FAR,
        )
        requests = [
            asyncio.create_task(client.post(URL, json=body(pct=pct), headers=admin)) for pct in (11, 12)
        ]
        assert await _until_waiting(watcher, 2) == 2
        await tx.rollback()
        answers = await asyncio.gather(*requests)
    finally:
        await blocker.close()
        await watcher.close()
    assert sorted(r.status_code for r in answers) == [201, 409], [r.text for r in answers]
    loser = next(r for r in answers if r.status_code == 409)
    assert problem_code(loser) == "policy.duplicate"
    winner = next(r for r in answers if r.status_code == 201).json()
    listed = await client.get(URL, params={"prefix": KEY, "on": FAR.isoformat()}, headers=admin)
    item = next(i for i in listed.json()["items"] if i["key"] == KEY)
    assert (item["row_id"], item["value"]) == (winner["id"], winner["value"])
