"""Two generations of one roster at once, on committing sessions as in production: they take turns on
the roster's row (``INSERT … ON CONFLICT DO NOTHING``, then ``FOR UPDATE``), so there is one roster,
one set of lines, and the second sees the first's work — for an open month both succeed with the same
lines; for a month that is over the second is refused. Nothing twice, nothing lost.

The roster is of the demo's elders: they were registered when the session seeded them (the real day),
so the month after that is their first month, each back-paid as a late registration. These tests
commit, so they remove their rosters and audit rows afterwards."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing import allowance_service as service
from billing.allowance_models import AllowanceLine, AllowanceRoster
from billing.allowances import AllowanceKind, Change, Reason, add_months, month_start
from core.audit import AuditLog
from core.clock import local_date
from registry.models import Elder

pytestmark = pytest.mark.integration


@pytest.fixture
async def factory(engine: AsyncEngine, seeded: object) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    made = async_sessionmaker(engine, expire_on_commit=False)
    async with made() as s:
        # Rosters of the month after the demo's registration, and of the one before (closed).
        newest = await s.scalar(select(func.max(Elder.created_at)))
        assert newest is not None
        first = add_months(month_start(local_date(newest)), 1)
    try:
        yield made
    finally:
        async with made() as s, s.begin():
            # A closed roster is frozen by its trigger; this cleanup is the one place allowed past it.
            await s.execute(text("SET LOCAL session_replication_role = replica"))
            ids = (
                await s.scalars(
                    select(AllowanceRoster.id).where(AllowanceRoster.month >= add_months(first, -1))
                )
            ).all()
            await s.execute(delete(AllowanceLine).where(AllowanceLine.roster_id.in_(ids)))
            await s.execute(delete(AllowanceRoster).where(AllowanceRoster.id.in_(ids)))
            await s.execute(
                delete(AuditLog).where(
                    AuditLog.entity == "allowance_roster", AuditLog.entity_id.in_([str(i) for i in ids])
                )
            )


async def _first_month(made: async_sessionmaker[AsyncSession]) -> dt.date:
    async with made() as s:
        newest = await s.scalar(select(func.max(Elder.created_at)))
    assert newest is not None
    return add_months(month_start(local_date(newest)), 1)


async def _generate(
    made: async_sessionmaker[AsyncSession], month: dt.date, now: dt.datetime
) -> service.Generated | service.RosterClosed:
    async with made() as s:
        try:
            async with s.begin():
                return await service.generate_roster(
                    session=s, kind=AllowanceKind.OLD_AGE, month=month, actor=None, now=now
                )
        except service.RosterClosed as refused:
            return refused


async def test_two_generations_of_an_open_month_take_turns(factory: async_sessionmaker[AsyncSession]) -> None:
    month = await _first_month(factory)
    now = dt.datetime.combine(month, dt.time(2), tzinfo=dt.UTC)  # 10:00 on the 1st in Shanghai
    one, two = await asyncio.gather(_generate(factory, month, now), _generate(factory, month, now))
    assert isinstance(one, service.Generated)
    assert isinstance(two, service.Generated)
    async with factory() as s:
        rosters = (
            await s.scalars(
                select(AllowanceRoster).where(
                    AllowanceRoster.month == month, AllowanceRoster.kind == "old_age"
                )
            )
        ).all()
        assert len(rosters) == 1
        roster = rosters[0]
        assert (roster.generations, roster.state) == (2, "open")
        assert {one.roster.checksum, two.roster.checksum} == {roster.checksum}
        assert {one.changed, two.changed} == {True, False}  # the second found the first's lines
        lines = (await s.scalars(select(AllowanceLine).where(AllowanceLine.roster_id == roster.id))).all()
        assert len(lines) == len({x.elder_id for x in lines}) == roster.lines
        assert sum(x.amount_fen for x in lines) == roster.total_fen
        # The demo's elders of a band's age, registered the month before: each back-paid.
        assert roster.lines > 50, "the demo data set has elders of 80 and over"
        assert {x.change for x in lines} == {Change.ADDED.value}
        late = [x for x in lines if x.reason == Reason.LATE_REGISTRATION.value]
        # (One who turned 80 the month before is owed nothing: ``turned_age``.)
        assert {x.reason for x in lines} <= {Reason.LATE_REGISTRATION.value, Reason.TURNED_AGE.value}
        assert len(late) > 50
        assert all(1 <= x.backpay_months <= 12 and x.backpay_fen > 0 for x in late)
        assert sum(x.backpay_months == 12 for x in late) > len(late) // 2
        actions = (
            await s.scalars(
                select(AuditLog.action).where(
                    AuditLog.entity == "allowance_roster", AuditLog.entity_id == str(roster.id)
                )
            )
        ).all()
        assert sorted(actions) == ["generate", "regenerate"]


async def test_two_generations_of_a_month_that_is_over_give_one_roster(
    factory: async_sessionmaker[AsyncSession],
) -> None:
    month = await _first_month(factory)
    now = dt.datetime.combine(add_months(month, 1), dt.time(2), tzinfo=dt.UTC)
    results = await asyncio.gather(_generate(factory, month, now), _generate(factory, month, now))
    assert sorted(type(r).__name__ for r in results) == ["Generated", "RosterClosed"]
    async with factory() as s:
        roster = await s.scalar(select(AllowanceRoster).where(AllowanceRoster.month == month))
        assert roster is not None
        assert (roster.generations, roster.state) == (1, "closed")
        assert roster.lines == await s.scalar(
            select(func.count()).select_from(AllowanceLine).where(AllowanceLine.roster_id == roster.id)
        )
