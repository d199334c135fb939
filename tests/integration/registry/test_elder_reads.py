"""The elder list and detail, read in Core (``registry.service.elder_reads``), give for every role
the body the ORM converters give (``elder_read`` of an ``elder_view``), which the writes still use."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import Date, String, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.identity.authz import Principal
from core.identity.models import Role
from dispatch.models import ServiceOrder, Visit
from registry.idcard import age_on, mask_id_number
from registry.models import Elder, LtcCoverage
from registry.schemas.elders import elder_read
from registry.scope import sees_care_view_only, sees_unmasked_id_number
from registry.service.elder_reads import age_sql, masked_id_sql
from registry.service.elders import current_level, elder_view
from tests.conftest import TEST_NOW
from tests.factories import TODAY, Account, Factory
from tests.support.registry import principal_of

pytestmark = pytest.mark.integration


async def _expected(
    db: AsyncSession, principal: Principal, elder_id: int, *, detail: bool, under_way: bool
) -> Any:
    elder = await db.get(Elder, elder_id, populate_existing=True)
    assert elder is not None
    view = elder_view(
        principal,
        elder,
        level=await current_level(db, elder_id, TODAY),
        today=TODAY,
        unmasked=detail and sees_unmasked_id_number(principal),
        visit_under_way=under_way,
    )
    return msgspec.to_builtins(elder_read(view))


async def _check(
    client: httpx.AsyncClient, db: AsyncSession, account: Account, elder: Elder, *, under_way: bool = False
) -> None:
    principal = await principal_of(db, account.user.username)
    r = await client.get(f"/api/v1/elders/{elder.id}", headers=account.headers)
    assert r.status_code == 200, r.text
    assert r.json() == await _expected(db, principal, elder.id, detail=True, under_way=under_way)
    listed = await client.get("/api/v1/elders", params={"limit": 200}, headers=account.headers)
    assert listed.status_code == 200
    mine = [e for e in listed.json()["items"] if e["id"] == elder.id]
    if not mine:  # a long list: page by id up to the elder
        found = await client.get(
            "/api/v1/elders", params={"limit": 1, "name": elder.name}, headers=account.headers
        )
        mine = [e for e in found.json()["items"] if e["id"] == elder.id]
    assert mine == [await _expected(db, principal, elder.id, detail=False, under_way=under_way)]
    assert ("categories" in mine[0]) is not sees_care_view_only(principal)


async def test_every_role_reads_what_the_orm_converters_give(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(
        name="读取老人",
        contacts=[("王一", "child", "13900000001"), ("王二", "neighbour", "13900000002")],
        categories=["subsistence", "elderly_alone"],
        phone="13800000000",
        medical_notes="高血压",
    )
    db.add(LtcCoverage(elder_id=elder.id, policy_no="LTC-1", valid_from=dt.date(2026, 2, 1)))
    db.add(
        LtcCoverage(
            elder_id=elder.id,
            policy_no="LTC-0",
            valid_from=dt.date(2025, 2, 1),
            valid_to=dt.date(2026, 1, 31),
        )
    )
    await make.assessment(elder, level=3)
    guardian = await make.guardian(elder)
    await db.flush()

    for account in (
        await make.admin(),
        await make.account(Role.OPERATOR),
        await make.civil_affairs(),
        await make.account(Role.FAMILY, guardian=guardian),
        await make.account(Role.ELDER, elder=elder),
    ):
        await _check(client, db, account, elder)

    provider = await make.provider()
    caregiver = await make.caregiver(provider)
    account = await make.account(Role.CAREGIVER, caregiver=caregiver)
    start = TEST_NOW + dt.timedelta(hours=1)
    order = ServiceOrder(
        elder_id=elder.id, service_code="VISIT", provider_id=provider.id, caregiver_id=caregiver.id,
        state="accepted", window_start_at=start, window_end_at=start + dt.timedelta(minutes=30),
        duration_s=3600, price_fen=3000, created_by_role="operator",
    )  # fmt: skip
    db.add(order)
    await db.flush()
    db.add(
        Visit(
            order_id=order.id, service_code="VISIT", elder_id=elder.id, caregiver_id=caregiver.id,
            provider_id=provider.id, scheduled_start_at=start, scheduled_end_at=start + dt.timedelta(hours=1),
        )
    )  # fmt: skip
    await db.flush()
    await _check(client, db, account, elder)  # care view, no contacts
    provider_admin = await make.account(Role.PROVIDER_ADMIN, provider=provider)
    await _check(client, db, provider_admin, elder)
    order.state = "en_route"
    await db.flush()
    await _check(client, db, account, elder, under_way=True)  # care view with the contacts
    await _check(client, db, provider_admin, elder, under_way=True)


@pytest.mark.parametrize(
    ("birth_on", "today"),
    [
        (dt.date(2000, 2, 29), dt.date(2025, 2, 28)),
        (dt.date(2000, 2, 29), dt.date(2025, 3, 1)),
        (dt.date(2000, 2, 29), dt.date(2024, 2, 29)),
        (dt.date(1950, 12, 31), dt.date(2026, 12, 30)),
        (dt.date(1950, 12, 31), dt.date(2026, 12, 31)),
        (dt.date(1950, 1, 1), dt.date(2026, 1, 1)),
    ],
)
async def test_the_sql_age_is_the_python_age(db: AsyncSession, birth_on: dt.date, today: dt.date) -> None:
    sql = age_sql(literal(birth_on, Date), literal(today, Date))
    assert await db.scalar(select(sql)) == age_on(birth_on, today)


@pytest.mark.parametrize(
    "id_number", ["420902196408249510", "42090219640824951x", " 42090219640824951X ", "4209021964", ""]
)
async def test_the_sql_mask_is_the_python_mask(db: AsyncSession, id_number: str) -> None:
    assert await db.scalar(select(masked_id_sql(literal(id_number, String)))) == mask_id_number(id_number)
