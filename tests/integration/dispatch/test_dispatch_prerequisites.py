"""The GB/T 43153 process before a service is ordered, through HTTP on the real app and database:
CARE and BATH orders need an ability assessment valid on the service day (dated policy
``service.requires_assessment``), a recurring series needs signed service agreements with its provider
covering its days, only that provider's caregivers take the series' orders, terminating an agreement
cancels what it no longer covers, and order and visit details show both.

The clock is ``TEST_NOW`` (Friday 2026-11-20 10:00 in Xiaogan); Monday 2026-11-23 is the first
weekday ahead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import local_date
from core.identity.models import Role
from core.policy import PolicyValue
from dispatch.candidates import dispatch_facts
from dispatch.dayplans.plan import plan_provider_day
from dispatch.jobs import materialise_recurring
from dispatch.models import RecurringOrder, ServiceOrder
from registry.models import Elder, Provider
from tests.conftest import TEST_NOW
from tests.factories import TODAY, XIAONAN, Account, Factory

pytestmark = pytest.mark.integration

MONDAY = dt.date(2026, 11, 23)
A_YEAR = dt.timedelta(days=364)


@dataclass(frozen=True, slots=True)
class World:
    """An elder in Xiaonan with a family account; providers ``ours`` and ``rival`` both serving
    Xiaonan, contracted for VISIT, CARE and BATH; an operator."""

    elder: Elder
    ours: Provider
    rival: Provider
    family: Account
    operator: Account


@pytest.fixture
async def w(make: Factory) -> World:
    ours, rival = await make.provider(XIAONAN), await make.provider(XIAONAN)
    for p in (ours, rival):
        await make.contract(p, "VISIT", "CARE", "BATH")
    elder = await make.elder(XIAONAN)
    family = await make.account(Role.FAMILY, guardian=await make.guardian(elder))
    return World(elder, ours, rival, family, await make.account(Role.OPERATOR))


def _at(day: dt.date, hour: int = 9) -> str:
    return f"{day.isoformat()}T{hour:02d}:00:00+08:00"


async def _order(client: httpx.AsyncClient, w: World, service: str, day: dt.date) -> httpx.Response:
    body = {"elder_id": w.elder.id, "service_code": service, "window_start_at": _at(day)}
    return await client.post("/api/v1/orders", json=body, headers=w.operator.headers)


async def _series(
    client: httpx.AsyncClient, w: World, service: str, rule: str, first: dt.date = MONDAY, **extra: Any
) -> httpx.Response:
    body = {
        "elder_id": w.elder.id,
        "service_code": service,
        "rrule": rule,
        "first_start_at": _at(first),
        "duration_minutes": 60,
        **extra,
    }
    return await client.post("/api/v1/recurring-orders", json=body, headers=w.family.headers)


def _problem(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json().get("code", "")


# --- Ability assessment --------------------------------------------------------------------------------


async def test_care_and_bathing_need_an_assessment_valid_on_the_service_day(
    client: httpx.AsyncClient, make: Factory, w: World
) -> None:
    # None on file: refused, saying so; a caring visit needs none.
    r = await _order(client, w, "CARE", MONDAY)
    assert _problem(r) == (409, "dispatch.assessment_required")
    body = r.json()
    assert (body["missing"], body["service_code"], body["service_day"]) == (
        "none_on_file",
        "CARE",
        "2026-11-23",
    )
    assert body["policy"] == "service.requires_assessment[CARE]@2026-01-01"
    assert "none on file" in body["detail"]
    assert (await _order(client, w, "VISIT", MONDAY)).status_code == 201
    # Expired months ago (assessed 2025-06-01, valid through 2026-05-31).
    await make.assessment(w.elder, level=3, assessed_on=dt.date(2025, 6, 1))
    r = await _order(client, w, "BATH", MONDAY)
    assert _problem(r) == (409, "dispatch.assessment_required")
    assert (r.json()["missing"], r.json()["valid_until"]) == ("expired", "2026-05-31")
    assert "expired after 2026-05-31" in r.json()["detail"]
    # Valid today, through 2026-11-25: enough for Tuesday, not for Thursday.
    await make.assessment(w.elder, level=2, assessed_on=dt.date(2025, 11, 26))
    r = await _order(client, w, "CARE", dt.date(2026, 11, 26))
    assert _problem(r) == (409, "dispatch.assessment_required")
    assert (r.json()["missing"], r.json()["valid_until"]) == ("expires_before_service", "2026-11-25")
    assert "valid only until 2026-11-25, before the service day" in r.json()["detail"]
    r = await _order(client, w, "CARE", dt.date(2026, 11, 24))
    assert r.status_code == 201, r.text
    # Re-assessed today: Thursday is covered too.
    await make.assessment(w.elder, level=2, assessed_on=TODAY)
    assert (await _order(client, w, "CARE", dt.date(2026, 11, 26))).status_code == 201


async def test_an_assessment_dated_after_the_service_day_does_not_count(
    client: httpx.AsyncClient, make: Factory, w: World
) -> None:
    await make.assessment(w.elder, level=2, assessed_on=dt.date(2026, 11, 25))  # recorded ahead
    r = await _order(client, w, "BATH", MONDAY)
    assert (r.json()["missing"], r.json()["assessed_on"]) == ("assessed_after_service", "2026-11-25")
    assert (await _order(client, w, "BATH", dt.date(2026, 11, 25))).status_code == 201


async def test_which_services_need_one_is_dated_policy(
    client: httpx.AsyncClient, db: AsyncSession, w: World
) -> None:
    """From 1 December (a later valid_from), caring visits need an assessment and nursing care does
    not; before that day, the seeded rule applies."""
    change = dt.date(2026, 12, 1)
    db.add_all(
        [
            PolicyValue(
                key="service.requires_assessment", scope="VISIT", value={"required": True}, valid_from=change
            ),
            PolicyValue(
                key="service.requires_assessment", scope="CARE", value={"required": False}, valid_from=change
            ),
        ]
    )
    await db.flush()
    assert (await _order(client, w, "VISIT", dt.date(2026, 11, 30))).status_code == 201
    r = await _order(client, w, "VISIT", change)
    assert _problem(r) == (409, "dispatch.assessment_required")
    assert r.json()["policy"] == "service.requires_assessment[VISIT]@2026-12-01"
    assert _problem(await _order(client, w, "CARE", dt.date(2026, 11, 30))) == (
        409,
        "dispatch.assessment_required",
    )
    assert (await _order(client, w, "CARE", change)).status_code == 201


# --- Service agreements before a series ---------------------------------------------------------------


async def test_a_series_needs_signed_agreements_covering_its_days(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory, w: World
) -> None:
    eight_days = "FREQ=DAILY;COUNT=8"  # 23-30 November
    r = await _series(client, w, "VISIT", eight_days)
    assert _problem(r) == (409, "dispatch.agreement_required")
    assert (r.json()["provider_id"], r.json()["service_code"], r.json()["day"]) == (
        None,
        "VISIT",
        "2026-11-23",
    )
    assert "any provider" in r.json()["detail"]
    # A draft the provider wrote alone does not count.
    draft = await make.agreement(w.elder, w.ours, "VISIT")
    draft.state, draft.signed_at = "draft", None
    await db.flush()
    assert _problem(await _series(client, w, "VISIT", eight_days)) == (409, "dispatch.agreement_required")
    # Signed through the end of November: an eight-day series fits, a fourteen-day one does not.
    await make.agreement(w.elder, w.ours, "VISIT", valid_to=dt.date(2026, 11, 30))
    r = await _series(client, w, "VISIT", "FREQ=DAILY;COUNT=14")
    assert _problem(r) == (409, "dispatch.agreement_required")
    assert (r.json()["provider_id"], r.json()["day"]) == (w.ours.id, "2026-12-01")
    assert "the series runs until 2026-12-06" in r.json()["detail"]
    r = await _series(client, w, "VISIT", eight_days)
    assert r.status_code == 201, r.text
    assert r.json()["provider_id"] == w.ours.id  # the provider whose agreement covers it
    # Not with a provider the elder has no agreement with.
    r = await _series(client, w, "VISIT", eight_days, first=dt.date(2026, 11, 24), provider_id=w.rival.id)
    assert _problem(r) == (409, "dispatch.agreement_required")
    assert r.json()["provider_id"] == w.rival.id
    # With agreements with both, the series says which; a renewal continues the cover.
    await make.agreement(w.elder, w.rival, "VISIT")
    r = await _series(client, w, "VISIT", eight_days, first=dt.date(2026, 11, 24))
    assert _problem(r) == (422, "dispatch.provider_required")
    assert r.json()["provider_ids"] == sorted([w.ours.id, w.rival.id])
    r = await _series(client, w, "VISIT", eight_days, first=dt.date(2026, 11, 24), provider_id=w.rival.id)
    assert (r.status_code, r.json()["provider_id"]) == (201, w.rival.id)
    await make.agreement(w.elder, w.ours, "VISIT", valid_from=dt.date(2026, 12, 1))
    r = await _series(
        client, w, "VISIT", "FREQ=DAILY;COUNT=14", first=dt.date(2026, 11, 25), provider_id=w.ours.id
    )
    assert r.status_code == 201, r.text
    # One-off orders are on-demand purchases: no agreement needed.
    assert (await _order(client, w, "VISIT", MONDAY)).status_code == 201


async def test_a_care_series_needs_the_assessment_on_each_day_it_makes(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory, w: World
) -> None:
    await make.agreement(w.elder, w.ours, "CARE")
    r = await _series(client, w, "CARE", "FREQ=WEEKLY;COUNT=6")
    assert _problem(r) == (409, "dispatch.assessment_required")
    # Valid through 30 November: a daily series reaching into December is refused when placed ...
    await make.assessment(w.elder, level=3, assessed_on=dt.date(2025, 12, 1))
    r = await _series(client, w, "CARE", "FREQ=DAILY;COUNT=5", first=dt.date(2026, 11, 27))
    assert _problem(r) == (409, "dispatch.assessment_required")
    assert (r.json()["missing"], r.json()["service_day"]) == ("expires_before_service", "2026-12-01")
    # ... while a weekly one is placed with the visits it covers; the job later skips the days the
    # assessment does not cover, and makes them once the elder is re-assessed.
    r = await _series(client, w, "CARE", "FREQ=WEEKLY;COUNT=6")
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert [o["window_start_at"][:10] for o in r.json()["orders"]] == ["2026-11-23", "2026-11-30"]
    later = TEST_NOW + dt.timedelta(days=14)  # the next 14 days: 7 and 14 December
    assert await materialise_recurring(db, later) == 0
    await make.assessment(w.elder, level=3, assessed_on=TODAY)
    assert await materialise_recurring(db, later) == 2
    starts = await db.scalars(
        select(ServiceOrder.window_start_at)
        .where(ServiceOrder.recurring_order_id == sid)
        .order_by(ServiceOrder.id)
    )
    assert [local_date(s).isoformat() for s in starts] == [
        "2026-11-23",
        "2026-11-30",
        "2026-12-07",
        "2026-12-14",
    ]


async def test_ending_an_agreement_cancels_what_it_no_longer_covers(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory, w: World
) -> None:
    agreement = await make.agreement(w.elder, w.ours, "VISIT")
    r = await _series(client, w, "VISIT", "FREQ=DAILY;COUNT=30")
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    orders = {o["window_start_at"][:10]: o["id"] for o in r.json()["orders"]}
    assert sorted(orders) == [(MONDAY + dt.timedelta(days=d)).isoformat() for d in range(12)]  # to 4 Dec
    held = orders["2026-12-02"]
    await db.execute(update(ServiceOrder).where(ServiceOrder.id == held).values(state="accepted"))
    r = await client.post(
        f"/api/v1/agreements/{agreement.id}/terminate",
        json={"reason": "改由家人照顾", "effective_on": "2026-12-01"},
        headers=w.family.headers,
    )
    assert r.status_code == 200, r.text
    gone = [orders[d] for d in ("2026-12-01", "2026-12-03", "2026-12-04")]
    assert (r.json()["cancelled_order_ids"], r.json()["kept_order_ids"]) == (gone, [held])
    rows = {
        o.id: o
        for o in await db.scalars(
            select(ServiceOrder)
            .where(ServiceOrder.recurring_order_id == sid)
            .execution_options(populate_existing=True)
        )
    }
    for oid in gone:
        got = rows[oid]
        assert (got.state, got.cancelled_by_role, got.cancellation_fee_fen) == ("cancelled", "family", 0)
        assert got.cancel_reason == f"agreement {agreement.id} terminated"
    assert {rows[orders[d]].state for d in orders if d < "2026-12-01"} == {"created"}
    # The kept visit's order shows that its agreement no longer covers it.
    r = await client.get(f"/api/v1/orders/{held}", headers=w.family.headers)
    assert (r.json()["agreement"]["status"], r.json()["agreement"]["required"]) == ("missing", True)
    # The job makes nothing the agreement no longer covers; resuming needs a new agreement.
    assert await materialise_recurring(db, TEST_NOW + dt.timedelta(days=7)) == 0
    assert (
        await client.post(f"/api/v1/recurring-orders/{sid}/pause", headers=w.family.headers)
    ).status_code == 200
    r = await client.post(f"/api/v1/recurring-orders/{sid}/resume", headers=w.family.headers)
    assert _problem(r) == (409, "dispatch.agreement_required")
    assert (r.json()["provider_id"], r.json()["day"]) == (w.ours.id, "2026-12-01")
    await make.agreement(w.elder, w.ours, "VISIT", valid_from=dt.date(2026, 12, 1))
    r = await client.post(f"/api/v1/recurring-orders/{sid}/resume", headers=w.family.headers)
    assert r.status_code == 200, r.text
    assert len(r.json()["created_order_ids"]) == 8  # the paused 23-30 November again


async def test_the_series_orders_go_only_to_the_agreed_provider(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory, w: World
) -> None:
    agreement = await make.agreement(w.elder, w.ours, "VISIT")
    r = await _series(client, w, "VISIT", "FREQ=DAILY;COUNT=2")
    order_id = r.json()["orders"][0]["id"]
    one_off = (await _order(client, w, "VISIT", MONDAY)).json()["id"]
    order, single = await db.get(ServiceOrder, order_id), await db.get(ServiceOrder, one_off)
    assert order is not None
    assert single is not None
    # Real-time dispatch: only the agreed provider's caregivers are candidates.
    assert (await dispatch_facts(db, order, TEST_NOW)).provider_ids == {w.ours.id}
    assert {w.ours.id, w.rival.id} <= (await dispatch_facts(db, single, TEST_NOW)).provider_ids
    # Day plans: the rival plans the one-off order of that day, not the series' one.
    plan = await plan_provider_day(session=db, provider_id=w.rival.id, day=MONDAY, now=TEST_NOW)
    assert plan is not None
    assert list(plan.unassigned_order_ids) == [one_off]  # it has no caregivers
    # By hand, from the operator queue.
    await db.execute(update(ServiceOrder).where(ServiceOrder.id == order_id).values(state="escalated"))
    days = [1, 2, 3, 4, 5, 6, 7]
    theirs = await make.caregiver(w.rival, skills=["VISIT"], work_days=days)
    mine = await make.caregiver(w.ours, skills=["VISIT"], work_days=days)
    path = f"/api/v1/orders/{order_id}/assign"
    r = await client.post(path, json={"caregiver_id": theirs.id}, headers=w.operator.headers)
    assert _problem(r) == (409, "dispatch.series_provider")
    assert r.json()["provider_id"] == w.ours.id
    r = await client.post(path, json={"caregiver_id": mine.id}, headers=w.operator.headers)
    assert r.status_code == 200, r.text
    visit_id = r.json()["id"]
    # The visit shows the agreement behind it and the elder's assessment (none needed for VISIT).
    r = await client.get(f"/api/v1/visits/{visit_id}", headers=w.family.headers)
    assert r.status_code == 200, r.text
    assert r.json()["agreement"] == {
        "status": "covered",
        "required": True,
        "provider_id": w.ours.id,
        "agreement_id": agreement.id,
        "valid_from": TODAY.isoformat(),
        "last_day": (TODAY + A_YEAR).isoformat(),
    }
    assessment = r.json()["assessment"]
    assert (assessment["status"], assessment["required"]) == ("none_on_file", False)


async def test_order_details_show_the_agreement_and_the_assessment(
    client: httpx.AsyncClient, make: Factory, w: World
) -> None:
    assessed = await make.assessment(w.elder, level=3, assessed_on=dt.date(2026, 3, 2))
    r = await _order(client, w, "CARE", MONDAY)
    assert r.status_code == 201, r.text
    r = await client.get(f"/api/v1/orders/{r.json()['id']}", headers=w.family.headers)
    assert r.status_code == 200, r.text
    assert r.json()["agreement"] == {
        "status": "not_required",  # a one-off order, no provider has taken it yet
        "required": False,
        "provider_id": None,
        "agreement_id": None,
        "valid_from": None,
        "last_day": None,
    }
    assert r.json()["assessment"] == {
        "status": "valid",
        "required": True,
        "policy": "service.requires_assessment[CARE]@2026-01-01",
        "assessment_id": assessed.id,
        "level": 3,
        "assessed_on": "2026-03-02",
        "valid_until": "2027-03-01",
    }


async def test_a_series_placed_before_agreements_is_bound_when_resumed(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory, w: World
) -> None:
    """A series with no provider (placed before agreements existed) keeps being materialised as
    before; resuming it binds it to the provider whose signed agreement covers its remaining days."""
    legacy = RecurringOrder(
        elder_id=w.elder.id,
        service_code="VISIT",
        rrule="COUNT=4;FREQ=WEEKLY",
        first_start_at=dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC),
        duration_s=1800,
        window_s=1800,
        state="paused",
    )
    db.add(legacy)
    await db.flush()
    path = f"/api/v1/recurring-orders/{legacy.id}/resume"
    r = await client.post(path, headers=w.family.headers)
    assert _problem(r) == (409, "dispatch.agreement_required")
    assert r.json()["provider_id"] is None
    await make.agreement(w.elder, w.ours, "VISIT")
    r = await client.post(path, headers=w.family.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["series"]["provider_id"], len(r.json()["created_order_ids"])) == (w.ours.id, 2)
