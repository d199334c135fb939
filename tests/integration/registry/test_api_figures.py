"""``GET /api/v1/figures`` and the web home page: the headline figures of the caller's area, scoped
by district, checked against counts taken straight from the database."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.identity.models import Role
from iot_ingest.models import Device
from registry.models import Elder, ElderCategory
from tests.factories import HANCHUAN, TODAY, XIAONAN, Factory
from tests.support.registry import problem_code

pytestmark = pytest.mark.integration


async def direct_counts(db: AsyncSession, district_ids: list[int] | None) -> dict[str, Any]:
    """The same figures by plain SQL, written independently of the service."""
    area = "TRUE" if district_ids is None else "e.district_id = ANY(:d)"
    pd_area = "TRUE" if district_ids is None else "pd.district_id = ANY(:d)"
    params: dict[str, Any] = {"on": TODAY, "d": district_ids or []}

    async def rows(sql: str) -> list[Any]:
        return list((await db.execute(text(sql), params)).all())

    living = dict(
        await rows(
            f"SELECT living_situation, count(*) FROM elder e WHERE {area} AND status = 'active' GROUP BY 1"
        )
    )
    categories = dict(
        await rows(
            f"""SELECT c.category, count(DISTINCT c.elder_id) FROM elder_category c
                JOIN elder e ON e.id = c.elder_id
                WHERE {area} AND e.status = 'active' AND c.valid_from <= :on
                  AND (c.valid_to IS NULL OR c.valid_to >= :on)
                GROUP BY 1"""
        )
    )
    serving = f"""SELECT p.id FROM provider p WHERE p.is_active AND p.contract_from <= :on
                  AND (p.contract_to IS NULL OR p.contract_to >= :on)
                  AND EXISTS (SELECT 1 FROM provider_district pd WHERE pd.provider_id = p.id AND {pd_area})"""
    providers = len(await rows(serving))
    caregivers = (
        await rows(f"SELECT count(*) FROM caregiver WHERE is_active AND provider_id IN ({serving})")
    )[0][0]
    devices, online = (
        await rows(
            f"""SELECT count(*), count(*) FILTER (WHERE d.online) FROM device d
                JOIN elder e ON e.id = d.elder_id WHERE {area} AND d.status = 'active'"""
        )
    )[0]
    return {
        "elders": {
            "total": sum(living.values()),
            "by_living_situation": {k: living.get(k, 0) for k in ("alone", "empty_nest", "with_family")},
            "by_category": {
                k: categories.get(k, 0)
                for k in (
                    "destitute",
                    "subsistence",
                    "low_income",
                    "family_planning",
                    "veteran",
                    "elderly_alone",
                )
            },
        },
        "providers": providers,
        "caregivers": caregivers,
        "devices": {"total": devices, "online": online},
    }


def figures_of(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in ("elders", "providers", "caregivers", "devices")}


async def test_officer_sees_their_districts_figures_matching_the_database(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    xiaonan = (await make.district(XIAONAN)).id
    hanchuan = (await make.district(HANCHUAN)).id
    civil = (await make.civil_affairs(XIAONAN)).headers
    admin = (await make.admin()).headers
    other = await make.elder(HANCHUAN)

    r = await client.get("/api/v1/figures", headers=civil)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["on"] == str(TODAY)
    assert body["district_ids"] == [xiaonan]
    expected = await direct_counts(db, [xiaonan])
    assert figures_of(body) == expected
    # The demo data is big enough for the check to mean something.
    assert expected["elders"]["total"] > 100
    assert expected["providers"] > 0
    assert expected["caregivers"] > 0
    assert expected["devices"]["total"] > 0
    assert sum(expected["elders"]["by_category"].values()) > 0

    # Another district is out of scope: a 404, like any record the officer may not see.
    r = await client.get("/api/v1/figures", params={"district_id": hanchuan}, headers=civil)
    assert (r.status_code, problem_code(r)) == (404, "district.not_found")
    r = await client.get("/api/v1/figures", params={"district_id": xiaonan}, headers=civil)
    assert figures_of(r.json()) == expected

    # An elder of Hanchuan who dies changes the admin's Hanchuan figures, not the officer's.
    before_b = figures_of(
        (await client.get("/api/v1/figures", params={"district_id": hanchuan}, headers=admin)).json()
    )
    assert before_b == await direct_counts(db, [hanchuan])
    assert before_b != expected
    other.status, other.status_on = "deceased", TODAY
    await db.flush()
    after_b = figures_of(
        (await client.get("/api/v1/figures", params={"district_id": hanchuan}, headers=admin)).json()
    )
    assert after_b == await direct_counts(db, [hanchuan])
    assert after_b["elders"]["total"] == before_b["elders"]["total"] - 1
    assert figures_of((await client.get("/api/v1/figures", headers=civil)).json()) == expected


async def test_admin_and_call_centre_see_the_whole_city(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    city = await direct_counts(db, None)
    for role in (Role.ADMIN, Role.OPERATOR, Role.SUPERVISOR):
        r = await client.get("/api/v1/figures", headers=(await make.account(role)).headers)
        assert r.status_code == 200, (role, r.text)
        assert r.json()["district_ids"] is None
        assert figures_of(r.json()) == city, role
    assert city["elders"]["total"] == await db.scalar(
        text("SELECT count(*) FROM elder WHERE status = 'active'")
    )
    admin = (await make.admin()).headers
    r = await client.get("/api/v1/figures", params={"district_id": 999_999}, headers=admin)
    assert (r.status_code, problem_code(r)) == (404, "district.not_found")


@pytest.mark.parametrize("role", [Role.FAMILY, Role.ELDER, Role.CAREGIVER, Role.PROVIDER_ADMIN])
async def test_other_roles_are_refused(client: httpx.AsyncClient, make: Factory, role: Role) -> None:
    r = await client.get("/api/v1/figures", headers=(await make.account(role)).headers)
    assert (r.status_code, problem_code(r)) == (403, "auth.forbidden")


async def test_categories_count_on_the_date_and_devices_online(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    civil = (await make.civil_affairs(XIAONAN)).headers

    async def current() -> dict[str, Any]:
        return figures_of((await client.get("/api/v1/figures", headers=civil)).json())

    elder = await make.elder(XIAONAN)
    base = await current()
    held = set(
        (
            await db.scalars(
                select(ElderCategory.category).where(
                    ElderCategory.elder_id == elder.id,
                    ElderCategory.valid_from <= TODAY,
                    (ElderCategory.valid_to.is_(None)) | (ElderCategory.valid_to >= TODAY),
                )
            )
        ).all()
    )
    free = next(c for c in ("veteran", "family_planning", "destitute") if c not in held)
    day = dt.timedelta(days=1)
    db.add_all(
        [
            ElderCategory(
                elder_id=elder.id, category=free, valid_from=TODAY - 30 * day, valid_to=TODAY - day
            ),
            ElderCategory(elder_id=elder.id, category=free, valid_from=TODAY + day),
        ]
    )
    await db.flush()
    assert await current() == base  # ended yesterday, starts tomorrow: neither counts today
    db.add(ElderCategory(elder_id=elder.id, category=free, valid_from=TODAY, valid_to=TODAY))
    await db.flush()
    now = await current()
    assert now["elders"]["by_category"][free] == base["elders"]["by_category"][free] + 1

    offline = await db.scalar(
        select(Device)
        .join(Elder, Elder.id == Device.elder_id)
        .where(Elder.id.in_(select(Elder.id).where(Elder.district_id == elder.district_id)))
        .where(Device.status == "active", Device.online.is_not(True))
        .limit(1)
    )
    assert offline is not None
    offline.online = True
    await db.flush()
    after = await current()
    assert after["devices"] == {"total": base["devices"]["total"], "online": base["devices"]["online"] + 1}


async def test_web_home_shows_the_same_figures_as_the_api(client: httpx.AsyncClient, make: Factory) -> None:
    civil = (await make.civil_affairs(XIAONAN)).headers
    api = (await client.get("/api/v1/figures", headers=civil)).json()
    page = await client.get("/", headers=civil)
    assert page.status_code == 200
    html = page.text
    shown = {
        "fig.elders": api["elders"]["total"],
        "fig.living.alone": api["elders"]["by_living_situation"]["alone"],
        "fig.category.subsistence": api["elders"]["by_category"]["subsistence"],
        "fig.providers": api["providers"],
        "fig.caregivers": api["caregivers"],
        "fig.devices": api["devices"]["total"],
        "fig.devices_online": api["devices"]["online"],
    }
    for key, value in shown.items():
        assert f'data-figure="{key}"><dt>' in html, key
        start = html.index(f'data-figure="{key}">')
        assert f"<dd>{value}</dd>" in html[start : start + 200], (key, value)


async def test_web_home_of_admin_is_city_wide_and_of_family_has_no_figures(
    client: httpx.AsyncClient, make: Factory
) -> None:
    admin = (await make.admin()).headers
    api = (await client.get("/api/v1/figures", headers=admin)).json()
    html = (await client.get("/?lang=en", headers=admin)).text
    assert "Whole city" in html
    start = html.index('data-figure="fig.elders">')
    assert f"<dd>{api['elders']['total']}</dd>" in html[start : start + 200]
    family = (await client.get("/", headers=(await make.account(Role.FAMILY)).headers)).text
    assert "data-figure" not in family
