"""Recurring series after they are placed, through HTTP on the real app and database: an identical
series is refused (409), series are listed and read in the actor's scope (404 out of it), and paused,
resumed and cancelled by those allowed, as audited conditional state changes that cancel the series'
future orders no caregiver holds yet and keep the rest.

The clock is ``TEST_NOW`` (Friday 2026-11-20 10:00 in Xiaogan).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.audit import AuditLog
from core.errors import Conflict
from core.identity.authz import Principal
from core.identity.models import AppUser, Role
from dispatch import orders
from dispatch.models import DayPlanDirty, ServiceOrder
from tests.conftest import TEST_NOW
from tests.factories import add_signed_agreement
from tests.support import dispatch as support

pytestmark = pytest.mark.integration

api = support.api
as_user = support.as_user
clock = support.clock
world = support.world

# Lunch every weekday at 11:30 Xiaogan time for 30 occurrences from Monday 2026-11-23: nine of them
# fall in the 14 days materialised ahead.
SERIES = {
    "service_code": "MEAL",
    "rrule": "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;COUNT=30",
    "first_start_at": "2026-11-23T11:30:00+08:00",
    "duration_minutes": 15,
}


async def _place(api: httpx.AsyncClient, w: dict[str, Any], who: str = "family") -> httpx.Response:
    return await api.post(
        "/api/v1/recurring-orders", json={"elder_id": w["elder_id"], **SERIES}, headers=w["h"][who]
    )


async def _states(db: AsyncSession, series_id: int) -> list[str]:
    rows = await db.scalars(
        select(ServiceOrder.state)
        .where(ServiceOrder.recurring_order_id == series_id)
        .order_by(ServiceOrder.window_start_at, ServiceOrder.id)
    )
    return list(rows)


async def test_an_identical_series_is_refused_until_the_first_is_cancelled(
    api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    first = await _place(api, world)
    assert first.status_code == 201, first.text
    assert first.json()["state"] == "active"
    again = await _place(api, world, who="operator")  # whoever asks: the same standing order
    assert (again.status_code, again.json()["code"]) == (409, "dispatch.series_duplicate")
    assert again.json()["recurring_order_id"] == first.json()["id"]  # the one to resume or cancel
    respelled = {**SERIES, "rrule": "RRULE:count=30;byday=MO,TU,WE,TH,FR;freq=daily"}
    again = await api.post(
        "/api/v1/recurring-orders",
        json={"elder_id": world["elder_id"], **respelled},
        headers=world["h"]["family"],
    )
    assert (again.status_code, again.json()["code"]) == (409, "dispatch.series_duplicate")
    # Another time of day is another series.
    other = await api.post(
        "/api/v1/recurring-orders",
        json={"elder_id": world["elder_id"], **SERIES, "first_start_at": "2026-11-23T17:30:00+08:00"},
        headers=world["h"]["family"],
    )
    assert other.status_code == 201, other.text
    r = await api.post(f"/api/v1/recurring-orders/{first.json()['id']}/cancel", headers=world["h"]["family"])
    assert r.status_code == 200, r.text
    again = await _place(api, world)
    assert again.status_code == 201, again.text


async def test_series_are_listed_and_read_in_scope(api: httpx.AsyncClient, world: dict[str, Any]) -> None:
    h = world["h"]
    placed = (await _place(api, world)).json()
    sid = placed["id"]
    for role in ("elder", "family", "operator", "admin"):
        r = await api.get("/api/v1/recurring-orders", headers=h[role])
        assert r.status_code == 200, (role, r.text)
        page = r.json()
        assert sid in [s["id"] for s in page["items"]], role
        assert (page["limit"], page["offset"]) == (50, 0)
        r = await api.get(f"/api/v1/recurring-orders/{sid}", headers=h[role])
        assert r.status_code == 200, (role, r.text)
        assert r.json()["rrule"] == "BYDAY=MO,TU,WE,TH,FR;COUNT=30;FREQ=DAILY"  # as stored: one spelling
        assert len(r.json()["orders"]) == 9
    # The series is agreed with the world's provider: its admin sees it (none of its orders yet, as
    # none is dispatched); the caregiver has served none of it: not theirs to see.
    assert placed["provider_id"] == world["provider_id"]
    r = await api.get("/api/v1/recurring-orders", headers=h["provider_admin"])
    assert sid in [s["id"] for s in r.json()["items"]]
    r = await api.get(f"/api/v1/recurring-orders/{sid}", headers=h["provider_admin"])
    assert (r.status_code, r.json()["orders"]) == (200, [])
    r = await api.get("/api/v1/recurring-orders", headers=h["caregiver"])
    assert r.status_code == 200, r.text
    assert sid not in [s["id"] for s in r.json()["items"]]
    r = await api.get(f"/api/v1/recurring-orders/{sid}", headers=h["caregiver"])
    assert (r.status_code, r.json()["code"]) == (404, "recurring_order.not_found")
    r = await api.get("/api/v1/recurring-orders?state=paused", headers=h["family"])
    assert sid not in [s["id"] for s in r.json()["items"]]
    r = await api.get("/api/v1/recurring-orders/999999999", headers=h["admin"])
    assert r.status_code == 404


async def test_pause_resume_cancel_are_audited_and_handle_future_orders(
    api: httpx.AsyncClient, world: dict[str, Any], db: AsyncSession
) -> None:
    h = world["h"]
    placed = (await _place(api, world)).json()
    sid = placed["id"]
    first_order = placed["orders"][0]["id"]
    # The customer cancels one visit on their own: it stays cancelled whatever the series does.
    r = await api.post(f"/api/v1/orders/{first_order}/cancel", json={"reason": "不在家"}, headers=h["family"])
    assert r.status_code == 200, r.text

    r = await api.post(f"/api/v1/recurring-orders/{sid}/pause", headers=h["provider_admin"])
    assert r.status_code == 403  # the standing order is the customer's
    r = await api.post(f"/api/v1/recurring-orders/{sid}/pause", headers=h["family"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["series"]["state"] == "paused"
    assert len(body["cancelled_order_ids"]) == 8  # the eight still to come
    assert await _states(db, sid) == ["cancelled"] * 9
    r = await api.post(f"/api/v1/recurring-orders/{sid}/pause", headers=h["family"])
    assert (r.status_code, r.json()["code"]) == (409, "recurring_order.invalid_transition")

    r = await api.post(f"/api/v1/recurring-orders/{sid}/resume", headers=h["elder"])
    assert r.status_code == 200, r.text
    assert r.json()["series"]["state"] == "active"
    assert len(r.json()["created_order_ids"]) == 8  # not the visit the customer cancelled
    states = await _states(db, sid)
    assert states.count("created") == 8
    assert states.count("cancelled") == 9

    r = await api.post(f"/api/v1/recurring-orders/{sid}/cancel", headers=h["operator"])
    assert r.status_code == 200, r.text
    assert r.json()["series"]["state"] == "cancelled"
    assert len(r.json()["cancelled_order_ids"]) == 8
    assert set(await _states(db, sid)) == {"cancelled"}
    for action in ("pause", "resume", "cancel"):
        r = await api.post(f"/api/v1/recurring-orders/{sid}/{action}", headers=h["admin"])
        assert (r.status_code, r.json()["code"]) == (409, "recurring_order.invalid_transition"), action

    actions = list(
        await db.scalars(
            select(AuditLog.action)
            .where(AuditLog.entity == "recurring_order", AuditLog.entity_id == str(sid))
            .order_by(AuditLog.id)
        )
    )
    assert actions == ["create", "pause", "resume", "cancel"]


@pytest.fixture
async def committed_elder(engine: AsyncEngine, seeded: dict[str, object]) -> AsyncIterator[tuple[int, int]]:
    """An elder of its own, committed, so that two connections can race over it, and the demo
    operator's user id; removed afterwards."""
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as s, s.begin():
        place = await support.add_place(s, n=3, id_number="420902194005039990", birth_on=dt.date(1940, 5, 3))
        await add_signed_agreement(
            s, elder_id=place.elder.id, provider_id=place.provider.id, services=["VISIT"]
        )
        user = await s.scalar(select(AppUser.id).where(AppUser.username == "demo_operator"))
    assert user is not None
    yield place.elder.id, user
    async with factory() as s, s.begin():
        await s.execute(delete(DayPlanDirty))
        await support.remove_place(s, place)


