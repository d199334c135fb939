"""Providers and caregivers: staff see all, a provider only its own; admins and provider admins manage."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import AuditLog
from core.identity.models import Role
from registry.models import Caregiver, ProviderDistrict
from tests.factories import HANCHUAN, XIAONAN, Factory
from tests.support.registry import problem_code

pytestmark = pytest.mark.integration


def caregiver_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "测试护理员",
        "gender": "F",
        "phone": "13712345678",
        "shift_start": "08:00:00",
        "shift_end": "17:00:00",
        "home_lat": 30.92,
        "home_lon": 113.91,
        "skills": ["BATH", "CARE", "BATH"],
        "work_days": [5, 1, 2],
        "certificates": [
            {"kind": "eldercare_worker", "level": 4, "number": "YLHL-1", "issued_on": "2025-01-01",
             "expires_on": "2028-01-01"},
        ],
    }  # fmt: skip
    body.update(overrides)
    return body


async def test_provider_admin_sees_and_manages_only_own_caregivers(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    provider, other = await make.provider(XIAONAN), await make.provider(XIAONAN)
    await make.caregiver(provider)
    foreign = (await make.caregiver(other)).id
    me = await make.account(Role.PROVIDER_ADMIN, provider=provider)
    headers = me.headers
    other_provider = other.id

    providers = (await client.get("/api/v1/providers", headers=headers)).json()
    assert [p["id"] for p in providers["items"]] == [provider.id]
    assert (await client.get(f"/api/v1/providers/{other_provider}", headers=headers)).status_code == 404

    listed = (await client.get("/api/v1/caregivers", params={"limit": 200}, headers=headers)).json()
    own_count = await db.scalar(
        select(func.count()).select_from(Caregiver).where(Caregiver.provider_id == provider.id)
    )
    assert listed["total"] == own_count
    assert {c["provider_id"] for c in listed["items"]} == {provider.id}
    # Asking for another provider's caregivers yields nothing, and one of them is "not found".
    assert (
        await client.get("/api/v1/caregivers", params={"provider_id": other_provider}, headers=headers)
    ).json()["total"] == 0
    for method, path, body in [
        ("GET", f"/api/v1/caregivers/{foreign}", None),
        ("PATCH", f"/api/v1/caregivers/{foreign}", {"name": "x"}),
        ("DELETE", f"/api/v1/caregivers/{foreign}", None),
    ]:
        r = await client.request(method, path, json=body, headers=headers)
        assert (r.status_code, problem_code(r)) == (404, "caregiver.not_found"), (method, path)

    created = await client.post("/api/v1/caregivers", json=caregiver_body(), headers=headers)
    assert created.status_code == 201, created.text
    cg = created.json()
    assert cg["provider_id"] == provider.id
    assert cg["skills"] == ["BATH", "CARE"]
    assert cg["work_days"] == [1, 2, 5]
    assert cg["certificates"][0]["level"] == 4
    refused = await client.post(
        "/api/v1/caregivers", json=caregiver_body(provider_id=other_provider), headers=headers
    )
    assert (refused.status_code, problem_code(refused)) == (403, "scope.provider")

    cert = await client.post(
        f"/api/v1/caregivers/{cg['id']}/certificates",
        json={"kind": "health", "number": "JKZ-1", "issued_on": "2026-01-01", "expires_on": "2027-01-01"},
        headers=headers,
    )
    assert cert.status_code == 201
    assert (
        await client.delete(
            f"/api/v1/caregivers/{cg['id']}/certificates/{cert.json()['id']}", headers=headers
        )
    ).status_code == 204
    patched = await client.patch(f"/api/v1/caregivers/{cg['id']}", json={"is_active": False}, headers=headers)
    assert patched.json()["is_active"] is False
    actions = (
        await db.scalars(
            select(AuditLog.action)
            .where(AuditLog.entity.in_(["caregiver", "certificate"]))
            .where(AuditLog.actor_user_id == me.user_id)
            .order_by(AuditLog.id)
        )
    ).all()
    assert list(actions) == ["create", "create", "delete", "update"]
    assert (await client.delete(f"/api/v1/caregivers/{cg['id']}", headers=headers)).status_code == 204


async def test_caregiver_reads_colleagues_but_manages_nobody(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    provider = await make.provider(XIAONAN)
    me, colleague = await make.caregiver(provider), await make.caregiver(provider)
    await make.caregiver(await make.provider(XIAONAN))  # another provider's
    headers = (await make.account(Role.CAREGIVER, caregiver=me)).headers
    listed = (await client.get("/api/v1/caregivers", params={"limit": 5}, headers=headers)).json()
    assert {c["provider_id"] for c in listed["items"]} == {provider.id}
    assert {c["id"] for c in listed["items"]} == {me.id, colleague.id}
    assert (await client.get(f"/api/v1/caregivers/{me.id}", headers=headers)).status_code == 200
    assert (
        await client.post("/api/v1/caregivers", json=caregiver_body(), headers=headers)
    ).status_code == 403
    assert (
        await client.patch(f"/api/v1/caregivers/{me.id}", json={"name": "x"}, headers=headers)
    ).status_code == 403


CERT = {"kind": "health", "number": "x", "issued_on": "2025-01-01", "expires_on": "2026-01-01"}


async def test_caregiver_input_rules(client: httpx.AsyncClient, db: AsyncSession, make: Factory) -> None:
    admin = (await make.admin()).headers
    provider_id = (await make.provider()).id
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({}, 422, "validation.required"),  # admins must name the provider
        ({"provider_id": provider_id, "shift_end": "07:00:00"}, 422, "caregiver.shift_order"),
        ({"provider_id": provider_id, "phone": "110"}, 422, "phone.format"),
        ({"provider_id": 2_000_000_000}, 422, "reference.unknown"),
        ({"provider_id": provider_id, "shift_start": "08:00"}, 422, "validation.invalid"),
        ({"provider_id": provider_id, "skills": ["bath"]}, 422, "validation.invalid"),
        ({"provider_id": provider_id, "work_days": [0]}, 422, "validation.invalid"),
        ({"provider_id": provider_id, "certificates": [{**CERT, "kind": "eldercare_worker"}]},
         422, "certificate.level_required"),
        ({"provider_id": provider_id, "certificates": [{**CERT, "expires_on": "2024-01-01"}]},
         422, "date_range.invalid"),
    ]  # fmt: skip
    for overrides, status, code in cases:
        r = await client.post("/api/v1/caregivers", json=caregiver_body(**overrides), headers=admin)
        assert (r.status_code, problem_code(r)) == (status, code), (overrides, r.text)


async def test_admin_registers_a_provider_and_its_districts(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    admin = (await make.admin()).headers
    xiaonan, hanchuan = (await make.district(XIAONAN)).id, (await make.district(HANCHUAN)).id
    body = {
        "name": "测试养老服务中心",
        "licence_no": "TEST-001",
        "contract_no": "C-001",
        "contract_from": "2026-01-01",
        "contract_to": "2026-12-31",
        "phone": "13800138000",
        "address": "孝感市测试路2号",
        "district_ids": [xiaonan],
    }
    created = await client.post("/api/v1/providers", json=body, headers=admin)
    assert created.status_code == 201, created.text
    provider = created.json()
    assert provider["district_ids"] == [xiaonan]
    again = await client.post("/api/v1/providers", json=body, headers=admin)
    assert (again.status_code, problem_code(again)) == (409, "conflict.duplicate")
    bad_range = await client.post(
        "/api/v1/providers",
        json={**body, "name": "x", "licence_no": "y", "contract_to": "2025-01-01"},
        headers=admin,
    )
    assert (bad_range.status_code, problem_code(bad_range)) == (422, "date_range.invalid")

    served = await client.put(
        f"/api/v1/providers/{provider['id']}/districts",
        json={"district_ids": [hanchuan, xiaonan]},
        headers=admin,
    )
    assert served.json()["district_ids"] == sorted([xiaonan, hanchuan])
    rows = (
        await db.scalars(
            select(ProviderDistrict.district_id).where(ProviderDistrict.provider_id == provider["id"])
        )
    ).all()
    assert sorted(rows) == sorted([xiaonan, hanchuan])
    unknown = await client.put(
        f"/api/v1/providers/{provider['id']}/districts", json={"district_ids": [99_999]}, headers=admin
    )
    assert (unknown.status_code, problem_code(unknown)) == (422, "reference.unknown")
    serving = (
        await client.get("/api/v1/providers", params={"district_id": hanchuan, "limit": 200}, headers=admin)
    ).json()
    assert provider["id"] in {p["id"] for p in serving["items"]}
    # Staff other than admins read providers but do not register them.
    operator = (await make.account(Role.OPERATOR)).headers
    assert (await client.get(f"/api/v1/providers/{provider['id']}", headers=operator)).status_code == 200
    assert (await client.post("/api/v1/providers", json=body, headers=operator)).status_code == 403
    assert (await client.delete(f"/api/v1/providers/{provider['id']}", headers=admin)).status_code == 204
