"""Welfare visits placed by the scheduled jobs, against the real database with an injected clock:
cadence per tier across weeks, months and quarters, the visit after a CRITICAL alarm, idempotency,
and that each visit is a dispatch order offered to a caregiver like any other.

Where a test needs a visit to have taken place, it marks the order verified (what dispatch's
check-out and verification do; those flows are dispatch's own tests), so the next cadence is due.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callcentre import welfare_service as service
from callcentre.contract import AlarmCandidate, raise_alarm
from callcentre.models import Alarm
from callcentre.welfare import Tier, VisitReason
from callcentre.welfare_models import WelfareVisit
from core.clock import SHANGHAI, local_date
from core.policy import PolicySnapshot
from dispatch.models import CaregiverPosition, Offer, ServiceOrder
from registry.models import Elder
from tests.conftest import TEST_NOW
from tests.factories import TODAY, Factory

D = dt.date


async def _elder(make: Factory, *, living: str = "alone", age: int = 85) -> Elder:
    return await make.elder(living_situation=living, birth_on=D(TODAY.year - age, 1, 1))


async def _visitor(make: Factory) -> None:
    """A caregiver of a provider contracted for VISIT in Xiaonan, on shift every day 07-20 and, at
    TEST_NOW, reporting a position at the community where the factory's elders live."""
    provider = await make.provider()
    await make.contract(provider, "VISIT")
    cg = await make.caregiver(provider, skills=["VISIT"], work_days=[1, 2, 3, 4, 5, 6, 7])
    home = await make.community()
    make.db.add(
        CaregiverPosition(
            caregiver_id=cg.id,
            lat=home.lat,
            lon=home.lon,
            at=TEST_NOW,
            on_shift=True,
            shift_started_at=TEST_NOW,
        )
    )
    await make.db.flush()


async def _visits(db: AsyncSession, elder: Elder) -> list[WelfareVisit]:
    return list(
        await db.scalars(
            select(WelfareVisit).where(WelfareVisit.elder_id == elder.id).order_by(WelfareVisit.id)
        )
    )


async def _orders(db: AsyncSession, elder: Elder) -> int:
    return int(await db.scalar(select(func.count()).where(ServiceOrder.elder_id == elder.id)) or 0)


async def test_a_due_visit_is_a_dispatch_order_offered_to_a_caregiver_and_placed_once(
    db: AsyncSession, make: Factory
) -> None:
    await _visitor(make)
    elder = await _elder(make)  # alone, 85: high

    placed = await service.place_due_visits(session=db, now=TEST_NOW, elder_ids=[elder.id])
    assert len(placed) == 1
    order = await db.get(ServiceOrder, placed[0])
    assert order is not None
    assert (order.service_code, order.created_by_role, order.created_by_user_id) == ("VISIT", "system", None)
    # Dispatched like any same-day order: matched and offered to a caregiver.
    assert order.state == "offered"
    offers = list(await db.scalars(select(Offer).where(Offer.order_id == order.id)))
    assert [o.state for o in offers] == ["pending"]
    # Today's visiting hours from now (10:00 local) to 17:00.
    assert order.window_start_at == TEST_NOW
    assert order.window_end_at.astimezone(SHANGHAI).time() == dt.time(17)
    [visit] = await _visits(db, elder)
    assert (visit.reason, visit.due_on, visit.tier, visit.order_id) == ("cadence", TODAY, "high", order.id)

    # A second run, later the same day or days later while the order is open, places nothing.
    assert await service.place_due_visits(session=db, now=TEST_NOW, elder_ids=[elder.id]) == []
    later = TEST_NOW + dt.timedelta(days=9)
    assert await service.place_due_visits(session=db, now=later, elder_ids=[elder.id]) == []
    assert len(await _visits(db, elder)) == 1
    assert await _orders(db, elder) == 1


async def test_the_unique_key_refuses_a_second_visit_for_the_same_due_day_with_its_order(
    db: AsyncSession, make: Factory
) -> None:
    """What a second scheduler racing the first meets: the marker's unique key; the savepoint takes
    the second order with it, so nothing is placed twice."""
    await _visitor(make)
    elder = await _elder(make)
    await service.place_due_visits(session=db, now=TEST_NOW, elder_ids=[elder.id])
    start = TEST_NOW + dt.timedelta(hours=1)
    again = await service._place(
        db, elder_id=elder.id, tier=Tier.HIGH, reason=VisitReason.CADENCE, due_on=TODAY,
        start=start, end=start + dt.timedelta(hours=2), now=TEST_NOW,
    )  # fmt: skip
    assert again is None
    assert len(await _visits(db, elder)) == 1
    assert await _orders(db, elder) == 1


