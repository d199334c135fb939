"""INACTIVITY and WANDERING end to end, for elders set up only through the API.

The elders, their devices and their monitoring settings are made with the real app's HTTP API
(committing, on the ingest tests' own database, seeded with the reference data); the devices'
messages go through the real Mosquitto to the real ingest consumer; the inactivity job runs with
an injected ``now``. Only the staff accounts that call the API are rows put in directly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from core.clock import SHANGHAI, local_date, utc_now
from core.identity.models import AppUser, Role
from core.seed import seed_reference
from core.settings import Settings
from iot_ingest import jobs
from iot_ingest.consumer import IngestConsumer
from iot_ingest.routes import BROKER_STATE_KEY
from registry.idcard import make_id_number
from registry.models import Community, District, Street
from simulators import devices as sim
from tests.conftest import asgi_transport
from tests.factories import open_session
from tests.integration.iot_ingest.test_ingest import (  # noqa: F401 - fixtures
    DB_URL,
    ingest,
    ingest_db,
    pg,
    publish,
    wait_for,
)
from tests.support.registry import IN_PROCESS_CLIENT

pytestmark = pytest.mark.integration

XIAONAN = "420902"


@dataclass
class Api:
    client: httpx.AsyncClient
    admin: dict[str, str]  # registers elders and devices
    operator: dict[str, str]  # sets monitoring
    community_id: int
    home: tuple[float, float]  # the community's centre, where its elders live

    async def elder(self, *, living_situation: str = "alone", dementia: bool = False) -> dict[str, Any]:
        birth = dt.date(1935, 1, 1) + dt.timedelta(days=random.randrange(5000))
        body = {
            "name": "端到端老人",
            "id_number": make_id_number(XIAONAN, birth, random.randrange(1, 999, 2)),
            "address": "孝感市测试路9号",
            "community_id": self.community_id,
            "living_situation": living_situation,
            "has_dementia": dementia,
        }
        r = await self.client.post("/api/v1/elders", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        elder: dict[str, Any] = r.json()
        return elder

    async def device(self, elder_id: int, kind: str) -> str:
        uid = f"e2e{kind[:4]}{uuid.uuid4().hex[:8]}"
        body = {"uid": uid, "kind": kind, "model": "m", "serial": f"SN-{uid}", "elder_id": elder_id}
        r = await self.client.post("/api/v1/devices", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return uid

    async def monitoring(self, elder_id: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
        path = f"/api/v1/elders/{elder_id}/monitoring"
        if body is None:
            r = await self.client.get(path, headers=self.operator)
        else:
            r = await self.client.put(path, json=body, headers=self.operator)
        assert r.status_code == 200, r.text
        settings: dict[str, Any] = r.json()
        return settings


@pytest.fixture(scope="module")
async def engine(ingest_db: str) -> AsyncIterator[AsyncEngine]:  # noqa: F811
    """The ingest tests' database with the reference data every install gets (seeded once)."""
    from api.bootstrap import domain_seeds

    eng = create_async_engine(DB_URL, pool_size=2, max_overflow=2)
    factory = async_sessionmaker(eng, expire_on_commit=False)
    async with factory() as session, session.begin():
        if await session.scalar(select(District.id).where(District.code == XIAONAN)) is None:
            await seed_reference(session, today=local_date(utc_now()), domains=domain_seeds())
    yield eng
    await eng.dispose()


@pytest.fixture
async def api(engine: AsyncEngine) -> AsyncIterator[Api]:
    """The real app over that database; every request commits, as in production."""
    from api.app import create_app

    factory = async_sessionmaker(engine, expire_on_commit=False)
    now = utc_now()
    async with factory() as session, session.begin():
        headers = {}
        for role in (Role.ADMIN, Role.OPERATOR):
            user = AppUser(
                username=f"e2e_{role.value}_{uuid.uuid4().hex[:8]}",
                display_name="端到端",
                password_hash="not-a-hash",
                role=role.value,
            )
            session.add(user)
            await session.flush()
            headers[role] = await open_session(session, user.id, now=now)
        community = await session.scalar(
            select(Community)
            .join(Street, Street.id == Community.street_id)
            .join(District, District.id == Street.district_id)
            .where(District.code == XIAONAN)
            .order_by(Community.code)
            .limit(1)
        )
        assert community is not None
    settings = Settings(database_url=DB_URL, secret_key="test-secret-" + "x" * 32, log_level="WARNING")
    app = create_app(settings, sessionmaker=factory, clock=utc_now)
    app.state[BROKER_STATE_KEY] = None  # database only: the broker's password file is not ours here
    transport = asgi_transport(app, client=IN_PROCESS_CLIENT)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Api(
            client, headers[Role.ADMIN], headers[Role.OPERATOR], community.id, (community.lat, community.lon)
        )


