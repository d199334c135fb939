"""Existence is not revealed: an order, visit, callback or provider outside the caller's scope is
answered exactly like an id that does not exist (404, same code, same body but for the id), across
families, providers, caregivers and districts.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.models import CallbackTask, ServiceOrder, Visit
from registry.models import Caregiver, Elder, Provider
from tests.support import dispatch as support
from tests.support.dispatch import Clock, checked_out_visit, near

pytestmark = pytest.mark.integration

api = support.api
as_user = support.as_user
clock = support.clock
world = support.world

MISSING = 999_999_999


async def _same_as_missing(
    api: httpx.AsyncClient, method: str, path: str, real: int, headers: dict[str, str], body: Any = None
) -> None:
    """``path`` (``{}`` for the id) answers for ``real`` what it answers for an id that does not exist."""
    hidden = await api.request(method, path.format(real), json=body, headers=headers)
    absent = await api.request(method, path.format(MISSING), json=body, headers=headers)
    assert absent.status_code == 404, (path, absent.text)
    assert hidden.status_code == 404, (method, path, hidden.text)
    assert hidden.json() == json.loads(absent.text.replace(str(MISSING), str(real))), (method, path)


async def test_orders_and_visits_outside_scope_answer_like_missing_ones(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession
) -> None:
    w, h = world, world["h"]
    visit_id = await checked_out_visit(api, w, clock, sign=True)
    visit = await db.get(Visit, visit_id)
    assert visit is not None
    order_id = visit.order_id
    task = CallbackTask(visit_id=visit_id, due_on=clock.now.date(), status="open")
    db.add(task)
    await db.flush()
    task_id = task.id
    # Hand the visit to another family's elder in another district, served by another provider's
    # caregiver: now none of the world's family, elder, caregiver, provider admin or civil-affairs
    # officer may see it.
    home = await db.scalar(select(Elder.district_id).where(Elder.id == w["elder_id"]))
    outsider = await db.scalar(
        select(Elder.id)
        .where(Elder.district_id != home, Elder.status == "active")
        .order_by(Elder.id)
        .limit(1)
    )
    stranger = await db.scalar(
        select(Caregiver.id).where(Caregiver.provider_id != w["provider_id"]).order_by(Caregiver.id).limit(1)
    )
    stranger_provider = await db.scalar(select(Caregiver.provider_id).where(Caregiver.id == stranger))
    assert outsider is not None
    assert stranger is not None
    moved = {"elder_id": outsider, "caregiver_id": stranger, "provider_id": stranger_provider}
    await db.execute(update(ServiceOrder).where(ServiceOrder.id == order_id).values(**moved))
    await db.execute(update(Visit).where(Visit.id == visit_id).values(**moved))
    await db.commit()

    for role in ("family", "elder", "caregiver", "provider_admin", "civil_affairs"):
        await _same_as_missing(api, "GET", "/api/v1/orders/{}", order_id, h[role])
        await _same_as_missing(api, "GET", "/api/v1/visits/{}", visit_id, h[role])
    for role in ("family", "elder", "provider_admin"):
        await _same_as_missing(api, "POST", "/api/v1/orders/{}/cancel", order_id, h[role], {"reason": "x"})
    for role in ("family", "elder"):
        await _same_as_missing(api, "GET", "/api/v1/visits/{}/sign-off-code", visit_id, h[role])
        await _same_as_missing(api, "POST", "/api/v1/visits/{}/confirm", visit_id, h[role])
        await _same_as_missing(api, "POST", "/api/v1/visits/{}/rating", visit_id, h[role], {"score": 5})
    for role in ("family", "elder"):
        hidden = await api.post(
            "/api/v1/complaints", json={"order_id": order_id, "text": "x"}, headers=h[role]
        )
        absent = await api.post(
            "/api/v1/complaints", json={"order_id": MISSING, "text": "x"}, headers=h[role]
        )
        assert (hidden.status_code, absent.status_code) == (404, 404), hidden.text
        assert hidden.json() == json.loads(absent.text.replace(str(MISSING), str(order_id)))
    for step, body in (
        ("en-route", None),
        ("check-in", near(w["home"], 0)),
        ("check-out", near(w["home"], 0)),
    ):
        await _same_as_missing(
            api, "POST", f"/api/v1/caregiver/visits/{{}}/{step}", visit_id, h["caregiver"], body
        )
    await _same_as_missing(
        api, "POST", "/api/v1/callbacks/{}/complete", task_id, h["civil_affairs"], {"satisfaction": 4}
    )
    # The provider admin may not assign an order of a district its provider does not serve.
    await _same_as_missing(
        api,
        "POST",
        "/api/v1/orders/{}/assign",
        order_id,
        h["provider_admin"],
        {"caregiver_id": w["caregiver_id"]},
    )
    # Staff of the call centre still see it.
    for role in ("operator", "supervisor", "admin"):
        assert (await api.get(f"/api/v1/visits/{visit_id}", headers=h[role])).status_code == 200


async def test_another_providers_quality_and_contracts_answer_like_a_missing_provider(
    api: httpx.AsyncClient, world: dict[str, Any], db: AsyncSession
) -> None:
    h = world["h"]
    other = await db.scalar(select(Provider.id).where(Provider.id != world["provider_id"]).limit(1))
    assert other is not None
    await _same_as_missing(api, "GET", "/api/v1/providers/{}/quality", other, h["provider_admin"])
    await _same_as_missing(api, "GET", "/api/v1/providers/{}/services", other, h["provider_admin"])


async def test_ordering_for_another_familys_elder_answers_like_a_missing_elder(
    api: httpx.AsyncClient, world: dict[str, Any], db: AsyncSession
) -> None:
    h = world["h"]
    mine = sorted({*world["me"]["family"]["elder_ids"], world["elder_id"]})
    other = await db.scalar(select(Elder.id).where(Elder.id.notin_(mine)).limit(1))
    assert other is not None
    body = {"service_code": support.SERVICE, "asap": True}
    for role in ("family", "elder"):
        hidden = await api.post("/api/v1/orders", json={**body, "elder_id": other}, headers=h[role])
        absent = await api.post("/api/v1/orders", json={**body, "elder_id": MISSING}, headers=h[role])
        assert (hidden.status_code, absent.status_code) == (422, 422), hidden.text
        assert hidden.json() == json.loads(absent.text.replace(str(MISSING), str(other)))
