"""Ingest fault tests: every QoS 1 message published is stored exactly once despite the fault.

Each test runs its own Mosquitto (deploy/mosquitto config, spare port, persistence in a tmp dir)
and ingest workers as ``python -m iot_ingest`` processes against a database of its own
(``<test db>_ingest_faults``). A flood mixes events (priority path, ``device_event``) and
telemetry (batch path, ``telemetry``) from one device with sequence numbers 1..N; at the end the
stored sequence numbers must be exactly 1..N, each once, and nothing may be dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import paho.mqtt.client as mqtt
import pytest
from alembic import command
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.settings import Settings
from iot_ingest.consumer import IngestConfig, IngestConsumer
from iot_ingest.wire import INGEST_CLIENT_ID_PREFIX
from simulators import devices as sim
from tests.conftest import alembic_config, recreate_database
from tests.integration.iot_ingest.test_ingest import Home, seed_home
from tests.support.ingest_faults import (
    MONITOR_USER,
    ROOT,
    BrokerStats,
    PgProxy,
    PrivateBroker,
    PublishReport,
    publish_with_retry,
    spawn_ingest,
    stop_ingest,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto binary not installed"),
]

_SERVER_URL = os.environ.get("ELDERCARE_TEST_DATABASE_URL", Settings().database_url)
_SERVER = urlsplit(_SERVER_URL)
TEST_DB = os.environ.get("ELDERCARE_INGEST_FAULTS_TEST_DB") or _SERVER.path.strip("/") + "_ingest_faults"
DB_URL = urlunsplit(_SERVER._replace(path=f"/{TEST_DB}"))
DSN = DB_URL.replace("postgresql+asyncpg://", "postgresql://", 1)
INGEST_USER = "eldercare-ingest"


@pytest.fixture(scope="session")
async def faults_db() -> str:
    """A database of our own, recreated and migrated to head once per session."""
    await recreate_database(DB_URL)
    await asyncio.to_thread(command.upgrade, alembic_config(DB_URL), "heads")
    return DSN


@pytest.fixture
async def pg(faults_db: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(faults_db)
    yield conn
    await conn.close()


@pytest.fixture
async def home(pg: asyncpg.Connection) -> Home:
    return await seed_home(pg)


@pytest.fixture
async def broker(tmp_path: Path, home: Home) -> AsyncIterator[PrivateBroker]:
    """A private broker with accounts for the ingest, the flooding device and a probe device."""
    b = PrivateBroker(tmp_path)
    for user in (INGEST_USER, MONITOR_USER):
        await b.add_account(user, service=True)
    for user in (home.uid("band"), home.uid("probe")):
        await b.add_account(user)
    b.start()
    yield b
    b.stop()


def is_event(seq: int) -> bool:
    """Every third message is an event. Not every other one: Mosquitto hands a shared
    subscription's messages round-robin, so with two workers one would get all the events."""
    return seq % 3 == 1


def flood(uid: str, n: int) -> list[tuple[str, bytes]]:
    """``n`` messages with seqs 1..n: ``button`` events (see :func:`is_event`) and heart-rate
    telemetry."""
    ms = int(time.time() * 1000)
    out = []
    for seq in range(1, n + 1):
        if is_event(seq):
            out.append(sim.native_event(uid, seq=seq, ts_ms=ms + seq, type="button", data={"n": seq}))
        else:
            out.append(sim.native_telemetry(uid, seq=seq, ts_ms=ms + seq, values={"hr": 60 + seq % 30}))
    return out


async def stored(pg: asyncpg.Connection, device_id: int) -> int:
    return int(
        await pg.fetchval(
            "SELECT (SELECT count(*) FROM device_event WHERE device_id = $1)"
            " + (SELECT count(*) FROM telemetry WHERE device_id = $1)",
            device_id,
        )
    )


