"""The principal cache of an API process and the ``scope_epoch`` it is checked against.

A request with a cached principal makes one query before its handler's own (the token is live, and
the account's epoch); the triggers of migration 0017 move the epoch on for exactly what a principal
is built from. The same, across two API processes, is in ``tests/integration/api/test_api_processes.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, event, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from api.app import create_app
from api.bootstrap import scope_loaders
from core.identity.authz import Principal
from core.identity.models import AppUser, Role, UserDistrict
from core.identity.sessions import PrincipalCache, principal_for_token
from core.settings import Settings
from dispatch.models import ServiceOrder, Visit
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


async def test_the_caregiver_app_does_not_load_the_served_elders_again(
    client: httpx.AsyncClient, make: Factory, statements: Statements
) -> None:
    """Its routes scope by the caregiver's own id (``without_request_scope``): a cached caregiver is
    then one query before the handler's own, and the principal carries no served elders."""
    caregiver = await make.account(Role.CAREGIVER)
    assert (await client.get("/api/v1/auth/me", headers=caregiver.headers)).status_code == 200
    statements.seen.clear()
    assert (await client.get("/api/v1/caregiver/offers", headers=caregiver.headers)).status_code == 200
    assert "scope_epoch" in statements.seen[0]
    assert not any("DISTINCT visit.elder_id" in s for s in statements.seen)
    statements.seen.clear()
    # Elsewhere they are loaded as of the request again.
    assert (await client.get("/api/v1/auth/me", headers=caregiver.headers)).status_code == 200
    assert len(statements.seen) == 2


async def test_a_principal_without_request_scope_carries_no_served_elders(
    db: AsyncSession, make: Factory
) -> None:
    """Fails closed: the served elders cached with a caregiver are not handed out stale, and are
    loaded as of the request where a route reads them."""
    provider = await make.provider()
    elder = await make.elder()
    caregiver = await make.caregiver(provider)
    account = await make.account(Role.CAREGIVER, caregiver=caregiver)
    start = TEST_NOW + dt.timedelta(hours=1)
    order = ServiceOrder(
        elder_id=elder.id, service_code="VISIT", provider_id=provider.id, caregiver_id=caregiver.id,
        state="accepted", window_start_at=start, window_end_at=start + dt.timedelta(minutes=30),
        duration_s=3600, price_fen=3000, created_by_role="operator",
    )  # fmt: skip
    db.add(order)
    await db.flush()
    db.add(
        Visit(
            order_id=order.id, service_code="VISIT", elder_id=elder.id, caregiver_id=caregiver.id,
            provider_id=provider.id, scheduled_start_at=start, scheduled_end_at=start + dt.timedelta(hours=1),
        )
    )  # fmt: skip
    await db.flush()
    token = account.headers["Authorization"].removeprefix("Bearer ")
    cache = PrincipalCache()

    async def principal(request_scope: bool) -> Principal:
        found = await principal_for_token(
            session=db,
            token=token,
            now=TEST_NOW,
            scope_loaders=scope_loaders(),
            cache=cache,
            request_scope=request_scope,
        )
        assert found is not None
        return found

    assert (await principal(True)).served_elder_ids == {elder.id}  # built, and cached
    assert (await principal(False)).served_elder_ids == frozenset()
    assert (await principal(True)).served_elder_ids == {elder.id}


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