async def _alarms(pg: asyncpg.Connection, elder_id: int, kind: str) -> list[asyncpg.Record]:  # noqa: F811
    rows: list[asyncpg.Record] = await pg.fetch(
        "SELECT type, severity, device_id, details FROM alarm WHERE elder_id = $1 AND type = $2",
        elder_id,
        kind,
    )
    return rows


def _local_noon(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(12), SHANGHAI)


async def test_wandering_when_a_fix_leaves_the_safe_zone(
    api: Api,
    pg: asyncpg.Connection,  # noqa: F811
    ingest: IngestConsumer,  # noqa: F811
) -> None:
    lat, lon = api.home
    plain = await api.elder()
    confused = await api.elder(dementia=True)
    watch = await api.device(plain["id"], "gps_watch")
    watch2 = await api.device(confused["id"], "gps_watch")
    # A 300 m circle around one elder's home; a ~1 km square around the other's.
    await api.monitoring(plain["id"], {"safe_zone": {"circle": {"lat": lat, "lon": lon, "radius_m": 300}}})
    square = [
        [lat - 0.005, lon - 0.005],
        [lat + 0.005, lon - 0.005],
        [lat + 0.005, lon + 0.005],
        [lat - 0.005, lon + 0.005],
    ]
    zone = await api.monitoring(
        confused["id"], {"safe_zone": {"polygon": square}, "reason": "dementia: stays near home"}
    )
    assert zone["safe_zone"]["source"] == "elder"

    now_s = int(time.time())
    # Inside the zones first (no alarm), then out: ~560 m north of the circle's centre, ~330 m east
    # of the square's east edge.
    await publish(
        [
            sim.owntracks(watch, lat=lat + 0.001, lon=lon, tst=now_s - 60, acc=10, batt=80),
            sim.owntracks(watch2, lat=lat + 0.004, lon=lon + 0.004, tst=now_s - 60, acc=10, batt=80),
        ]
    )
    readings = (
        "SELECT count(*) FROM telemetry t JOIN device d ON d.id = t.device_id"
        " WHERE d.uid = ANY($1) AND t.metric = 'lat'"
    )
    assert await wait_for(pg, readings, [watch, watch2], expect=2) == 2
    assert await _alarms(pg, plain["id"], "WANDERING") == []
    assert await _alarms(pg, confused["id"], "WANDERING") == []

    await publish(
        [
            sim.owntracks(watch, lat=lat + 0.005, lon=lon, tst=now_s, acc=20, batt=79),
            sim.owntracks(watch2, lat=lat, lon=lon + 0.0085, tst=now_s, acc=20, batt=79),
        ]
    )
    count = "SELECT count(*) FROM alarm WHERE elder_id = ANY($1) AND type = 'WANDERING'"
    assert await wait_for(pg, count, [plain["id"], confused["id"]], expect=2) == 2
    (a,) = await _alarms(pg, plain["id"], "WANDERING")
    (b,) = await _alarms(pg, confused["id"], "WANDERING")
    assert a["severity"] == "MAJOR"
    assert b["severity"] == "CRITICAL"  # the elder has dementia