async def test_two_identical_series_placed_at_once_make_one(
    engine: AsyncEngine, committed_elder: tuple[int, int]
) -> None:
    factory = async_sessionmaker(engine, expire_on_commit=False)
    elder_id, user_id = committed_elder
    operator = Principal(user_id=user_id, username="t", role=Role.OPERATOR)

    async def place() -> str:
        try:
            async with factory() as s, s.begin():
                await orders.place_recurring_order(
                    session=s,
                    actor=operator,
                    elder_id=elder_id,
                    service_code="VISIT",
                    rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=4",
                    first_start_at=dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC),
                    duration_s=1800,
                    window_s=1800,
                    now=TEST_NOW,
                )
            return "placed"
        except Conflict as exc:
            return exc.code

    outcomes = await asyncio.gather(*(place() for _ in range(4)))
    assert sorted(outcomes) == ["dispatch.series_duplicate"] * 3 + ["placed"]


async def test_a_pause_waits_for_the_materialising_job(
    engine: AsyncEngine, committed_elder: tuple[int, int]
) -> None:
    """The job extends an active series while its owner pauses it: the pause waits for the job (whose
    orders it then cancels) instead of leaving the job's new orders live under a paused series."""
    from dispatch import series as series_service
    from dispatch.jobs import materialise_recurring

    factory = async_sessionmaker(engine, expire_on_commit=False)
    elder_id, user_id = committed_elder
    operator = Principal(user_id=user_id, username="t", role=Role.OPERATOR)
    async with factory() as s, s.begin():
        # Mondays from 7 December: nothing falls in the 14 days after TEST_NOW yet.
        placed, made = await orders.place_recurring_order(
            session=s,
            actor=operator,
            elder_id=elder_id,
            service_code="VISIT",
            rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=4",
            first_start_at=dt.datetime(2026, 12, 7, 1, 0, tzinfo=dt.UTC),
            duration_s=1800,
            window_s=1800,
            now=TEST_NOW,
        )
        assert made == []
    week_later = TEST_NOW + dt.timedelta(days=7)
    async with factory() as job:
        assert await materialise_recurring(job, week_later) >= 1  # 7 December comes into range

        async def pause() -> str:
            async with factory() as s, s.begin():
                change = await series_service.change_series(
                    session=s, actor=operator, series_id=placed.id, action="pause", now=week_later
                )
            return change.series.state

        racing = asyncio.create_task(pause())
        await asyncio.sleep(0.3)
        assert not racing.done()  # the job holds the series
        await job.rollback()  # (its orders of other, seeded series are not kept either)
    assert await racing == "paused"