async def _visited(db: AsyncSession, order_ids: list[int]) -> None:
    await db.execute(update(ServiceOrder).where(ServiceOrder.id.in_(order_ids)).values(state="verified"))


async def test_cadence_per_tier_weekly_monthly_quarterly(db: AsyncSession, make: Factory) -> None:
    await _visitor(make)
    high = await _elder(make)  # alone, 85
    medium = await _elder(make, age=70)  # alone, 70
    low = await _elder(make, living="empty_nest", age=70)
    ids = [high.id, medium.id, low.id]

    async def run(day: dt.date) -> None:
        """The job at 10:00 local on ``day``; each visit takes place the day it is placed."""
        now = TEST_NOW + dt.timedelta(days=(day - TODAY).days)
        await _visited(db, await service.place_due_visits(session=db, now=now, elder_ids=ids))

    # Every day for five weeks: weekly and monthly visits fall on their days, never earlier.
    for n in range(36):
        await run(TODAY + dt.timedelta(days=n))
    # Then only the days around the next due days (the job is idempotent between them).
    for day in (
        D(2027, 1, 19),
        D(2027, 1, 20),
        D(2027, 2, 19),
        D(2027, 2, 20),
        D(2027, 5, 19),
        D(2027, 5, 20),
    ):
        await run(day)
    due = {e.id: [v.due_on for v in await _visits(db, e)] for e in (high, medium, low)}
    assert due[high.id][:6] == [D(2026, 11, 20) + dt.timedelta(days=7 * k) for k in range(6)]
    # After the daily runs stopped, an overdue weekly visit is placed on the next run (19 Jan).
    assert due[high.id][6:] == [D(2027, 1, 19), D(2027, 2, 19), D(2027, 5, 19)]
    assert due[medium.id] == [
        D(2026, 11, 20),
        D(2026, 12, 20),
        D(2027, 1, 20),
        D(2027, 2, 20),
        D(2027, 5, 19),
    ]
    assert due[low.id] == [D(2026, 11, 20), D(2027, 2, 20), D(2027, 5, 20)]


async def test_a_cancelled_visit_does_not_count_and_is_placed_again(db: AsyncSession, make: Factory) -> None:
    await _visitor(make)
    elder = await _elder(make, age=70)  # medium
    [first] = await service.place_due_visits(session=db, now=TEST_NOW, elder_ids=[elder.id])
    await db.execute(update(ServiceOrder).where(ServiceOrder.id == first).values(state="cancelled"))
    entry = (await service._entries(db, [await _row(db, elder)], policy=await _policy(db), now=TEST_NOW))[0]
    assert (entry.last_visit_on, entry.next_due_on, entry.open_order) == (None, TODAY, False)
    # Same day: the key (elder, today) is taken, so nothing is placed; the next day's run places it.
    assert (
        await service.place_due_visits(session=db, now=TEST_NOW + dt.timedelta(hours=1), elder_ids=[elder.id])
        == []
    )
    [again] = await service.place_due_visits(
        session=db, now=TEST_NOW + dt.timedelta(days=1), elder_ids=[elder.id]
    )
    visits = await _visits(db, elder)
    assert [v.due_on for v in visits] == [TODAY, TODAY + dt.timedelta(days=1)]
    assert visits[-1].order_id == again


async def _row(db: AsyncSession, elder: Elder) -> object:
    return (
        await db.execute(
            select(
                Elder.id,
                Elder.name,
                Elder.district_id,
                Elder.birth_on,
                Elder.living_situation,
                Elder.has_dementia,
            ).where(Elder.id == elder.id)
        )
    ).one()


async def _policy(db: AsyncSession) -> PolicySnapshot:
    return await service.welfare_policy(db, TODAY)


async def _critical(db: AsyncSession, elder: Elder, *, severity: str = "CRITICAL", ago_h: float = 1) -> int:
    raw = await (await db.connection()).get_raw_connection()
    at = TEST_NOW - dt.timedelta(hours=ago_h)
    kind = "SOS" if severity == "CRITICAL" else "INACTIVITY"
    written = await raise_alarm(raw.driver_connection, AlarmCandidate(kind, severity, None, elder.id, at))
    # The platform stamps received_at with the database's clock; the test's clock is TEST_NOW.
    await db.execute(update(Alarm).where(Alarm.id == written.alarm_id).values(received_at=at))
    return written.alarm_id


