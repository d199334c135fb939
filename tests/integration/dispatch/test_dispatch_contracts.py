"""Provider contracts on the real app and database: a caregiver is offered an order only when their
provider holds a contract for its service valid on its Asia/Shanghai service day (``valid_to``
inclusive); hand assignment refuses an uncontracted provider; the contracts API lists (scoped) and
replaces (civil affairs / admin) them with checked input.

Each test runs inside the rolled-back test transaction with its own movable clock.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import AuditLog
from dispatch.models import CaregiverPosition, Offer, ProviderService
from registry.models import Caregiver, District, Elder, Provider, ProviderDistrict
from tests.conftest import TEST_NOW
from tests.support import dispatch as support
from tests.support.dispatch import SERVICE, Clock, near

pytestmark = pytest.mark.integration

api = support.api
as_user = support.as_user
clock = support.clock
world = support.world

TODAY = dt.date(2026, 11, 20)  # TEST_NOW's day in Xiaogan


def _contracts_url(provider_id: int) -> str:
    return f"/api/v1/providers/{provider_id}/services"


async def _set_contracts(
    api: httpx.AsyncClient, w: dict[str, Any], provider_id: int, terms: list[Any]
) -> None:
    r = await api.put(_contracts_url(provider_id), json=terms, headers=w["h"]["admin"])
    assert r.status_code == 200, r.text


def _visit(valid_from: dt.date, valid_to: dt.date | None = None) -> dict[str, Any]:
    return {
        "service_code": SERVICE,
        "valid_from": valid_from.isoformat(),
        "valid_to": None if valid_to is None else valid_to.isoformat(),
    }


async def _asap_order(api: httpx.AsyncClient, w: dict[str, Any]) -> dict[str, Any]:
    """The demo caregiver on shift 300 m from the elder, and an as-soon-as-possible VISIT order."""
    h = w["h"]
    r = await api.post("/api/v1/caregiver/shift/start", json=near(w["home"], 300), headers=h["caregiver"])
    assert r.status_code == 200, r.text
    r = await api.post(
        "/api/v1/orders",
        json={"elder_id": w["elder_id"], "service_code": SERVICE, "asap": True},
        headers=h["family"],
    )
    assert r.status_code == 201, r.text
    order: dict[str, Any] = r.json()
    return order


@pytest.mark.parametrize(
    ("valid_from", "valid_to", "offered"),
    [
        (dt.date(2026, 1, 1), None, True),
        (dt.date(2026, 1, 1), TODAY - dt.timedelta(days=1), False),  # ended yesterday
        (TODAY + dt.timedelta(days=1), None, False),  # starts tomorrow
        (dt.date(2026, 1, 1), TODAY, True),  # ends today: valid_to is inclusive
        (TODAY, None, True),  # starts today
    ],
)
async def test_only_a_contract_valid_on_the_service_day_counts(
    api: httpx.AsyncClient,
    world: dict[str, Any],
    db: AsyncSession,
    valid_from: dt.date,
    valid_to: dt.date | None,
    offered: bool,
) -> None:
    w = world
    # Contracted for cleaning throughout, and for visits only over the given range.
    await _set_contracts(
        api,
        w,
        w["provider_id"],
        [_visit(valid_from, valid_to), {"service_code": "CLEAN", "valid_from": "2026-01-01"}],
    )
    order = await _asap_order(api, w)
    assert order["state"] == ("offered" if offered else "escalated")
    assert await _offered_caregivers(db, order["id"]) == ([w["caregiver_id"]] if offered else [])


async def test_the_service_day_is_the_day_in_xiaogan(
    api: httpx.AsyncClient, world: dict[str, Any], clock: Clock, db: AsyncSession, as_user: support.Login
) -> None:
    """At 00:10 on 21 November in Xiaogan it is still 20 November in UTC: a contract that ended on the
    20th no longer counts, one starting on the 21st already does."""
    await db.execute(
        update(Caregiver)
        .where(Caregiver.id == world["caregiver_id"])
        .values(shift_start=dt.time(0), shift_end=dt.time(23, 59))
    )
    await db.commit()
    clock.now = dt.datetime(2026, 11, 20, 16, 10, tzinfo=dt.UTC)
    # Sign in again: the fixture's sessions were opened 14 hours before.
    w = {**world, "h": {role: await as_user(f"demo_{role}") for role in ("admin", "caregiver", "family")}}
    await _set_contracts(api, w, w["provider_id"], [_visit(dt.date(2026, 1, 1), dt.date(2026, 11, 20))])
    assert (await _asap_order(api, w))["state"] == "escalated"
    r = await api.post("/api/v1/caregiver/shift/end", headers=w["h"]["caregiver"])
    assert r.status_code == 200, r.text
    await _set_contracts(api, w, w["provider_id"], [_visit(dt.date(2026, 11, 21))])
    assert (await _asap_order(api, w))["state"] == "offered"


async def test_a_nearer_caregiver_of_an_uncontracted_provider_is_passed_over(
    api: httpx.AsyncClient, world: dict[str, Any], db: AsyncSession
) -> None:
    w = world
    district = await db.scalar(select(Elder.district_id).where(Elder.id == w["elder_id"]))
    other_provider = await db.scalar(
        select(Provider.id).where(Provider.id != w["provider_id"]).order_by(Provider.id).limit(1)
    )
    rival = await db.scalar(
        select(Caregiver.id).where(Caregiver.provider_id == other_provider).order_by(Caregiver.id).limit(1)
    )
    assert district is not None
    assert other_provider is not None
    assert rival is not None
    # The rival's provider serves the elder's district too and the rival is able and on shift 100 m
    # from the elder (the demo caregiver will be 300 m away), but the provider holds no contract.
    await db.execute(
        pg_insert(ProviderDistrict)
        .values(provider_id=other_provider, district_id=district)
        .on_conflict_do_nothing()
    )
    await db.execute(
        update(Caregiver)
        .where(Caregiver.id == rival)
        .values(
            is_active=True,
            skills=[SERVICE],
            shift_start=dt.time(0),
            shift_end=dt.time(23, 59),
            work_days=[1, 2, 3, 4, 5, 6, 7],
            daily_capacity=8,
        )
    )
    db.add(
        CaregiverPosition(
            caregiver_id=rival, **near(w["home"], 100), at=TEST_NOW, on_shift=True, shift_started_at=TEST_NOW
        )
    )
    await db.execute(delete(ProviderService).where(ProviderService.provider_id == other_provider))
    await db.commit()

    first = await _asap_order(api, w)
    assert first["state"] == "offered"
    assert await _offered_caregivers(db, first["id"]) == [w["caregiver_id"]]

    # Once the rival's provider is contracted for the service, the nearer rival gets the next order.
    await _set_contracts(api, w, other_provider, [_visit(dt.date(2026, 1, 1))])
    r = await api.post(
        "/api/v1/orders",
        json={"elder_id": w["elder_id"], "service_code": SERVICE, "asap": True},
        headers=w["h"]["family"],
    )
    assert r.json()["state"] == "offered", r.text
    assert await _offered_caregivers(db, r.json()["id"]) == [rival]


async def _offered_caregivers(db: AsyncSession, order_id: int) -> list[int]:
    return list(await db.scalars(select(Offer.caregiver_id).where(Offer.order_id == order_id)))


async def test_hand_assignment_refuses_an_uncontracted_provider(
    api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    w, h = world, world["h"]
    order = await _asap_order(api, w)
    assert order["state"] == "offered"
    offer_id = (await api.get("/api/v1/caregiver/offers", headers=h["caregiver"])).json()[0]["id"]
    r = await api.post(f"/api/v1/caregiver/offers/{offer_id}/decline", headers=h["caregiver"])
    assert r.json()["state"] == "escalated", r.text

    await _set_contracts(api, w, w["provider_id"], [{"service_code": "CLEAN", "valid_from": "2026-01-01"}])
    for role in ("operator", "provider_admin"):
        r = await api.post(
            f"/api/v1/orders/{order['id']}/assign", json={"caregiver_id": w["caregiver_id"]}, headers=h[role]
        )
        assert (r.status_code, r.json()["code"]) == (409, "dispatch.not_contracted"), (role, r.text)
        assert (r.json()["service_code"], r.json()["day"]) == (SERVICE, TODAY.isoformat())

    await _set_contracts(api, w, w["provider_id"], [_visit(TODAY, TODAY)])
    r = await api.post(
        f"/api/v1/orders/{order['id']}/assign",
        json={"caregiver_id": w["caregiver_id"]},
        headers=h["operator"],
    )
    assert r.status_code == 200, r.text
    assert r.json()["caregiver_id"] == w["caregiver_id"]


async def test_contracts_are_listed_in_scope_and_filtered_by_day(
    api: httpx.AsyncClient, world: dict[str, Any], db: AsyncSession
) -> None:
    w, h = world, world["h"]
    pid = w["provider_id"]
    terms = [
        {"service_code": "VISIT", "valid_from": "2026-01-01", "valid_to": "2026-11-19"},
        {"service_code": "VISIT", "valid_from": "2026-11-20", "valid_to": None},
        {"service_code": "BATH", "valid_from": "2026-12-01"},
        {"service_code": "CLEAN", "valid_from": "2026-01-01", "valid_to": "2026-11-20"},
    ]
    r = await api.put(_contracts_url(pid), json=terms, headers=h["admin"])
    assert r.status_code == 200, r.text
    everything = [
        {"provider_id": pid, "service_code": "BATH", "valid_from": "2026-12-01", "valid_to": None},
        {"provider_id": pid, "service_code": "CLEAN", "valid_from": "2026-01-01", "valid_to": "2026-11-20"},
        {"provider_id": pid, "service_code": "VISIT", "valid_from": "2026-01-01", "valid_to": "2026-11-19"},
        {"provider_id": pid, "service_code": "VISIT", "valid_from": "2026-11-20", "valid_to": None},
    ]
    assert r.json() == everything
    for role in ("admin", "operator", "supervisor", "civil_affairs", "provider_admin"):
        r = await api.get(_contracts_url(pid), headers=h[role])
        assert (r.status_code, r.json()) == (200, everything), role
    on = {
        "2026-11-20": [everything[1], everything[3]],
        "2026-11-21": [everything[3]],
        "2026-12-01": [everything[0], everything[3]],
        "2025-12-31": [],
    }
    for day, expected in on.items():
        r = await api.get(_contracts_url(pid), params={"on": day}, headers=h["provider_admin"])
        assert (r.status_code, r.json()) == (200, expected), day
    r = await api.get(_contracts_url(pid), params={"on": "20-11-2026"}, headers=h["admin"])
    assert (r.status_code, r.json()["code"]) == (422, "contract.date_invalid")

    # A provider admin sees only its own provider; caregivers and customers none.
    other = await db.scalar(select(Provider.id).where(Provider.id != pid).limit(1))
    r = await api.get(_contracts_url(int(other or 0)), headers=h["provider_admin"])
    assert (r.status_code, r.json()["code"]) == (404, "provider.not_found")
    r = await api.get(_contracts_url(int(other or 0)), headers=h["operator"])
    assert r.status_code == 200
    for role in ("caregiver", "family", "elder"):
        r = await api.get(_contracts_url(pid), headers=h[role])
        assert (r.status_code, r.json()["code"]) == (403, "auth.forbidden"), role
    r = await api.get(_contracts_url(999_999), headers=h["admin"])
    assert (r.status_code, r.json()["code"]) == (404, "provider.not_found")


async def test_contracts_are_replaced_by_civil_affairs_or_admin_with_checked_input(
    api: httpx.AsyncClient, world: dict[str, Any], db: AsyncSession
) -> None:
    w, h = world, world["h"]
    pid = w["provider_id"]
    good = [
        {"service_code": "VISIT", "valid_from": "2026-01-01"},
        {"service_code": "MEAL", "valid_from": "2026-03-01"},
    ]
    r = await api.put(_contracts_url(pid), json=good, headers=h["civil_affairs"])
    assert r.status_code == 200, r.text
    assert [(c["service_code"], c["valid_from"]) for c in r.json()] == [
        ("MEAL", "2026-03-01"),
        ("VISIT", "2026-01-01"),
    ]
    audit = await db.scalar(
        select(AuditLog)
        .where(AuditLog.entity == "provider_service", AuditLog.entity_id == str(pid))
        .order_by(AuditLog.id.desc())
        .limit(1)
    )
    assert audit is not None
    assert audit.actor_user_id == w["me"]["civil_affairs"]["user_id"]
    assert audit.after == {
        "contracts": [
            {"service_code": "MEAL", "valid_from": "2026-03-01", "valid_to": None},
            {"service_code": "VISIT", "valid_from": "2026-01-01", "valid_to": None},
        ]
    }

    bad: list[tuple[Any, tuple[int, str]]] = [
        ([{"service_code": "NOPE", "valid_from": "2026-01-01"}], (422, "contract.service_unknown")),
        ([{"service_code": "bad!", "valid_from": "2026-01-01"}], (422, "validation.invalid")),
        (
            [{"service_code": "VISIT", "valid_from": "2026-02-01", "valid_to": "2026-01-31"}],
            (422, "contract.range_invalid"),
        ),
        (
            [
                {"service_code": "VISIT", "valid_from": "2026-01-01", "valid_to": "2026-06-30"},
                {"service_code": "VISIT", "valid_from": "2026-06-30"},
            ],
            (422, "contract.overlap"),
        ),
        ([{"service_code": "VISIT", "valid_from": "2026-13-01"}], (422, "validation.invalid")),
        ([{"service_code": "VISIT", "valid_from": "2026-01-01", "price": 1}], (422, "validation.invalid")),
        ([{"service_code": "VISIT"}], (422, "validation.invalid")),
        ({"service_code": "VISIT", "valid_from": "2026-01-01"}, (422, "validation.invalid")),
    ]
    for body, expected in bad:
        r = await api.put(_contracts_url(pid), json=body, headers=h["admin"])
        assert (r.status_code, r.json()["code"]) == expected, (body, r.text)
    # Nothing was changed by the refused replacements.
    r = await api.get(_contracts_url(pid), headers=h["admin"])
    assert [c["service_code"] for c in r.json()] == ["MEAL", "VISIT"]

    # Roles and scope: provider admins and the call centre may not replace contracts; civil affairs
    # only for a provider serving one of their districts; an unknown provider is a 404.
    for role in ("provider_admin", "operator", "supervisor", "caregiver"):
        r = await api.put(_contracts_url(pid), json=good, headers=h[role])
        assert (r.status_code, r.json()["code"]) == (403, "auth.forbidden"), role
    xiaonan = await db.scalar(select(District.id).where(District.code == "420902"))
    elsewhere = await db.scalar(
        select(Provider.id)
        .where(
            ~select(ProviderDistrict.provider_id)
            .where(ProviderDistrict.provider_id == Provider.id, ProviderDistrict.district_id == xiaonan)
            .exists()
        )
        .limit(1)
    )
    assert elsewhere is not None
    r = await api.put(_contracts_url(elsewhere), json=good, headers=h["civil_affairs"])
    assert (r.status_code, r.json()["code"]) == (403, "scope.provider")
    r = await api.put(_contracts_url(elsewhere), json=good, headers=h["admin"])
    assert r.status_code == 200, r.text
    r = await api.put(_contracts_url(999_999), json=good, headers=h["admin"])
    assert (r.status_code, r.json()["code"]) == (404, "provider.not_found")

    # An empty list ends every contract: the provider is offered nothing any more.
    r = await api.put(_contracts_url(pid), json=[], headers=h["admin"])
    assert (r.status_code, r.json()) == (200, [])
    left = await db.scalar(
        select(func.count()).select_from(ProviderService).where(ProviderService.provider_id == pid)
    )
    assert left == 0
    assert (await _asap_order(api, w))["state"] == "escalated"
