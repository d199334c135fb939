"""Day plans on the real database: the planning job stores tomorrow's plan per provider (every hard rule
kept, a certificate that expires today keeps its holder off tomorrow's bathing visit), the GET is scoped
(provider admin: own provider; caregiver: own route), and a re-plan after a caregiver calls in sick and
a visit is cancelled moves nothing it does not have to.

Each test runs inside the rolled-back test transaction; the app's clock is ``TEST_NOW`` (Friday
2026-11-20 10:00 in Xiaogan), so "tomorrow" is Saturday 2026-11-21.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Caregiver, Certificate, Elder, ElderBlockedCaregiver, ProviderDistrict
from dispatch import dayplans, jobs
from dispatch.matching import LOCAL_TZ
from dispatch.models import DayPlanStop, ProviderDayPlan, ServiceOrder
from dispatch.orders import create_order
from dispatch.states import Actor
from tests.conftest import TEST_NOW

pytestmark = pytest.mark.integration

Login = Callable[..., Awaitable[dict[str, str]]]
TOMORROW = dt.date(2026, 11, 21)
PLAN_SECONDS = 0.3  # the planner's search budget in these small cases


def _at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(TOMORROW, dt.time(hour, minute), LOCAL_TZ)


async def _world(db: AsyncSession, client: httpx.AsyncClient, login: Login) -> dict[str, Any]:
    """The demo provider alone serves the demo elder's district; its caregivers work every day 07-19
    from homes near the elder with the VISIT and BATH skills; caregiver A's elder-care certificate
    expires today, the others' next year. Eight orders for tomorrow (seven visits, one bath)."""
    headers = {r: await login(f"demo_{r}") for r in ("provider_admin", "caregiver", "supervisor", "elder")}
    me = {r: (await client.get("/api/v1/auth/me", headers=h)).json() for r, h in headers.items()}
    provider_id = me["provider_admin"]["provider_id"]
    elder = await db.get(Elder, me["elder"]["elder_id"])
    assert elder is not None
    assert provider_id is not None
    await db.execute(delete(ProviderDistrict).where(ProviderDistrict.district_id == elder.district_id))
    db.add(ProviderDistrict(provider_id=provider_id, district_id=elder.district_id))
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
                skills=["VISIT", "BATH"],
                shift_start=dt.time(7),
                shift_end=dt.time(19),
                work_days=[1, 2, 3, 4, 5, 6, 7],
                daily_capacity=8,
                home_lat=elder.lat + 0.004 * (k + 1),
                home_lon=elder.lon - 0.003 * k,
            )
        )
    await db.execute(delete(Certificate).where(Certificate.caregiver_id.in_(caregivers)))
    expired_holder = caregivers[0]
    for cid in caregivers:
        expires = TEST_NOW.astimezone(LOCAL_TZ).date() if cid == expired_holder else dt.date(2027, 11, 1)
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
    orders = []
    for k, eid in enumerate(elders):
        bath = k == 7
        start = _at(8 + k, 30 * (k % 2))
        order = await create_order(
            session=db,
            elder_id=eid,
            service_code="BATH" if bath else "VISIT",
            window_start_at=start,
            window_end_at=start + dt.timedelta(hours=2),
            duration_s=2700 if bath else 1800,
            actor=Actor.OPERATOR,
            actor_user_id=None,
            now=TEST_NOW,
        )
        orders.append(order.id)
    await db.commit()
    return {
        "h": headers,
        "provider_id": provider_id,
        "caregivers": caregivers,
        "demo_caregiver": demo_cg,
        "expired_holder": expired_holder,
        "orders": orders,
        "bath_order": orders[-1],
    }


async def _stops(db: AsyncSession, plan_id: int) -> dict[int, DayPlanStop]:
    return {
        s.order_id: s
        for s in await db.scalars(
            select(DayPlanStop)
            .where(DayPlanStop.plan_id == plan_id)
            .execution_options(populate_existing=True)
        )
    }


async def _check_routes(db: AsyncSession, stops: dict[int, DayPlanStop]) -> None:
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
    by_cg: dict[int, list[DayPlanStop]] = {}
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


