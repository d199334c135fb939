"""The start-at-risk watch against the real app and PostgreSQL on a movable clock: an accepted visit
whose caregiver has not set off goes to the operator queue at the right minute, once, with its reason;
one whose caregiver is on the way does not; as-soon-as-possible orders keep their window end. The
race tests commit (two connections), on a world of their own that they remove afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from core.audit import AuditLog
from core.geo import haversine_m
from core.identity.models import Role
from core.scheduler import run_job, schedule
from core.settings import Settings
from dispatch.common import change_state, new_visit
from dispatch.jobs import escalate_starts_at_risk
from dispatch.matching import travel_seconds
from dispatch.models import OrderTransition, ServiceOrder, Visit
from dispatch.orders import create_order
from dispatch.start_watch import escalate_starts_at_risk as escalate_now
from dispatch.start_watch import watch_policy
from dispatch.states import SYSTEM, OrderState
from registry.models import Caregiver, Community, District, Elder
from tests.support import dispatch as support
from tests.support.dispatch import SERVICE, Clock, near

pytestmark = pytest.mark.integration

clock = support.clock
api = support.api
as_user = support.as_user
world = support.world

FAR_M = 10_000  # the caregiver went 10 km north of the elder after accepting


async def _rural(db: AsyncSession, elder_id: int) -> bool:
    row = (
        await db.execute(
            select(Community.is_village, District.kind)
            .join(Elder, Elder.community_id == Community.id)
            .join(District, District.id == Elder.district_id)
            .where(Elder.id == elder_id)
        )
    ).one()
    return bool(row.is_village) or row.kind == "rural"


async def _accepted_order(
    db: AsyncSession,
    api: httpx.AsyncClient,
    w: dict[str, Any],
    *,
    start: dt.datetime | None,
    asap: bool = False,
) -> tuple[int, int]:
    """The caregiver on shift 300 m away accepts an order (a same-day one starting at ``start``, or
    as soon as possible) → (order id, visit id). Every other caregiver is made inactive: same-day
    orders go to caregivers near by home, not only to those on shift."""
    h = w["h"]
    await db.execute(update(Caregiver).where(Caregiver.id != w["caregiver_id"]).values(is_active=False))
    await db.commit()
    r = await api.post("/api/v1/caregiver/shift/start", json=near(w["home"], 300), headers=h["caregiver"])
    assert r.status_code == 200, r.text
    body: dict[str, Any] = {"elder_id": w["elder_id"], "service_code": SERVICE}
    if asap:
        body["asap"] = True
    else:
        assert start is not None
        body |= {
            "window_start_at": start.isoformat(),
            "window_end_at": (start + dt.timedelta(minutes=30)).isoformat(),
        }
    r = await api.post("/api/v1/orders", json=body, headers=h["family"])
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "offered", r.text
    order_id = r.json()["id"]
    offers = (await api.get("/api/v1/caregiver/offers", headers=h["caregiver"])).json()
    mine = [o for o in offers if o["order_id"] == order_id]
    assert len(mine) == 1, offers
    offer = mine[0]
    r = await api.post(f"/api/v1/caregiver/offers/{offer['id']}/accept", headers=h["caregiver"])
    assert r.status_code == 200, r.text
    return order_id, r.json()["id"]


async def _report(api: httpx.AsyncClient, w: dict[str, Any], metres_north: float) -> None:
    r = await api.put(
        "/api/v1/caregiver/position", json=near(w["home"], metres_north), headers=w["h"]["caregiver"]
    )
    assert r.status_code == 200, r.text


async def _escalations(db: AsyncSession, order_id: int) -> list[OrderTransition]:
    return list(
        await db.scalars(
            select(OrderTransition)
            .where(OrderTransition.order_id == order_id, OrderTransition.to_state == "escalated")
            .order_by(OrderTransition.id)
        )
    )


async def _first_risky_minute(
    db: AsyncSession, w: dict[str, Any], start: dt.datetime, base: dt.datetime
) -> int:
    """The first whole minute after ``base`` at which the rule (policy as seeded) says the start is at
    risk with the caregiver reporting from ``FAR_M`` north: seconds left < travel + margin."""
    policy = await watch_policy(db, base)
    far = near(w["home"], FAR_M)
    travel = travel_seconds(
        haversine_m(far["lat"], far["lon"], *w["home"]),
        rural=await _rural(db, w["elder_id"]),
        policy=policy.travel,
    )
    required = travel + policy.margin_s
    total = (start - base).total_seconds()
    return int((total - required) // 60) + 1


async def test_a_caregiver_far_away_goes_to_the_operator_queue_at_the_right_minute_once(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    w, h = world, world["h"]
    base = clock.now
    start = base + dt.timedelta(hours=2)
    order_id, visit_id = await _accepted_order(db, api, w, start=start)
    due = await _first_risky_minute(db, w, start, base)
    assert 10 < due < 120  # well inside the lookahead, and not at once

    for minute in range(due - 3, due):  # not a minute before
        clock.now = base + dt.timedelta(minutes=minute)
        await _report(api, w, FAR_M)
        await escalate_starts_at_risk(db, clock.now)
        assert await _escalations(db, order_id) == [], minute
    clock.now = base + dt.timedelta(minutes=due)
    await _report(api, w, FAR_M)
    assert await escalate_starts_at_risk(db, clock.now) >= 1
    moves = await _escalations(db, order_id)
    assert len(moves) == 1
    move = moves[0]
    assert (move.from_state, move.actor_role, move.at) == ("accepted", "system", clock.now)
    assert move.note.startswith(f"start_at_risk: caregiver {w['caregiver_id']} not set off; travel ")
    assert "from last position" in move.note
    assert move.note.endswith("dispatch.start_risk[*]@2026-01-01")
    # The visit is withdrawn: the order waits for a caregiver assigned by hand.
    assert await db.scalar(select(func.count()).select_from(Visit).where(Visit.id == visit_id)) == 0

    # In the operators' queue, with its reason.
    r = await api.get("/api/v1/orders", params={"state": "escalated"}, headers=h["operator"])
    assert r.status_code == 200
    queued = [o for o in r.json()["items"] if o["id"] == order_id]
    assert len(queued) == 1
    assert (queued[0]["escalation_reason"], queued[0]["caregiver_id"]) == ("start_at_risk", None)
    detail = (await api.get(f"/api/v1/orders/{order_id}", headers=h["operator"])).json()
    assert detail["order"]["escalation_reason"] == "start_at_risk"
    assert detail["order"]["next_step"]["code"] == "operator_queue"
    assert "had not set off" in detail["order"]["next_step"]["message"]
    assert detail["transitions"][-1]["note"] == move.note
    # Audited as the system's act, with the numbers behind it.
    entry = await db.scalar(
        select(AuditLog).where(
            AuditLog.entity == "service_order",
            AuditLog.entity_id == str(order_id),
            AuditLog.action == "escalate",
        )
    )
    assert entry is not None
    assert (entry.actor_role, entry.actor_user_id) == ("system", None)
    assert entry.before is not None
    assert entry.after is not None
    assert entry.before["visit_id"] == visit_id
    assert entry.after["basis"] == "position"
    assert entry.after["seconds_left"] < entry.after["required_s"]
    assert "dispatch.start_risk[*]@2026-01-01" in entry.after["policy"]

    # The next runs change nothing.
    for extra in (1, 2):
        clock.now = base + dt.timedelta(minutes=due + extra)
        await escalate_starts_at_risk(db, clock.now)
    assert len(await _escalations(db, order_id)) == 1
    # An operator gives it back to the same caregiver, still far away: the watch leaves it alone now.
    r = await api.post(
        f"/api/v1/orders/{order_id}/assign", json={"caregiver_id": w["caregiver_id"]}, headers=h["operator"]
    )
    assert r.status_code == 200, r.text
    clock.now += dt.timedelta(minutes=1)
    await _report(api, w, FAR_M)
    await escalate_starts_at_risk(db, clock.now)
    order = await db.get(ServiceOrder, order_id, populate_existing=True)
    assert order is not None
    assert order.state == "accepted"
    assert len(await _escalations(db, order_id)) == 1
    r = await api.get(f"/api/v1/orders/{order_id}", headers=h["operator"])
    assert r.json()["order"]["escalation_reason"] is None  # shown only while in the queue


async def test_a_caregiver_on_the_way_is_not_escalated(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    w, h = world, world["h"]
    base = clock.now
    start = base + dt.timedelta(hours=2)
    order_id, visit_id = await _accepted_order(db, api, w, start=start)
    due = await _first_risky_minute(db, w, start, base)
    clock.now = base + dt.timedelta(minutes=due - 5)
    await _report(api, w, FAR_M)
    r = await api.post(f"/api/v1/caregiver/visits/{visit_id}/en-route", headers=h["caregiver"])
    assert r.status_code == 200, r.text
    for minute in (due, due + 1, due + 30):
        clock.now = base + dt.timedelta(minutes=minute)
        await _report(api, w, FAR_M)
        await escalate_starts_at_risk(db, clock.now)
    order = await db.get(ServiceOrder, order_id, populate_existing=True)
    assert order is not None
    assert (order.state, order.caregiver_id, order.escalation_reason) == ("en_route", w["caregiver_id"], None)
    assert await _escalations(db, order_id) == []


async def test_an_as_soon_as_possible_order_keeps_its_window_end(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    w = world
    order_id, _ = await _accepted_order(db, api, w, start=None, asap=True)
    # Its window started when it was placed; the caregiver 300 m away has 30 minutes to start.
    await escalate_starts_at_risk(db, clock.now)
    clock.advance(minutes=5)
    await _report(api, w, 300)
    await escalate_starts_at_risk(db, clock.now)
    assert await _escalations(db, order_id) == []
    # Gone 10 km off instead (52 minutes away): the window end cannot be kept.
    clock.advance(minutes=1)
    await _report(api, w, FAR_M)
    await escalate_starts_at_risk(db, clock.now)
    moves = await _escalations(db, order_id)
    assert len(moves) == 1
    assert moves[0].note.startswith("start_at_risk:")


async def test_an_order_nobody_could_take_shows_that_reason(
    api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    w, h = world, world["h"]
    # Nobody is on shift (the demo world clears every position): real-time dispatch escalates it.
    r = await api.post(
        "/api/v1/orders",
        json={"elder_id": w["elder_id"], "service_code": SERVICE, "asap": True},
        headers=h["family"],
    )
    assert r.status_code == 201, r.text
    placed = r.json()
    assert (placed["state"], placed["escalation_reason"]) == ("escalated", "no_caregiver")
    r = await api.get("/api/v1/orders", params={"state": "escalated"}, headers=h["operator"])
    assert [o["escalation_reason"] for o in r.json()["items"] if o["id"] == placed["id"]] == ["no_caregiver"]
    detail = (await api.get(f"/api/v1/orders/{placed['id']}", headers=h["operator"])).json()
    assert "No caregiver could take this order" in detail["order"]["next_step"]["message"]


# --- Races: committed rows, two connections ----------------------------------------------------------

NOW = dt.datetime(2027, 1, 15, 2, 0, tzinfo=dt.UTC)  # Friday 10:00 in Xiaogan, after any other test's data


@pytest.fixture
async def committed(engine: AsyncEngine, seeded: dict[str, object]) -> AsyncIterator[dict[str, int]]:
    """A place of its own, a caregiver living 20 km north who reports no position, and an order of
    theirs accepted for an hour from ``NOW`` (the drive from home takes 104 minutes)."""
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as s, s.begin():
        place = await support.add_place(s, n=4, id_number="420902194005049996", birth_on=dt.date(1940, 5, 4))
        cg = Caregiver(
            provider_id=place.provider.id,
            name="远方护理员",
            gender="F",
            phone="13900009999",
            skills=["CLEAN", "VISIT"],
            shift_start=dt.time(7),
            shift_end=dt.time(20),
            work_days=[1, 2, 3, 4, 5, 6, 7],
            home_lat=place.elder.lat + 20_000 / 111_195.0,
            home_lon=place.elder.lon,
        )
        s.add(cg)
        await s.flush()
        order = await create_order(
            session=s,
            elder_id=place.elder.id,
            service_code="CLEAN",
            window_start_at=NOW + dt.timedelta(hours=1),
            window_end_at=NOW + dt.timedelta(hours=2),
            duration_s=3600,
            actor=Role.FAMILY,
            actor_user_id=None,
            now=NOW - dt.timedelta(days=1),
        )
        # Assigned as a published day plan assigns (created → accepted by the system, with its visit).
        await change_state(
            session=s,
            order_id=order.id,
            expected=OrderState.CREATED,
            target=OrderState.ACCEPTED,
            actor=SYSTEM,
            actor_user_id=None,
            now=NOW - dt.timedelta(days=1),
            values={"caregiver_id": cg.id, "provider_id": cg.provider_id},
        )
        s.add(new_visit(order, caregiver_id=cg.id, provider_id=cg.provider_id, start=order.window_start_at))
        await s.flush()
        ids = {"order": order.id, "caregiver": cg.id}
    yield ids
    async with factory() as s, s.begin():
        await s.execute(
            delete(AuditLog).where(
                AuditLog.entity == "service_order", AuditLog.entity_id == str(ids["order"])
            )
        )
        await support.remove_place(s, place)


async def _trail(engine: AsyncEngine, order_id: int) -> tuple[str, int, int, int]:
    async with async_sessionmaker(engine)() as s:
        state = await s.scalar(select(ServiceOrder.state).where(ServiceOrder.id == order_id))
        moves = await s.scalar(
            select(func.count())
            .select_from(OrderTransition)
            .where(OrderTransition.order_id == order_id, OrderTransition.to_state == "escalated")
        )
        audits = await s.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.entity == "service_order", AuditLog.entity_id == str(order_id))
        )
        visits = await s.scalar(select(func.count()).select_from(Visit).where(Visit.order_id == order_id))
        return str(state), int(moves or 0), int(audits or 0), int(visits or 0)


async def test_two_concurrent_runs_escalate_once(engine: AsyncEngine, committed: dict[str, int]) -> None:
    """Two runs at once on their own connections, without the scheduler's lock: the second waits for
    the first's row lock, then finds the order no longer accepted."""
    racing = create_async_engine(engine.url, pool_size=2, max_overflow=0)
    factory = async_sessionmaker(racing, expire_on_commit=False)
    go = asyncio.Event()

    async def run() -> list[int]:
        await go.wait()
        async with factory() as s, s.begin():
            return await escalate_now(session=s, now=NOW)

    tasks = [asyncio.create_task(run()) for _ in range(2)]
    go.set()
    results = await asyncio.gather(*tasks)
    await racing.dispose()
    order_id = committed["order"]
    assert sum(r.count(order_id) for r in results) == 1
    assert await _trail(engine, order_id) == ("escalated", 1, 1, 0)
    # And once more later: nothing.
    async with async_sessionmaker(engine)() as s, s.begin():
        assert order_id not in await escalate_now(session=s, now=NOW + dt.timedelta(minutes=1))
    assert await _trail(engine, order_id) == ("escalated", 1, 1, 0)


async def test_the_scheduled_job_run_twice_at_once_escalates_once(
    engine: AsyncEngine, committed: dict[str, int], test_settings: Settings
) -> None:
    import dispatch.jobs  # noqa: F401 - registers the dispatch jobs

    job = next(j for j in schedule if j.name == "dispatch.escalate_starts_at_risk")
    factory = async_sessionmaker(engine, expire_on_commit=False)
    # An hour before, the 104-minute drive from home (no position reported) still fits: nothing.
    ran = await run_job(
        job, sessionmaker=factory, settings=test_settings, clock=lambda: NOW - dt.timedelta(hours=1)
    )
    assert ran
    assert (await _trail(engine, committed["order"]))[:2] == ("accepted", 0)
    outcomes = await asyncio.gather(
        *(run_job(job, sessionmaker=factory, settings=test_settings, clock=lambda: NOW) for _ in range(2))
    )
    assert True in outcomes  # one ran; the other ran after it or was skipped by the advisory lock
    assert await _trail(engine, committed["order"]) == ("escalated", 1, 1, 0)
