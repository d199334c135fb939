"""Callback tasks worked through the API, and a provider's quality score read back (issue 4).

Visits are made and verified through the HTTP API with the helpers of :mod:`tests.support.dispatch`;
callbacks come from the real sampling job.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.jobs import sample_callbacks
from dispatch.models import CallbackTask
from registry.models import Elder, Provider
from tests.support import dispatch as support
from tests.support.dispatch import Clock, checked_out_visit

pytestmark = pytest.mark.integration

# The shared fixtures of the dispatch API tests: an app on a settable clock and the demo world.
api = support.api
as_user = support.as_user
clock = support.clock
world = support.world


async def _callback(api: httpx.AsyncClient, w: dict[str, Any], clock: Clock, db: AsyncSession) -> int:
    """A verified visit of today and its callback task (sampled by the job the next day) → task id."""
    visit_id = await checked_out_visit(api, w, clock, sign=True)
    assert await sample_callbacks(db, clock.now + dt.timedelta(days=1)) == 1
    task_id = await db.scalar(select(CallbackTask.id).where(CallbackTask.visit_id == visit_id))
    assert task_id is not None
    return int(task_id)


async def test_complete_a_callback_once(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    h = world["h"]
    task_id = await _callback(api, world, clock, db)
    r = await api.get("/api/v1/callbacks", params={"state": "open"}, headers=h["operator"])
    assert r.status_code == 200, r.text
    assert task_id in [t["id"] for t in r.json()["items"]]

    for bad in ({"satisfaction": 0}, {"satisfaction": 6}, {"satisfaction": 3, "note": "x" * 401}):
        r = await api.post(f"/api/v1/callbacks/{task_id}/complete", json=bad, headers=h["operator"])
        assert r.status_code == 422, (bad, r.text)
    r = await api.post(f"/api/v1/callbacks/{task_id}/complete", json={"reached": True}, headers=h["operator"])
    assert (r.status_code, r.json()["code"]) == (422, "callback.satisfaction_required")
    r = await api.post(
        f"/api/v1/callbacks/{task_id}/complete",
        json={"reached": False, "satisfaction": 4},
        headers=h["operator"],
    )
    assert (r.status_code, r.json()["code"]) == (422, "callback.unreached_score")

    clock.advance(minutes=30)  # the call is made later (tokens outlive it)
    r = await api.post(
        f"/api/v1/callbacks/{task_id}/complete",
        json={"satisfaction": 4, "reached": True, "note": "老人说很满意"},
        headers=h["operator"],
    )
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["status"], done["satisfaction"], done["note"]) == ("done", 4, "老人说很满意")
    assert done["done_by_user_id"] == world["me"]["operator"]["user_id"]
    assert dt.datetime.fromisoformat(done["done_at"]) == clock.now

    r = await api.post(
        f"/api/v1/callbacks/{task_id}/complete", json={"satisfaction": 1}, headers=h["supervisor"]
    )
    assert (r.status_code, r.json()["code"]) == (409, "callback.already_done")
    task = await db.get(CallbackTask, task_id, populate_existing=True)
    assert task is not None
    assert task.satisfaction == 4  # the second completion changed nothing

    opened = (await api.get("/api/v1/callbacks?state=open", headers=h["operator"])).json()["items"]
    assert task_id not in [t["id"] for t in opened]
    closed = (await api.get("/api/v1/callbacks?state=done", headers=h["admin"])).json()["items"]
    assert task_id in [t["id"] for t in closed]
    r = await api.get("/api/v1/callbacks?state=later", headers=h["operator"])
    assert r.status_code in (400, 422)
    r = await api.post("/api/v1/callbacks/999999999/complete", json={"satisfaction": 3}, headers=h["admin"])
    assert (r.status_code, r.json()["code"]) == (404, "callback.not_found")


async def test_callbacks_denied_to_wrong_roles_and_outside_scope(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    h = world["h"]
    task_id = await _callback(api, world, clock, db)
    for role in ("elder", "family", "caregiver", "provider_admin"):
        r = await api.get("/api/v1/callbacks", headers=h[role])
        assert (r.status_code, r.json()["code"]) == (403, "auth.forbidden"), role
        r = await api.post(f"/api/v1/callbacks/{task_id}/complete", json={"satisfaction": 1}, headers=h[role])
        assert (r.status_code, r.json()["code"]) == (403, "auth.forbidden"), role

    # Civil affairs sees its districts' callbacks; moved to another district, the elder drops out.
    listed = (await api.get("/api/v1/callbacks", headers=h["civil_affairs"])).json()["items"]
    assert task_id in [t["id"] for t in listed]
    elder = await db.get(Elder, world["elder_id"])
    assert elder is not None
    other = await db.scalar(select(Elder.district_id).where(Elder.district_id != elder.district_id).limit(1))
    assert other is not None
    elder.district_id = other
    await db.commit()
    listed = (await api.get("/api/v1/callbacks", headers=h["civil_affairs"])).json()["items"]
    assert task_id not in [t["id"] for t in listed]
    r = await api.post(
        f"/api/v1/callbacks/{task_id}/complete", json={"satisfaction": 2}, headers=h["civil_affairs"]
    )
    # Outside its districts now: answered like a callback that does not exist.
    assert (r.status_code, r.json()["code"]) == (404, "callback.not_found")
    task = await db.get(CallbackTask, task_id, populate_existing=True)
    assert task is not None
    assert task.status == "open"


async def test_quality_score_drops_with_a_low_callback_satisfaction(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    h, provider_id = world["h"], world["provider_id"]
    task_id = await _callback(api, world, clock, db)
    day = "2026-11-20"  # TEST_NOW in Asia/Shanghai
    url = f"/api/v1/providers/{provider_id}/quality"
    r = await api.get(url, params={"from": day, "to": day}, headers=h["provider_admin"])
    assert r.status_code == 200, r.text
    before = r.json()
    assert (before["from_date"], before["to_date"]) == (day, day)
    assert before["verified_visits"] >= 1
    assert before["mean_callback_score"] is None
    assert before["score"] is not None

    r = await api.post(
        f"/api/v1/callbacks/{task_id}/complete",
        json={"satisfaction": 1, "note": "没来"},
        headers=h["operator"],
    )
    assert r.status_code == 200, r.text
    after = (await api.get(url, params={"from": day, "to": day}, headers=h["supervisor"])).json()
    assert after["mean_callback_score"] == 1.0
    assert after["score"] < before["score"]
    # Callback weight 0.25 of 1.0: a neutral 3 → 1 takes 0.25 × 0.5 × 100 = 12.5 points.
    assert round(before["score"] - after["score"], 1) == 12.5

    # A day without visits has no score; other days do not see this visit.
    empty = (await api.get(url, params={"from": "2026-10-01", "to": "2026-10-02"}, headers=h["admin"])).json()
    assert (empty["score"], empty["verified_visits"]) == (None, 0)

    for params, code in (
        ({"from": "2026-11-21", "to": "2026-11-20"}, "quality.range_invalid"),
        ({"from": "20-11-2026"}, "quality.date_invalid"),
        ({"from": "2024-01-01", "to": "2026-11-20"}, "quality.range_too_long"),
    ):
        r = await api.get(url, params=params, headers=h["admin"])
        assert (r.status_code, r.json()["code"]) == (422, code), params

    for role in ("elder", "family", "caregiver", "operator"):
        r = await api.get(url, headers=h[role])
        assert (r.status_code, r.json()["code"]) == (403, "auth.forbidden"), role
    other = await db.scalar(select(Provider.id).where(Provider.id != provider_id).limit(1))
    assert other is not None
    r = await api.get(f"/api/v1/providers/{other}/quality", headers=h["provider_admin"])
    assert (r.status_code, r.json()["code"]) == (404, "provider.not_found")
    r = await api.get("/api/v1/providers/999999999/quality", headers=h["admin"])
    assert (r.status_code, r.json()["code"]) == (404, "provider.not_found")