async def test_job_plans_tomorrow_and_reads_are_scoped(
    db: AsyncSession, client: httpx.AsyncClient, login: Login
) -> None:
    w = await _world(db, client, login)
    written = await jobs.plan_tomorrow(db, TEST_NOW)  # the scheduled job itself
    assert written >= 1
    plan = await db.scalar(
        select(ProviderDayPlan).where(
            ProviderDayPlan.provider_id == w["provider_id"], ProviderDayPlan.plan_on == TOMORROW
        )
    )
    assert plan is not None
    assert plan.revision == 1
    stops = await _stops(db, plan.id)
    assert set(stops) | set(plan.unassigned_order_ids) == set(w["orders"])
    assert not plan.unassigned_order_ids  # four caregivers, eight spread-out visits: all fit
    await _check_routes(db, stops)
    # The certificate expiring today does not count tomorrow: someone else bathes.
    assert stops[w["bath_order"]].caregiver_id != w["expired_holder"]
    assert plan.travel_s > 0

    # Running the job again changes nothing; a new order is only inserted.
    before = {oid: (s.caregiver_id, s.planned_start_at) for oid, s in stops.items()}
    await dayplans.plan_tomorrow(session=db, now=TEST_NOW, time_limit_s=PLAN_SECONDS)
    await db.refresh(plan)
    assert plan.revision == 1
    late = await create_order(
        session=db,
        elder_id=(await db.get(ServiceOrder, w["orders"][0])).elder_id,  # type: ignore[union-attr]
        service_code="VISIT",
        window_start_at=_at(17),
        window_end_at=_at(18),
        duration_s=1800,
        actor=Actor.OPERATOR,
        actor_user_id=None,
        now=TEST_NOW,
    )
    await dayplans.plan_tomorrow(session=db, now=TEST_NOW, time_limit_s=PLAN_SECONDS)
    await db.refresh(plan)
    assert plan.revision == 2
    stops = await _stops(db, plan.id)
    assert late.id in stops
    assert {oid: stops[oid].caregiver_id for oid in before} == {oid: c for oid, (c, _) in before.items()}
    await db.commit()

    # GET: the provider admin sees the whole plan, the caregiver only their own route.
    r = await client.get(f"/api/v1/dayplans/{TOMORROW.isoformat()}", headers=w["h"]["provider_admin"])
    assert r.status_code == 200, r.text
    [body] = r.json()
    assert body["provider_id"] == w["provider_id"]
    assert sorted(o["order_id"] for route in body["routes"] for o in route["stops"]) == sorted(stops)
    r = await client.get(f"/api/v1/dayplans/{TOMORROW.isoformat()}", headers=w["h"]["caregiver"])
    assert r.status_code == 200, r.text
    mine = [s.order_id for s in stops.values() if s.caregiver_id == w["demo_caregiver"]]
    got = r.json()
    if mine:
        assert [route["caregiver_id"] for route in got[0]["routes"]] == [w["demo_caregiver"]]
        assert sorted(o["order_id"] for o in got[0]["routes"][0]["stops"]) == sorted(mine)
        assert got[0]["unassigned_order_ids"] == []
    else:
        assert got == []
    r = await client.get(f"/api/v1/dayplans/{TOMORROW.isoformat()}", headers=w["h"]["elder"])
    assert r.status_code == 403
    r = await client.get(
        f"/api/v1/dayplans/{TOMORROW.isoformat()}",
        params={"provider_id": w["provider_id"] + 1},
        headers=w["h"]["provider_admin"],
    )
    assert r.status_code == 403
    assert r.json()["code"] == "scope.provider"
    r = await client.get("/api/v1/dayplans/2026-13-40", headers=w["h"]["provider_admin"])
    assert r.status_code == 422
    assert r.json()["code"] == "dayplan.date_invalid"


async def test_replan_after_sick_caregiver_and_cancelled_visit_moves_little(
    db: AsyncSession, client: httpx.AsyncClient, login: Login
) -> None:
    w = await _world(db, client, login)
    plan = await dayplans.plan_provider_day(
        session=db, provider_id=w["provider_id"], day=TOMORROW, now=TEST_NOW, time_limit_s=PLAN_SECONDS
    )
    assert plan is not None
    before = await _stops(db, plan.id)
    routes: dict[int, list[int]] = {}
    for oid, s in sorted(before.items(), key=lambda kv: (kv[1].caregiver_id, kv[1].seq)):
        routes.setdefault(s.caregiver_id, []).append(oid)
    assert len(routes) >= 2
    sick = max(routes, key=lambda c: len(routes[c]))
    other = next(c for c in routes if c != sick)
    cancelled = routes[other][0]
    await db.commit()
    day = TOMORROW.isoformat()
    h = w["h"]

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
    r = await client.post("/api/v1/dayplans/2026-11-25/replan", json={}, headers=h["provider_admin"])
    assert r.status_code == 404
    await db.refresh(plan)
    assert plan.revision == 1

    r = await client.post(
        f"/api/v1/dayplans/{day}/replan",
        json={"sick_caregiver_ids": [sick], "cancelled_order_ids": [cancelled]},
        headers=h["provider_admin"],
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["revision"] == 2
    assert body["unavailable_caregiver_ids"] == [sick]
    after = {
        o["order_id"]: (route["caregiver_id"], o["seq"]) for route in body["routes"] for o in route["stops"]
    }
    assert sick not in {c for c, _ in after.values()}
    assert cancelled not in after
    assert cancelled not in body["unassigned_order_ids"]
    # Every order the sick caregiver did not hold keeps its caregiver and its order in the route.
    for cid, oids in routes.items():
        if cid == sick:
            continue
        kept = [o for o in oids if o != cancelled]
        assert all(after[o][0] == cid for o in kept)
        assert sorted(kept, key=lambda o: after[o][1]) == kept
    # The sick caregiver's orders went to someone else or are listed as unplanned; only they moved.
    rehomed = [o for o in routes[sick] if o in after]
    assert set(rehomed) | set(body["unassigned_order_ids"]) == set(routes[sick])
    assert body["moved"] == len(rehomed)
    stored = await _stops(db, plan.id)
    assert {o: s.caregiver_id for o, s in stored.items()} == {o: c for o, (c, _) in after.items()}
    await _check_routes(db, stored)

    # The sick caregiver stays out of later re-plans; a supervisor names the provider.
    r = await client.post(
        f"/api/v1/dayplans/{day}/replan", json={"provider_id": w["provider_id"]}, headers=h["supervisor"]
    )
    assert r.status_code == 200, r.text
    assert r.json()["revision"] == 3
    assert sick not in {route["caregiver_id"] for route in r.json()["routes"]}
