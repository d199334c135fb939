"""``GET /api/v1/billing/quote`` against the real database: each payer's share and the co-pay for one
visit, counting what the elder's month already used, under the dated rules; who may ask, and scoping."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.identity.models import Role
from core.policy import PolicyValue
from registry.models import ElderCategory, Provider
from tests.factories import HANCHUAN, TODAY, XIAONAN, Factory
from tests.integration.billing.conftest import Carer, add_visit, at, carer, insure

pytestmark = pytest.mark.integration

URL = "/api/v1/billing/quote"
NOV = TODAY.replace(day=1)
assert dt.date(2026, 11, 20) == TODAY


def split(body: dict[str, Any]) -> tuple[int, int, int, int]:
    """(LTC, voucher, local, co-pay) of a quote, after checking they sum to its amount."""
    shares = {s["payer"]: s["share_fen"] for s in body["shares"]}
    assert sum(shares.values()) + body["copay_fen"] == body["amount_fen"]
    return shares["ltc"], shares["voucher"], shares["local"], body["copay_fen"]


async def quote(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> httpx.Response:
    return await client.get(URL, params=params, headers=headers)


async def test_an_insured_elder_with_a_category_pays_the_rest(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(categories=["subsistence"])
    await make.assessment(elder, level=3, assessed_on=dt.date(2026, 6, 1))
    await insure(db, elder)
    family = await make.account(Role.FAMILY, guardian=await make.guardian(elder))

    r = await quote(client, family.headers, elder_id=elder.id, service="CARE")
    assert r.status_code == 200, r.text
    body = r.json()
    # Today, one hour of CARE at 60 yuan: LTC 90 %, the voucher half the rest, 低保 90 % of what is left.
    assert (body["on"], body["units"], body["unit"], body["unit_price_fen"]) == (
        str(TODAY),
        1.0,
        "hour",
        6000,
    )
    assert split(body) == (5400, 300, 270, 30)
    assert body["entitlements"] == {
        "ltc_level": 3,
        "voucher_level": 3,
        "local_category": "subsistence",
        "ended": None,
    }
    ltc = body["shares"][0]
    assert ltc == {
        "payer": "ltc",
        "name_zh": "长护险",
        "name_en": "Long-term-care insurance",
        "share_fen": 5400,
        "reason": "paid",
        "rate_bp": 9000,
        "uncapped_fen": 5400,
        "model": "per_visit",
        "budget_fen": 90_000,
        "used_before_fen": 0,
        "remaining_after_fen": 84_600,
        "scope": "3",
        "policy_ref": "subsidy.ltc[3]@2026-01-01",
    }
    # A meal is not LTC's to pay; a caring visit neither LTC's nor the voucher's.
    meal = (await quote(client, family.headers, elder_id=elder.id, service="MEAL", units="2")).json()
    assert (meal["amount_fen"], split(meal)) == (2400, (0, 1200, 1080, 120))
    assert meal["shares"][0]["reason"] == "not_covered"
    visit = (await quote(client, family.headers, elder_id=elder.id, service="VISIT")).json()
    assert split(visit) == (0, 0, 2700, 300)


async def test_the_months_verified_visits_use_the_budget_first(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder()
    await make.assessment(elder, level=2, assessed_on=dt.date(2026, 6, 1))
    await insure(db, elder)
    by = await carer(make)
    for d in (2, 3, 4, 5, 6):  # five verified visits of two hours of CARE: LTC pays 10800 of each
        await add_visit(db, elder, by, "CARE", at(NOV.replace(day=d)), hours=2, unit_price_fen=6000)
    # Not counted: October's visit, one still held by an exception, a cancelled order's, and one on
    # the 21st (after the day quoted).
    await add_visit(db, elder, by, "CARE", at(dt.date(2026, 10, 30)), hours=2, unit_price_fen=6000)
    await add_visit(db, elder, by, "CARE", at(NOV.replace(day=9)), hours=2, unit_price_fen=6000,
                    state="exception", verification="exception")  # fmt: skip
    await add_visit(db, elder, by, "CARE", at(NOV.replace(day=10)), hours=2, unit_price_fen=6000,
                    state="cancelled")  # fmt: skip
    await add_visit(db, elder, by, "CARE", at(NOV.replace(day=21)), hours=2, unit_price_fen=6000)
    admin = await make.admin()

    r = await quote(client, admin.headers, elder_id=elder.id, service="CARE", units="2", on="2026-11-20")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["month_visits"] == 5
    # 54000 of LTC's 60000 used: it pays the 6000 left; the voucher half of the 6000 unpaid.
    assert split(body) == (6000, 3000, 0, 3000)
    ltc, voucher = body["shares"][0], body["shares"][1]
    assert (ltc["reason"], ltc["uncapped_fen"], ltc["used_before_fen"], ltc["remaining_after_fen"]) == (
        "capped",
        10800,
        54000,
        0,
    )
    assert (voucher["used_before_fen"], voucher["remaining_after_fen"]) == (3000, 80000 - 6000)
    # On the 1st of December the budgets are whole again.
    december = await quote(
        client, admin.headers, elder_id=elder.id, service="CARE", units="2", on="2026-12-01"
    )
    assert (december.json()["month_visits"], split(december.json())) == (0, (10800, 600, 0, 600))
    # On the 21st the visit of that day counts too.
    later = (
        await quote(client, admin.headers, elder_id=elder.id, service="CARE", units="2", on="2026-11-21")
    ).json()
    assert (later["month_visits"], split(later)) == (6, (0, 6000, 0, 6000))


async def test_units_and_the_catalogue_price_of_the_day(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(categories=["low_income"])
    admin = await make.admin()
    # An hour and a half of cleaning at 40 yuan: 6000; 低收入 pays 70 %.
    r = await quote(client, admin.headers, elder_id=elder.id, service="CLEAN", units="1.5")
    assert (r.status_code, r.json()["amount_fen"], split(r.json())) == (200, 6000, (0, 0, 4200, 1800))
    # A new catalogue price from the 1st of December applies to visits from that day.
    db.add(PolicyValue(key="service.price_fen", scope="CLEAN", valid_from=dt.date(2026, 12, 1), source="test",
                       value={"fen": 5000, "unit": "hour", "min_minutes": 60}))  # fmt: skip
    await db.flush()
    dec = await quote(client, admin.headers, elder_id=elder.id, service="CLEAN", units="1.5", on="2026-12-01")
    assert (dec.json()["unit_price_fen"], dec.json()["amount_fen"]) == (5000, 7500)


async def test_a_category_that_ends_mid_month_and_a_policy_change_apply_by_date(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder()
    db.add(ElderCategory(elder_id=elder.id, category="subsistence", valid_from=dt.date(2026, 1, 1),
                         valid_to=dt.date(2026, 11, 25)))  # fmt: skip
    db.add(PolicyValue(key="subsidy.local", scope="subsistence", valid_from=dt.date(2026, 11, 23),
                       source="test", value={"model": "per_visit", "rate_bp": 8000, "budget_fen": 40_000,
                                             "services": ["ERRAND"]}))  # fmt: skip
    await db.flush()
    admin = await make.admin()
    days = {}
    for d in (22, 23, 26):
        r = await quote(client, admin.headers, elder_id=elder.id, service="ERRAND", on=f"2026-11-{d}")
        days[d] = r.json()
    assert split(days[22]) == (0, 0, 1350, 150)  # 90 %
    assert split(days[23]) == (0, 0, 1200, 300)  # 80 % from the 23rd
    assert split(days[26]) == (0, 0, 0, 1500)  # the category ended on the 25th
    assert days[23]["shares"][2]["policy_ref"] == "subsidy.local[subsistence]@2026-11-23"


async def test_a_pilot_rule_pack_paying_ltc_per_day_written_through_the_policy_api(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder()
    await make.assessment(elder, level=3, assessed_on=dt.date(2026, 6, 1))
    await insure(db, elder)
    admin = await make.admin()
    per_day = {"model": "per_day", "rate_bp": 9000, "budget_fen": 5000, "services": ["CARE", "BATH", "CLEAN"]}
    refused = await client.post(
        "/api/v1/policies",
        json={"key": "subsidy.ltc", "scope": "3", "value": {**per_day, "model": "per_week"},
              "valid_from": str(TODAY), "source": "pilot"},
        headers=admin.headers,
    )  # fmt: skip
    assert (refused.status_code, refused.json()["code"], refused.json()["field"]) == (
        422,
        "policy.value_invalid",
        "value.model",
    )
    too_generous = await client.post(
        "/api/v1/policies",
        json={"key": "subsidy.ltc", "scope": "3", "value": {**per_day, "rate_bp": 12_000},
              "valid_from": str(TODAY), "source": "pilot"},
        headers=admin.headers,
    )  # fmt: skip
    assert (too_generous.status_code, too_generous.json()["field"]) == (422, "value.rate_bp")
    written = await client.post(
        "/api/v1/policies",
        json={"key": "subsidy.ltc", "scope": "3", "value": per_day, "valid_from": str(TODAY),
              "source": "试点: 长护险按床日 (pilot)"},
        headers=admin.headers,
    )  # fmt: skip
    assert written.status_code == 201, written.text

    by = await carer(make)
    await add_visit(db, elder, by, "CARE", at(TODAY, 8), unit_price_fen=6000)
    today = (await quote(client, admin.headers, elder_id=elder.id, service="CARE")).json()
    # This morning's visit used the day's 50 yuan (90 % of 6000 capped at 5000): nothing left today.
    assert split(today) == (0, 3000, 0, 3000)
    assert (today["shares"][0]["reason"], today["shares"][0]["model"]) == ("budget_spent", "per_day")
    tomorrow = (await quote(client, admin.headers, elder_id=elder.id, service="CARE", on="2026-11-21")).json()
    assert split(tomorrow) == (5000, 500, 0, 500)
    # Yesterday Xiaogan's default still applied.
    yesterday = (
        await quote(client, admin.headers, elder_id=elder.id, service="CARE", on="2026-11-19")
    ).json()
    assert split(yesterday) == (5400, 300, 0, 300)


async def test_after_a_death_the_family_pays_everything(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(status="deceased", status_on=dt.date(2026, 11, 18), categories=["destitute"])
    admin = await make.admin()
    on_the_day = (
        await quote(client, admin.headers, elder_id=elder.id, service="MEAL", on="2026-11-18")
    ).json()
    assert split(on_the_day) == (0, 0, 1200, 0)
    after = (await quote(client, admin.headers, elder_id=elder.id, service="MEAL")).json()
    assert (split(after), after["entitlements"]["ended"]) == ((0, 0, 0, 1200), "deceased")


BAD = [
    ({"service": "NOPE"}, "billing.unknown_service", "service"),
    ({"service": "MEAL", "units": "1.5"}, "billing.units_invalid", "units"),
    ({"service": "CARE", "units": "0"}, "billing.units_invalid", "units"),
    ({"service": "CARE", "units": "25"}, "billing.units_invalid", "units"),
    ({"service": "CARE", "on": "2201-01-01"}, "validation.invalid", "on"),
    ({"service": "CARE", "on": "2025-06-01"}, "dispatch.invalid", None),  # no catalogue price yet
]


@pytest.mark.parametrize(("params", "code", "field"), BAD)
async def test_bad_input_is_a_problem(
    client: httpx.AsyncClient, make: Factory, params: dict[str, str], code: str, field: str | None
) -> None:
    elder = await make.elder()
    admin = await make.admin()
    r = await quote(client, admin.headers, elder_id=elder.id, **params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (r.json()["code"], r.json().get("field")) == (code, field)


async def test_malformed_parameters_never_reach_the_rules(client: httpx.AsyncClient, make: Factory) -> None:
    admin = await make.admin()
    malformed: list[dict[str, Any]] = [
        {"service": "CARE"},
        {"elder_id": "x", "service": "CARE"},
        {"elder_id": "1", "service": "care"},
        {"elder_id": "1", "service": "CARE", "units": "1.234"},
        {"elder_id": 2**63, "service": "CARE"},
    ]
    for params in malformed:
        r = await client.get(URL, params=params, headers=admin.headers)
        assert r.status_code in (400, 422), (params, r.text)


async def test_who_may_ask_and_for_whom(client: httpx.AsyncClient, db: AsyncSession, make: Factory) -> None:
    elder = await make.elder(XIAONAN)
    by = await carer(make)
    await add_visit(db, elder, by, "MEAL", at(NOV.replace(day=2)), unit_price_fen=1200)
    allowed = {
        "the elder": await make.account(Role.ELDER, elder=elder),
        "their family": await make.account(Role.FAMILY, guardian=await make.guardian(elder)),
        "the provider serving them": await make.account(
            Role.PROVIDER_ADMIN, provider=await provider_of(db, by)
        ),
        "an operator of the district": await make.account(Role.OPERATOR, districts=[XIAONAN]),
        "an operator city-wide": await make.account(Role.OPERATOR),
        "civil affairs of the district": await make.civil_affairs(XIAONAN),
        "an admin": await make.admin(),
    }
    for who, account in allowed.items():
        r = await quote(client, account.headers, elder_id=elder.id, service="MEAL")
        assert r.status_code == 200, (who, r.text)
    out_of_scope = {
        "another elder": await make.account(Role.ELDER),
        "another family": await make.account(Role.FAMILY),
        "a provider not serving them": await make.account(Role.PROVIDER_ADMIN),
        "an operator of another district": await make.account(Role.OPERATOR, districts=[HANCHUAN]),
        "civil affairs of another district": await make.civil_affairs(HANCHUAN),
    }
    for who, account in out_of_scope.items():
        r = await quote(client, account.headers, elder_id=elder.id, service="MEAL")
        assert (r.status_code, r.json()["code"]) == (404, "elder.not_found"), who
    for role in (Role.CAREGIVER, Role.SUPERVISOR):
        account = await make.account(role)
        r = await quote(client, account.headers, elder_id=elder.id, service="MEAL")
        assert r.status_code == 403, role
    assert (await client.get(URL, params={"elder_id": elder.id, "service": "MEAL"})).status_code == 401
    missing = await quote(client, allowed["an admin"].headers, elder_id=2**62, service="MEAL")
    assert (missing.status_code, missing.json()["code"]) == (404, "elder.not_found")


async def provider_of(db: AsyncSession, by: Carer) -> Provider:
    provider = await db.get(Provider, by.provider_id)
    assert provider is not None
    return provider
