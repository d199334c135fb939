"""Day plans on the real database: the planning job stores and publishes tomorrow's plan per provider
(every stop an accepted order with its visit, which the caregiver sees and real-time dispatch and the
operator queue leave alone; every hard rule kept; only contracted services; a certificate that expires
keeps its holder off the next day's bathing visit), the GET is scoped (provider admin: own provider;
caregiver: own route), a re-plan after a sick call moves only the sick caregiver's visits not yet
started, cancelled and withdrawn orders drop out, and rerunning the job changes nothing.

Each test runs inside the rolled-back test transaction; the app's clock is ``TEST_NOW`` (Friday
2026-11-20 10:00 in Xiaogan), so "tomorrow" is Saturday 2026-11-21.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

import httpx
import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.clock import SHANGHAI
from core.errors import NotFound
from core.identity.authz import Principal
from core.identity.models import AppUser, Role
from core.policy import PolicyValue
from dispatch import caregiver_app, jobs, offers, routing
from dispatch.common import StateConflict, change_state, day_start, new_visit
from dispatch.dayplans import plan as dayplan
from dispatch.dayplans import publish, replan
from dispatch.models import (
    DayPlanStop,
    OrderTransition,
    ProviderDayPlan,
    ProviderService,
    ServiceOrder,
    Visit,
)
from dispatch.orders import create_order
from dispatch.policies import DayPlanBudget
from dispatch.seed import CONTRACTS_FROM
from dispatch.states import SYSTEM, OrderState
from registry.models import Caregiver, Certificate, Elder, ElderBlockedCaregiver, ProviderDistrict
from tests.conftest import TEST_NOW
from tests.factories import TODAY, add_assessment
from tests.support import dispatch as support

pytestmark = pytest.mark.integration

Login = Callable[..., Awaitable[dict[str, str]]]
TOMORROW = dt.date(2026, 11, 21)
PLAN_SECONDS = 0.3  # the planner's search budget in these small cases


def _at(hour: int, minute: int = 0, day: dt.date = TOMORROW) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), SHANGHAI)


async def _world(db: AsyncSession, client: httpx.AsyncClient, login: Login) -> dict[str, Any]:
    """The demo provider alone serves the demo elder's district and holds VISIT and BATH contracts (not
    CLEAN); its caregivers work every day 07-19 from homes near the elder with the VISIT, BATH and CLEAN
    skills; caregiver ``expired_holder`` (not the demo caregiver) has an elder-care certificate that
    expires today, the others' next year. Eight orders for tomorrow (seven visits, one bath), for elders
    assessed today."""
    roles = ("provider_admin", "caregiver", "supervisor", "operator", "elder")
    headers = {r: await login(f"demo_{r}") for r in roles}
    me = {r: (await client.get("/api/v1/auth/me", headers=h)).json() for r, h in headers.items()}
    provider_id = me["provider_admin"]["provider_id"]
    elder = await db.get(Elder, me["elder"]["elder_id"])
    assert elder is not None
    assert provider_id is not None
    await db.execute(delete(ProviderDistrict).where(ProviderDistrict.district_id == elder.district_id))
    db.add(ProviderDistrict(provider_id=provider_id, district_id=elder.district_id))
    await db.execute(
        delete(ProviderService).where(
            ProviderService.provider_id == provider_id, ProviderService.service_code == "CLEAN"
        )
    )
    for code in ("VISIT", "BATH"):
        await db.execute(
            pg_insert(ProviderService)
            .values(provider_id=provider_id, service_code=code, valid_from=CONTRACTS_FROM)
            .on_conflict_do_nothing()
        )
    caregivers = list(
        await db.scalars(
            select(Caregiver.id).where(Caregiver.provider_id == provider_id).order_by(Caregiver.id).limit(4)
        )
    )
    demo_cg = me["caregiver"]["caregiver_id"]
    if demo_cg not in caregivers:
        caregivers[-1] = demo_cg
    assert len(caregivers) == 4
    await db.execute(
        update(Caregiver)
        .where(Caregiver.provider_id == provider_id, Caregiver.id.notin_(caregivers))
        .values(is_active=False)
    )
    for k, cid in enumerate(caregivers):
        await db.execute(
            update(Caregiver)
            .where(Caregiver.id == cid)
            .values(
                is_active=True,
                skills=["VISIT", "BATH", "CLEAN"],
                shift_start=dt.time(7),
                shift_end=dt.time(19),
                work_days=[1, 2, 3, 4, 5, 6, 7],
                daily_capacity=8,
                home_lat=elder.lat + 0.004 * (k + 1),
                home_lon=elder.lon - 0.003 * k,
            )
        )
    await db.execute(delete(Certificate).where(Certificate.caregiver_id.in_(caregivers)))
    expired_holder = next(c for c in caregivers if c != demo_cg)
    for cid in caregivers:
        expires = TEST_NOW.astimezone(SHANGHAI).date() if cid == expired_holder else dt.date(2027, 11, 1)
        db.add(
            Certificate(
                caregiver_id=cid,
                number=f"T-{cid}",
                kind="eldercare_worker",
                level=4,
                issued_on=dt.date(2024, 1, 1),
                expires_on=expires,
            )
        )
    elders = list(
        await db.scalars(
            select(Elder.id)
            .where(Elder.district_id == elder.district_id, Elder.status == "active")
            .order_by(Elder.id)
            .limit(8)
        )
    )
    assert len(elders) == 8
    await db.execute(delete(ElderBlockedCaregiver).where(ElderBlockedCaregiver.elder_id.in_(elders)))
    await db.execute(update(Elder).where(Elder.id.in_(elders)).values(allows_any_gender_bathing=True))
    for eid in elders:  # bathing needs an ability assessment valid on the service day
        await add_assessment(db, eid, assessed_on=TODAY)
    orders = []
    for k, eid in enumerate(elders):
        bath = k == 7
        start = _at(8 + k, 30 * (k % 2))
        orders.append(await _order(db, eid, "BATH" if bath else "VISIT", start, 2700 if bath else 1800))
    await db.commit()
    return {
        "h": headers,
        "provider_id": provider_id,
        "caregivers": caregivers,
        "demo_caregiver": demo_cg,
        "expired_holder": expired_holder,
        "elders": elders,
        "orders": orders,
        "bath_order": orders[-1],
    }


async def _order(
    db: AsyncSession, elder_id: int, service: str, start: dt.datetime, duration_s: int = 1800
) -> int:
    order = await create_order(
        session=db,
        elder_id=elder_id,
        service_code=service,
        window_start_at=start,
        window_end_at=start + dt.timedelta(hours=2),
        duration_s=duration_s,
        actor=Role.OPERATOR,
        actor_user_id=None,
        now=TEST_NOW,
    )
    return int(order.id)


async def _plan(db: AsyncSession, provider_id: int, day: dt.date = TOMORROW) -> ProviderDayPlan:
    plan = await dayplan.plan_provider_day(
        session=db, provider_id=provider_id, day=day, now=TEST_NOW, time_limit_s=PLAN_SECONDS
    )
    assert plan is not None
    return plan


class StopRow(NamedTuple):
    """A stop as stored at the time of reading (ORM rows would be refreshed by later reads)."""

    order_id: int
    caregiver_id: int
    seq: int
    planned_start_at: dt.datetime
    visit_id: int | None


async def _stops(db: AsyncSession, plan_id: int) -> dict[int, StopRow]:
    rows = await db.execute(
        select(
            DayPlanStop.order_id,
            DayPlanStop.caregiver_id,
            DayPlanStop.seq,
            DayPlanStop.planned_start_at,
            DayPlanStop.visit_id,
        ).where(DayPlanStop.plan_id == plan_id)
    )
    return {r.order_id: StopRow(*r) for r in rows}


async def _visits(db: AsyncSession, order_ids: list[int]) -> dict[int, Visit]:
    return {
        v.order_id: v
        for v in await db.scalars(
            select(Visit).where(Visit.order_id.in_(order_ids)).execution_options(populate_existing=True)
        )
    }


async def _orders(db: AsyncSession, order_ids: list[int]) -> dict[int, ServiceOrder]:
    return {
        o.id: o
        for o in await db.scalars(
            select(ServiceOrder)
            .where(ServiceOrder.id.in_(order_ids))
            .execution_options(populate_existing=True)
        )
    }


async def _transitions(db: AsyncSession, order_id: int) -> list[tuple[str, str, str, str]]:
    return [
        (t.from_state, t.to_state, t.actor_role, t.note)
        for t in await db.scalars(
            select(OrderTransition).where(OrderTransition.order_id == order_id).order_by(OrderTransition.id)
        )
    ]


async def _check_routes(db: AsyncSession, stops: dict[int, StopRow]) -> None:
    """Sequences run 1..n per caregiver, starts lie in the windows, visits do not overlap."""
    windows = {
        oid: (a, b, d)
        for oid, a, b, d in await db.execute(
            select(
                ServiceOrder.id,
                ServiceOrder.window_start_at,
                ServiceOrder.window_end_at,
                ServiceOrder.duration_s,
            ).where(ServiceOrder.id.in_(sorted(stops)))
        )
    }
    by_cg: dict[int, list[StopRow]] = {}
    for s in stops.values():
        by_cg.setdefault(s.caregiver_id, []).append(s)
    for route in by_cg.values():
        route.sort(key=lambda s: s.seq)
        assert [s.seq for s in route] == list(range(1, len(route) + 1))
        for s in route:
            a, b, _ = windows[s.order_id]
            assert a <= s.planned_start_at <= b
        for s, t in itertools.pairwise(route):
            assert t.planned_start_at >= s.planned_start_at + dt.timedelta(seconds=windows[s.order_id][2])


async def _check_published(db: AsyncSession, provider_id: int, stops: dict[int, StopRow]) -> None:
    """Every stop is an accepted order of its caregiver with the stop's visit at the planned start."""
    orders = await _orders(db, sorted(stops))
    visits = await _visits(db, sorted(stops))
    for oid, s in stops.items():
        v, o = visits[oid], orders[oid]
        assert s.visit_id == v.id
        assert (v.caregiver_id, v.provider_id) == (s.caregiver_id, provider_id)
        assert v.scheduled_start_at == s.planned_start_at
        assert v.scheduled_end_at == s.planned_start_at + dt.timedelta(seconds=o.duration_s)
        assert (o.state, o.caregiver_id, o.provider_id) == ("accepted", s.caregiver_id, provider_id)


