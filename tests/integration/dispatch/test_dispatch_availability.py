"""A caregiver's busy time follows what actually happened (dispatch.matching.busy_interval), in the
database's candidate search and in the profiles hand assignment and day plans read: free from the
check-out of a visit, however early and whatever became of it (verified, rated), and busy while a visit
runs past its end until it is checked out.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.candidates import caregiver_profiles
from dispatch.matching import Booking
from dispatch.models import Visit
from registry.models import Caregiver
from tests.support import dispatch as support
from tests.support.dispatch import SERVICE, Clock, near

pytestmark = pytest.mark.integration

api = support.api
as_user = support.as_user
clock = support.clock
world = support.world


async def _order(api: httpx.AsyncClient, w: dict[str, Any], **extra: Any) -> dict[str, Any]:
    r = await api.post(
        "/api/v1/orders",
        json={"elder_id": w["elder_id"], "service_code": SERVICE, "asap": True, **extra},
        headers=w["h"]["family"],
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _accept_and_check_in(api: httpx.AsyncClient, w: dict[str, Any], order_id: int) -> int:
    h = w["h"]
    offers = (await api.get("/api/v1/caregiver/offers", headers=h["caregiver"])).json()
    offer_id = next(o["id"] for o in offers if o["order_id"] == order_id)
    visit_id = int(
        (await api.post(f"/api/v1/caregiver/offers/{offer_id}/accept", headers=h["caregiver"])).json()["id"]
    )
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit_id}/check-in", json=near(w["home"], 10), headers=h["caregiver"]
    )
    assert r.status_code == 200, r.text
    return visit_id


async def test_after_check_out_the_next_asap_order_is_offered_to_the_caregiver(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    w, h = world, world["h"]
    r = await api.post("/api/v1/caregiver/shift/start", json=near(w["home"], 300), headers=h["caregiver"])
    assert r.status_code == 200, r.text
    # A two-hour visit, done (and signed) in 40 minutes, verified and rated.
    first = await _order(api, w, duration_minutes=120)
    visit_id = await _accept_and_check_in(api, w, first["id"])
    clock.advance(minutes=40)
    assert (await api.post(f"/api/v1/visits/{visit_id}/confirm", headers=h["family"])).status_code == 200
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit_id}/check-out", json=near(w["home"], 10), headers=h["caregiver"]
    )
    assert r.json()["verdict"] == "verified", r.text
    r = await api.post(f"/api/v1/visits/{visit_id}/rating", json={"score": 5}, headers=h["family"])
    assert r.status_code == 201, r.text
    visit = await db.get(Visit, visit_id, populate_existing=True)
    assert visit is not None
    assert visit.scheduled_end_at > clock.now  # the schedule still runs for another 80 minutes

    clock.advance(minutes=1)
    second = await _order(api, w)
    assert second["state"] == "offered", second
    offers = (await api.get("/api/v1/caregiver/offers", headers=h["caregiver"])).json()
    assert second["id"] in [o["order_id"] for o in offers]
    # Hand assignment and day plans read the same busy time: check-in to check-out.
    cg = await db.get(Caregiver, w["caregiver_id"])
    profiles = await caregiver_profiles(db, [cg], clock.now, now=clock.now)
    assert visit.check_in_at is not None
    assert Booking(visit.check_in_at, visit.check_out_at) in profiles[w["caregiver_id"]].bookings


async def test_a_visit_running_past_its_end_keeps_the_caregiver_busy_until_check_out(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    w, h = world, world["h"]
    r = await api.post("/api/v1/caregiver/shift/start", json=near(w["home"], 300), headers=h["caregiver"])
    assert r.status_code == 200, r.text
    first = await _order(api, w)  # 30 minutes
    visit_id = await _accept_and_check_in(api, w, first["id"])
    clock.advance(minutes=45)  # still on site, 15 minutes past the scheduled end
    second = await _order(api, w)
    assert second["state"] == "escalated", second
    assert second["id"] not in [
        o["order_id"] for o in (await api.get("/api/v1/caregiver/offers", headers=h["caregiver"])).json()
    ]
    # Once checked out, the caregiver is free again.
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit_id}/check-out", json=near(w["home"], 10), headers=h["caregiver"]
    )
    assert r.status_code == 200, r.text
    third = await _order(api, w)
    assert third["state"] == "offered", third
    assert (await db.scalar(select(Visit.check_out_at).where(Visit.id == visit_id))) == clock.now
