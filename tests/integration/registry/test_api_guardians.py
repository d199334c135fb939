"""Guardians and their links to elders, scoped per role."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.identity.models import Role
from tests.factories import HANCHUAN, XIAONAN, Factory
from tests.support.registry import problem_code

pytestmark = pytest.mark.integration


async def test_civil_affairs_creates_and_links_guardians_in_their_districts(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    civil = (await make.civil_affairs(XIAONAN)).headers
    own = await make.elder(XIAONAN)
    other = await make.elder(HANCHUAN)

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
    foreign_guardian = (await make.guardian(other)).id
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
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    mother, father = await make.elder(XIAONAN, gender="F"), await make.elder(XIAONAN)
    guardian = await make.guardian(mother, father)
    family = (await make.account(Role.FAMILY, guardian=guardian)).headers
    listed = (await client.get("/api/v1/guardians", headers=family)).json()
    assert [g["id"] for g in listed["items"]] == [guardian.id]
    assert set(listed["items"][0]["elder_ids"]) == {mother.id, father.id}
    # Another guardian, even of the same elder, is "not found".
    another = await make.guardian(mother, name="另一家属")
    assert (await client.get(f"/api/v1/guardians/{another.id}", headers=family)).status_code == 404
    # Families do not edit guardian records or links (route rules).
    assert (
        await client.patch(f"/api/v1/guardians/{guardian.id}", json={"name": "x"}, headers=family)
    ).status_code == 403
    assert (
        await client.delete(f"/api/v1/elders/{mother.id}/guardians/{guardian.id}", headers=family)
    ).status_code == 403
