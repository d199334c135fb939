"""An alarm's context in one call: the elder (ID number masked for every reader), contacts in order and
medical notes, the home's devices and their state, the last 24 h of vitals and activity, previous
alarms, the nearest caregivers on shift from dispatch's matching, and the timeline."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import AuditLog
from core.identity.models import Role
from dispatch.models import CaregiverPosition
from iot_ingest.models import Device, DeviceEvent
from iot_ingest.storage import detect_backend
from registry.models import Elder
from tests.conftest import TEST_NOW
from tests.factories import HANCHUAN, XIAONAN, Factory
from tests.support.callcentre import plant, raw

pytestmark = pytest.mark.integration

API = "/api/v1/callcentre"
CONTACTS = [("张三", "son", "13900000001"), ("李四", "daughter", "13900000002")]


async def _device(db: AsyncSession, elder: Elder | None, uid: str, kind: str, **columns: object) -> Device:
    row = Device(
        uid=uid, kind=kind, model="T-1", serial=f"SN-{uid}", elder_id=elder.id if elder else None, **columns
    )
    db.add(row)
    await db.flush()
    return row


async def _telemetry(db: AsyncSession, rows: list[dict[str, object]]) -> None:
    if await detect_backend(await raw(db)) != "timescale":  # TimescaleDB makes its chunks on insert
        await db.execute(
            text("SELECT ensure_telemetry_partitions(CAST(:a AS date), CAST(:b AS date))"),
            {"a": (TEST_NOW - dt.timedelta(days=8)).date(), "b": (TEST_NOW + dt.timedelta(days=1)).date()},
        )
    await db.execute(
        text("INSERT INTO telemetry (device_id, at, metric, value) VALUES (:d, :at, :m, :v)"), rows
    )


async def _on_shift(db: AsyncSession, caregiver_id: int, lat: float, lon: float) -> None:
    db.add(
        CaregiverPosition(
            caregiver_id=caregiver_id, lat=lat, lon=lon, at=TEST_NOW, on_shift=True, shift_started_at=TEST_NOW
        )
    )
    await db.flush()


async def test_the_context_of_an_alarm(client: httpx.AsyncClient, db: AsyncSession, make: Factory) -> None:
    elder = await make.elder(XIAONAN, name="王老人", contacts=CONTACTS, medical_notes="高血压，服用降压药")
    button = await _device(db, elder, "ctx-sos-1", "sos_button", online=True, last_seen_at=TEST_NOW)
    motion = await _device(db, elder, "ctx-motion-1", "motion", online=True, power="battery")
    band = await _device(db, elder, "ctx-band-1", "vitals_band", online=False)
    await _telemetry(
        db,
        [
            {"d": button.id, "at": TEST_NOW - dt.timedelta(hours=30), "m": "battery", "v": 90.0},
            {"d": button.id, "at": TEST_NOW - dt.timedelta(hours=2), "m": "battery", "v": 80.0},
            # Four minutes of heart rate, 30 s apart (the tail the chart reads from raw telemetry).
            *(
                {"d": band.id, "at": TEST_NOW - dt.timedelta(seconds=240 - 30 * i), "m": "hr", "v": 70.0 + i}
                for i in range(8)
            ),
        ],
    )
    db.add_all(
        [
            DeviceEvent(
                device_id=motion.id, at=TEST_NOW - dt.timedelta(hours=3, minutes=10), type="motion", data={}
            ),
            DeviceEvent(
                device_id=motion.id, at=TEST_NOW - dt.timedelta(hours=3, minutes=20), type="motion", data={}
            ),
            DeviceEvent(device_id=motion.id, at=TEST_NOW - dt.timedelta(hours=30), type="motion", data={}),
            DeviceEvent(device_id=button.id, at=TEST_NOW - dt.timedelta(minutes=1), type="sos", data={}),
        ]
    )
    await db.flush()
    earlier = await plant(
        db,
        elder_id=elder.id,
        type="FALL",
        at=TEST_NOW - dt.timedelta(days=7),
        cleared_at=TEST_NOW - dt.timedelta(days=7) + dt.timedelta(minutes=5),
        outcome="false_alarm",
    )
    alarm_id = await plant(db, elder_id=elder.id, device_id=button.id, type="SOS")
    # Caregivers: two on shift nearby with a VISIT contract, one off shift, one of a provider elsewhere.
    provider = await make.provider(XIAONAN)
    await make.contract(provider, "VISIT")
    near = await make.caregiver(provider, name="近护理员", skills=["VISIT"])
    farther = await make.caregiver(provider, name="远护理员", skills=["VISIT"])
    resting = await make.caregiver(provider, name="下班护理员", skills=["VISIT"])
    elsewhere = await make.provider(HANCHUAN)
    await make.contract(elsewhere, "VISIT")
    stranger = await make.caregiver(elsewhere, name="外区护理员", skills=["VISIT"])
    await _on_shift(db, near.id, elder.lat, elder.lon)
    await _on_shift(db, farther.id, elder.lat + 0.009, elder.lon)  # about 1 km north
    await _on_shift(db, stranger.id, elder.lat, elder.lon + 0.001)

    operator = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    r = await client.get(f"{API}/alarms/{alarm_id}", headers=operator.headers)
    assert r.status_code == 200, r.text
    body = r.json()

    assert (body["alarm"]["id"], body["alarm"]["type"], body["alarm"]["device_id"]) == (
        alarm_id,
        "SOS",
        button.id,
    )
    person = body["elder"]
    assert (person["id"], person["name"], person["view"]) == (elder.id, "王老人", "full")
    assert person["id_number_masked"] is True
    assert person["id_number"] != elder.id_number
    assert "*" in person["id_number"]
    assert person["birth_on"] is None
    assert elder.id_number not in r.text
    assert [(c["position"], c["name"], c["phone"]) for c in person["contacts"]] == [
        (1, "张三", "13900000001"),
        (2, "李四", "13900000002"),
    ]
    assert person["medical_notes"] == "高血压，服用降压药"

    devices = {d["uid"]: d for d in body["devices"]}
    assert set(devices) == {"ctx-sos-1", "ctx-motion-1", "ctx-band-1"}
    assert (devices["ctx-sos-1"]["battery_pct"], devices["ctx-sos-1"]["online"]) == (80.0, True)
    assert devices["ctx-band-1"]["online"] is False
    assert devices["ctx-motion-1"]["battery_pct"] is None

    assert body["window_end"] == "2026-11-20T02:00:00Z"
    assert body["window_start"] == "2026-11-19T02:00:00Z"
    (hr,) = body["vitals"]
    assert (hr["metric"], hr["unit"], hr["bucket_s"]) == ("hr", "bpm", 600)
    assert sum(p["count"] for p in hr["points"]) == 8
    assert min(p["min"] for p in hr["points"]) == 70.0
    assert max(p["max"] for p in hr["points"]) == 77.0

    activity = body["activity"]
    assert activity["bucket_s"] == 3600
    assert sum(b["motion"] for b in activity["buckets"]) == 2  # the one 30 h ago is outside the window
    assert activity["last_activity_at"] == "2026-11-19T22:50:00Z"

    assert [(a["id"], a["type"], a["outcome"]) for a in body["previous_alarms"]] == [
        (earlier, "FALL", "false_alarm")
    ]

    caregivers = body["caregivers"]
    assert [c["caregiver_id"] for c in caregivers] == [near.id, farther.id]
    assert (caregivers[0]["distance_m"], caregivers[0]["eta_s"], caregivers[0]["name"]) == (0, 0, "近护理员")
    assert 980 <= caregivers[1]["distance_m"] <= 1020
    assert caregivers[1]["eta_s"] > 0
    assert caregivers[1]["provider_id"] == provider.id
    assert resting.id not in [c["caregiver_id"] for c in caregivers]

    assert [e["kind"] for e in body["timeline"]] == ["raised"]

    # Every reader gets the ID number masked here, and no unmasked read is recorded.
    for who in (await make.civil_affairs(XIAONAN), await make.admin(), await make.account(Role.SUPERVISOR)):
        seen = (await client.get(f"{API}/alarms/{alarm_id}", headers=who.headers)).json()
        assert seen["elder"]["id_number_masked"] is True
        assert seen["elder"]["id_number"] == person["id_number"]
    unmasked = await db.scalar(
        select(func.count())
        .select_from(AuditLog)
        .where(AuditLog.action == "read_unmasked", AuditLog.entity_id == str(elder.id))
    )
    assert unmasked == 0


async def test_the_context_of_a_device_in_no_home(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    loose = await _device(db, None, "ctx-loose-1", "smoke")
    earlier = await plant(
        db,
        device_id=loose.id,
        type="TAMPER",
        at=TEST_NOW - dt.timedelta(days=1),
        cleared_at=TEST_NOW,
        outcome="test",
    )
    alarm_id = await plant(db, device_id=loose.id, type="SMOKE")
    admin = await make.admin()
    body = (await client.get(f"{API}/alarms/{alarm_id}", headers=admin.headers)).json()
    assert body["elder"] is None
    assert [d["uid"] for d in body["devices"]] == ["ctx-loose-1"]
    assert (body["vitals"], body["activity"], body["caregivers"]) == ([], None, [])
    assert [a["id"] for a in body["previous_alarms"]] == [earlier]
    # An alarm of no district is city-wide only.
    scoped = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    r = await client.get(f"{API}/alarms/{alarm_id}", headers=scoped.headers)
    assert (r.status_code, r.json()["code"]) == (404, "alarm.not_found")
