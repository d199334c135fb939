"""Districts, streets and communities: everyone reads, admins write; references and uniqueness."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import AuditLog
from core.identity.models import Role
from registry.models import Community, Elder, Street
from tests.factories import HANCHUAN, XIAONAN, Factory
from tests.support.registry import problem_code

pytestmark = pytest.mark.integration

XIAOGAN_CODES = {"420902", "420921", "420922", "420923", "420981", "420982", "420984"}


async def test_everyone_signed_in_reads_places(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    assert (await client.get("/api/v1/districts")).status_code == 401
    elder = (await make.account(Role.ELDER, elder=await make.elder())).headers
    districts = (await client.get("/api/v1/districts", headers=elder)).json()
    assert {d["code"] for d in districts["items"]} == XIAOGAN_CODES
    assert districts["total"] == 7

    hanchuan = (await make.district(HANCHUAN)).id
    streets = (
        await client.get("/api/v1/streets", params={"district_code": HANCHUAN, "limit": 200}, headers=elder)
    ).json()
    expected = await db.scalar(select(func.count()).select_from(Street).where(Street.district_id == hanchuan))
    assert streets["total"] == expected
    assert {s["district_id"] for s in streets["items"]} == {hanchuan}

    street_id = streets["items"][0]["id"]
    communities = (
        await client.get("/api/v1/communities", params={"street_id": street_id, "limit": 200}, headers=elder)
    ).json()
    expected = await db.scalar(
        select(func.count()).select_from(Community).where(Community.street_id == street_id)
    )
    assert communities["total"] == expected
    by_district = (
        await client.get("/api/v1/communities", params={"district_id": hanchuan, "limit": 1}, headers=elder)
    ).json()
    assert by_district["total"] >= communities["total"]
    one = (await client.get(f"/api/v1/communities/{communities['items'][0]['id']}", headers=elder)).json()
    assert one == communities["items"][0]


async def test_admin_manages_places_with_clear_errors(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    admin = (await make.admin()).headers
    civil = (await make.civil_affairs()).headers
    body = {"code": "420999", "name": "测试区", "name_en": "Test", "kind": "urban", "lat": 30.9, "lon": 113.9}
    assert (await client.post("/api/v1/districts", json=body, headers=civil)).status_code == 403
    created = await client.post("/api/v1/districts", json=body, headers=admin)
    assert created.status_code == 201
    district = created.json()
    duplicate = await client.post("/api/v1/districts", json=body, headers=admin)
    assert (duplicate.status_code, problem_code(duplicate)) == (409, "conflict.duplicate")

    street = await client.post(
        "/api/v1/streets",
        json={"district_id": district["id"], "code": "420999001000", "name": "测试街道"},
        headers=admin,
    )
    assert street.status_code == 201
    unknown = await client.post(
        "/api/v1/streets", json={"district_id": 99_999, "code": "420999002000", "name": "无"}, headers=admin
    )
    assert (unknown.status_code, problem_code(unknown)) == (422, "reference.unknown")
    assert unknown.json()["field"] == "district_id"
    community = await client.post(
        "/api/v1/communities",
        json={
            "street_id": street.json()["id"],
            "code": "420999001001",
            "name": "测试社区",
            "lat": 30.9,
            "lon": 113.9,
        },
        headers=admin,
    )
    assert community.status_code == 201

    in_use = await client.delete(f"/api/v1/districts/{district['id']}", headers=admin)
    assert (in_use.status_code, problem_code(in_use)) == (409, "conflict.in_use")
    renamed = await client.patch(
        f"/api/v1/districts/{district['id']}", json={"name": "改名区"}, headers=admin
    )
    assert renamed.json()["name"] == "改名区"
    assert (
        await client.delete(f"/api/v1/communities/{community.json()['id']}", headers=admin)
    ).status_code == 204
    assert (await client.delete(f"/api/v1/streets/{street.json()['id']}", headers=admin)).status_code == 204
    assert (await client.delete(f"/api/v1/districts/{district['id']}", headers=admin)).status_code == 204
    actions = (
        await db.scalars(
            select(AuditLog.action)
            .where(AuditLog.entity == "district", AuditLog.entity_id == str(district["id"]))
            .order_by(AuditLog.id)
        )
    ).all()
    assert list(actions) == ["create", "update", "delete"]


async def test_moving_a_community_moves_its_elders_district(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    """Elders carry their district for scoping; re-parenting a community keeps it in step."""
    admin = (await make.admin()).headers
    elder = await make.elder(XIAONAN)
    hanchuan = (await make.district(HANCHUAN)).id
    target_street = await db.scalar(select(Street.id).where(Street.district_id == hanchuan).limit(1))
    r = await client.patch(
        f"/api/v1/communities/{elder.community_id}", json={"street_id": target_street}, headers=admin
    )
    assert r.status_code == 200
    moved = await db.scalar(
        select(Elder.district_id).where(Elder.id == elder.id).execution_options(populate_existing=True)
    )
    assert moved == hanchuan
    # The civil-affairs officer of Xiaonan no longer sees that elder.
    civil = (await make.civil_affairs(XIAONAN)).headers
    assert (await client.get(f"/api/v1/elders/{elder.id}", headers=civil)).status_code == 404