async def test_job_publishes_tomorrow_and_reads_are_scoped(
    db: AsyncSession, client: httpx.AsyncClient, login: Login
) -> None:
    w = await _world(db, client, login)
    h = w["h"]
    # A cleaning order: the caregivers can clean, but the provider holds no CLEAN contract.
    clean = await _order(db, w["elders"][2], "CLEAN", _at(14), 3600)
    await db.commit()
    written = await jobs.plan_tomorrow(db, TEST_NOW)  # the scheduled job itself
    assert written >= 1
    plan = await db.scalar(
        select(ProviderDayPlan).where(
            ProviderDayPlan.provider_id == w["provider_id"], ProviderDayPlan.plan_on == TOMORROW
        )
    )
    assert plan is not None
    assert plan.revision == 1
    assert plan.published_at == TEST_NOW
    stops = await _stops(db, plan.id)
    assert set(stops) | set(plan.unassigned_order_ids) == set(w["orders"])
    assert not plan.unassigned_order_ids  # four caregivers, eight spread-out visits: all fit
    await _check_routes(db, stops)
    # The certificate expiring today does not count tomorrow: someone else bathes.
    assert stops[w["bath_order"]].caregiver_id != w["expired_holder"]
    assert plan.travel_s > 0
    # Not contracted: not planned, still waiting.
    assert clean not in stops
    assert (await _orders(db, [clean]))[clean].state == "created"

    # Published: every stop is an accepted order with its visit at the planned start, recorded once.
    await _check_published(db, w["provider_id"], stops)
    first = w["orders"][0]
    assert await _transitions(db, first) == [
        ("none", "created", "operator", ""),
        ("created", "accepted", "system", "day plan"),
    ]

    # The caregiver sees their visits in the app, in start order.
    mine = sorted(
        (s for s in stops.values() if s.caregiver_id == w["demo_caregiver"]), key=lambda s: s.planned_start_at
    )
    r = await client.get(
        "/api/v1/caregiver/plan", params={"day": TOMORROW.isoformat()}, headers=h["caregiver"]
    )
    assert r.status_code == 200, r.text
    assert [(i["visit"]["id"], i["order_state"]) for i in r.json()] == [
        (s.visit_id, "accepted") for s in mine
    ]

    # Real-time dispatch and the operator queue leave planned orders alone.
    with pytest.raises(StateConflict):
        await offers.dispatch_order(session=db, order_id=first, now=TEST_NOW)
    r = await client.get("/api/v1/orders", params={"state": "escalated"}, headers=h["operator"])
    assert r.status_code == 200, r.text
    assert not set(w["orders"]) & {o["id"] for o in r.json()["items"]}
    r = await client.post(
        f"/api/v1/orders/{first}/assign", json={"caregiver_id": w["demo_caregiver"]}, headers=h["operator"]
    )
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "dispatch.not_escalated"

    # Running the job again changes nothing: no new revision, visit or transition.
    before = {oid: (s.caregiver_id, s.planned_start_at, s.visit_id) for oid, s in stops.items()}
    transitions = await db.scalar(
        select(func.count()).select_from(OrderTransition).where(OrderTransition.order_id.in_(w["orders"]))
    )
    await dayplan.plan_tomorrow(session=db, now=TEST_NOW, time_limit_s=PLAN_SECONDS)
    await db.refresh(plan)
    assert plan.revision == 1
    stops = await _stops(db, plan.id)
    assert {oid: (s.caregiver_id, s.planned_start_at, s.visit_id) for oid, s in stops.items()} == before
    assert len(await _visits(db, w["orders"])) == len(w["orders"])
    assert transitions == await db.scalar(
        select(func.count()).select_from(OrderTransition).where(OrderTransition.order_id.in_(w["orders"]))
    )

    # A new order is inserted and published; nothing planned moves, not even in time.
    late = await _order(db, w["elders"][0], "VISIT", _at(17), 1800)
    await dayplan.plan_tomorrow(session=db, now=TEST_NOW, time_limit_s=PLAN_SECONDS)
    await db.refresh(plan)
    assert plan.revision == 2
    stops = await _stops(db, plan.id)
    assert late in stops
    assert {
        oid: (s.caregiver_id, s.planned_start_at, s.visit_id) for oid, s in stops.items() if oid != late
    } == before
    await _check_published(db, w["provider_id"], stops)
    await _check_routes(db, stops)
    await db.commit()

    # GET: the provider admin sees the whole plan, the caregiver only their own route.
    r = await client.get(f"/api/v1/dayplans/{TOMORROW.isoformat()}", headers=h["provider_admin"])
    assert r.status_code == 200, r.text
    [body] = r.json()
    assert body["provider_id"] == w["provider_id"]
    assert sorted(o["order_id"] for route in body["routes"] for o in route["stops"]) == sorted(stops)
    assert body["published_at"] is not None
    visit_of = dict(
        (await db.execute(select(Visit.order_id, Visit.id).where(Visit.order_id.in_(stops)))).all()
    )
    assert {o["order_id"]: o["visit_id"] for route in body["routes"] for o in route["stops"]} == visit_of
    r = await client.get(f"/api/v1/dayplans/{TOMORROW.isoformat()}", headers=h["caregiver"])
    assert r.status_code == 200, r.text
    mine_ids = [s.order_id for s in stops.values() if s.caregiver_id == w["demo_caregiver"]]
    got = r.json()
    if mine_ids:
        assert [route["caregiver_id"] for route in got[0]["routes"]] == [w["demo_caregiver"]]
        assert sorted(o["order_id"] for o in got[0]["routes"][0]["stops"]) == sorted(mine_ids)
        assert got[0]["unassigned_order_ids"] == []
    else:
        assert got == []
    r = await client.get(f"/api/v1/dayplans/{TOMORROW.isoformat()}", headers=h["elder"])
    assert r.status_code == 403
    r = await client.get(
        f"/api/v1/dayplans/{TOMORROW.isoformat()}",
        params={"provider_id": w["provider_id"] + 1},
        headers=h["provider_admin"],
    )
    assert r.status_code == 403
    assert r.json()["code"] == "scope.provider"
    r = await client.get("/api/v1/dayplans/2026-13-40", headers=h["provider_admin"])
    assert r.status_code == 422
    assert r.json()["code"] == "dayplan.date_invalid"


