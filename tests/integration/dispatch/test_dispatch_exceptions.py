"""Visit exceptions hold a visit from payment (DOMAIN §5): only an independent user (a supervisor, civil
affairs of the elder's district, an admin) resolves them, audited; the provider side explains or
contests, and every note stays in the exception's history. The time element of EVV: a check-in long
before the scheduled start, or long after the order's window, is an exception.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import AuditLog
from registry.models import Caregiver, Elder
from tests.conftest import TEST_NOW
from tests.support import dispatch as support
from tests.support.dispatch import SERVICE, Clock, near, offered_order

pytestmark = pytest.mark.integration

api = support.api
as_user = support.as_user
clock = support.clock
world = support.world

GOOD = {"reason_code": "gps_drift", "resolution_code": "approved", "note": "GPS indoors"}


async def _held_visit(api: httpx.AsyncClient, w: dict[str, Any], clock: Clock) -> tuple[int, int]:
    """A visit checked in 5 km from home and out after 1 minute, signed off: held as too far and too
    short. Returns (visit id, order id)."""
    h = w["h"]
    offer_id, order_id = await offered_order(api, w)
    visit_id = (await api.post(f"/api/v1/caregiver/offers/{offer_id}/accept", headers=h["caregiver"])).json()[
        "id"
    ]
    far = near(w["home"], 5000)
    assert (
        await api.post(f"/api/v1/caregiver/visits/{visit_id}/check-in", json=far, headers=h["caregiver"])
    ).status_code == 200
    clock.advance(minutes=1)
    assert (await api.post(f"/api/v1/visits/{visit_id}/confirm", headers=h["family"])).status_code == 200
    r = await api.post(f"/api/v1/caregiver/visits/{visit_id}/check-out", json=far, headers=h["caregiver"])
    assert r.json()["exceptions"] == ["check_in_too_far", "short_on_site"], r.text
    return int(visit_id), order_id


async def _state(api: httpx.AsyncClient, w: dict[str, Any], order_id: int) -> str:
    r = await api.get(f"/api/v1/orders/{order_id}", headers=w["h"]["admin"])
    return str(r.json()["order"]["state"])


async def test_the_provider_explains_and_contests_but_never_resolves(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    w, h = world, world["h"]
    visit_id, order_id = await _held_visit(api, w, clock)
    url = f"/api/v1/visits/{visit_id}/exceptions/{{}}/resolve"

    # The provider admin sees the visit but may not make it payable.
    for code in ("check_in_too_far", "short_on_site"):
        r = await api.post(url.format(code), json=GOOD, headers=h["provider_admin"])
        assert (r.status_code, r.json()["code"]) == (403, "dispatch.resolver_not_independent"), r.text
    for role in ("caregiver", "operator", "family"):
        r = await api.post(url.format("short_on_site"), json=GOOD, headers=h[role])
        assert (r.status_code, r.json()["code"]) == (403, "auth.forbidden"), role
    assert await _state(api, w, order_id) == "exception"

    # It explains one exception and the caregiver contests the other; both stay in the history.
    notes = f"/api/v1/visits/{visit_id}/exceptions/{{}}/notes"
    r = await api.post(
        notes.format("check_in_too_far"),
        json={"kind": "explanation", "text": "手机定位漂移"},
        headers=h["provider_admin"],
    )
    assert r.status_code == 200, r.text
    r = await api.post(
        notes.format("short_on_site"),
        json={"kind": "contest", "text": "老人提前让我离开"},
        headers=h["caregiver"],
    )
    assert r.status_code == 200, r.text
    r = await api.post(
        notes.format("short_on_site"), json={"kind": "resolution", "text": "x"}, headers=h["provider_admin"]
    )
    assert (r.status_code, r.json()["code"]) == (422, "validation.invalid")
    r = await api.post(
        notes.format("short_on_site"), json={"kind": "contest", "text": "x"}, headers=h["family"]
    )
    assert (r.status_code, r.json()["code"]) == (403, "auth.forbidden")
    r = await api.post(notes.format("overlap"), json={"kind": "contest", "text": "x"}, headers=h["caregiver"])
    assert (r.status_code, r.json()["code"]) == (404, "visit_exception.not_found")
    assert await _state(api, w, order_id) == "exception"

    # A civil-affairs officer of another district does not see the visit at all.
    elder = await db.get(Elder, w["elder_id"])
    assert elder is not None
    home_district = elder.district_id
    other = await db.scalar(select(Elder.district_id).where(Elder.district_id != home_district).limit(1))
    assert other is not None
    elder.district_id = other
    await db.commit()
    r = await api.post(url.format("short_on_site"), json=GOOD, headers=h["civil_affairs"])
    assert (r.status_code, r.json()["code"]) == (404, "visit.not_found")
    elder.district_id = home_district
    await db.commit()

    # The supervisor and civil affairs of the elder's district resolve, each by name.
    r = await api.post(url.format("check_in_too_far"), json=GOOD, headers=h["supervisor"])
    assert r.status_code == 200, r.text
    r = await api.post(
        url.format("short_on_site"),
        json={"reason_code": "elder_unable_to_sign", "resolution_code": "corrected"},
        headers=h["civil_affairs"],
    )
    assert r.status_code == 200, r.text
    assert r.json()["verification"] == "verified"
    assert await _state(api, w, order_id) == "verified"
    history = {e["code"]: [(n["kind"], n["by_role"]) for n in e["history"]] for e in r.json()["exceptions"]}
    assert history == {
        "check_in_too_far": [("explanation", "provider_admin"), ("resolution", "supervisor")],
        "short_on_site": [("contest", "caregiver"), ("resolution", "civil_affairs")],
    }
    r = await api.get(f"/api/v1/visits/{visit_id}", headers=h["provider_admin"])
    assert r.json()["exceptions"][0]["history"][0]["text"] == "手机定位漂移"
    audited = (
        await db.execute(
            select(
                AuditLog.actor_role, AuditLog.after["code"].astext, AuditLog.after["resolution_code"].astext
            )
            .where(AuditLog.entity == "visit_exception", AuditLog.action == "resolve")
            .order_by(AuditLog.id)
        )
    ).all()
    assert [tuple(a) for a in audited[-2:]] == [
        ("supervisor", "check_in_too_far", "approved"),
        ("civil_affairs", "short_on_site", "corrected"),
    ]


async def test_a_check_in_hours_before_the_scheduled_start_is_an_exception(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    w, h = world, world["h"]
    # Only the world's caregiver can take the order (others would be counted from their homes).
    await db.execute(update(Caregiver).where(Caregiver.id != w["caregiver_id"]).values(is_active=False))
    await db.commit()
    r = await api.post("/api/v1/caregiver/shift/start", json=near(w["home"], 300), headers=h["caregiver"])
    assert r.status_code == 200, r.text
    start = TEST_NOW + dt.timedelta(hours=3)
    r = await api.post(
        "/api/v1/orders",
        json={"elder_id": w["elder_id"], "service_code": SERVICE, "window_start_at": start.isoformat()},
        headers=h["family"],
    )
    assert r.status_code == 201, r.text
    order_id = r.json()["id"]
    offers = list((await api.get("/api/v1/caregiver/offers", headers=h["caregiver"])).json())
    offer_id = next(o["id"] for o in offers if o["order_id"] == order_id)
    r = await api.post(f"/api/v1/caregiver/offers/{offer_id}/accept", headers=h["caregiver"])
    assert r.status_code == 200, r.text
    visit = r.json()
    assert dt.datetime.fromisoformat(visit["scheduled_start_at"]) == start
    # At the door, with the right position, three hours before the scheduled start.
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit['id']}/check-in", json=near(w["home"], 10), headers=h["caregiver"]
    )
    assert r.status_code == 200, r.text
    clock.advance(minutes=35)
    assert (await api.post(f"/api/v1/visits/{visit['id']}/confirm", headers=h["family"])).status_code == 200
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit['id']}/check-out", json=near(w["home"], 10), headers=h["caregiver"]
    )
    assert r.status_code == 200, r.text
    assert (r.json()["verdict"], r.json()["exceptions"]) == ("exception", ["early_check_in"])


async def test_a_check_in_long_after_the_orders_window_is_an_exception(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock
) -> None:
    w, h = world, world["h"]
    offer_id, order_id = await offered_order(api, w)  # as soon as possible: the window ends in 30 min
    visit_id = (await api.post(f"/api/v1/caregiver/offers/{offer_id}/accept", headers=h["caregiver"])).json()[
        "id"
    ]
    clock.advance(minutes=65)  # 35 minutes past the window's end
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit_id}/check-in", json=near(w["home"], 10), headers=h["caregiver"]
    )
    assert r.status_code == 200, r.text
    clock.advance(minutes=35)
    assert (await api.post(f"/api/v1/visits/{visit_id}/confirm", headers=h["family"])).status_code == 200
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit_id}/check-out", json=near(w["home"], 10), headers=h["caregiver"]
    )
    assert (r.json()["verdict"], r.json()["exceptions"]) == ("exception", ["late_check_in"]), r.text
    assert await _state(api, w, order_id) == "exception"


async def test_a_visit_done_while_another_is_still_checked_in_overlaps_it(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    """Checked in at A at 10:00 and, without checking out, at B at 10:10; B checked out at 10:40 while A
    still runs: B overlaps A (a visit still checked in has run until now)."""
    w, h = world, world["h"]
    await db.execute(update(Caregiver).where(Caregiver.id != w["caregiver_id"]).values(is_active=False))
    await db.commit()
    offer_a, _ = await offered_order(api, w)
    a = (await api.post(f"/api/v1/caregiver/offers/{offer_a}/accept", headers=h["caregiver"])).json()["id"]
    r = await api.post(
        "/api/v1/orders",
        json={
            "elder_id": w["elder_id"],
            "service_code": SERVICE,
            "window_start_at": (TEST_NOW + dt.timedelta(minutes=30)).isoformat(),
        },
        headers=h["family"],
    )
    assert r.json()["state"] == "offered", r.text
    offers = (await api.get("/api/v1/caregiver/offers", headers=h["caregiver"])).json()
    offer_b = next(o["id"] for o in offers if o["order_id"] == r.json()["id"])
    b = (await api.post(f"/api/v1/caregiver/offers/{offer_b}/accept", headers=h["caregiver"])).json()["id"]
    door = near(w["home"], 10)
    assert (
        await api.post(f"/api/v1/caregiver/visits/{a}/check-in", json=door, headers=h["caregiver"])
    ).status_code == 200
    clock.advance(minutes=10)
    assert (
        await api.post(f"/api/v1/caregiver/visits/{b}/check-in", json=door, headers=h["caregiver"])
    ).status_code == 200
    clock.advance(minutes=30)
    assert (await api.post(f"/api/v1/visits/{b}/confirm", headers=h["family"])).status_code == 200
    r = await api.post(f"/api/v1/caregiver/visits/{b}/check-out", json=door, headers=h["caregiver"])
    assert (r.json()["verdict"], r.json()["exceptions"]) == ("exception", ["overlap"]), r.text
