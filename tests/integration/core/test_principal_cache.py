"""The principal cache of an API process and the ``scope_epoch`` it is checked against.

A request with a cached principal makes one query before its handler's own (the token is live, and
the account's epoch); the triggers of migration 0017 move the epoch on for exactly what a principal
is built from. The same, across two API processes, is in ``tests/integration/api/test_api_processes.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, event, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from api.app import create_app
from core.identity.models import AppUser, Role, UserDistrict
from core.settings import Settings
from registry.models import ElderGuardian
from tests.conftest import TEST_NOW, asgi_transport
from tests.factories import Factory

pytestmark = pytest.mark.integration


class Statements:
    """The SQL statements run on the test's connection while counting."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            self.seen.append(statement)


@pytest.fixture
def statements(connection: AsyncConnection) -> Iterator[Statements]:
    counter = Statements()
    event.listen(connection.sync_connection, "before_cursor_execute", counter)
    yield counter
    event.remove(connection.sync_connection, "before_cursor_execute", counter)


async def _epoch(db: AsyncSession, user_id: int) -> int:
    value = await db.scalar(select(AppUser.scope_epoch).where(AppUser.id == user_id))
    assert value is not None
    return value


async def test_a_cached_principal_costs_one_query_and_a_changed_account_is_rebuilt(
    test_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    make: Factory,
    statements: Statements,
) -> None:
    family = await make.account(Role.FAMILY)
    app = create_app(test_settings, sessionmaker=sessionmaker, clock=lambda: TEST_NOW)
    async with httpx.AsyncClient(
        transport=asgi_transport(app, client=("127.0.0.1", 50000)), base_url="http://testserver"
    ) as client:
        first = await client.get("/api/v1/auth/me", headers=family.headers)
        assert first.status_code == 200
        built = len(statements.seen)
        assert len(app.state.principal_cache) == 1

        statements.seen.clear()
        again = await client.get("/api/v1/auth/me", headers=family.headers)
        assert again.json() == first.json()
        assert len(statements.seen) == 1  # the live-token check; the principal came from the cache
        assert "scope_epoch" in statements.seen[0]
        assert built > 1

        await db.execute(update(AppUser).where(AppUser.id == family.user_id).values(display_name="改了"))
        await db.flush()
        statements.seen.clear()
        changed = await client.get("/api/v1/auth/me", headers=family.headers)
        assert changed.json()["display_name"] == "改了"
        assert len(statements.seen) > 1  # rebuilt


async def test_a_caregivers_elders_are_loaded_for_every_request(
    client: httpx.AsyncClient, make: Factory, statements: Statements
) -> None:
    caregiver = await make.account(Role.CAREGIVER)
    built = []
    for _ in range(3):
        statements.seen.clear()
        assert (await client.get("/api/v1/auth/me", headers=caregiver.headers)).status_code == 200
        assert any("FROM visit" in s for s in statements.seen)  # their visits, as of the request
        built.append(len(statements.seen))
    # The account's own part (the user row, the districts) comes from the cache after the first.
    assert built[1] == built[2] == 2
    assert built[0] > 2


async def test_scope_epoch_moves_on_for_what_a_principal_is_built_from_and_nothing_else(
    db: AsyncSession, make: Factory
) -> None:
    family = await make.account(Role.FAMILY)
    user = family.user
    assert user.guardian_id is not None
    start = await _epoch(db, user.id)

    # Sign-in throttling and the password hash: not part of a principal.
    await db.execute(
        update(AppUser)
        .where(AppUser.id == user.id)
        .values(failed_logins=3, failed_login_at=TEST_NOW, password_hash="x")
    )
    assert await _epoch(db, user.id) == start

    await db.execute(update(AppUser).where(AppUser.id == user.id).values(display_name="新"))
    assert await _epoch(db, user.id) == start + 1
    await db.execute(update(AppUser).where(AppUser.id == user.id).values(password_change_required=True))
    assert await _epoch(db, user.id) == start + 2

    district = await make.district()
    db.add(UserDistrict(user_id=user.id, district_id=district.id))
    await db.flush()
    assert await _epoch(db, user.id) == start + 3
    await db.execute(delete(UserDistrict).where(UserDistrict.user_id == user.id))
    assert await _epoch(db, user.id) == start + 4

    elder = await make.elder()
    db.add(ElderGuardian(elder_id=elder.id, guardian_id=user.guardian_id, relation="child"))
    await db.flush()
    assert await _epoch(db, user.id) == start + 5
    await db.execute(
        delete(ElderGuardian).where(
            ElderGuardian.elder_id == elder.id, ElderGuardian.guardian_id == user.guardian_id
        )
    )
    assert await _epoch(db, user.id) == start + 6