async def test_replan_after_sick_call_moves_only_visits_not_yet_started(
    db: AsyncSession, client: httpx.AsyncClient, login: Login
) -> None:
    w = await _world(db, client, login)
    h = w["h"]
    sick, others = w["demo_caregiver"], [c for c in w["caregivers"] if c != w["demo_caregiver"]]
    under_way, movable, bath = w["orders"][0], w["orders"][1], w["bath_order"]
    # (The planner may give the demo caregiver more visits; they move like ``movable``.)
    # Steer the build: only the demo caregiver may serve these three elders.
    for k in (0, 1, 7):
        for cid in others:
            db.add(ElderBlockedCaregiver(elder_id=w["elders"][k], caregiver_id=cid, reason="test"))
    await db.flush()
    plan = await _plan(db, w["provider_id"])
    before = await _stops(db, plan.id)
    assert {under_way, movable, bath} <= {o for o, s in before.items() if s.caregiver_id == sick}
    # After publication the blocks are lifted and nobody else can bathe any more.
    await db.execute(delete(ElderBlockedCaregiver).where(ElderBlockedCaregiver.elder_id.in_(w["elders"])))
    await db.execute(update(Caregiver).where(Caregiver.id.in_(others)).values(skills=["VISIT"]))
    await db.commit()
    # The demo caregiver sets off to the first visit, then calls in sick.
    r = await client.post(
        f"/api/v1/caregiver/visits/{before[under_way].visit_id}/en-route", headers=h["caregiver"]
    )
    assert r.status_code == 200, r.text
    day = TOMORROW.isoformat()

    # Denials and bad input first: nothing changes.
    r = await client.post(
        f"/api/v1/dayplans/{day}/replan", json={"sick_caregiver_ids": [sick]}, headers=h["elder"]
    )
    assert r.status_code == 403
    r = await client.post(f"/api/v1/dayplans/{day}/replan", json={}, headers=h["caregiver"])
    assert r.status_code == 403
    r = await client.post(f"/api/v1/dayplans/{day}/replan", json={}, headers=h["supervisor"])
    assert r.status_code == 422
    assert r.json()["code"] == "dayplan.provider_required"
    r = await client.post(
        f"/api/v1/dayplans/{day}/replan",
        json={"provider_id": w["provider_id"] + 1},
        headers=h["provider_admin"],
    )
    assert r.status_code == 403
    r = await client.post(
        f"/api/v1/dayplans/{day}/replan", json={"sick_caregiver_ids": [2**40]}, headers=h["provider_admin"]
    )
    assert r.status_code == 422
    assert r.json()["code"] == "dayplan.caregiver_unknown"
    r = await client.post(
        f"/api/v1/dayplans/{day}/replan", json={"cancelled_order_ids": [movable]}, headers=h["provider_admin"]
    )
    assert r.status_code == 409  # a live order is cancelled through the order, not the plan
    assert r.json()["code"] == "dayplan.order_not_cancelled"
    r = await client.post("/api/v1/dayplans/2026-11-25/replan", json={}, headers=h["provider_admin"])
    assert r.status_code == 404
    await db.refresh(plan)
    assert plan.revision == 1

    r = await client.post(
        f"/api/v1/dayplans/{day}/replan", json={"sick_caregiver_ids": [sick]}, headers=h["provider_admin"]
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["revision"] == 2
    assert body["unavailable_caregiver_ids"] == [sick]
    after = {
        o["order_id"]: (route["caregiver_id"], o["seq"], o["planned_start_at"])
        for route in body["routes"]
        for o in route["stops"]
    }
    stored = await _stops(db, plan.id)
    orders = await _orders(db, w["orders"])
    visits = await _visits(db, w["orders"])
    # The visit under way stays: same caregiver, start and visit; the sick caregiver has nothing else.
    assert [o for o, (c, _, _) in after.items() if c == sick] == [under_way]
    assert stored[under_way].planned_start_at == before[under_way].planned_start_at
    assert stored[under_way].visit_id == before[under_way].visit_id
    assert orders[under_way].state == "en_route"
    # The visits not yet started went to others in place: the same visits, reassigned and recorded.
    rehomed = [o for o, s in before.items() if s.caregiver_id == sick and o not in (under_way, bath)]
    assert movable in rehomed
    for oid in rehomed:
        new_cg = after[oid][0]
        assert new_cg != sick
        assert stored[oid].visit_id == before[oid].visit_id
        assert (visits[oid].caregiver_id, orders[oid].caregiver_id, orders[oid].state) == (
            new_cg,
            new_cg,
            "accepted",
        )
        assert visits[oid].scheduled_start_at == stored[oid].planned_start_at
    new_cg = after[movable][0]
    assert (await _transitions(db, movable))[-1] == (
        "accepted",
        "accepted",
        "provider_admin",
        f"day plan r2: caregiver {sick} → {new_cg}",
    )
    # Nobody else can bathe: the bath is withdrawn to the operator queue.
    assert body["unassigned_order_ids"] == [bath]
    assert (orders[bath].state, orders[bath].caregiver_id, orders[bath].provider_id) == (
        "escalated",
        None,
        None,
    )
    assert bath not in visits
    assert (await _transitions(db, bath))[-1][:3] == ("accepted", "escalated", "system")
    assert body["moved"] == len(rehomed)
    # Every other visit keeps caregiver, start and visit, and its order in the route (the moved ones
    # are inserted into gaps).
    for oid, s in before.items():
        if s.caregiver_id != sick:
            assert (stored[oid].caregiver_id, stored[oid].planned_start_at, stored[oid].visit_id) == (
                s.caregiver_id,
                s.planned_start_at,
                s.visit_id,
            )
    for cid in others:
        kept = [o for o, s in sorted(before.items(), key=lambda kv: kv[1].seq) if s.caregiver_id == cid]
        assert sorted(kept, key=lambda o: stored[o].seq) == kept
    await _check_routes(db, stored)
    await _check_published(db, w["provider_id"], {o: s for o, s in stored.items() if o != under_way})

    # The sick caregiver's app shows only the visit under way; the operator sees the bath in the queue.
    r = await client.get("/api/v1/caregiver/plan", params={"day": day}, headers=h["caregiver"])
    assert [i["visit"]["order_id"] for i in r.json()] == [under_way]
    r = await client.get("/api/v1/orders", params={"state": "escalated"}, headers=h["operator"])
    assert bath in {o["id"] for o in r.json()["items"]}

    # The sick caregiver stays out of later re-plans; a supervisor names the provider.
    r = await client.post(
        f"/api/v1/dayplans/{day}/replan", json={"provider_id": w["provider_id"]}, headers=h["supervisor"]
    )
    assert r.status_code == 200, r.text
    assert r.json()["revision"] == 3
    assert r.json()["moved"] == 0
    assert [
        s["order_id"] for route in r.json()["routes"] if route["caregiver_id"] == sick for s in route["stops"]
    ] == [under_way]


async def test_cancelled_and_withdrawn_orders_leave_the_plan(
    db: AsyncSession, client: httpx.AsyncClient, login: Login
) -> None:
    w = await _world(db, client, login)
    h = w["h"]
    plan = await _plan(db, w["provider_id"])
    before = await _stops(db, plan.id)
    await db.commit()
    cancelled, withdrawn = w["orders"][2], w["orders"][4]
    # The operator cancels one order; the provider withdraws its caregiver from another.
    r = await client.post(
        f"/api/v1/orders/{cancelled}/cancel", json={"reason": "家属取消"}, headers=h["operator"]
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/orders/{withdrawn}/cancel", json={"reason": "护理员请假"}, headers=h["provider_admin"]
    )
    assert r.status_code == 200, r.text
    assert r.json()["consequence"] == "redispatch"
    assert withdrawn not in await _visits(db, [withdrawn])

    # The next run of the job repairs the plan: the cancelled order drops its stop, the withdrawn one
    # goes to another caregiver and is published again; nothing else changes.
    await dayplan.plan_tomorrow(session=db, now=TEST_NOW, time_limit_s=PLAN_SECONDS)
    await db.refresh(plan)
    assert plan.revision == 2
    stops = await _stops(db, plan.id)
    assert cancelled not in stops
    assert cancelled not in plan.unassigned_order_ids
    assert stops[withdrawn].caregiver_id != before[withdrawn].caregiver_id
    assert stops[withdrawn].visit_id is not None
    await _check_published(db, w["provider_id"], stops)
    await _check_routes(db, stops)
    for oid, s in before.items():
        if oid not in (cancelled, withdrawn):
            assert (stops[oid].caregiver_id, stops[oid].planned_start_at, stops[oid].visit_id) == (
                s.caregiver_id,
                s.planned_start_at,
                s.visit_id,
            )
    # Repaired once: a further run changes nothing.
    await dayplan.plan_tomorrow(session=db, now=TEST_NOW, time_limit_s=PLAN_SECONDS)
    await db.refresh(plan)
    assert plan.revision == 2


async def test_certificate_expiring_tomorrow_is_not_planned_the_day_after(
    db: AsyncSession, client: httpx.AsyncClient, login: Login
) -> None:
    w = await _world(db, client, login)
    holder = w["demo_caregiver"]
    # Only the holder bathes; their certificate is valid through tomorrow.
    await db.execute(
        update(Caregiver)
        .where(Caregiver.id.in_(w["caregivers"]), Caregiver.id != holder)
        .values(skills=["VISIT"])
    )
    await db.execute(
        update(Certificate).where(Certificate.caregiver_id == holder).values(expires_on=TOMORROW)
    )
    day_after = TOMORROW + dt.timedelta(days=1)
    bath_after = await _order(db, w["elders"][7], "BATH", _at(15, 30, day_after), 2700)
    tomorrow = await _stops(db, (await _plan(db, w["provider_id"])).id)
    assert tomorrow[w["bath_order"]].caregiver_id == holder
    plan_after = await _plan(db, w["provider_id"], day_after)
    assert plan_after.unassigned_order_ids == [bath_after]
    assert await _stops(db, plan_after.id) == {}
    assert (await _orders(db, [bath_after]))[bath_after].state == "created"
    assert await _visits(db, [bath_after]) == {}


async def test_plans_stored_before_publication_are_published_and_conflicts_left_out(
    db: AsyncSession, client: httpx.AsyncClient, login: Login
) -> None:
    w = await _world(db, client, login)
    a, b = w["orders"][:2]
    cg = w["demo_caregiver"]
    # A proposal stored before plans were published: two stops, and the second order was cancelled since.
    legacy = ProviderDayPlan(
        provider_id=w["provider_id"],
        plan_on=TOMORROW,
        built_at=TEST_NOW - dt.timedelta(hours=1),
        revision=1,
        travel_s=0,
        unassigned_order_ids=[],
        unavailable_caregiver_ids=[],
    )
    db.add(legacy)
    await db.flush()
    for seq, (oid, at) in enumerate(((a, _at(9, 30)), (b, _at(11))), start=1):
        db.add(DayPlanStop(plan_id=legacy.id, order_id=oid, caregiver_id=cg, seq=seq, planned_start_at=at))
    await db.execute(update(ServiceOrder).where(ServiceOrder.id == b).values(state="cancelled"))
    await db.flush()
    await dayplan.plan_tomorrow(session=db, now=TEST_NOW, time_limit_s=PLAN_SECONDS)
    await db.refresh(legacy)
    assert legacy.published_at == TEST_NOW
    stops = await _stops(db, legacy.id)
    assert (stops[a].caregiver_id, stops[a].planned_start_at) == (cg, _at(9, 30))  # published as it was
    assert b not in stops
    assert set(stops) | set(legacy.unassigned_order_ids) == set(w["orders"]) - {b}
    await _check_published(db, w["provider_id"], stops)

    # An order that changes state between planning and publishing is left out, unassigned.
    d = await _order(db, w["elders"][3], "VISIT", _at(16))
    e = await _order(db, w["elders"][4], "VISIT", _at(17))
    await db.execute(update(ServiceOrder).where(ServiceOrder.id == e).values(state="offered"))
    midnight = day_start(TOMORROW)
    proposal = routing.DayPlan({cg: (routing.Stop(d, 16 * 3600), routing.Stop(e, 17 * 3600))}, (), 0, 0, 0)
    applied, visits = await publish.apply_plan(
        db, legacy, proposal, held={}, fixed={}, actor=SYSTEM, actor_user_id=None, now=TEST_NOW
    )
    assert applied.routes == {cg: (routing.Stop(d, 16 * 3600),)}
    assert applied.unassigned == (e,)
    assert set(visits) == {d}
    published = await _visits(db, [d, e])
    assert set(published) == {d}
    assert published[d].scheduled_start_at == midnight + dt.timedelta(hours=16)
    assert (await _orders(db, [e]))[e].state == OrderState.OFFERED.value


async def test_the_planner_budget_is_dated_policy(db: AsyncSession) -> None:
    # Seeded default: 0.2 s + 0.02 s per visit, at most 5 s.
    seeded = await dayplan.dayplan_budget(db, TOMORROW)
    assert seeded == DayPlanBudget(max_s=5.0, min_s=0.2, per_visit_s=0.02)
    assert seeded.seconds(10) == pytest.approx(0.4)
    assert seeded.seconds(1000) == 5.0
    # From the day after tomorrow a tighter cap applies; the other numbers stay as seeded.
    db.add(
        PolicyValue(
            key="dispatch.dayplan",
            scope="*",
            value={"max_ms": 1000, "min_ms": 200, "per_visit_ms": 20},
            valid_from=TOMORROW + dt.timedelta(days=1),
            source="test",
        )
    )
    await db.flush()
    assert await dayplan.dayplan_budget(db, TOMORROW) == seeded
    later = await dayplan.dayplan_budget(db, TOMORROW + dt.timedelta(days=1))
    assert (later.max_s, later.seconds(1000)) == (1.0, 1.0)


async def test_a_visit_booked_outside_the_plan_is_routed_around(
    db: AsyncSession, client: httpx.AsyncClient, login: Login
) -> None:
    w = await _world(db, client, login)
    only = w["demo_caregiver"]
    others = [c for c in w["caregivers"] if c != only]
    await db.execute(update(Caregiver).where(Caregiver.id.in_(others)).values(is_active=False))
    # The caregiver already has a visit tomorrow 10:00-12:00 (taken in real time, not the plan's).
    booked = await _order(db, w["elders"][5], "VISIT", _at(10), 7200)
    await change_state(
        session=db,
        order_id=booked,
        expected=OrderState.CREATED,
        target=OrderState.ACCEPTED,
        actor=SYSTEM,
        actor_user_id=None,
        now=TEST_NOW,
        values={"caregiver_id": only, "provider_id": w["provider_id"]},
    )
    order = (await _orders(db, [booked]))[booked]
    db.add(new_visit(order, caregiver_id=only, provider_id=w["provider_id"], start=_at(10)))
    await db.flush()
    plan = await _plan(db, w["provider_id"])
    stops = await _stops(db, plan.id)
    assert booked not in stops
    assert booked not in plan.unassigned_order_ids
    assert stops  # the caregiver still gets visits before and after the booking
    assert set(stops) | set(plan.unassigned_order_ids) == set(w["orders"])
    durations = {o.id: o.duration_s for o in (await _orders(db, list(stops))).values()}
    for oid, s in stops.items():
        end = s.planned_start_at + dt.timedelta(seconds=durations[oid])
        assert end <= _at(10) or s.planned_start_at >= _at(12), oid
    await _check_routes(db, stops)


# --- A re-plan racing the caregiver app (separate connections, committed data) -------------------------


@pytest.fixture
async def committed_world(engine: AsyncEngine, seeded: dict[str, object]) -> AsyncIterator[dict[str, Any]]:
    """Its own district, elder and provider (contracted for VISIT) with two caregivers, one VISIT order
    for tomorrow; committed, so that two connections can race over it, and deleted afterwards."""
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as s, s.begin():
        place = await support.add_place(s, n=2, id_number="420902194005029990", birth_on=dt.date(1940, 5, 2))
        d, e, p = place.district, place.elder, place.provider
        s.add(ProviderDistrict(provider_id=p.id, district_id=d.id))
        s.add(ProviderService(provider_id=p.id, service_code="VISIT", valid_from=CONTRACTS_FROM))
        cgs = [
            Caregiver(
                provider_id=p.id,
                name=f"排班护理员{i}",
                gender="F",
                phone=f"1390001{i:04d}",
                skills=["VISIT"],
                shift_start=dt.time(7),
                shift_end=dt.time(19),
                work_days=[1, 2, 3, 4, 5, 6, 7],
                home_lat=30.921,
                home_lon=113.911,
            )
            for i in range(2)
        ]
        s.add_all(cgs)
        await s.flush()
        order = await _order(s, e.id, "VISIT", _at(9))
        ids: dict[str, Any] = {"provider": p.id, "order": order, "caregivers": [cg.id for cg in cgs]}
        user = await s.scalar(select(AppUser.id).where(AppUser.username == "demo_caregiver"))
        ids["user"] = user  # only recorded as the actor of the caregiver app's transition
    yield ids
    async with factory() as s, s.begin():
        await support.remove_place(s, place)


async def test_a_caregiver_setting_off_waits_for_the_replan_that_takes_the_visit(
    engine: AsyncEngine, committed_world: dict[str, Any]
) -> None:
    w = committed_world
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as s, s.begin():
        plan = await dayplan.plan_provider_day(
            session=s, provider_id=w["provider"], day=TOMORROW, now=TEST_NOW, time_limit_s=PLAN_SECONDS
        )
        assert plan is not None
        [stop] = (await _stops(s, plan.id)).values()
    sick, visit_id = stop.caregiver_id, stop.visit_id
    assert visit_id is not None
    [other] = [c for c in w["caregivers"] if c != sick]
    admin = Principal(user_id=w["user"], username="t", role=Role.PROVIDER_ADMIN, provider_id=w["provider"])
    caregiver = Principal(user_id=w["user"], username="t", role=Role.CAREGIVER, caregiver_id=sick)
    async with factory() as replanning:
        # The re-plan holds the order's lock while it hands the visit to the other caregiver ...
        await replan.replan_day(
            session=replanning,
            actor=admin,
            day=TOMORROW,
            provider_id=None,
            sick_caregiver_ids=[sick],
            cancelled_order_ids=[],
            now=TEST_NOW,
        )

        async def set_off() -> str:
            try:
                async with factory() as s, s.begin():
                    await caregiver_app.en_route(session=s, actor=caregiver, visit_id=visit_id, now=TEST_NOW)
                return "en route"
            except NotFound as exc:
                return exc.code

        # ... so the sick caregiver's "on my way", read before, waits, and then finds it is not theirs.
        racing = asyncio.create_task(set_off())
        await asyncio.sleep(0.3)
        assert not racing.done()
        await replanning.commit()
    assert await racing == "visit.not_found"
    async with factory() as s:
        order = await s.get(ServiceOrder, w["order"])
        visit = await s.get(Visit, visit_id)
        assert order is not None
        assert visit is not None
        assert (order.state, order.caregiver_id, visit.caregiver_id) == ("accepted", other, other)


async def test_orders_no_plan_can_place_go_to_the_operators_from_the_evening_cutoff(
    db: AsyncSession, client: httpx.AsyncClient, login: Login
) -> None:
    """A visit wanted at 03:00 fits nobody's shift: during the day it stays ``created`` for later
    runs; from 20:00 (policy ``dispatch.dayplan`` ``escalate_at_minute``) the job escalates it, and
    leaves the planned orders alone."""
    w = await _world(db, client, login)
    night = await _order(db, w["elders"][0], "VISIT", _at(3))
    await dayplan.plan_tomorrow(session=db, now=TEST_NOW, time_limit_s=PLAN_SECONDS)  # 10:00 local
    assert (await _orders(db, [night]))[night].state == "created"

    today = TEST_NOW.astimezone(SHANGHAI).date()
    await dayplan.plan_tomorrow(
        session=db, now=dt.datetime.combine(today, dt.time(19, 59), SHANGHAI), time_limit_s=PLAN_SECONDS
    )
    assert (await _orders(db, [night]))[night].state == "created"
    evening = dt.datetime.combine(today, dt.time(20, 0), SHANGHAI)
    await dayplan.plan_tomorrow(session=db, now=evening, time_limit_s=PLAN_SECONDS)
    states = await _orders(db, [night, *w["orders"]])
    assert states[night].state == "escalated"
    assert (await _transitions(db, night))[-1] == (
        "created",
        "escalated",
        "system",
        "no day plan could place it",
    )
    assert {states[o].state for o in w["orders"]} <= {"accepted"}
    # Rerunning escalates nothing twice.
    assert await dayplan.escalate_unplaced(session=db, day=TOMORROW, now=evening) == []


async def test_a_dispatcher_builds_a_day_on_demand_safely_twice(
    db: AsyncSession, client: httpx.AsyncClient, login: Login
) -> None:
    w = await _world(db, client, login)
    h = w["h"]
    path = f"/api/v1/dayplans/{TOMORROW.isoformat()}/build"
    r = await client.post(path, json={}, headers=h["provider_admin"])
    assert r.status_code == 200, r.text
    built = r.json()
    assert built["provider_id"] == w["provider_id"]
    plan = await _plan(db, w["provider_id"])
    stops = await _stops(db, plan.id)
    assert set(stops) | set(plan.unassigned_order_ids) == set(w["orders"])
    await _check_published(db, w["provider_id"], stops)
    # Again (a double click, or the nightly job meanwhile): the same plan, nothing moved.
    r = await client.post(path, json={"provider_id": w["provider_id"]}, headers=h["supervisor"])
    assert r.status_code == 200, r.text
    await db.refresh(plan)
    assert (plan.id, plan.revision) == (built["id"], 1)
    assert await _stops(db, plan.id) == stops
    for role, body, status, code in (
        ("caregiver", {}, 403, "auth.forbidden"),
        ("operator", {"provider_id": w["provider_id"]}, 403, "auth.forbidden"),
        ("provider_admin", {"provider_id": w["provider_id"] + 1}, 403, "scope.provider"),
        ("supervisor", {}, 422, "dayplan.provider_required"),
    ):
        r = await client.post(path, json=body, headers=h[role])
        assert (r.status_code, r.json()["code"]) == (status, code), role
    r = await client.post("/api/v1/dayplans/2026-11-19/build", json={}, headers=h["provider_admin"])
    assert (r.status_code, r.json()["code"]) == (422, "dayplan.day_past")
    # Today is dispatched in real time: a first build would plan windows that have partly passed.
    r = await client.post("/api/v1/dayplans/2026-11-20/build", json={}, headers=h["provider_admin"])
    assert (r.status_code, r.json()["code"]) == (422, "dayplan.day_not_ahead")
    r = await client.post("/api/v1/dayplans/2026-11-25/build", json={}, headers=h["provider_admin"])
    assert (r.status_code, r.json()["code"]) == (404, "day_plan.nothing_to_plan")


async def test_orders_placed_or_cancelled_after_the_build_mark_the_day_and_the_job_replans_it(
    db: AsyncSession, client: httpx.AsyncClient, login: Login
) -> None:
    from dispatch.models import DayPlanDirty

    w = await _world(db, client, login)
    h = w["h"]
    elder_h = h["elder"]
    plan = await _plan(db, w["provider_id"])
    before = await _stops(db, plan.id)
    await db.commit()
    assert await db.scalar(select(func.count()).select_from(DayPlanDirty)) == 0
    # After the nightly build, the elder orders a visit for tomorrow afternoon.
    me = (await client.get("/api/v1/auth/me", headers=elder_h)).json()
    r = await client.post(
        "/api/v1/orders",
        json={
            "elder_id": me["elder_id"],
            "service_code": "VISIT",
            "window_start_at": _at(15).isoformat(),
            "window_end_at": _at(17).isoformat(),
        },
        headers=elder_h,
    )
    assert r.status_code == 201, r.text
    new_order = r.json()["id"]
    assert r.json()["state"] == "created"  # not dispatched in real time: tomorrow is planned
    assert list(await db.scalars(select(DayPlanDirty.plan_on))) == [TOMORROW]
    # An order for a day nobody has planned yet marks nothing.
    r = await client.post(
        "/api/v1/orders",
        json={
            "elder_id": me["elder_id"],
            "service_code": "VISIT",
            "window_start_at": _at(15, day=TOMORROW + dt.timedelta(days=3)).isoformat(),
        },
        headers=elder_h,
    )
    assert r.status_code == 201, r.text
    assert list(await db.scalars(select(DayPlanDirty.plan_on))) == [TOMORROW]

    assert await jobs.rebuild_dirty_plans(db, TEST_NOW) == 1  # the frequent job
    await db.refresh(plan)
    assert plan.revision == 2
    stops = await _stops(db, plan.id)
    assert new_order in stops
    assert stops[new_order].visit_id is not None
    for oid, s in before.items():  # minimal change: nothing planned moved
        assert stops[oid] == s
    assert await db.scalar(select(func.count()).select_from(DayPlanDirty)) == 0
    assert await jobs.rebuild_dirty_plans(db, TEST_NOW) == 0

    # A cancellation marks the day again and the next run takes the stop out.
    cancelled = w["orders"][3]
    r = await client.post(
        f"/api/v1/orders/{cancelled}/cancel", json={"reason": "住院"}, headers=h["operator"]
    )
    assert r.status_code == 200, r.text
    assert await jobs.rebuild_dirty_plans(db, TEST_NOW) == 1
    await db.refresh(plan)
    assert plan.revision == 3
    assert cancelled not in await _stops(db, plan.id)


async def test_two_builds_of_one_provider_day_at_once_make_one_plan(
    engine: AsyncEngine, committed_world: dict[str, Any]
) -> None:
    w = committed_world
    factory = async_sessionmaker(engine, expire_on_commit=False)
    admin = Principal(user_id=w["user"], username="t", role=Role.PROVIDER_ADMIN, provider_id=w["provider"])

    async def build(hold_s: float) -> tuple[int, int]:
        async with factory() as s, s.begin():
            view = await dayplan.build_day(
                session=s, actor=admin, day=TOMORROW, provider_id=None, now=TEST_NOW
            )
            await asyncio.sleep(hold_s)  # the first keeps its transaction open while the second arrives
            return view.plan.id, view.plan.revision

    first = asyncio.create_task(build(0.5))
    await asyncio.sleep(0.2)
    second = asyncio.create_task(build(0))
    await asyncio.sleep(0.1)
    assert not second.done()  # waits for the first build's lock instead of planning the day again
    assert await first == await second
    async with factory() as s:
        plans = await s.scalar(
            select(func.count())
            .select_from(ProviderDayPlan)
            .where(ProviderDayPlan.provider_id == w["provider"])
        )
    assert plans == 1


async def test_an_order_placed_while_the_day_is_replanned_neither_waits_nor_is_lost(
    engine: AsyncEngine, committed_world: dict[str, Any]
) -> None:
    """The rebuild job holds its day's order rows while it re-plans. A request placing an order that
    day meanwhile must not wait on the job's marks (while holding its own order row that the job may
    lock next: a deadlock), and its mark must survive the job's clean-up, since the job did not see
    that order."""
    from dispatch.models import DayPlanDirty

    w = committed_world
    factory = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with factory() as s, s.begin():
            await dayplan.plan_provider_day(
                session=s, provider_id=w["provider"], day=TOMORROW, now=TEST_NOW, time_limit_s=PLAN_SECONDS
            )
        async with factory() as s, s.begin():
            elder = (await s.get(ServiceOrder, w["order"])).elder_id  # type: ignore[union-attr]
            await _order(s, elder, "VISIT", _at(14))  # after the build: marks the day
        async with factory() as rebuilding:
            assert await jobs.rebuild_dirty_plans(rebuilding, TEST_NOW) == 1

            async def place() -> int:
                async with factory() as s, s.begin():
                    return await _order(s, elder, "VISIT", _at(16))

            late = await asyncio.wait_for(place(), 5)  # does not wait for the re-plan to commit
            await rebuilding.commit()
        async with factory() as s:
            marks = set(await s.scalars(select(DayPlanDirty.plan_on)))
        assert marks == {TOMORROW}  # the late order's mark is still there for the next run
        async with factory() as s, s.begin():
            assert await jobs.rebuild_dirty_plans(s, TEST_NOW) == 1
            plan = await _plan(s, w["provider"])
            assert late in await _stops(s, plan.id)
    finally:
        async with factory() as s, s.begin():
            await s.execute(delete(DayPlanDirty).where(DayPlanDirty.plan_on == TOMORROW))


async def test_the_rebuild_job_repairs_todays_plans_but_builds_none(
    db: AsyncSession, client: httpx.AsyncClient, login: Login
) -> None:
    """On the day itself a first build would plan whole-day windows, part of which have passed: the
    rebuild job only repairs the plans that exist (today's new orders are dispatched in real time)."""
    w = await _world(db, client, login)
    other = await db.scalar(
        select(ProviderDistrict.provider_id).where(ProviderDistrict.provider_id != w["provider_id"]).limit(1)
    )
    assert other is not None
    # Another provider's plan of Saturday exists (empty), so an order for Saturday marks the day.
    db.add(
        ProviderDayPlan(
            provider_id=other, plan_on=TOMORROW, built_at=TEST_NOW, travel_s=0, published_at=TEST_NOW
        )
    )
    await db.flush()
    await _order(db, w["elders"][0], "VISIT", _at(17))
    saturday_10 = TEST_NOW + dt.timedelta(days=1)  # Saturday is today now; its morning has passed
    assert await jobs.rebuild_dirty_plans(db, saturday_10) == 1
    mine = await db.scalar(
        select(ProviderDayPlan).where(
            ProviderDayPlan.provider_id == w["provider_id"], ProviderDayPlan.plan_on == TOMORROW
        )
    )
    assert mine is None


async def test_an_unplaced_order_cancelled_leaves_the_plans_unassigned_list(
    db: AsyncSession, client: httpx.AsyncClient, login: Login
) -> None:
    w = await _world(db, client, login)
    late = await _order(db, w["elders"][1], "VISIT", _at(21))  # after every caregiver's shift: unplaceable
    plan = await _plan(db, w["provider_id"])
    assert late in plan.unassigned_order_ids
    await db.commit()
    r = await client.post(
        f"/api/v1/orders/{late}/cancel", json={"reason": "不用了"}, headers=w["h"]["operator"]
    )
    assert r.status_code == 200, r.text
    assert await jobs.rebuild_dirty_plans(db, TEST_NOW) == 1
    await db.refresh(plan)
    assert late not in plan.unassigned_order_ids
