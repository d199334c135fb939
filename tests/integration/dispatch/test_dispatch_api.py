"""The dispatch API end to end through HTTP on the real app and database: order → offer → accept →
check in → check out → verification; exceptions resolved by a named user; ratings and complaints;
wrong-role and wrong-scope denials; bad input answered with 4xx problems carrying a stable code.

Each test runs inside the rolled-back test transaction with its own movable clock.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.caregiver_app import door_code
from dispatch.models import CaregiverPosition, OrderTransition
from registry.models import Caregiver, Elder
from tests.conftest import TEST_NOW
from tests.support import dispatch as support
from tests.support.dispatch import SERVICE, Clock, checked_out_visit, near, offered_order

pytestmark = pytest.mark.integration

# The shared fixtures: an app on a settable clock, a login helper and the demo world.
api = support.api
as_user = support.as_user
clock = support.clock
world = support.world


async def test_order_offer_accept_check_in_out_verified_rated(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    w, h = world, world["h"]
    offer_id, order_id = await offered_order(api, w)
    clock.advance(seconds=20)
    r = await api.post(f"/api/v1/caregiver/offers/{offer_id}/accept", headers=h["caregiver"])
    assert r.status_code == 200, r.text
    visit = r.json()
    visit_id = visit["id"]
    assert (visit["caregiver_id"], visit["provider_id"]) == (w["caregiver_id"], w["provider_id"])
    # A second accept of the same offer is refused with a stable code.
    r = await api.post(f"/api/v1/caregiver/offers/{offer_id}/accept", headers=h["caregiver"])
    assert (r.status_code, r.json()["code"]) == (409, "dispatch.offer_not_open")

    plan = (await api.get("/api/v1/caregiver/plan", headers=h["caregiver"])).json()
    assert [p["visit"]["id"] for p in plan] == [visit_id]
    assert plan[0]["order_state"] == "accepted"

    assert (
        await api.post(f"/api/v1/caregiver/visits/{visit_id}/en-route", headers=h["caregiver"])
    ).status_code == 200
    clock.advance(minutes=5)
    r = await api.put("/api/v1/caregiver/position", json=near(w["home"], 20), headers=h["caregiver"])
    assert r.status_code == 200
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit_id}/check-in",
        json={**near(w["home"], 30), "qr_code": door_code("test-secret-" + "x" * 32, w["elder_id"])},
        headers=h["caregiver"],
    )
    assert r.status_code == 200, r.text
    assert r.json()["check_in_method"] == "qr"
    r = await api.put(
        f"/api/v1/caregiver/visits/{visit_id}/checklist",
        json={"items": {"chat": True, "check medicine": True}},
        headers=h["caregiver"],
    )
    assert r.json()["checklist"] == {"chat": True, "check medicine": True}

    clock.advance(minutes=40)
    # The elder reads their PIN from their app and tells the caregiver.
    pin = (await api.get(f"/api/v1/visits/{visit_id}/sign-off-code", headers=h["elder"])).json()["pin"]
    wrong = "000000" if pin != "000000" else "111111"
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit_id}/sign-off", json={"pin": wrong}, headers=h["caregiver"]
    )
    assert (r.status_code, r.json()["code"]) == (422, "dispatch.pin_wrong")
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit_id}/sign-off", json={"pin": pin}, headers=h["caregiver"]
    )
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "pending"  # still on site
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit_id}/check-out", json=near(w["home"], 10), headers=h["caregiver"]
    )
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["verdict"], result["exceptions"], result["on_site_s"]) == ("verified", [], 40 * 60)
    assert result["verification"] == "verified"

    r = await api.post(
        f"/api/v1/visits/{visit_id}/rating", json={"score": 5, "comment": "很好"}, headers=h["family"]
    )
    assert r.status_code == 201, r.text
    r = await api.post(f"/api/v1/visits/{visit_id}/rating", json={"score": 4}, headers=h["family"])
    assert (r.status_code, r.json()["code"]) == (409, "dispatch.already_rated")

    detail = (await api.get(f"/api/v1/orders/{order_id}", headers=h["family"])).json()
    assert detail["order"]["state"] == "rated"
    assert [(t["from_state"], t["to_state"]) for t in detail["transitions"]] == [
        ("none", "created"),
        ("created", "offered"),
        ("offered", "accepted"),
        ("accepted", "en_route"),
        ("en_route", "checked_in"),
        ("checked_in", "checked_out"),
        ("checked_out", "verified"),
        ("verified", "rated"),
    ]
    assert detail["visit"]["sign_off_method"] == "pin"
    # Scope: the provider admin and civil-affairs officer see it; the caregiver sees their own.
    for role in ("provider_admin", "civil_affairs", "caregiver", "operator"):
        r = await api.get(f"/api/v1/orders/{order_id}", headers=h[role])
        assert r.status_code == 200, (role, r.text)
    listed = (await api.get("/api/v1/orders", params={"state": "rated"}, headers=h["provider_admin"])).json()
    assert order_id in [o["id"] for o in listed["items"]]

    r = await api.post(
        "/api/v1/complaints", json={"order_id": order_id, "text": "来晚了五分钟"}, headers=h["elder"]
    )
    assert r.status_code == 201, r.text
    assert r.json()["provider_id"] == w["provider_id"]
    mine = (await api.get("/api/v1/complaints", headers=h["provider_admin"])).json()
    assert r.json()["id"] in [c["id"] for c in mine["items"]]
    moves = (
        await db.scalars(select(OrderTransition.actor_role).where(OrderTransition.order_id == order_id))
    ).all()
    assert "elder" not in moves[:1]  # ordered by the family
    assert moves[0] == "family"


async def test_exceptions_are_resolved_by_a_named_user(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock
) -> None:
    w, h = world, world["h"]
    offer_id, order_id = await offered_order(api, w, who="operator")
    visit_id = (await api.post(f"/api/v1/caregiver/offers/{offer_id}/accept", headers=h["caregiver"])).json()[
        "id"
    ]
    # Checked in 1 km from home and out after 10 minutes: too far, too short.
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit_id}/check-in", json=near(w["home"], 1000), headers=h["caregiver"]
    )
    assert r.status_code == 200, r.text
    clock.advance(minutes=10)
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit_id}/check-out", json=near(w["home"], 1000), headers=h["caregiver"]
    )
    body = r.json()
    assert body["verdict"] == "exception"  # held at once; the sign-off may still come
    assert body["exceptions"] == ["check_in_too_far", "short_on_site"]
    assert body["check_in_distance_m"] == pytest.approx(1000, abs=5)
    r = await api.post(f"/api/v1/visits/{visit_id}/confirm", headers=h["family"])
    assert r.status_code == 200, r.text
    assert r.json()["signed_off_at"] is not None
    assert r.json()["exceptions"] == ["check_in_too_far", "short_on_site"]

    # Wrong role, unknown reason, unknown exception: 4xx problems with codes.
    good = {"reason_code": "gps_drift", "resolution_code": "approved", "note": "GPS indoors"}
    r = await api.post(
        f"/api/v1/visits/{visit_id}/exceptions/check_in_too_far/resolve", json=good, headers=h["family"]
    )
    assert (r.status_code, r.json()["code"]) == (403, "auth.forbidden")
    r = await api.post(
        f"/api/v1/visits/{visit_id}/exceptions/check_in_too_far/resolve",
        json={**good, "reason_code": "whatever"},
        headers=h["supervisor"],
    )
    assert (r.status_code, r.json()["code"]) == (422, "validation.invalid")
    r = await api.post(
        f"/api/v1/visits/{visit_id}/exceptions/overlap/resolve", json=good, headers=h["supervisor"]
    )
    assert (r.status_code, r.json()["code"]) == (404, "visit_exception.not_found")

    r = await api.post(
        f"/api/v1/visits/{visit_id}/exceptions/check_in_too_far/resolve", json=good, headers=h["supervisor"]
    )
    assert r.status_code == 200, r.text
    assert r.json()["verification"] == "exception"  # one still open
    r = await api.post(
        f"/api/v1/visits/{visit_id}/exceptions/short_on_site/resolve",
        json={"reason_code": "elder_unable_to_sign", "resolution_code": "corrected"},
        headers=h["civil_affairs"],
    )
    assert r.status_code == 200, r.text
    visit = r.json()
    assert visit["verification"] == "verified"
    resolvers = {e["code"]: e["resolved_by_user_id"] for e in visit["exceptions"]}
    assert resolvers == {
        "check_in_too_far": w["me"]["supervisor"]["user_id"],
        "short_on_site": w["me"]["civil_affairs"]["user_id"],
    }
    r = await api.post(
        f"/api/v1/visits/{visit_id}/exceptions/short_on_site/resolve", json=good, headers=h["supervisor"]
    )
    assert (r.status_code, r.json()["code"]) == (409, "dispatch.exception_resolved")
    detail = (await api.get(f"/api/v1/orders/{order_id}", headers=h["operator"])).json()
    assert detail["order"]["state"] == "verified"


async def test_decline_escalates_and_cancel_costs(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock
) -> None:
    w, h = world, world["h"]
    offer_id, order_id = await offered_order(api, w)
    # The only caregiver on shift declines: nobody else is eligible, so the order joins the operator queue.
    r = await api.post(f"/api/v1/caregiver/offers/{offer_id}/decline", headers=h["caregiver"])
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "escalated"
    # The operator assigns it by hand; the provider admin may not assign another provider's order scope.
    r = await api.post(
        f"/api/v1/orders/{order_id}/assign", json={"caregiver_id": w["caregiver_id"]}, headers=h["operator"]
    )
    assert r.status_code == 200, r.text
    # The family cancels 10 minutes before the start of an accepted visit: late fee.
    r = await api.post(f"/api/v1/orders/{order_id}/cancel", json={"reason": "身体不适"}, headers=h["family"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["consequence"], body["fee_fen"], body["order"]["state"]) == ("late_fee", 1000, "cancelled")
    r = await api.post(f"/api/v1/orders/{order_id}/cancel", json={"reason": "again"}, headers=h["family"])
    assert (r.status_code, r.json()["code"]) == (409, "dispatch.invalid_transition")

    # An order for next week is free to cancel and is not dispatched yet.
    start = (TEST_NOW + dt.timedelta(days=7)).isoformat()
    r = await api.post(
        "/api/v1/orders",
        json={
            "elder_id": w["elder_id"],
            "service_code": "CLEAN",
            "window_start_at": start,
            "duration_minutes": 90,
        },
        headers=h["elder"],
    )
    assert r.status_code == 201, r.text
    assert (r.json()["state"], r.json()["duration_s"], r.json()["price_fen"]) == ("created", 5400, 4000)
    r = await api.post(f"/api/v1/orders/{r.json()['id']}/cancel", json={"reason": "改期"}, headers=h["elder"])
    assert (r.json()["consequence"], r.json()["fee_fen"]) == ("free", 0)


async def test_recurring_weekday_meals(api: httpx.AsyncClient, world: dict[str, Any]) -> None:
    h = world["h"]
    # Lunch every weekday at 11:30 Xiaogan time for 30 occurrences from Monday 2026-11-23.
    r = await api.post(
        "/api/v1/recurring-orders",
        json={
            "elder_id": world["elder_id"],
            "service_code": "MEAL",
            "rrule": "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;COUNT=30",
            "first_start_at": "2026-11-23T11:30:00+08:00",
            "duration_minutes": 15,
        },
        headers=h["family"],
    )
    assert r.status_code == 201, r.text
    orders = r.json()["orders"]
    # The next 14 days from Friday 2026-11-20 10:00 hold weekdays 23-27 Nov and 30 Nov-3 Dec.
    assert len(orders) == 9
    assert orders[0]["window_start_at"].startswith("2026-11-23T03:30:00")
    assert {o["state"] for o in orders} == {"created"}
    assert {o["price_fen"] for o in orders} == {1200}
    r = await api.post(
        "/api/v1/recurring-orders",
        json={
            "elder_id": world["elder_id"],
            "service_code": "MEAL",
            "rrule": "FREQ=DAILY",
            "first_start_at": "2026-11-23T11:30:00+08:00",
            "duration_minutes": 15,
        },
        headers=h["family"],
    )
    assert (r.status_code, r.json()["code"]) == (422, "dispatch.rrule_invalid")  # unbounded
    for rule in ("FREQ=MINUTELY;COUNT=400", "FREQ=WEEKLY;BYDAY=XX;COUNT=3", "FREQ=DAILY;COUNT=401"):
        r = await api.post(
            "/api/v1/recurring-orders",
            json={
                "elder_id": world["elder_id"],
                "service_code": "MEAL",
                "rrule": rule,
                "first_start_at": "2026-11-23T11:30:00+08:00",
                "duration_minutes": 15,
            },
            headers=h["family"],
        )
        assert (r.status_code, r.json()["code"]) == (422, "dispatch.rrule_invalid"), rule


async def test_denials_and_bad_input(api: httpx.AsyncClient, world: dict[str, Any], db: AsyncSession) -> None:
    h, elder_id = world["h"], world["elder_id"]
    other_elder = await db.scalar(select(Elder.id).where(Elder.id != elder_id).limit(1))
    body = {"elder_id": elder_id, "service_code": SERVICE, "asap": True}
    cases: list[tuple[str, str, dict[str, Any] | None, str, int, str]] = [
        # (method, path, json, role, status, code)
        ("post", "/api/v1/orders", body, "caregiver", 403, "auth.forbidden"),
        ("post", "/api/v1/orders", body, "civil_affairs", 403, "auth.forbidden"),
        # Another family's elder is answered like an elder that does not exist.
        ("post", "/api/v1/orders", {**body, "elder_id": other_elder}, "family", 422, "reference.unknown"),
        ("post", "/api/v1/orders", {**body, "elder_id": other_elder}, "elder", 422, "reference.unknown"),
        (
            "post",
            "/api/v1/orders",
            {**body, "service_code": "NOPE"},
            "operator",
            422,
            "dispatch.service_unknown",
        ),
        ("post", "/api/v1/orders", {**body, "service_code": "bad!"}, "operator", 422, "validation.invalid"),
        (
            "post",
            "/api/v1/orders",
            {**body, "window_start_at": "2026-11-21T10:00:00"},
            "operator",
            422,
            "validation.invalid",
        ),
        (
            "post",
            "/api/v1/orders",
            {**body, "window_start_at": "2026-11-19T10:00:00Z"},
            "operator",
            422,
            "dispatch.window_past",
        ),
        (
            "post",
            "/api/v1/orders",
            {**body, "requirements": "x" * 501},
            "operator",
            422,
            "validation.invalid",
        ),
        ("post", "/api/v1/orders", {**body, "extra": 1}, "operator", 422, "validation.invalid"),
        ("post", "/api/v1/orders", {**body, "elder_id": 2**62}, "operator", 422, "reference.unknown"),
        ("get", "/api/v1/orders/999999999", None, "admin", 404, "order.not_found"),
        ("get", "/api/v1/orders/99999999999999999999", None, "admin", 404, "order.not_found"),
        (
            "post",
            "/api/v1/caregiver/shift/start",
            {"lat": 91, "lon": 0},
            "caregiver",
            422,
            "validation.invalid",
        ),
        ("post", "/api/v1/caregiver/shift/end", None, "caregiver", 409, "dispatch.shift_not_started"),
        ("post", "/api/v1/caregiver/shift/start", {"lat": 30, "lon": 114}, "operator", 403, "auth.forbidden"),
        ("post", "/api/v1/caregiver/offers/1/accept", None, "caregiver", 409, "dispatch.offer_not_open"),
        (
            "post",
            "/api/v1/caregiver/visits/999999999/check-in",
            {"lat": 30, "lon": 114},
            "caregiver",
            404,
            "visit.not_found",
        ),
        ("get", "/api/v1/caregiver/plan?day=not-a-date", None, "caregiver", 422, "validation.invalid"),
        ("get", "/api/v1/orders?limit=0", None, "admin", 422, "validation.invalid"),
        ("post", "/api/v1/complaints", {"order_id": 1, "text": ""}, "family", 422, "validation.invalid"),
    ]
    for method, path, payload, role, status, code in cases:
        r = await api.request(method.upper(), path, json=payload, headers=h[role])
        assert r.headers["content-type"].startswith("application/problem+json"), (path, role, r.text)
        assert (r.status_code, r.json()["code"]) == (status, code), (method, path, role, r.text)

    # Wrong scope on a real order: another family's elder's order is hidden from this family.
    offer_id, order_id = await offered_order(api, world, who="operator")
    r = await api.post(
        "/api/v1/orders",
        json={
            **body,
            "elder_id": other_elder,
            "asap": False,
            "window_start_at": (TEST_NOW + dt.timedelta(days=3)).isoformat(),
        },
        headers=h["operator"],
    )
    assert r.status_code == 201, r.text
    foreign = r.json()["id"]
    for role in ("family", "elder", "caregiver"):
        r = await api.get(f"/api/v1/orders/{foreign}", headers=h[role])
        assert (r.status_code, r.json()["code"]) == (404, "order.not_found"), role
    listed = (await api.get("/api/v1/orders", headers=h["family"])).json()
    assert foreign not in [o["id"] for o in listed["items"]]
    assert order_id in [o["id"] for o in listed["items"]]
    # The provider admin sees an order only once its caregiver has taken it.
    r = await api.get(f"/api/v1/orders/{order_id}", headers=h["provider_admin"])
    assert (r.status_code, r.json()["code"]) == (404, "order.not_found")
    assert (
        await api.post(f"/api/v1/caregiver/offers/{offer_id}/accept", headers=h["caregiver"])
    ).status_code == 200
    assert (await api.get(f"/api/v1/orders/{order_id}", headers=h["provider_admin"])).status_code == 200
    # A caregiver cannot rate, an elder cannot check in.
    r = await api.post("/api/v1/visits/1/rating", json={"score": 5}, headers=h["caregiver"])
    assert (r.status_code, r.json()["code"]) == (403, "auth.forbidden")
    r = await api.post(
        "/api/v1/caregiver/visits/1/check-in", json={"lat": 30, "lon": 114}, headers=h["elder"]
    )
    assert (r.status_code, r.json()["code"]) == (403, "auth.forbidden")
    # Rating a visit that is not verified yet is a conflict, not a crash.
    visit_id = (await api.get(f"/api/v1/orders/{order_id}", headers=h["family"])).json()["visit"]["id"]
    r = await api.post(f"/api/v1/visits/{visit_id}/rating", json={"score": 5}, headers=h["family"])
    assert (r.status_code, r.json()["code"]) == (409, "dispatch.rate_state")
    # A wrong QR code is refused and the visit stays unchecked.
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit_id}/check-in",
        json={**near(world["home"], 0), "qr_code": "deadbeefdeadbeef"},
        headers=h["caregiver"],
    )
    assert (r.status_code, r.json()["code"]) == (422, "dispatch.qr_mismatch")


async def test_every_dispatch_route_answers_every_role_without_a_server_error(
    api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    from dispatch.routes import CONTROLLERS

    paths: list[tuple[str, str]] = []
    for controller in CONTROLLERS:
        for name in dir(controller):
            handler = getattr(controller, name)
            for method in getattr(handler, "http_methods", ()):
                for sub in handler.paths:
                    path = (controller.path + sub).rstrip("/") or "/"
                    path = path.replace("{code:str}", "overlap")
                    for param in ("order_id", "offer_id", "visit_id"):
                        path = path.replace("{" + param + ":int}", "1")
                    paths.append((method, path))
    assert len(paths) >= 23
    seen: set[int] = set()
    for role, headers in world["h"].items():
        for method, path in paths:
            r = await api.request(
                method, path, json={} if method in ("POST", "PUT") else None, headers=headers
            )
            seen.add(r.status_code)
            assert r.status_code < 500, (method, path, role, r.text)
            if r.status_code >= 400:
                assert r.json()["code"], (method, path, role)
    assert seen & {403, 422}


# --- Jobs -----------------------------------------------------------------------------------------


async def test_job_expiry_offers_the_next_caregiver_then_escalates(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    from api.bootstrap import scheduled_jobs
    from dispatch.jobs import JOBS, expire_offers

    names = {name for name, *_ in JOBS}
    assert names == {
        "dispatch.expire_offers",
        "dispatch.materialise_recurring",
        "dispatch.verify_overdue",
        "dispatch.sample_callbacks",
        "dispatch.plan_tomorrow",
        "dispatch.rebuild_dirty_plans",
        "dispatch.escalate_starts_at_risk",
    }
    assert names <= set(scheduled_jobs().names())
    # A second caregiver of the same provider on shift a little farther away.
    other = await db.scalar(
        select(Caregiver.id).where(
            Caregiver.provider_id == world["provider_id"], Caregiver.id != world["caregiver_id"]
        )
    )
    assert other is not None
    await db.execute(
        update(Caregiver)
        .where(Caregiver.id == other)
        .values(
            shift_start=dt.time(7),
            shift_end=dt.time(20),
            work_days=[1, 2, 3, 4, 5, 6, 7],
            skills=[SERVICE],
            is_active=True,
        )
    )
    pos = near(world["home"], 800)
    db.add(CaregiverPosition(caregiver_id=other, lat=pos["lat"], lon=pos["lon"], at=TEST_NOW, on_shift=True))
    await db.commit()
    _, order_id = await offered_order(api, world)
    assert await expire_offers(db, TEST_NOW + dt.timedelta(seconds=30)) == 0  # not yet due
    assert await expire_offers(db, TEST_NOW + dt.timedelta(seconds=61)) == 1
    detail = (await api.get(f"/api/v1/orders/{order_id}", headers=world["h"]["operator"])).json()
    assert detail["order"]["state"] == "offered"
    assert detail["order"]["offer_attempts"] == 2
    assert await expire_offers(db, TEST_NOW + dt.timedelta(seconds=125)) == 1
    detail = (await api.get(f"/api/v1/orders/{order_id}", headers=world["h"]["operator"])).json()
    assert detail["order"]["state"] == "escalated"  # both asked, nobody else eligible
    assert [t["note"] for t in detail["transitions"]][-1] == "after 2 offers"


async def test_job_overdue_sign_off_becomes_an_exception(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    from dispatch.jobs import verify_overdue

    visit_id = await checked_out_visit(api, world, clock, sign=False)
    assert await verify_overdue(db, clock.now + dt.timedelta(hours=23)) == 0
    assert await verify_overdue(db, clock.now + dt.timedelta(hours=25)) == 1
    r = await api.get(f"/api/v1/visits/{visit_id}", headers=world["h"]["civil_affairs"])
    assert r.json()["verification"] == "exception"
    assert [e["code"] for e in r.json()["exceptions"]] == ["no_sign_off"]


async def test_job_callbacks_and_recurring_materialisation(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    from dispatch.jobs import materialise_recurring, sample_callbacks
    from dispatch.models import CallbackTask, RecurringOrder, ServiceOrder

    visit_id = await checked_out_visit(api, world, clock, sign=True)
    tomorrow = clock.now + dt.timedelta(days=1)
    assert await sample_callbacks(db, tomorrow) == 1  # ceil(10 % of 1)
    assert await sample_callbacks(db, tomorrow) == 0  # that day is already sampled
    task = await db.scalar(select(CallbackTask).where(CallbackTask.visit_id == visit_id))
    assert task is not None
    assert (task.status, task.due_on) == ("open", dt.date(2026, 11, 21))

    series = RecurringOrder(
        elder_id=world["elder_id"],
        service_code="CLEAN",
        rrule="FREQ=WEEKLY;BYDAY=SA;COUNT=8",
        first_start_at=dt.datetime(2026, 11, 21, 1, 0, tzinfo=dt.UTC),  # Saturdays 09:00 Xiaogan
        duration_s=3600,
        window_s=1800,
    )
    db.add(series)
    await db.flush()
    assert await materialise_recurring(db, TEST_NOW) == 2  # 21 and 28 Nov
    assert await materialise_recurring(db, TEST_NOW) == 0
    assert await materialise_recurring(db, TEST_NOW + dt.timedelta(days=7)) == 1  # 5 Dec comes into range
    starts = (
        await db.scalars(
            select(ServiceOrder.window_start_at)
            .where(ServiceOrder.recurring_order_id == series.id)
            .order_by(ServiceOrder.window_start_at)
        )
    ).all()
    assert [s.astimezone(dt.UTC).day for s in starts] == [21, 28, 5]


async def test_civil_affairs_sees_only_its_districts(
    api: httpx.AsyncClient, world: dict[str, Any], db: AsyncSession
) -> None:
    h = world["h"]
    home = await db.scalar(select(Elder.district_id).where(Elder.id == world["elder_id"]))
    outsider = await db.scalar(
        select(Elder.id).where(Elder.district_id != home, Elder.status == "active").limit(1)
    )
    assert outsider is not None
    start = (TEST_NOW + dt.timedelta(days=2)).isoformat()
    ids = []
    for elder in (world["elder_id"], outsider):
        r = await api.post(
            "/api/v1/orders",
            json={"elder_id": elder, "service_code": "CLEAN", "window_start_at": start},
            headers=h["operator"],
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    listed = {o["id"] for o in (await api.get("/api/v1/orders", headers=h["civil_affairs"])).json()["items"]}
    assert ids[0] in listed
    assert ids[1] not in listed
    r = await api.get(f"/api/v1/orders/{ids[1]}", headers=h["civil_affairs"])
    assert (r.status_code, r.json()["code"]) == (404, "order.not_found")
    # Staff of the call centre see both; nobody may cancel outside their scope.
    assert {ids[0], ids[1]} <= {
        o["id"] for o in (await api.get("/api/v1/orders?limit=200", headers=h["supervisor"])).json()["items"]
    }
    r = await api.post(f"/api/v1/orders/{ids[1]}/cancel", json={"reason": "x"}, headers=h["family"])
    assert (r.status_code, r.json()["code"]) == (404, "order.not_found")


async def test_provider_withdrawal_redispatches_and_no_show(
    api: httpx.AsyncClient, world: dict[str, Any], db: AsyncSession
) -> None:
    from dispatch.models import Visit

    h = world["h"]
    offer_id, order_id = await offered_order(api, world)
    visit_id = (await api.post(f"/api/v1/caregiver/offers/{offer_id}/accept", headers=h["caregiver"])).json()[
        "id"
    ]
    # The provider withdraws its caregiver: no fee, the order goes back to dispatch; the only caregiver on
    # shift was already asked, so it lands in the operator queue, and the old visit is gone.
    r = await api.post(
        f"/api/v1/orders/{order_id}/cancel", json={"reason": "护理员生病"}, headers=h["provider_admin"]
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["consequence"], body["fee_fen"]) == ("redispatch", 0)
    assert (body["order"]["state"], body["order"]["caregiver_id"]) == ("escalated", None)
    assert await db.get(Visit, visit_id, populate_existing=True) is None
    # The provider admin no longer sees it (not its order any more); the operator assigns it again.
    r = await api.get(f"/api/v1/orders/{order_id}", headers=h["provider_admin"])
    assert (r.status_code, r.json()["code"]) == (404, "order.not_found")
    r = await api.post(
        f"/api/v1/orders/{order_id}/assign",
        json={"caregiver_id": world["caregiver_id"]},
        headers=h["provider_admin"],
    )
    assert r.status_code == 200, r.text  # its own caregiver, its district
    r = await api.post(f"/api/v1/orders/{order_id}/no-show", json={"note": "老人不在家"}, headers=h["family"])
    assert (r.status_code, r.json()["code"]) == (403, "auth.forbidden")
    r = await api.post(
        f"/api/v1/orders/{order_id}/no-show", json={"note": "老人不在家"}, headers=h["operator"]
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "no_show"
    moves = (await api.get(f"/api/v1/orders/{order_id}", headers=h["operator"])).json()["transitions"]
    assert [m["to_state"] for m in moves] == [
        "created",
        "offered",
        "accepted",
        "created",
        "escalated",
        "accepted",
        "no_show",
    ]
    assert [m["actor_role"] for m in moves][3:] == ["provider_admin", "system", "provider_admin", "operator"]


async def test_an_asap_order_with_nobody_on_shift_tells_the_customer_what_happens_next(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    from core.policy import PolicyValue

    w, h = world, world["h"]
    # Nobody is on shift (the demo world clears every position): the order goes to the operator queue.
    r = await api.post(
        "/api/v1/orders",
        json={"elder_id": w["elder_id"], "service_code": SERVICE, "asap": True},
        headers=h["family"],
    )
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["state"] == "escalated"
    pickup = await db.scalar(
        select(PolicyValue.value["seconds"].as_integer()).where(PolicyValue.key == "dispatch.operator_pickup")
    )
    assert pickup is not None  # seeded dated policy
    step = order["next_step"]
    assert step["code"] == "operator_queue"
    assert f"within {pickup // 60} minutes" in step["message"]
    assert dt.datetime.fromisoformat(step["act_by"]) == clock.now + dt.timedelta(seconds=pickup)
    # The order's read view says the same; once assigned by hand there is no next step left.
    r = await api.get(f"/api/v1/orders/{order['id']}", headers=h["family"])
    assert r.json()["order"]["next_step"] == step
    await api.post("/api/v1/caregiver/shift/start", json=near(w["home"], 300), headers=h["caregiver"])
    r = await api.post(
        f"/api/v1/orders/{order['id']}/assign",
        json={"caregiver_id": w["caregiver_id"]},
        headers=h["operator"],
    )
    assert r.status_code == 200, r.text
    r = await api.get(f"/api/v1/orders/{order['id']}", headers=h["family"])
    assert r.json()["order"]["next_step"] is None