async def test_a_visit_within_24_hours_after_a_critical_alarm_once_per_alarm(
    db: AsyncSession, make: Factory
) -> None:
    await _visitor(make)
    elder = await _elder(make, age=70)  # alone: medium
    cared_for = await _elder(make, living="with_family")  # not in the programme
    alarm_id = await _critical(db, elder, ago_h=1)
    await _critical(db, cared_for, ago_h=1)
    await _critical(db, elder, severity="MAJOR", ago_h=2)  # not critical
    stale = await _critical(db, await _elder(make, age=70), ago_h=25)  # past the 24 h
    ids = [elder.id, cared_for.id]

    placed = await service.place_after_alarm_visits(session=db, now=TEST_NOW, elder_ids=ids)
    assert len(placed) == 1
    order = await db.get(ServiceOrder, placed[0])
    assert order is not None
    assert order.elder_id == elder.id
    assert order.state == "offered"  # dispatched at once
    assert order.window_end_at == TEST_NOW - dt.timedelta(hours=1) + dt.timedelta(hours=24)
    [visit] = await _visits(db, elder)
    assert (visit.reason, visit.alarm_id, visit.due_on) == ("after_alarm", alarm_id, local_date(TEST_NOW))
    assert await _visits(db, cared_for) == []

    # Idempotent per alarm; the open after-alarm visit also stands in for the cadence visit due today.
    assert await service.place_after_alarm_visits(session=db, now=TEST_NOW + dt.timedelta(minutes=5)) == []
    assert await service.place_due_visits(session=db, now=TEST_NOW, elder_ids=[elder.id]) == []
    assert len(await _visits(db, elder)) == 1
    assert await db.scalar(select(func.count()).where(WelfareVisit.alarm_id == stale)) == 0

    # A second critical alarm (after the first was cleared) gets its own visit.
    await db.execute(update(Alarm).where(Alarm.id == alarm_id).values(cleared_at=TEST_NOW))
    second = await _critical(db, elder, ago_h=0.5)
    assert second != alarm_id
    assert len(await service.place_after_alarm_visits(session=db, now=TEST_NOW, elder_ids=[elder.id])) == 1


async def test_the_registered_jobs_run_under_the_scheduler(db: AsyncSession) -> None:
    from api.bootstrap import scheduled_jobs

    names = scheduled_jobs().names()
    assert "callcentre.welfare_due_visits" in names
    assert "callcentre.welfare_after_alarm_visits" in names


async def test_recent_critical_alarms_raise_the_tier(db: AsyncSession, make: Factory) -> None:
    elder = await _elder(make, living="empty_nest", age=70)  # low
    assert (await _entry(db, elder)).tier == Tier.LOW
    await _critical(db, elder, ago_h=24 * 10)
    await db.execute(update(Alarm).where(Alarm.elder_id == elder.id).values(cleared_at=TEST_NOW))
    await _critical(db, elder, ago_h=24 * 3)
    assert (await _entry(db, elder)).tier == Tier.HIGH  # two critical alarms in 90 days


async def _entry(db: AsyncSession, elder: Elder) -> service.PlanEntry:
    return (await service._entries(db, [await _row(db, elder)], policy=await _policy(db), now=TEST_NOW))[0]


async def test_visiting_hours_decide_when_a_due_visit_is_placed(db: AsyncSession, make: Factory) -> None:
    await _visitor(make)
    elder = await _elder(make)
    early = dt.datetime.combine(TODAY, dt.time(8), tzinfo=SHANGHAI)  # before the 09:00 opening
    assert await service.place_due_visits(session=db, now=early, elder_ids=[elder.id]) == []
    evening = dt.datetime.combine(TODAY, dt.time(18), tzinfo=SHANGHAI)  # after the 17:00 closing
    [order_id] = await service.place_due_visits(session=db, now=evening, elder_ids=[elder.id])
    order = await db.get(ServiceOrder, order_id)
    assert order is not None
    tomorrow = TODAY + dt.timedelta(days=1)
    assert order.window_start_at == dt.datetime.combine(tomorrow, dt.time(9), tzinfo=SHANGHAI)
    assert order.state == "created"  # tomorrow's: for the day plan, not offered tonight
    [visit] = await _visits(db, elder)
    assert visit.due_on == tomorrow
