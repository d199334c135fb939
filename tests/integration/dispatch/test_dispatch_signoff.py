"""The elder's sign-off PIN cannot be guessed: after too many wrong PINs for one visit (policy
``verification.signoff_pin``, seeded 5 and 15 minutes) PIN sign-off of that visit is refused with a
429 ``signoff.locked``, the right PIN included, until the lock passes; the wrong attempts are stored
although their requests fail; family confirmation still works; each visit counts its own.

Each test runs inside the rolled-back test transaction with its own movable clock.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import AuditLog
from core.policy import PolicyValue
from dispatch.models import Visit
from tests.support import dispatch as support
from tests.support.dispatch import Clock, checked_out_visit, near, offered_order

pytestmark = pytest.mark.integration

api = support.api
as_user = support.as_user
clock = support.clock
world = support.world


async def _pin(api: httpx.AsyncClient, w: dict[str, Any], visit_id: int) -> tuple[str, str]:
    """The visit's PIN (read by the elder) and a wrong one."""
    r = await api.get(f"/api/v1/visits/{visit_id}/sign-off-code", headers=w["h"]["elder"])
    pin = str(r.json()["pin"])
    return pin, ("000000" if pin != "000000" else "111111")


async def _sign(api: httpx.AsyncClient, w: dict[str, Any], visit_id: int, pin: str) -> httpx.Response:
    return await api.post(
        f"/api/v1/caregiver/visits/{visit_id}/sign-off", json={"pin": pin}, headers=w["h"]["caregiver"]
    )


async def _stored(db: AsyncSession, visit_id: int) -> tuple[int, dt.datetime | None]:
    row = (
        await db.execute(select(Visit.pin_failures, Visit.pin_locked_until).where(Visit.id == visit_id))
    ).one()
    return int(row[0]), row[1]


async def test_five_wrong_pins_lock_the_visit_until_the_lock_passes(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    w = world
    visit_id = await checked_out_visit(api, w, clock, sign=False)
    pin, wrong = await _pin(api, w, visit_id)
    for left in (4, 3, 2, 1):
        r = await _sign(api, w, visit_id, wrong)
        assert (r.status_code, r.json()["code"], r.json()["attempts_left"]) == (
            422,
            "dispatch.pin_wrong",
            left,
        )
        # The failed request was answered with an error, yet its attempt is stored.
        assert (await _stored(db, visit_id)) == (5 - left, None)
    r = await _sign(api, w, visit_id, wrong)
    locked_until = clock.now + dt.timedelta(minutes=15)
    assert (r.status_code, r.json()["code"]) == (429, "signoff.locked")
    assert r.json()["locked_until"] == locked_until.isoformat()
    assert r.json()["retry_after_s"] == 15 * 60
    assert (await _stored(db, visit_id)) == (0, locked_until)
    audit = await db.scalar(
        select(AuditLog.action).where(AuditLog.entity == "visit", AuditLog.entity_id == str(visit_id))
    )
    assert audit == "signoff_pin_locked"

    # While locked even the right PIN is refused, and refusals do not extend the lock.
    clock.advance(minutes=14)
    r = await _sign(api, w, visit_id, pin)
    assert (r.status_code, r.json()["code"], r.json()["retry_after_s"]) == (429, "signoff.locked", 60)
    assert (await _stored(db, visit_id)) == (0, locked_until)

    clock.advance(minutes=1)  # the lock has passed: a fresh count
    r = await _sign(api, w, visit_id, wrong)
    assert (r.status_code, r.json()["attempts_left"]) == (422, 4)
    r = await _sign(api, w, visit_id, pin)
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "verified"
    assert await db.scalar(select(Visit.sign_off_method).where(Visit.id == visit_id)) == "pin"
    assert (await _stored(db, visit_id)) == (0, None)


async def test_the_count_is_per_visit_and_family_confirmation_still_works(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    w, h = world, world["h"]
    # Policy data: two wrong PINs lock for one minute.
    await db.execute(
        update(PolicyValue)
        .where(PolicyValue.key == "verification.signoff_pin")
        .values(value={"max_failures": 2, "lock_minutes": 1})
    )
    await db.commit()
    first = await checked_out_visit(api, w, clock, sign=False)
    _, wrong = await _pin(api, w, first)
    assert (await _sign(api, w, first, wrong)).json()["attempts_left"] == 1
    r = await _sign(api, w, first, wrong)
    assert (r.status_code, r.json()["code"], r.json()["retry_after_s"]) == (429, "signoff.locked", 60)

    # The family confirms the locked visit instead: it is verified.
    r = await api.post(f"/api/v1/visits/{first}/confirm", headers=h["family"])
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "verified"
    assert await db.scalar(select(Visit.sign_off_method).where(Visit.id == first)) == "family"

    # Another visit of the same caregiver, while the first is still locked, counts from zero.
    assert (await api.post("/api/v1/caregiver/shift/end", headers=h["caregiver"])).status_code == 200
    clock.advance(seconds=10)
    offer_id, _ = await offered_order(api, w)
    r = await api.post(f"/api/v1/caregiver/offers/{offer_id}/accept", headers=h["caregiver"])
    second = r.json()["id"]
    r = await api.post(
        f"/api/v1/caregiver/visits/{second}/check-in", json=near(w["home"], 10), headers=h["caregiver"]
    )
    assert r.status_code == 200, r.text
    pin, wrong = await _pin(api, w, second)
    r = await _sign(api, w, second, wrong)
    assert (r.status_code, r.json()["attempts_left"]) == (422, 1)
    r = await _sign(api, w, second, pin)
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "pending"  # signed off while still on site
    assert (await _stored(db, first))[1] is not None
    assert (await _sign(api, w, first, wrong)).json()["code"] == "signoff.locked"
