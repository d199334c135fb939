"""Shared setup for the dispatch API tests: an app on a settable clock, a login helper, the demo
world (an elder and a caregiver made able to meet) and the steps that bring a visit to an offer or to
check-out through HTTP.

Import the fixtures into a test module by assignment (``api = support.api``) so pytest finds
them there; each test runs inside the rolled-back test transaction with its own movable clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.identity.models import AppUser
from core.settings import Settings
from dispatch.models import CaregiverPosition, ProviderDayPlan, ProviderService, ServiceOrder
from dispatch.seed import CONTRACTS_FROM
from registry.models import (
    Caregiver,
    Community,
    District,
    Elder,
    ElderBlockedCaregiver,
    Provider,
    ProviderDistrict,
    Street,
)
from tests.conftest import TEST_NOW, asgi_transport
from tests.factories import add_signed_agreement, open_session

Login = Callable[[str], Awaitable[dict[str, str]]]
SERVICE = "VISIT"  # 探访关爱: no certificate, 30 min minimum on site
CONTRACTED_FROM = CONTRACTS_FROM  # the demo world's provider holds a VISIT contract from then on, as seeded
AGREED = ("MEAL", "VISIT", "CLEAN")  # the services of the world's signed agreement


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += dt.timedelta(**kw)


@pytest.fixture
def clock() -> Clock:
    return Clock(TEST_NOW)  # Friday 10:00 in Xiaogan


@pytest.fixture
async def api(
    test_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock
) -> AsyncIterator[httpx.AsyncClient]:
    from api.app import create_app

    app = create_app(test_settings, sessionmaker=sessionmaker, clock=clock)
    transport = asgi_transport(app, client=("127.0.0.1", 50001))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def as_user(db: AsyncSession, test_settings: Settings, clock: Clock) -> Login:
    """Headers of a demo user: a session as a sign-in at the clock's time opens it, without an
    Argon2 check in every test (the sign-in itself is tested in ``tests/integration/core``)."""

    async def _login(username: str) -> dict[str, str]:
        user_id = await db.scalar(select(AppUser.id).where(AppUser.username == username))
        assert user_id is not None, username
        headers = await open_session(db, user_id, now=clock.now, ttl_s=test_settings.session_ttl_seconds)
        await db.commit()
        return headers

    return _login


@pytest.fixture
async def world(db: AsyncSession, api: httpx.AsyncClient, as_user: Login) -> dict[str, Any]:
    """The demo elder and caregiver, made able to meet: the caregiver works every day 07-20 with the
    VISIT skill, their provider serves the elder's district and holds a VISIT contract, nobody is on
    shift and nobody is blocked. The elder and the provider have signed a service agreement for
    :data:`AGREED` from today for a year (recurring orders need one)."""
    h = {
        role: await as_user(f"demo_{role}")
        for role in (
            "elder",
            "family",
            "caregiver",
            "provider_admin",
            "operator",
            "supervisor",
            "civil_affairs",
            "admin",
        )
    }
    me = {role: (await api.get("/api/v1/auth/me", headers=hdr)).json() for role, hdr in h.items()}
    elder_id = me["elder"]["elder_id"]
    caregiver_id = me["caregiver"]["caregiver_id"]
    elder = await db.get(Elder, elder_id)
    cg = await db.get(Caregiver, caregiver_id)
    assert elder is not None
    assert cg is not None
    await db.execute(
        update(Caregiver)
        .where(Caregiver.id == caregiver_id)
        .values(
            shift_start=dt.time(7),
            shift_end=dt.time(20),
            work_days=[1, 2, 3, 4, 5, 6, 7],
            skills=sorted({*cg.skills, SERVICE}),
            is_active=True,
            daily_capacity=8,
        )
    )
    served = await db.scalar(
        select(ProviderDistrict.provider_id).where(
            ProviderDistrict.provider_id == cg.provider_id, ProviderDistrict.district_id == elder.district_id
        )
    )
    if served is None:
        db.add(ProviderDistrict(provider_id=cg.provider_id, district_id=elder.district_id))
    await db.execute(
        pg_insert(ProviderService)
        .values(provider_id=cg.provider_id, service_code=SERVICE, valid_from=CONTRACTED_FROM)
        .on_conflict_do_nothing()
    )
    await db.execute(delete(ElderBlockedCaregiver).where(ElderBlockedCaregiver.elder_id == elder_id))
    await db.execute(delete(CaregiverPosition))
    await add_signed_agreement(db, elder_id=elder_id, provider_id=cg.provider_id, services=AGREED)
    await db.commit()
    assert elder_id in me["family"]["elder_ids"]
    return {
        "h": h,
        "me": me,
        "elder_id": elder_id,
        "caregiver_id": caregiver_id,
        "provider_id": cg.provider_id,
        "home": (elder.lat, elder.lon),
    }


def near(home: tuple[float, float], metres_north: float) -> dict[str, float]:
    return {"lat": home[0] + metres_north / 111_195.0, "lon": home[1]}


async def offered_order(api: httpx.AsyncClient, w: dict[str, Any], who: str = "family") -> tuple[int, int]:
    """Caregiver on shift 300 m away; an as-soon-as-possible order → the offer id and order id."""
    h = w["h"]
    r = await api.post("/api/v1/caregiver/shift/start", json=near(w["home"], 300), headers=h["caregiver"])
    assert r.status_code == 200, r.text
    assert r.json()["on_shift"] is True
    r = await api.post(
        "/api/v1/orders",
        json={"elder_id": w["elder_id"], "service_code": SERVICE, "asap": True, "requirements": "陪聊"},
        headers=h[who],
    )
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["state"] == "offered"
    assert order["price_fen"] == 3000  # 30 yuan per caring visit, dated catalogue price
    r = await api.get("/api/v1/caregiver/offers", headers=h["caregiver"])
    assert r.status_code == 200
    offers = [o for o in r.json() if o["order_id"] == order["id"]]
    assert len(offers) == 1
    assert offers[0]["seconds_left"] == 60
    assert 0 < offers[0]["eta_s"] < 15 * 60
    return offers[0]["id"], order["id"]


async def checked_out_visit(api: httpx.AsyncClient, w: dict[str, Any], clock: Clock, *, sign: bool) -> int:
    h = w["h"]
    offer_id, _ = await offered_order(api, w)
    visit_id = (await api.post(f"/api/v1/caregiver/offers/{offer_id}/accept", headers=h["caregiver"])).json()[
        "id"
    ]
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit_id}/check-in", json=near(w["home"], 10), headers=h["caregiver"]
    )
    assert r.status_code == 200, r.text
    clock.advance(minutes=35)
    if sign:
        assert (await api.post(f"/api/v1/visits/{visit_id}/confirm", headers=h["family"])).status_code == 200
    r = await api.post(
        f"/api/v1/caregiver/visits/{visit_id}/check-out", json=near(w["home"], 10), headers=h["caregiver"]
    )
    assert r.json()["verdict"] == ("verified" if sign else "pending"), r.text
    return int(visit_id)


# --- A committed place of its own (for tests that race two connections) --------------------------------


@dataclass(frozen=True, slots=True)
class Place:
    district: District
    street: Street
    community: Community
    elder: Elder
    provider: Provider


async def add_place(s: AsyncSession, *, n: int, id_number: str, birth_on: dt.date) -> Place:
    """Test district ``99990n`` with one street, community, elder (``id_number`` must be valid) and an
    unattached provider, flushed. Remove it with :func:`remove_place`."""
    d = District(
        code=f"99990{n}", name=f"测试区{n}", name_en=f"Test {n}", kind="urban", lat=30.92, lon=113.91
    )
    s.add(d)
    await s.flush()
    st = Street(district_id=d.id, code=f"99990{n}001", name=f"测试街道{n}")
    s.add(st)
    await s.flush()
    c = Community(street_id=st.id, code=f"99990{n}001001", name=f"测试社区{n}", lat=30.92, lon=113.91)
    s.add(c)
    await s.flush()
    e = Elder(
        name=f"测试老人{n}",
        gender="F",
        birth_on=birth_on,
        id_number=id_number,
        address=f"测试路{2 * n - 1}号",
        lat=30.92,
        lon=113.91,
        community_id=c.id,
        district_id=d.id,
        living_situation="alone",
    )
    p = Provider(
        name=f"测试服务机构-{n}",
        licence_no=f"T-PLACE-{n}",
        contract_no=f"C-{n}",
        contract_from=dt.date(2026, 1, 1),
        phone=f"071200000{n:02d}",
        address=f"测试路{2 * n}号",
    )
    s.add_all([e, p])
    await s.flush()
    return Place(d, st, c, e, p)


async def remove_place(s: AsyncSession, place: Place) -> None:
    """Delete what :func:`add_place` made and what tests hung on it (orders, plans, caregivers)."""
    await s.execute(delete(ServiceOrder).where(ServiceOrder.elder_id == place.elder.id))
    await s.execute(delete(ProviderDayPlan).where(ProviderDayPlan.provider_id == place.provider.id))
    await s.execute(delete(Caregiver).where(Caregiver.provider_id == place.provider.id))
    await s.execute(delete(Elder).where(Elder.id == place.elder.id))
    await s.execute(delete(Provider).where(Provider.id == place.provider.id))
    await s.execute(delete(Community).where(Community.id == place.community.id))
    await s.execute(delete(Street).where(Street.id == place.street.id))
    await s.execute(delete(District).where(District.id == place.district.id))
