"""Guardians and their links to elders, scoped per role."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.settings import Settings
from registry.models import Elder, ElderGuardian
from tests.support.registry import (
    district_id,
    elder_in,
    headers_for,
    make_client,
    principal_of,
    problem_code,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(
    test_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(test_settings, sessionmaker) as c:
        yield c


async def test_civil_affairs_creates_and_links_guardians_in_their_districts(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    civil = await headers_for(db, "demo_civil_affairs")
    own = await elder_in(db, "420902")
    other = await elder_in(db, "420984")

    unlinked = await client.post(
        "/api/v1/guardians", json={"name": "赵六", "phone": "13955556666"}, headers=civil
    )
    assert (unlinked.status_code, problem_code(unlinked)) == (422, "validation.required")
    created = await client.post(
        "/api/v1/guardians",
        json={
            "name": "赵六",
            "phone": "+86 139 5555 6666",
            "elder_id": own.id,
            "relation": "son",
            "is_primary": True,
        },
        headers=civil,
    )
    assert created.status_code == 201, created.text
    guardian = created.json()
    assert guardian["phone"] == "13955556666"
    assert guardian["elder_ids"] == [own.id]
    links = (await client.get(f"/api/v1/elders/{own.id}/guardians", headers=civil)).json()
    assert links[0]["guardian_id"] == guardian["id"]
    assert [link["is_primary"] for link in links].count(True) == 1, "one primary guardian per elder"

    elsewhere = await client.post(
        "/api/v1/guardians",
        json={"name": "钱七", "phone": "13955557777", "elder_id": other.id},
        headers=civil,
    )
    assert elsewhere.status_code == 404
    bad_phone = await client.post(
        "/api/v1/guardians", json={"name": "钱七", "phone": "5557777", "elder_id": own.id}, headers=civil
    )
    assert (bad_phone.status_code, problem_code(bad_phone)) == (422, "phone.format")

    # Guardians of elders outside the officer's districts are invisible.
    foreign_guardian = await db.scalar(
        select(ElderGuardian.guardian_id)
        .join(Elder, Elder.id == ElderGuardian.elder_id)
        .where(Elder.district_id == await district_id(db, "420984"))
        .limit(1)
    )
    assert (await client.get(f"/api/v1/guardians/{foreign_guardian}", headers=civil)).status_code == 404
    listed = (await client.get("/api/v1/guardians", params={"limit": 200}, headers=civil)).json()
    assert foreign_guardian not in {g["id"] for g in listed["items"]}
    assert guardian["id"] in {
        g["id"]
        for g in (await client.get("/api/v1/guardians", params={"name": "赵六"}, headers=civil)).json()[
            "items"
        ]
    }

    unlink = await client.delete(f"/api/v1/elders/{own.id}/guardians/{guardian['id']}", headers=civil)
    assert unlink.status_code == 204
    relink = await client.post(
        f"/api/v1/elders/{own.id}/guardians",
        json={"guardian_id": guardian["id"], "relation": "son"},
        headers=civil,
    )
    assert relink.status_code == 201
    twice = await client.post(
        f"/api/v1/elders/{own.id}/guardians",
        json={"guardian_id": guardian["id"], "relation": "son"},
        headers=civil,
    )
    assert (twice.status_code, problem_code(twice)) == (409, "conflict.duplicate")
    unknown = await client.post(
        f"/api/v1/elders/{own.id}/guardians",
        json={"guardian_id": 999_999_999, "relation": "son"},
        headers=civil,
    )
    assert (unknown.status_code, problem_code(unknown)) == (422, "reference.unknown")


async def test_family_sees_only_their_own_guardian_record(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    family_p = await principal_of(db, "demo_family")
    family = await headers_for(db, "demo_family")
    listed = (await client.get("/api/v1/guardians", headers=family)).json()
    assert [g["id"] for g in listed["items"]] == [family_p.guardian_id]
    assert set(listed["items"][0]["elder_ids"]) == set(family_p.elder_ids)
    another = await db.scalar(
        select(ElderGuardian.guardian_id).where(ElderGuardian.guardian_id != family_p.guardian_id).limit(1)
    )
    assert (await client.get(f"/api/v1/guardians/{another}", headers=family)).status_code == 404
    # Families do not edit guardian records or links (route rules).
    own_elder = min(family_p.elder_ids)
    assert (
        await client.patch(f"/api/v1/guardians/{family_p.guardian_id}", json={"name": "x"}, headers=family)
    ).status_code == 403
    assert (
        await client.delete(f"/api/v1/elders/{own_elder}/guardians/{family_p.guardian_id}", headers=family)
    ).status_code == 403
