"""Devices and gateways: read and edit within scope; registration belongs to the IoT domain."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.audit import AuditLog
from core.settings import Settings
from iot_ingest.models import Device, Gateway
from registry.models import Elder
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


async def device_in(db: AsyncSession, code: str) -> Device:
    row = await db.scalar(
        select(Device)
        .join(Elder, Elder.id == Device.elder_id)
        .where(Elder.district_id == await district_id(db, code))
        .order_by(Device.id)
        .limit(1)
    )
    assert row is not None, code
    return row


async def test_civil_affairs_reads_and_edits_devices_in_their_districts(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    civil = await headers_for(db, "demo_civil_affairs")
    xiaonan = await district_id(db, "420902")
    in_scope = select(Elder.id).where(Elder.district_id == xiaonan)
    listed = (await client.get("/api/v1/devices", params={"limit": 200}, headers=civil)).json()
    assert listed["total"] == await db.scalar(
        select(func.count()).select_from(Device).where(Device.elder_id.in_(in_scope))
    )
    assert listed["total"] > 0
    owners = {d["elder_id"] for d in listed["items"]}
    assert owners <= set((await db.scalars(in_scope)).all())
    gateways = (await client.get("/api/v1/gateways", params={"limit": 200}, headers=civil)).json()
    assert gateways["total"] == await db.scalar(
        select(func.count()).select_from(Gateway).where(Gateway.elder_id.in_(in_scope))
    )

    own = await device_in(db, "420902")
    foreign = await device_in(db, "420984")
    assert (await client.get(f"/api/v1/devices/{foreign.id}", headers=civil)).status_code == 404
    assert (
        await client.patch(f"/api/v1/devices/{foreign.id}", json={"status": "inactive"}, headers=civil)
    ).status_code == 404

    r = await client.patch(f"/api/v1/devices/{own.id}", json={"status": "inactive"}, headers=civil)
    assert r.status_code == 200
    assert r.json()["status"] == "inactive"
    (row,) = (
        await db.scalars(
            select(AuditLog).where(AuditLog.entity == "device", AuditLog.entity_id == str(own.id))
        )
    ).all()
    assert row.before is not None
    assert row.after is not None
    assert (row.before["status"], row.after["status"]) == ("active", "inactive")

    # Moving the device to an elder the officer cannot see reads as an unknown reference.
    elsewhere = await elder_in(db, "420984")
    moved = await client.patch(f"/api/v1/devices/{own.id}", json={"elder_id": elsewhere.id}, headers=civil)
    assert (moved.status_code, problem_code(moved)) == (422, "reference.unknown")
    to_stock = await client.patch(f"/api/v1/devices/{own.id}", json={"elder_id": None}, headers=civil)
    assert (to_stock.status_code, problem_code(to_stock)) == (403, "scope.district")


async def test_family_sees_their_elders_devices_and_providers_none(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    family_p = await principal_of(db, "demo_family")
    family = await headers_for(db, "demo_family")
    listed = (await client.get("/api/v1/devices", params={"limit": 200}, headers=family)).json()
    expected = await db.scalar(
        select(func.count()).select_from(Device).where(Device.elder_id.in_(sorted(family_p.elder_ids)))
    )
    assert listed["total"] == expected
    assert expected is not None
    assert expected > 0, "the demo family's elder has devices"
    assert {d["elder_id"] for d in listed["items"]} <= set(family_p.elder_ids)
    foreign = await device_in(db, "420984")
    assert (await client.get(f"/api/v1/devices/{foreign.id}", headers=family)).status_code == 404
    assert (
        await client.patch(
            f"/api/v1/devices/{listed['items'][0]['id']}", json={"status": "inactive"}, headers=family
        )
    ).status_code == 403
    provider = await headers_for(db, "demo_provider_admin")
    assert (await client.get("/api/v1/devices", headers=provider)).status_code == 403


async def test_admin_moves_a_device_between_homes_and_gateways(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await headers_for(db, "demo_admin")
    device = await db.scalar(
        select(Device).where(Device.gateway_id.is_not(None)).order_by(Device.id).limit(1)
    )
    assert device is not None
    other_gateway = await db.scalar(
        select(Gateway).where(Gateway.id != device.gateway_id, Gateway.elder_id != device.elder_id).limit(1)
    )
    assert other_gateway is not None
    mismatch = await client.patch(
        f"/api/v1/devices/{device.id}", json={"gateway_id": other_gateway.id}, headers=admin
    )
    assert (mismatch.status_code, problem_code(mismatch)) == (409, "device.gateway_home_mismatch")
    moved = await client.patch(
        f"/api/v1/devices/{device.id}",
        json={
            "gateway_id": other_gateway.id,
            "elder_id": other_gateway.elder_id,
            "friendly_name": "kitchen_leak",
        },
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["gateway_id"], moved.json()["elder_id"]) == (
        other_gateway.id,
        other_gateway.elder_id,
    )
    unknown = await client.patch(
        f"/api/v1/devices/{device.id}", json={"gateway_id": 999_999_999}, headers=admin
    )
    assert (unknown.status_code, problem_code(unknown)) == (422, "reference.unknown")
    bad_name = await client.patch(
        f"/api/v1/devices/{device.id}", json={"friendly_name": "a/b"}, headers=admin
    )
    assert bad_name.status_code == 422
    gw = await client.patch(
        f"/api/v1/gateways/{other_gateway.id}", json={"status": "inactive"}, headers=admin
    )
    assert gw.json()["status"] == "inactive"