async def wait_stored(pg: asyncpg.Connection, device_id: int, *, at_least: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    count = await stored(pg, device_id)
    while count < at_least and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        count = await stored(pg, device_id)
    return count


async def assert_each_seq_once(pg: asyncpg.Connection, home: Home, n: int) -> None:
    """Wait (bounded) until all ``n`` messages of the flooding device are in, settle briefly for
    late duplicates, then check the stored sequence numbers are exactly 1..n, each once, events and
    telemetry apart, and that none was parked in ``dead_letter`` (e.g. as a storage error)."""
    device_id = home.ids[home.uid("band")]
    await wait_stored(pg, device_id, at_least=n, timeout_s=45)
    await asyncio.sleep(0.5)  # a duplicate written just after the last original would show up now
    events = await pg.fetch("SELECT seq FROM device_event WHERE device_id = $1", device_id)
    telemetry = await pg.fetch("SELECT seq FROM telemetry WHERE device_id = $1", device_id)
    ev = sorted(r["seq"] for r in events)
    te = sorted(r["seq"] for r in telemetry)
    want_ev = [seq for seq in range(1, n + 1) if is_event(seq)]
    want_te = [seq for seq in range(1, n + 1) if not is_event(seq)]
    assert (len(ev), len(te)) == (len(want_ev), len(want_te))
    assert ev == want_ev
    assert te == want_te
    parked = await pg.fetchval(
        "SELECT count(*) FROM dead_letter WHERE topic LIKE $1", f"%/{home.uid('band')}/%"
    )
    assert parked == 0


async def wait_subscribed(pg: asyncpg.Connection, broker: PrivateBroker, probe_uid: str) -> None:
    """Publish probes from an unregistered device until one is dead-lettered: a worker listens."""
    topic = f"eldercare/v1/dev/{probe_uid}/telemetry"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        await publish(broker, probe_uid, [(topic, b'{"values": {"hr": 60}}')])
        for _ in range(10):
            if await pg.fetchval("SELECT count(*) > 0 FROM dead_letter WHERE topic = $1", topic):
                return
            await asyncio.sleep(0.05)
    raise AssertionError("no ingest worker subscribed")


async def publish(
    broker: PrivateBroker, uid: str, messages: list[tuple[str, bytes]], **kw: Any
) -> PublishReport:
    report = await asyncio.to_thread(
        publish_with_retry,
        messages,
        port=broker.port,
        username=uid,
        password=broker.passwords[uid],
        **kw,
    )
    assert report.acked == len(messages), report
    return report


async def wait_log(log: Path, text: bytes, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in await asyncio.to_thread(log.read_bytes):
        assert time.monotonic() < deadline, f"{log.name} never logged {text!r}"
        await asyncio.sleep(0.05)


def _group() -> tuple[str, str]:
    group = uuid.uuid4().hex[:8]
    return group, f"$share/t{group}/eldercare/v1/#"


async def test_database_unreachable_for_20s(
    pg: asyncpg.Connection, home: Home, broker: PrivateBroker, tmp_path: Path
) -> None:
    """The worker reaches PostgreSQL through a proxy that is cut for 20 s (refused connects, open
    connections aborted) while 125 msg/s keep arriving; it retries, and once the database is back
    it stores everything once. Nothing it could not commit was acknowledged and lost."""
    band = home.uid("band")
    device_id = home.ids[band]
    n = 3000
    messages = flood(band, n)
    proxy = PgProxy(_SERVER.hostname or "127.0.0.1", _SERVER.port or 5432)
    await proxy.start()
    userinfo = _SERVER.netloc.rpartition("@")[0]
    db_via_proxy = urlunsplit(
        _SERVER._replace(netloc=f"{userinfo}@127.0.0.1:{proxy.port}", path=f"/{TEST_DB}")
    )
    group, subscription = _group()
    worker = spawn_ingest(
        database_url=db_via_proxy,
        mqtt_url=broker.url(INGEST_USER),
        client_id=f"{INGEST_CLIENT_ID_PREFIX}-t-dbcut-{group}",
        subscription=subscription,
        log=tmp_path / "ingest.log",
    )
    broker_store = BrokerStats(
        broker.service_port, broker.passwords[MONITOR_USER], "$SYS/broker/store/messages/count"
    )
    try:
        await wait_subscribed(pg, broker, home.uid("probe"))
        publisher = asyncio.create_task(publish(broker, band, messages, rate=125.0, window=50))
        before_cut = await wait_stored(pg, device_id, at_least=200, timeout_s=20)
        await proxy.cut()
        cut_at = time.monotonic()
        await asyncio.sleep(1.0)  # a commit already on its way may still land
        frozen = await stored(pg, device_id)
        await asyncio.sleep(18 - (time.monotonic() - cut_at))
        # What the worker has not committed it must not have acknowledged: the broker still holds
        # it (its message store counts each message once, plus about 50 retained $SYS messages).
        held = broker_store.latest_since(cut_at + 16)
        while held is None and time.monotonic() - cut_at < 19.5:
            await asyncio.sleep(0.05)
            held = broker_store.latest_since(cut_at + 16)
        await asyncio.sleep(20 - (time.monotonic() - cut_at))
        during = await stored(pg, device_id) - frozen
        assert worker.poll() is None, "the worker must ride out the outage"
        await proxy.start()
        report = await publisher
        await assert_each_seq_once(pg, home, n)
        assert worker.poll() is None
    finally:
        status = await asyncio.to_thread(stop_ingest, worker)  # the proxy runs on this loop
        await proxy.cut()
        broker_store.close()
    (tmp_path / "figures.txt").write_text(f"{before_cut=} {frozen=} {held=} {report}\n")
    assert status == 0, "after the outage the worker still stops cleanly on SIGTERM"
    assert 0 < before_cut < n // 2, before_cut
    assert during == 0, "nothing can be committed while the database is unreachable"
    assert frozen < n - 1000, "most of the flood arrived while the database was unreachable"
    # By 18 s into the outage about 2,200 more messages had been published; none was committed.
    assert held is not None
    assert held >= 1500, f"the broker holds only {held} messages: acknowledged before commit?"
    assert report.connections == 1


async def test_broker_restart(
    pg: asyncpg.Connection,
    home: Home,
    broker: PrivateBroker,
    tmp_path: Path,
) -> None:
    """SIGTERM the broker mid-flood and start it again on the same port and persistence file:
    the worker's persistent session (with its unacknowledged messages) comes back, the worker
    reconnects, and the publisher resends whatever the broker had not acknowledged."""
    band = home.uid("band")
    device_id = home.ids[band]
    n = 3000
    messages = flood(band, n)
    group, subscription = _group()
    worker = spawn_ingest(
        database_url=DB_URL,
        mqtt_url=broker.url(INGEST_USER),
        client_id=f"{INGEST_CLIENT_ID_PREFIX}-t-brk-{group}",
        subscription=subscription,
        log=tmp_path / "ingest.log",
    )
    try:
        await wait_subscribed(pg, broker, home.uid("probe"))
        # Mosquitto 2.0 does not persist shared subscriptions: until the worker has reconnected and
        # subscribed again, the restarted broker answers PUBACK 0x10 "no matching subscribers" and
        # drops the message. The publisher sends those again, as a careful device would.
        publisher = asyncio.create_task(
            publish(broker, band, messages, rate=400.0, window=100, retry_unmatched=True)
        )
        before = await wait_stored(pg, device_id, at_least=600, timeout_s=20)
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(1.0)  # publisher and worker both see the broker gone
        await asyncio.to_thread(broker.start)
        report = await publisher
        await assert_each_seq_once(pg, home, n)
        assert worker.poll() is None, "the worker must reconnect, not die"
    finally:
        await asyncio.to_thread(stop_ingest, worker)
    (tmp_path / "figures.txt").write_text(f"{before=} {report}\n")  # for a look after a run
    assert 0 < before < n, before
    assert report.connections >= 2, report
    assert report.sends >= n, report


async def test_two_workers_one_killed(
    pg: asyncpg.Connection, home: Home, broker: PrivateBroker, tmp_path: Path
) -> None:
    """Two workers share the subscription; one is SIGKILLed mid-flood. The survivor keeps storing;
    Mosquitto keeps queueing the dead worker's share (and its unacknowledged messages) in its
    session, which the restarted worker (same client id) drains."""
    band = home.uid("band")
    device_id = home.ids[band]
    n = 4000
    messages = flood(band, n)
    group, subscription = _group()
    ids = (f"{INGEST_CLIENT_ID_PREFIX}-t-w1-{group}", f"{INGEST_CLIENT_ID_PREFIX}-t-w2-{group}")
    logs = (tmp_path / "w1.log", tmp_path / "w2.log")

    def spawn(i: int) -> subprocess.Popen[bytes]:
        return spawn_ingest(
            database_url=DB_URL,
            mqtt_url=broker.url(INGEST_USER),
            client_id=ids[i],
            subscription=subscription,
            log=logs[i],
        )

    workers = [spawn(0), spawn(1)]
    try:
        await wait_subscribed(pg, broker, home.uid("probe"))
        for log in logs:  # the probe proves one worker is in; wait for the other's connection too
            await wait_log(log, b"mqtt_connected")
        await asyncio.sleep(0.3)  # SUBACK
        publisher = asyncio.create_task(publish(broker, band, messages, rate=800.0, window=200))
        killed_at = await wait_stored(pg, device_id, at_least=800, timeout_s=20)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        after_kill = await stored(pg, device_id)
        # The survivor carries on alone while the flood continues.
        survivor_progress = await wait_stored(pg, device_id, at_least=after_kill + 100, timeout_s=15)
        await publisher
        workers[0] = spawn(0)  # same client id: its persistent session hands back its share
        await assert_each_seq_once(pg, home, n)
        assert workers[1].poll() is None
    finally:
        for w in workers:
            await asyncio.to_thread(stop_ingest, w)
    assert 0 < killed_at < n, killed_at
    assert survivor_progress >= after_kill + 100, (after_kill, survivor_progress)


class Impostor:
    """A device's account connecting with a client id of its choosing (MQTT 5, session expiry 300 s
    unless ``clean_start``); records what the broker said and any message it was handed."""

    def __init__(self, port: int, username: str, password: str, client_id: str, *, clean_start: bool) -> None:
        self.answered = threading.Event()
        self.result: ReasonCode | None = None
        self.received: list[str] = []
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, m: self.received.append(m.topic)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0 if clean_start else 300
        self.client.connect("127.0.0.1", port, clean_start=clean_start, properties=props)
        self.client.loop_start()
        self.answered.wait(5)

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self.result = rc
        self.answered.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def try_takeover(
    broker: PrivateBroker, username: str, client_ids: list[str]
) -> list[tuple[int, str, bool, ReasonCode | None, list[str]]]:
    """Connect with each client id, with clean and with persistent sessions, on both listeners;
    stay half a second (long enough to be handed a taken-over session's queue)."""
    outcomes = []
    for port in (broker.port, broker.service_port):
        for client_id in client_ids:
            for clean_start in (True, False):
                impostor = Impostor(
                    port, username, broker.passwords[username], client_id, clean_start=clean_start
                )
                time.sleep(0.5)
                impostor.close()
                outcomes.append((port, client_id, clean_start, impostor.result, impostor.received))
    return outcomes


async def test_device_account_cannot_take_over_ingest_sessions(
    pg: asyncpg.Connection, home: Home, broker: PrivateBroker, tmp_path: Path
) -> None:
    """A provisioned device's account tries every client id of the ingest (main and priority
    session), with clean and with persistent sessions, on both listeners, while a flood with SOS
    events is ingested. On the device listener its client id is its username whatever it asks
    for, and the service listener does not know its account: the ingest is never disconnected,
    the impostor is never handed a message, and every message (each SOS) is stored exactly once."""
    band, impostor = home.uid("band"), home.uid("watch")
    await broker.add_account(impostor)
    assert broker.files.reload()
    n = 3000
    sos = [seq for seq in range(1, n + 1) if is_event(seq) and seq % 30 == 1]
    messages = flood(band, n)
    for seq in sos:
        topic, payload = messages[seq - 1]
        event = json.loads(payload)
        messages[seq - 1] = (topic, json.dumps({**event, "type": "sos"}).encode())
    group, subscription = _group()
    config = IngestConfig(
        client_id=f"{INGEST_CLIENT_ID_PREFIX}-t-takeover-{group}",
        subscription=subscription,
        session_expiry_s=300,
        batch_max_ms=100,
    )
    service = IngestConsumer(Settings(database_url=DB_URL, mqtt_url=broker.url(INGEST_USER)), config)
    await service.start()
    try:
        await asyncio.wait_for(service.connected.wait(), 10)
        await wait_subscribed(pg, broker, home.uid("probe"))
        sessions = [config.client_id, f"{config.client_id}-prio"]
        assert service.mqtt.generations == [1, 1], "each session connected once"
        publisher = asyncio.create_task(publish(broker, band, messages, rate=300.0, window=100))
        await wait_stored(pg, home.ids[band], at_least=300, timeout_s=20)
        outcomes = await asyncio.to_thread(try_takeover, broker, impostor, sessions)
        await publisher
        await assert_each_seq_once(pg, home, n)
        generations = list(service.mqtt.generations)
    finally:
        await service.stop(end_session=True)
    log = (tmp_path / "mosquitto.log").read_text()
    closed = [ln for ln in log.splitlines() if "closing old connection" in ln and config.client_id in ln]
    assert closed == [], "the broker closed an ingest connection for a newcomer with its client id"
    assert generations == [1, 1], "an ingest session was disconnected (its generation moved on)"
    for port, client_id, clean_start, result, received in outcomes:
        attempt = (port, client_id, clean_start, result)
        assert received == [], attempt
        if port == broker.service_port:
            assert result is not None, attempt
            assert result.is_failure, attempt  # the account is unknown there
    connected_as = {
        line.rsplit(" as ", 1)[1].split(" ")[0] for line in log.splitlines() if f"u'{impostor}'" in line
    }
    assert connected_as == {impostor}, connected_as
    device_id = home.ids[band]
    stored_sos = await pg.fetch(
        "SELECT seq FROM device_event WHERE device_id = $1 AND type = 'sos' ORDER BY seq", device_id
    )
    assert [r["seq"] for r in stored_sos] == sos
    alarm = await pg.fetchrow("SELECT count FROM alarm WHERE device_id = $1 AND type = 'SOS'", device_id)
    assert alarm is not None, "the SOS raised no alarm"
    assert alarm["count"] == len(sos), "every SOS counted once on the alarm"


async def test_eldercare_ingest_resumes_its_session_after_a_restart(
    pg: asyncpg.Connection, home: Home, broker: PrivateBroker, tmp_path: Path
) -> None:
    """``eldercare ingest`` with ELDERCARE_INGEST_CLIENT_ID (as the demo runs it): what is published
    while the worker is stopped waits in its persistent session and is handed to it when it comes
    back, instead of staying in the session of a process that is gone."""
    band = home.uid("band")
    n = 600
    messages = flood(band, n)
    env = {
        **os.environ,
        "ELDERCARE_DATABASE_URL": DB_URL,
        "ELDERCARE_MQTT_URL": broker.url(INGEST_USER),
        "ELDERCARE_INGEST_CLIENT_ID": f"{INGEST_CLIENT_ID_PREFIX}-t-restart-{uuid.uuid4().hex[:8]}",
    }

    def spawn() -> subprocess.Popen[bytes]:
        with (tmp_path / "ingest.log").open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "api.cli", "ingest"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    worker = spawn()
    try:
        await wait_subscribed(pg, broker, home.uid("probe"))
        assert await asyncio.to_thread(stop_ingest, worker) == 0
        await publish(broker, band, messages[: n // 2])  # queued in the stopped worker's session
        worker = spawn()
        await publish(broker, band, messages[n // 2 :])
        await assert_each_seq_once(pg, home, n)
    finally:
        await asyncio.to_thread(stop_ingest, worker)