async def test_inactivity_for_an_elder_living_alone_without_settings(
    api: Api,
    pg: asyncpg.Connection,  # noqa: F811
    ingest: IngestConsumer,  # noqa: F811
) -> None:
    alone = await api.elder(living_situation="alone")
    with_family = await api.elder(living_situation="with_family")
    not_installed = await api.elder(living_situation="alone")
    sensor = await api.device(alone["id"], "motion")
    family_sensor = await api.device(with_family["id"], "motion")
    await api.device(not_installed["id"], "motion")  # registered, never reported: not installed yet

    settings = await api.monitoring(alone["id"])
    assert settings["daytime"]["source"] == "policy"
    assert settings["daytime"]["policy"] == "alarm.monitoring_default[alone]@2026-01-01"
    assert (await api.monitoring(with_family["id"]))["daytime"]["source"] == "none"

    moved_at = utc_now()
    ms = int(moved_at.timestamp() * 1000)
    await publish(
        [
            sim.native_event(sensor, seq=1, ts_ms=ms, type="motion"),
            sim.native_event(family_sensor, seq=1, ts_ms=ms, type="motion"),
        ]
    )
    stored = (
        "SELECT count(*) FROM device_event ev JOIN device d ON d.id = ev.device_id"
        " WHERE d.uid = ANY($1) AND ev.type = 'motion'"
    )
    assert await wait_for(pg, stored, [sensor, family_sensor], expect=2) == 2
    seen = "SELECT count(*) FROM device WHERE uid = ANY($1) AND last_seen_at IS NOT NULL"
    assert await wait_for(pg, seen, [sensor, family_sensor], expect=2) == 2
    ids = [alone["id"], with_family["id"], not_installed["id"]]
    inactivity = "SELECT elder_id, details FROM alarm WHERE elder_id = ANY($1) AND type = 'INACTIVITY'"

    # An hour after the motion: within the allowance (12 h of the waking day), nothing.
    await jobs.check_inactivity(pg, now=moved_at + dt.timedelta(hours=1))
    assert await pg.fetch(inactivity, ids) == []
    # Three days of silence: the living-alone default raises INACTIVITY, naming the policy it applied.
    await jobs.check_inactivity(pg, now=moved_at + dt.timedelta(days=3))
    rows = await pg.fetch(inactivity, ids)
    assert [r["elder_id"] for r in rows] == [alone["id"]]
    details = rows[0]["details"]
    assert "alarm.monitoring_default[alone]@2026-01-01" in details

    # The elder's own daytime window replaces the default: 1 h of a whole-day window.
    own = await api.elder(living_situation="with_family")
    own_sensor = await api.device(own["id"], "motion")
    body = {"daytime": {"start": "00:00", "end": "24:00", "inactivity_hours": 1}, "reason": "post-surgery"}
    assert (await api.monitoring(own["id"], body))["daytime"]["source"] == "elder"
    at = utc_now()
    await publish([sim.native_event(own_sensor, seq=1, ts_ms=int(at.timestamp() * 1000), type="motion")])
    assert await wait_for(pg, seen, [own_sensor], expect=1) == 1
    await jobs.check_inactivity(pg, now=at + dt.timedelta(minutes=30))
    assert await pg.fetch(inactivity, [own["id"]]) == []
    await jobs.check_inactivity(pg, now=at + dt.timedelta(minutes=90))
    assert len(await pg.fetch(inactivity, [own["id"]])) == 1


