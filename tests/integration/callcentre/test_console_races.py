"""Races resolved by the database: operators claiming, acknowledging and clearing one alarm at the same
moment, each on a connection and in a transaction of their own. Exactly one wins each time; the
others are refused with the code of what the winner did, and the timeline has the winner's event
once. These tests commit (the race needs separate connections), so they make their own accounts and
alarms on a demo elder and delete them afterwards."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from callcentre import console
from callcentre.contract import AlarmCandidate, raise_alarm
from callcentre.lifecycle import AlarmAlreadyAcknowledged, AlarmAlreadyClaimed, AlarmAlreadyCleared
from callcentre.schemas import AlarmState
from core.audit import AuditLog
from core.errors import DomainError
from core.identity.authz import Principal
from core.identity.models import AppUser, Role
from registry.models import District, Elder
from tests.conftest import TEST_NOW
from tests.factories import XIAONAN

pytestmark = pytest.mark.integration

RACERS = 6
ROUNDS = 5


@dataclass
class World:
    factory: async_sessionmaker[AsyncSession]
    elder_id: int
    operators: list[Principal]


@pytest.fixture
async def world(engine: AsyncEngine, seeded: dict[str, object]) -> AsyncIterator[World]:
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as s, s.begin():
        district = await s.scalar(select(District.id).where(District.code == XIAONAN))
        elder_id = await s.scalar(
            select(Elder.id).where(Elder.district_id == district).order_by(Elder.id).limit(1)
        )
        assert district is not None
        assert elder_id is not None
        users = [
            AppUser(
                username=f"race_op_{i}",
                display_name=f"接警员{i}",
                password_hash="x",
                role=Role.OPERATOR.value,
            )
            for i in range(RACERS)
        ]
        s.add_all(users)
        await s.flush()
        operators = [Principal(user_id=u.id, username=u.username, role=Role.OPERATOR) for u in users]
    yield World(factory, elder_id, operators)
    async with factory() as s, s.begin():
        ids = [p.user_id for p in operators]
        await s.execute(
            text("DELETE FROM alarm WHERE elder_id = :e AND details->>'race' = 'yes'"), {"e": elder_id}
        )
        await s.execute(delete(AuditLog).where(AuditLog.actor_user_id.in_(ids)))
        await s.execute(delete(AppUser).where(AppUser.id.in_(ids)))


async def _new_alarm(world: World, kind: str) -> int:
    async with world.factory() as s, s.begin():
        conn = await s.connection()
        raw = (await conn.get_raw_connection()).driver_connection
        alarm = AlarmCandidate(kind, "CRITICAL", None, world.elder_id, TEST_NOW, {"race": "yes"})
        return (await raise_alarm(raw, alarm)).alarm_id


async def _race(
    world: World, attempt: Callable[[AsyncSession, Principal], Awaitable[object]]
) -> list[object]:
    """Every operator at once, each in a transaction of their own; what each got (a result or the
    DomainError that refused it)."""
    start = asyncio.Event()

    async def one(principal: Principal) -> object:
        async with world.factory() as s:
            await s.connection()  # connected, its transaction begun, before the start signal
            await start.wait()
            try:
                result = await attempt(s, principal)
            except DomainError as exc:
                await s.rollback()
                return exc
            await s.commit()
            return result

    tasks = [asyncio.create_task(one(p)) for p in world.operators]
    await asyncio.sleep(0.05)
    start.set()
    return list(await asyncio.gather(*tasks))


async def _events(world: World, alarm_id: int) -> list[tuple[str, int | None]]:
    async with world.factory() as s:
        rows = await s.execute(
            text("SELECT kind, actor_id FROM alarm_event WHERE alarm_id = :a ORDER BY id"), {"a": alarm_id}
        )
        return [(r.kind, r.actor_id) for r in rows]


async def _claim(session: AsyncSession, principal: Principal, *, alarm_id: int) -> object:
    return await console.claim(session, principal, alarm_id, now=TEST_NOW)


async def test_concurrent_claims_have_exactly_one_winner(world: World) -> None:
    for _ in range(ROUNDS):
        alarm_id = await _new_alarm(world, "SOS")
        results = await _race(world, functools.partial(_claim, alarm_id=alarm_id))
        winners = [r for r in results if not isinstance(r, DomainError)]
        losers = [r for r in results if isinstance(r, DomainError)]
        assert len(winners) == 1, results
        assert all(isinstance(r, AlarmAlreadyClaimed) for r in losers), losers
        winner = winners[0]
        assert isinstance(winner, AlarmState)
        assert await _events(world, alarm_id) == [("raised", None), ("claimed", winner.assignee_id)]
        async with world.factory() as s, s.begin():  # clear it for the next round's new SOS
            await console.clear(
                s,
                next(p for p in world.operators if p.user_id == winner.assignee_id),
                alarm_id,
                outcome="test",
                now=TEST_NOW,
            )


async def test_concurrent_acknowledgements_and_clears_have_one_winner_each(world: World) -> None:
    alarm_id = await _new_alarm(world, "FALL")
    acks = await _race(world, lambda s, p: console.acknowledge(s, p, alarm_id, now=TEST_NOW))
    assert sum(not isinstance(r, DomainError) for r in acks) == 1
    # The losers found it claimed by the winner (or, had they come after, acknowledged).
    assert all(
        isinstance(r, AlarmAlreadyClaimed | AlarmAlreadyAcknowledged)
        for r in acks
        if isinstance(r, DomainError)
    )
    supervisors = [
        Principal(user_id=p.user_id, username=p.username, role=Role.SUPERVISOR) for p in world.operators
    ]
    world_of_supervisors = World(world.factory, world.elder_id, supervisors)
    clears = await _race(
        world_of_supervisors,
        lambda s, p: console.clear(
            s, p, alarm_id, outcome="real_emergency", now=TEST_NOW + dt.timedelta(minutes=1)
        ),
    )
    assert sum(not isinstance(r, DomainError) for r in clears) == 1
    assert all(isinstance(r, AlarmAlreadyCleared) for r in clears if isinstance(r, DomainError))
    kinds = [k for k, _ in await _events(world, alarm_id)]
    assert kinds == ["raised", "claimed", "acknowledged", "cleared"]
