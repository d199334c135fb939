"""Ingest end to end against the real Mosquitto (127.0.0.1:1883) and PostgreSQL.

The tests use their own database (``eldercare_h_ingest``, recreated and migrated once per session),
a unique shared-subscription group and client id per test, and unique device ids, so they can run
next to other users of the broker.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from alembic import command

from core.settings import Settings
from iot_ingest.consumer import IngestConfig, IngestConsumer
from iot_ingest.wire import INGEST_CLIENT_ID_PREFIX
from simulators import devices as sim
from tests.conftest import alembic_config, recreate_database

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
_DEFAULTS = Settings()
# The server of the shared test database (tests/conftest.py) with a database of our own on it.
_SERVER_URL = os.environ.get("ELDERCARE_TEST_DATABASE_URL", _DEFAULTS.database_url)
TEST_DB = os.environ.get("ELDERCARE_INGEST_TEST_DB") or urlsplit(_SERVER_URL).path.strip("/") + "_ingest"
DB_URL = urlunsplit(urlsplit(_SERVER_URL)._replace(path=f"/{TEST_DB}"))
DSN = DB_URL.replace("postgresql+asyncpg://", "postgresql://", 1)
ADMIN_DSN = urlunsplit(urlsplit(DSN)._replace(path="/postgres"))
MQTT_URL = os.environ.get("ELDERCARE_MQTT_URL", _DEFAULTS.mqtt_url)
MQTT_HOST, MQTT_PORT, _, _ = sim.mqtt_target(MQTT_URL)


@pytest.fixture(scope="session")
async def ingest_db() -> str:
    """A database of our own, recreated and migrated to head once per session."""
    await recreate_database(DB_URL)
    await asyncio.to_thread(command.upgrade, alembic_config(DB_URL), "heads")
    return DSN


@pytest.fixture
async def pg(ingest_db: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(ingest_db)
    yield conn
    await conn.close()


@dataclass
class Home:
    tag: str
    elder_id: int
    gateway_uid: str
    ids: dict[str, int]  # device uid -> id

    def uid(self, name: str) -> str:
        return f"{self.tag}{name}"


async def seed_home(pg: asyncpg.Connection, *, dementia: bool = False) -> Home:
    """A district/street/community, an elder with a 500 m safe zone, a gateway and five devices."""
    tag = uuid.uuid4().hex[:8]
    district = await pg.fetchval(
        "INSERT INTO district (code, name, name_en, kind, lat, lon)"
        " VALUES ($1, '孝南区', 'Xiaonan', 'urban', 30.92, 113.91)"
        " RETURNING id",
        tag[:6],
    )
    street = await pg.fetchval(
        "INSERT INTO street (district_id, code, name, is_township) VALUES ($1, $2, 's', false) RETURNING id",
        district,
        tag,
    )
    community = await pg.fetchval(
        "INSERT INTO community (street_id, code, name, is_village, lat, lon)"
        " VALUES ($1, $2, 'c', false, 30.92, 113.91)"
        " RETURNING id",
        street,
        tag,
    )
    elder = await pg.fetchval(
        """INSERT INTO elder (name, gender, birth_on, id_number, address, lat, lon, community_id, district_id,
               living_situation, has_dementia, allows_any_gender_bathing, medical_notes, status)
           VALUES ('张三', 'M', '1940-01-01', $1, 'addr', 30.92, 113.91, $2, $3, 'alone', $4, false, '',
                   'active')
           RETURNING id""",
        ("42090219400101" + tag)[:18],
        community,
        district,
        dementia,
    )
    await pg.execute(
        "INSERT INTO elder_monitoring"
        " (elder_id, safe_zone, inactivity_hours, day_start_minute, day_end_minute)"
        " VALUES ($1, $2, 12, 420, 1320)",
        elder,
        json.dumps({"circle": {"lat": 30.92, "lon": 113.91, "radius_m": 500}}),
    )
    gw_uid = f"{tag}gw"
    gateway = await pg.fetchval(
        "INSERT INTO gateway (uid, elder_id, model, serial, status)"
        " VALUES ($1, $2, 'z2m', $1, 'active') RETURNING id",
        gw_uid,
        elder,
    )
    ids: dict[str, int] = {}
    for name, kind, power, gw, friendly in (
        ("band", "vitals_band", "battery", None, None),
        ("meter", "vitals_band", "mains", None, None),
        ("watch", "gps_watch", "battery", None, None),
        ("leak", "water_leak", "battery", gateway, "bath_leak"),
        ("door", "door", "battery", gateway, "front_door"),
    ):
        uid = f"{tag}{name}"
        ids[uid] = await pg.fetchval(
            """INSERT INTO device
                   (uid, kind, model, serial, elder_id, gateway_id, friendly_name, power, status)
               VALUES ($1, $2, 'm', $3, $4, $5, $6, $7, 'active') RETURNING id""",
            uid,
            kind,
            f"SN{uid}",
            elder,
            gw,
            friendly,
            power,
        )
    return Home(tag, elder, gw_uid, ids)


def _config(**over: Any) -> IngestConfig:
    group = uuid.uuid4().hex[:8]
    base = IngestConfig(
        client_id=f"{INGEST_CLIENT_ID_PREFIX}-t-{group}",
        subscription=f"$share/t{group}/eldercare/v1/#",
        session_expiry_s=120,
        batch_max_ms=50,
        cache_refresh_s=1.0,
    )
    return replace(base, **over)


@pytest.fixture
async def ingest(ingest_db: str) -> AsyncIterator[IngestConsumer]:
    service = IngestConsumer(Settings(database_url=DB_URL, mqtt_url=MQTT_URL), _config())
    await service.start()
    await asyncio.wait_for(service.connected.wait(), 10)
    await asyncio.sleep(0.2)  # subscription granted
    yield service
    await service.stop(end_session=True)


async def publish(messages: list[tuple[str, bytes]], **kw: Any) -> sim.PublishResult:
    res = await asyncio.to_thread(sim.publish, messages, host=MQTT_HOST, port=MQTT_PORT, **kw)
    assert res.acked == len(messages), res
    return res


async def wait_for(pg: asyncpg.Connection, sql: str, *args: Any, expect: Any, timeout: float = 15.0) -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await pg.fetchval(sql, *args)
        if value == expect:
            return value
        await asyncio.sleep(0.1)
    return value


NOW = lambda: dt.datetime.now(dt.UTC)  # noqa: E731


async def test_each_format_end_to_end(pg: asyncpg.Connection, ingest: IngestConsumer) -> None:
    home = await seed_home(pg, dementia=True)
    band, meter, watch = home.uid("band"), home.uid("meter"), home.uid("watch")
    notifications: list[dict[str, Any]] = []
    listener = await asyncpg.connect(DSN)
    await listener.add_listener("alarm", lambda *a: notifications.append(json.loads(a[3])))
    now_s = time.time()
    ms = int(now_s * 1000)
    await publish(
        [
            sim.native_telemetry(band, seq=1, ts_ms=ms, values={"hr": 72, "spo2": 97}),
            sim.native_event(band, seq=2, ts_ms=ms, type="sos", data={"button": 1}),
            sim.native_status(band, "online"),
            sim.z2m_state(
                home.gateway_uid,
                "bath_leak",
                {"water_leak": True, "battery_low": False, "battery": 91, "voltage": 3005, "linkquality": 87},
            ),
            sim.z2m_availability(home.gateway_uid, "front_door", "offline"),
            sim.senml(
                meter,
                [
                    {"bn": f"urn:dev:ow:{meter}:", "bt": now_s, "n": "voltage", "u": "V", "v": 120.1},
                    {"n": "current", "u": "A", "v": 1.2},
                ],
            ),
            sim.owntracks(watch, lat=30.95, lon=113.91, tst=int(now_s), acc=10, batt=80),
        ]
    )
    ids = list(home.ids.values())
    assert await wait_for(pg, "SELECT count(*) FROM alarm WHERE device_id = ANY($1)", ids, expect=3) == 3
    # Plain telemetry takes the batch path, which may commit after the alarms.
    senders = "SELECT count(DISTINCT device_id) FROM telemetry WHERE device_id = ANY($1)"
    assert await wait_for(pg, senders, ids, expect=4) == 4
    telemetry = {
        (r["uid"], r["metric"]): r["value"]
        for r in await pg.fetch(
            "SELECT d.uid, t.metric, t.value FROM telemetry t JOIN device d ON d.id = t.device_id"
            " WHERE t.device_id = ANY($1)",
            ids,
        )
    }
    assert telemetry[(band, "hr")] == 72
    assert telemetry[(band, "spo2")] == 97
    assert telemetry[(home.uid("leak"), "water_leak")] == 1
    assert telemetry[(home.uid("leak"), "voltage")] == 3005
    assert telemetry[(meter, "voltage")] == 120.1
    assert telemetry[(meter, "current")] == 1.2
    assert telemetry[(watch, "lat")] == 30.95
    alarms = {
        r["type"]: r["severity"]
        for r in await pg.fetch("SELECT type, severity FROM alarm WHERE device_id = ANY($1)", ids)
    }
    assert alarms == {"SOS": "CRITICAL", "WATER_LEAK": "MAJOR", "WANDERING": "CRITICAL"}
    events = await pg.fetch("SELECT device_id, type FROM device_event WHERE device_id = ANY($1)", ids)
    assert {e["type"] for e in events} >= {"sos", "water_leak", "online", "offline"}
    door = await wait_for(
        pg, "SELECT online FROM device WHERE id = $1", home.ids[home.uid("door")], expect=False
    )
    assert door is False
    assert await wait_for(
        pg, "SELECT last_seen_at IS NOT NULL FROM device WHERE id = $1", home.ids[meter], expect=True
    )
    await asyncio.sleep(0.3)
    assert {n["type"] for n in notifications if n["device_id"] in ids} == set(alarms)
    await listener.close()


async def test_repeat_increments_one_active_alarm(pg: asyncpg.Connection, ingest: IngestConsumer) -> None:
    home = await seed_home(pg)
    band = home.uid("band")
    ms = int(time.time() * 1000)
    await publish([sim.native_event(band, seq=i, ts_ms=ms + i, type="sos") for i in range(1, 4)])
    count = await wait_for(
        pg, "SELECT sum(count) FROM alarm WHERE device_id = $1 AND type = 'SOS'", home.ids[band], expect=3
    )
    assert count == 3
    assert await pg.fetchval("SELECT count(*) FROM alarm WHERE device_id = $1", home.ids[band]) == 1


async def test_vitals_held_two_minutes(pg: asyncpg.Connection, ingest: IngestConsumer) -> None:
    home = await seed_home(pg)
    band = home.uid("band")
    ms = int(time.time() * 1000) - 200_000
    await publish(
        [sim.native_telemetry(band, seq=i, ts_ms=ms + i * 60_000, values={"hr": 150}) for i in range(3)]
    )
    assert await wait_for(
        pg, "SELECT count(*) FROM alarm WHERE device_id = $1 AND type = 'VITALS'", home.ids[band], expect=1
    )


MALFORMED: list[tuple[str, bytes, str]] = [
    ("telemetry", b"{not json", "bad_json"),
    ("telemetry", b'{"values": {"hr": "fast"}}', "wrong_type"),
    ("telemetry", b'{"values": {"hr": NaN}}', "nan"),
    ("telemetry", b'{"values": {"hr": 1e999}}', "impossible_value"),
    ("telemetry", b'{"values": {"steps": 99999999999999999999999}}', "impossible_value"),
    ("telemetry", b'{"values": {"hr": 1000}}', "impossible_value"),
    ("telemetry", b"[" * 40 + b"]" * 40, "too_deep"),
    ("telemetry", b'{"values": {"hr": 1}, "pad": "' + b"x" * 70_000 + b'"}', "too_large"),
    ("event", b'{"ts": 99999999999999, "type": "sos"}', "future_timestamp"),
    ("telemetry", b'{"device_id": "someone-else", "values": {"hr": 60}}', "topic_mismatch"),
]


async def test_malformed_corpus_is_dead_lettered_and_ingest_continues(
    pg: asyncpg.Connection, ingest: IngestConsumer
) -> None:
    home = await seed_home(pg)
    band = home.uid("band")
    stranger = f"{home.tag}nobody"
    messages = [(f"eldercare/v1/dev/{band}/{kind}", payload) for kind, payload, _ in MALFORMED]
    messages.append((f"eldercare/v1/dev/{stranger}/telemetry", b'{"values": {"hr": 60}}'))
    messages.append(sim.native_telemetry(band, seq=99, ts_ms=int(time.time() * 1000), values={"hr": 61}))
    await publish(messages)
    assert await wait_for(
        pg, "SELECT count(*) FROM telemetry WHERE device_id = $1 AND seq = 99", home.ids[band], expect=1
    )
    rows = await wait_for(
        pg,
        "SELECT count(*) FROM dead_letter WHERE topic LIKE $1",
        f"eldercare/v1/dev/{home.tag}%",
        expect=len(MALFORMED) + 1,
    )
    assert rows == len(MALFORMED) + 1
    got = await pg.fetch(
        "SELECT topic, payload, reason FROM dead_letter WHERE topic LIKE $1 ORDER BY id",
        f"eldercare/v1/dev/{home.tag}%",
    )
    expected = [(m[0], m[1], r) for m, (_, _, r) in zip(messages[: len(MALFORMED)], MALFORMED, strict=True)]
    expected.append((f"eldercare/v1/dev/{stranger}/telemetry", b'{"values": {"hr": 60}}', "unknown_device"))
    assert sorted((g["topic"], bytes(g["payload"]), g["reason"]) for g in got) == sorted(expected)


async def test_duplicates_are_stored_once(pg: asyncpg.Connection, ingest: IngestConsumer) -> None:
    home = await seed_home(pg)
    band = home.uid("band")
    ms = int(time.time() * 1000)
    tele = sim.native_telemetry(band, seq=5, ts_ms=ms, values={"hr": 70})
    # The same reading re-encoded by a device retry is still the same (seq, ts).
    retry = (tele[0], json.dumps({"values": {"hr": 70}, "seq": 5, "ts": ms}, separators=(",", ":")).encode())
    event = sim.native_event(band, seq=6, ts_ms=ms, type="fall")
    leak = sim.z2m_state(home.gateway_uid, "bath_leak", {"battery": 77, "linkquality": 9})
    await publish([tele, retry, event, event, leak, leak])
    await publish([tele, event, leak])  # a later redelivery
    await asyncio.sleep(1.0)
    assert await pg.fetchval("SELECT count(*) FROM telemetry WHERE device_id = $1", home.ids[band]) == 1
    assert await pg.fetchval("SELECT count(*) FROM device_event WHERE device_id = $1", home.ids[band]) == 1
    assert await pg.fetchval("SELECT count FROM alarm WHERE device_id = $1", home.ids[band]) == 1
    leak_rows = await pg.fetchval(
        "SELECT count(*) FROM telemetry WHERE device_id = $1 AND metric = 'battery'",
        home.ids[home.uid("leak")],
    )
    assert leak_rows == 1


async def test_packets_split_across_socket_reads(pg: asyncpg.Connection, ingest: IngestConsumer) -> None:
    """Large PUBLISH packets straddle the consumer's 256 KiB reads (and the fixed header may be cut
    after its first byte): every message must still be decoded whole, exactly once."""
    home = await seed_home(pg)
    band = home.uid("band")
    ms = int(time.time() * 1000)
    messages = []
    for i in range(40):
        # Sizes from 1 KiB to just under the 64 KiB limit, so packet boundaries land everywhere.
        pad = b"x" * (1_000 + (i * 7_919) % 63_000)
        body = b'{"ts":%d,"seq":%d,"values":{"hr":%d},"pad":"%s"}' % (ms + i, i + 1, 60 + i, pad)
        messages.append((f"eldercare/v1/dev/{band}/telemetry", body))
    await publish(messages)
    rows = await wait_for(
        pg, "SELECT count(*) FROM telemetry WHERE device_id = $1", home.ids[band], expect=len(messages)
    )
    assert rows == len(messages)
    values = await pg.fetch(
        "SELECT seq, value FROM telemetry WHERE device_id = $1 ORDER BY seq", home.ids[band]
    )
    assert [(r["seq"], r["value"]) for r in values] == [(i + 1, 60.0 + i) for i in range(40)]
    assert await pg.fetchval("SELECT count(*) FROM dead_letter WHERE topic LIKE $1", f"%{band}%") == 0
    assert ingest.mqtt.clients[0].split_packets > 0  # the reassembly path really ran


async def _wait_subscribed(pg: asyncpg.Connection, probe_uid: str) -> None:
    """Publish probes from an unknown device until the worker dead-letters one: it is subscribed."""
    topic = f"eldercare/v1/dev/{probe_uid}/telemetry"
    for _ in range(60):
        await publish([(topic, b'{"values": {"hr": 60}}')])
        if await wait_for(
            pg, "SELECT count(*) > 0 FROM dead_letter WHERE topic = $1", topic, expect=True, timeout=0.5
        ):
            return
    raise AssertionError("ingest worker never subscribed")


def _spawn_ingest(client_id: str, subscription: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "iot_ingest",
                "--database-url",
                DB_URL,
                "--mqtt-url",
                MQTT_URL,
                "--client-id",
                client_id,
                "--subscription",
                subscription,
                "--session-expiry",
                "300",
                "--batch-max-ms",
                "100",
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_sigkill_mid_flood_then_restart_stores_every_event_once(
    pg: asyncpg.Connection, tmp_path: Path
) -> None:
    home = await seed_home(pg)
    band = home.uid("band")
    group = uuid.uuid4().hex[:8]
    client_id, subscription = f"{INGEST_CLIENT_ID_PREFIX}-t-kill-{group}", f"$share/t{group}/eldercare/v1/#"
    # Mosquitto on 127.0.0.1:1883 runs with the default max_queued_messages (1000) per session, so
    # the flood is sized to stay below it while the worker is dead.
    events, telemetry = 400, 400
    ms = int(time.time() * 1000)
    flood = []
    for i in range(events):
        flood.append(sim.native_event(band, seq=2 * i + 1, ts_ms=ms + i, type="button", data={"n": i}))
        flood.append(sim.native_telemetry(band, seq=2 * i + 2, ts_ms=ms + i, values={"hr": 60 + i % 30}))
    proc = _spawn_ingest(client_id, subscription, tmp_path / "ingest.log")
    try:
        await _wait_subscribed(pg, f"{home.tag}probe")

        async def paced() -> None:
            # In chunks, so the worker is killed mid-flood however fast it commits.
            for i in range(0, len(flood), 40):
                await publish(flood[i : i + 40], window=50)
                await asyncio.sleep(0.02)

        publisher = asyncio.create_task(paced())
        stored = 0
        deadline = time.monotonic() + 20
        while stored < 100 and time.monotonic() < deadline:
            stored = await pg.fetchval(
                "SELECT count(*) FROM device_event WHERE device_id = $1", home.ids[band]
            )
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = stored
        await publisher
        proc = _spawn_ingest(client_id, subscription, tmp_path / "ingest.log")
        n_events = await wait_for(
            pg,
            "SELECT count(*) FROM device_event WHERE device_id = $1",
            home.ids[band],
            expect=events,
            timeout=40,
        )
        n_tele = await wait_for(
            pg,
            "SELECT count(*) FROM telemetry WHERE device_id = $1",
            home.ids[band],
            expect=telemetry,
            timeout=20,
        )
        distinct = await pg.fetchval(
            "SELECT count(DISTINCT seq) FROM device_event WHERE device_id = $1", home.ids[band]
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert 0 < killed_at < events, killed_at
    assert n_events == events
    assert distinct == events
    assert n_tele == telemetry
