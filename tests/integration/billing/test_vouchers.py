"""Voucher accounts (养老服务消费补贴) against the real database: issuing on the 1st and catching up
later, idempotent also when two runs race; the account's issued / consumed / balance / expiry; who may
read it, and scoping."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing.models import VoucherIssue
from billing.vouchers import issue_vouchers
from core.clock import SHANGHAI
from core.identity.models import Role
from core.policy import PolicyValue
from core.scheduler import run_job
from core.settings import Settings
from registry.idcard import make_id_number
from registry.models import Assessment, Elder
from tests.conftest import TEST_NOW
from tests.factories import HANCHUAN, TODAY, XIAONAN, Factory, add_assessment
from tests.integration.billing.conftest import add_visit, at, carer

pytestmark = pytest.mark.integration

URL = "/api/v1/billing/vouchers"
NOV = dt.date(2026, 11, 1)
DEC = dt.date(2026, 12, 1)


def local(day: dt.date, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=SHANGHAI)


async def issues_of(db: AsyncSession, elder: Elder) -> list[VoucherIssue]:
    rows = await db.scalars(
        select(VoucherIssue).where(VoucherIssue.elder_id == elder.id).order_by(VoucherIssue.month_on)
    )
    return list(rows.all())


async def test_issued_on_the_first_to_those_entitled_that_day_once(db: AsyncSession, make: Factory) -> None:
    entitled = await make.elder()
    await make.assessment(entitled, level=2, assessed_on=dt.date(2026, 6, 1))
    mild = await make.elder()
    await make.assessment(mild, level=1, assessed_on=dt.date(2026, 6, 1))
    died = await make.elder(status="deceased", status_on=dt.date(2026, 11, 15))
    await make.assessment(died, level=3, assessed_on=dt.date(2026, 6, 1))
    later = await make.elder()
    await make.assessment(later, level=4, assessed_on=dt.date(2026, 12, 10))

    first = local(DEC, 0, 10)
    assert await issue_vouchers(session=db, now=first) >= 1
    [issue] = await issues_of(db, entitled)
    assert (issue.month_on, issue.amount_fen, issue.level) == (DEC, 80_000, 2)
    assert issue.policy_ref == "subsidy.voucher[*]@2026-01-01"
    assert issue.issued_at == first
    assert issue.expires_at == local(dt.date(2027, 1, 1))  # the end of December in Xiaogan
    assert await issues_of(db, mild) == []
    assert await issues_of(db, died) == []
    assert await issues_of(db, later) == []

    # Again the same day: nothing more. On the 10th: the elder assessed that day, nobody twice.
    assert await issue_vouchers(session=db, now=first + dt.timedelta(hours=1)) == 0
    tenth = local(dt.date(2026, 12, 10), 0, 10)
    assert await issue_vouchers(session=db, now=tenth) >= 1
    [late] = await issues_of(db, later)
    assert (late.month_on, late.level, late.issued_at) == (DEC, 4, tenth)
    assert [i.id for i in await issues_of(db, entitled)] == [issue.id]
    assert await issue_vouchers(session=db, now=tenth) == 0


async def test_the_scheduled_job_issues_the_current_month(
    db: AsyncSession, make: Factory, sessionmaker: async_sessionmaker[AsyncSession], test_settings: Settings
) -> None:
    from api.bootstrap import scheduled_jobs

    elder = await make.elder()
    await make.assessment(elder, level=3, assessed_on=dt.date(2026, 6, 1))
    await db.commit()
    job = next(j for j in scheduled_jobs() if j.name == "billing.issue_vouchers")
    assert await run_job(job, sessionmaker=sessionmaker, settings=test_settings, clock=lambda: TEST_NOW)
    [issue] = await issues_of(db, elder)
    assert (issue.month_on, issue.amount_fen, issue.issued_at) == (NOV, 80_000, TEST_NOW)


async def test_the_expiry_is_configurable_by_dated_policy(db: AsyncSession, make: Factory) -> None:
    elder = await make.elder()
    await make.assessment(elder, level=2, assessed_on=dt.date(2026, 6, 1))
    db.add(PolicyValue(key="subsidy.voucher_expiry", scope="*", value={"grace_days": 5},
                       valid_from=NOV, source="test"))  # fmt: skip
    await db.flush()
    await issue_vouchers(session=db, now=TEST_NOW)
    [issue] = await issues_of(db, elder)
    assert issue.expires_at == local(dt.date(2026, 12, 6))


async def account(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> httpx.Response:
    return await client.get(URL, params=params, headers=headers)


async def test_the_account_issued_consumed_balance_and_expiry(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(categories=["subsistence"])
    await make.assessment(elder, level=2, assessed_on=dt.date(2026, 6, 1))
    await issue_vouchers(session=db, now=TEST_NOW)
    by = await carer(make)
    meal = await add_visit(db, elder, by, "MEAL", at(dt.date(2026, 11, 2)), unit_price_fen=1200)
    care = await add_visit(db, elder, by, "CARE", at(dt.date(2026, 11, 3)), hours=2, unit_price_fen=6000)
    await add_visit(
        db, elder, by, "VISIT", at(dt.date(2026, 11, 4)), unit_price_fen=3000
    )  # not the voucher's
    await add_visit(db, elder, by, "MEAL", at(dt.date(2026, 11, 5)), unit_price_fen=1200,
                    state="exception", verification="exception")  # fmt: skip
    family = await make.account(Role.FAMILY, guardian=await make.guardian(elder))

    r = await account(client, family.headers, elder_id=elder.id)  # this month by default
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["month"], body["issued_fen"], body["level"]) == ("2026-11", 80_000, 2)
    assert (body["consumed_fen"], body["balance_fen"]) == (600 + 6000, 80_000 - 6600)
    assert (body["expires_at"], body["expired"]) == ("2026-11-30T16:00:00Z", False)
    assert [
        (u["visit_id"], u["day"], u["service"], u["amount_fen"], u["voucher_fen"]) for u in body["uses"]
    ] == [
        (meal.id, "2026-11-02", "MEAL", 1200, 600),
        (care.id, "2026-11-03", "CARE", 12000, 6000),
    ]
    assert body["issue_id"] == (await issues_of(db, elder))[0].id


async def test_a_past_months_voucher_has_expired_and_a_month_without_one_shows_nothing(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder()
    await add_assessment(db, elder.id, level=2, assessed_on=dt.date(2026, 6, 1))
    db.add(VoucherIssue(elder_id=elder.id, month_on=dt.date(2026, 10, 1), amount_fen=80_000, level=2,
                        policy_ref="subsidy.voucher[*]@2026-01-01",
                        issued_at=local(dt.date(2026, 10, 1), 0, 10), expires_at=local(NOV)))  # fmt: skip
    by = await carer(make)
    await add_visit(db, elder, by, "MEAL", at(dt.date(2026, 10, 30)), unit_price_fen=1200)
    admin = await make.admin()
    october = (await account(client, admin.headers, elder_id=elder.id, month="2026-10")).json()
    assert (october["issued_fen"], october["consumed_fen"], october["balance_fen"]) == (80_000, 600, 79_400)
    assert october["expired"] is True
    december = (await account(client, admin.headers, elder_id=elder.id, month="2026-12")).json()
    assert (december["issue_id"], december["issued_fen"], december["consumed_fen"]) == (None, 0, 0)
    assert (december["expires_at"], december["expired"]) == ("2026-12-31T16:00:00Z", False)


@pytest.mark.parametrize("month", ["2026-13", "26-11", "0000-01", "2201-01"])
async def test_a_bad_month_is_a_problem(client: httpx.AsyncClient, make: Factory, month: str) -> None:
    admin = await make.admin()
    elder = await make.elder()
    r = await account(client, admin.headers, elder_id=elder.id, month=month)
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_who_may_read_a_voucher_account(client: httpx.AsyncClient, make: Factory) -> None:
    elder = await make.elder(XIAONAN)
    allowed = [
        await make.account(Role.ELDER, elder=elder),
        await make.account(Role.FAMILY, guardian=await make.guardian(elder)),
        await make.civil_affairs(XIAONAN),
        await make.admin(),
    ]
    for a in allowed:
        assert (await account(client, a.headers, elder_id=elder.id)).status_code == 200, a.user.role
    for a in (
        await make.account(Role.FAMILY),
        await make.account(Role.ELDER),
        await make.civil_affairs(HANCHUAN),
    ):
        r = await account(client, a.headers, elder_id=elder.id)
        assert (r.status_code, r.json()["code"]) == (404, "elder.not_found"), a.user.role
    for role in (Role.OPERATOR, Role.SUPERVISOR, Role.PROVIDER_ADMIN, Role.CAREGIVER):
        r = await account(client, (await make.account(role)).headers, elder_id=elder.id)
        assert r.status_code == 403, role


# --- Two issuing runs at once (committed rows, removed afterwards) -------------------------------

RACE_DAY = dt.date(2027, 2, 1)


async def test_two_runs_at_once_issue_each_voucher_once(
    engine: AsyncEngine, seeded: dict[str, object]
) -> None:
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as s, s.begin():
        template = await s.scalar(select(Elder).limit(1))
        assert template is not None
        born = dt.date(1931, 2, 3)
        elder = Elder(
            name="并发测试",
            gender="F",
            birth_on=born,
            id_number=make_id_number("420902", born, 997),
            address="x",
            lat=template.lat,
            lon=template.lon,
            community_id=template.community_id,
            district_id=template.district_id,
            living_situation="alone",
        )
        s.add(elder)
        await s.flush()
        s.add(
            Assessment(
                elder_id=elder.id,
                items={},
                total=40,
                preliminary_level=3,
                final_level=3,
                assessor="t",
                assessed_on=dt.date(2026, 12, 1),
                valid_until=dt.date(2027, 11, 30),
            )
        )
    try:

        async def run() -> int:
            async with factory() as s, s.begin():
                return await issue_vouchers(session=s, now=local(RACE_DAY, 0, 10))

        counts = await asyncio.gather(run(), run())
        async with factory() as s:
            mine = await s.scalar(
                select(func.count()).where(
                    VoucherIssue.elder_id == elder.id, VoucherIssue.month_on == RACE_DAY
                )
            )
            total = await s.scalar(select(func.count()).where(VoucherIssue.month_on == RACE_DAY))
        assert mine == 1
        assert sum(counts) == total  # every voucher of the month issued by exactly one of the runs
    finally:
        async with factory() as s, s.begin():
            await s.execute(delete(VoucherIssue).where(VoucherIssue.month_on == RACE_DAY))
            await s.execute(delete(Elder).where(Elder.id == elder.id))
    assert TODAY < RACE_DAY