async def test_living_alone_default_changes_with_a_later_policy_row(
    api: Api,
    pg: asyncpg.Connection,  # noqa: F811
    ingest: IngestConsumer,  # noqa: F811
) -> None:
    elder = await api.elder(living_situation="alone")
    sensor = await api.device(elder["id"], "motion")
    moved_at = utc_now()
    await publish([sim.native_event(sensor, seq=1, ts_ms=int(moved_at.timestamp() * 1000), type="motion")])
    seen = "SELECT count(*) FROM device WHERE uid = $1 AND last_seen_at IS NOT NULL"
    assert await wait_for(pg, seen, sensor, expect=1) == 1
    # From D on, living-alone elders are allowed a week of waking-day quiet instead of 12 h.
    day = local_date(moved_at) + dt.timedelta(days=3)
    policy_id = await pg.fetchval(
        "INSERT INTO policy_value (key, scope, value, valid_from, source)"
        " VALUES ('alarm.monitoring_default', 'alone', $1, $2, 'test') RETURNING id",
        '{"day_start": "07:00", "day_end": "22:00", "inactivity_hours": 168}',
        day,
    )
    try:
        later = (
            await api.client.get(
                f"/api/v1/elders/{elder['id']}/monitoring",
                params={"on": day.isoformat()},
                headers=api.operator,
            )
        ).json()
        assert later["daytime"]["policy"] == f"alarm.monitoring_default[alone]@{day.isoformat()}"
        inactivity = "SELECT details FROM alarm WHERE elder_id = $1 AND type = 'INACTIVITY'"
        # On D (≤ 4 waking days of quiet < 168 h): nothing.
        await jobs.check_inactivity(pg, now=_local_noon(day))
        assert await pg.fetch(inactivity, elder["id"]) == []
        # The day before D the 12 h default still applies: INACTIVITY.
        await jobs.check_inactivity(pg, now=_local_noon(day - dt.timedelta(days=1)))
        rows = await pg.fetch(inactivity, elder["id"])
        assert len(rows) == 1
        assert "alarm.monitoring_default[alone]@2026-01-01" in rows[0]["details"]
    finally:
        await pg.execute("DELETE FROM policy_value WHERE id = $1", policy_id)


async def test_vital_overrides_reach_the_ingest_rules(
    api: Api,
    pg: asyncpg.Connection,  # noqa: F811
    ingest: IngestConsumer,  # noqa: F811
) -> None:
    copd = await api.elder()
    other = await api.elder()
    band, other_band = (
        await api.device(copd["id"], "vitals_band"),
        await api.device(other["id"], "vitals_band"),
    )
    body = {"vitals": {"spo2_low_pct": {"value": 85, "reason": "COPD: usual SpO2 87-89 %"}}}
    assert (await api.monitoring(copd["id"], body))["vitals"]["spo2_low_pct"]["value"] == 85
    ms = int(time.time() * 1000)
    # 88 %: below the policy's 90 % (an alarm for the other elder), above this elder's own 85 %.
    await publish(
        [
            sim.native_telemetry(band, seq=1, ts_ms=ms, values={"spo2": 88}),
            sim.native_telemetry(other_band, seq=1, ts_ms=ms, values={"spo2": 88}),
        ]
    )
    vitals = "SELECT count(*) FROM alarm WHERE elder_id = $1 AND type = 'VITALS'"
    assert await wait_for(pg, vitals, other["id"], expect=1) == 1
    stored = "SELECT count(*) FROM telemetry t JOIN device d ON d.id = t.device_id WHERE d.uid = $1"
    assert await wait_for(pg, stored, band, expect=1) == 1
    assert await pg.fetchval(vitals, copd["id"]) == 0
    await publish([sim.native_telemetry(band, seq=2, ts_ms=ms + 1000, values={"spo2": 84})])
    assert await wait_for(pg, vitals, copd["id"], expect=1) == 1


async def test_first_changes_at_once_both_land_in_order(api: Api, pg: asyncpg.Connection) -> None:  # noqa: F811
    """Two operators setting a new elder's first settings at the same moment: one inserts the row,
    the other waits for its lock and updates it; neither fails, and the audit trail has both."""
    elder = await api.elder()
    path = f"/api/v1/elders/{elder['id']}/monitoring"
    lat, lon = api.home
    bodies = [
        {"safe_zone": {"circle": {"lat": lat, "lon": lon, "radius_m": r}}, "reason": f"r={r}"}
        for r in (300, 400)
    ]
    answers = await asyncio.gather(*(api.client.put(path, json=b, headers=api.operator) for b in bodies))
    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    audits = await pg.fetch(
        "SELECT action, after FROM audit_log"
        " WHERE entity = 'elder_monitoring' AND entity_id = $1 ORDER BY id",
        str(elder["id"]),
    )
    assert [a["action"] for a in audits] == ["create", "update"]
    stored = await pg.fetchval(
        "SELECT safe_zone->'circle'->>'radius_m' FROM elder_monitoring WHERE elder_id = $1", elder["id"]
    )
    assert stored in ("300.0", "400.0", "300", "400")
    assert json.loads(audits[-1]["after"])["safe_zone"]["circle"]["radius_m"] == float(stored)
