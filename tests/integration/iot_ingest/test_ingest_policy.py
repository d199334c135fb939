"""The alarm policy through the real ingest (Mosquitto + PostgreSQL): a dated ``policy_value`` row applies
to messages of its date and not the day before, a ``policy_changed`` NOTIFY makes a running ingest
reload, the policy watch follows the local date, and the offline job reads the policy of its ``now``.

Uses the migrated database of tests/integration/iot_ingest/test_ingest.py (fixtures imported from
there). Policy rows written here are global to that database: each test deletes its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from core.clock import SHANGHAI, local_date
from core.settings import Settings
from iot_ingest import jobs
from iot_ingest.alarm_policy import PolicyByDay, PolicyWatch, load_thresholds
from iot_ingest.consumer import IngestConsumer
from simulators import devices as sim
from tests.integration.iot_ingest.test_ingest import (  # noqa: F401 - fixtures
    DB_URL,
    DSN,
    MQTT_URL,
    _config,
    ingest,
    ingest_db,
    pg,
    publish,
    seed_home,
    wait_for,
)

pytestmark = pytest.mark.integration

SEEDED = "2026-01-01"  # the seeded defaults' valid_from (POLICY_EPOCH)


@asynccontextmanager
async def policy_row(
    pg: asyncpg.Connection,  # noqa: F811
    key: str,
    value: dict[str, Any],
    valid_from: dt.date,
    *,
    scope: str = "*",
    notify: bool = False,
) -> AsyncIterator[None]:
    """A committed policy row for the test's duration, written as the policy API writes one (with
    its NOTIFY in the same transaction when ``notify``)."""
    async with pg.transaction():
        row_id = await pg.fetchval(
            "INSERT INTO policy_value (key, scope, value, valid_from, source)"
            " VALUES ($1, $2, $3::jsonb, $4, 'test') RETURNING id",
            key,
            scope,
            json.dumps(value),
            valid_from,
        )
        if notify:
            await pg.execute("SELECT pg_notify('policy_changed', $1)", key)
    try:
        yield
    finally:
        await pg.execute("DELETE FROM policy_value WHERE id = $1", row_id)


@asynccontextmanager
async def running_ingest() -> AsyncIterator[IngestConsumer]:
    service = IngestConsumer(Settings(database_url=DB_URL, mqtt_url=MQTT_URL), _config())
    await service.start()
    try:
        await asyncio.wait_for(service.connected.wait(), 10)
        await asyncio.sleep(0.2)  # subscription granted
        yield service
    finally:
        await service.stop(end_session=True)


async def _alarm(pg: asyncpg.Connection, device_id: int, alarm_type: str) -> asyncpg.Record | None:  # noqa: F811
    return await pg.fetchrow(
        "SELECT severity, details FROM alarm WHERE device_id = $1 AND type = $2", device_id, alarm_type
    )


async def _battery_stored(pg: asyncpg.Connection, device_id: int, seq: int) -> bool:  # noqa: F811
    got = await wait_for(
        pg,
        "SELECT count(*) FROM telemetry WHERE device_id = $1 AND metric = 'battery' AND seq = $2",
        device_id,
        seq,
        expect=1,
    )
    return bool(got == 1)


async def test_low_battery_row_applies_to_messages_of_its_date_not_the_day_before(
    pg: asyncpg.Connection,  # noqa: F811
) -> None:
    home = await seed_home(pg)
    band, meter = home.uid("band"), home.uid("meter")
    now = dt.datetime.now(dt.UTC)
    today = local_date(now)
    yesterday_ms = int((now - dt.timedelta(days=1)).timestamp() * 1000)  # the local day before
    async with policy_row(pg, "alarm.low_battery", {"pct": 30}, today), running_ingest():
        await publish(
            [
                sim.native_telemetry(band, seq=1, ts_ms=yesterday_ms, values={"battery": 20}),
                sim.native_telemetry(meter, seq=1, ts_ms=int(now.timestamp() * 1000), values={"battery": 20}),
            ]
        )
        raised = await wait_for(
            pg,
            "SELECT count(*) FROM alarm WHERE device_id = $1 AND type = 'LOW_BATTERY'",
            home.ids[meter],
            expect=1,
        )
        assert raised == 1
        assert await _battery_stored(pg, home.ids[band], 1)  # yesterday's reading was judged too
        await asyncio.sleep(0.3)  # an alarm takes the priority path, which may lag the batch
    assert await _alarm(pg, home.ids[band], "LOW_BATTERY") is None
    alarm = await _alarm(pg, home.ids[meter], "LOW_BATTERY")
    assert alarm is not None
    assert alarm["severity"] == "WARNING"
    assert json.loads(alarm["details"])["policy"] == [
        f"alarm.low_battery[*]@{today.isoformat()}",
        f"alarm.severity[LOW_BATTERY]@{SEEDED}",
    ]


async def test_policy_changed_notify_makes_a_running_ingest_reload(
    pg: asyncpg.Connection,  # noqa: F811
    ingest: IngestConsumer,  # noqa: F811
) -> None:
    home = await seed_home(pg)
    band, device_id = home.uid("band"), home.ids[home.uid("band")]
    await asyncio.wait_for(ingest.policy_watch.listening.wait(), 5)
    ms = int(time.time() * 1000)
    await publish([sim.native_telemetry(band, seq=1, ts_ms=ms, values={"battery": 20})])
    assert await _battery_stored(pg, device_id, 1)
    assert await _alarm(pg, device_id, "LOW_BATTERY") is None  # the seeded 15 %
    today = local_date(dt.datetime.now(dt.UTC))
    before = dict(ingest.policy_watch.reloads)
    # Another domain's key is not the ingest's business.
    await pg.execute("SELECT pg_notify('policy_changed', 'dispatch.weights')")
    await asyncio.sleep(0.3)
    assert ingest.policy_watch.reloads == before
    async with policy_row(pg, "alarm.low_battery", {"pct": 30}, today, notify=True):
        # Well inside the 60 s safety net.
        assert await _until(lambda: ingest.policy_watch.reloads["notify"] == before["notify"] + 1)
        assert ingest.policy_watch.reloads["interval"] == before["interval"]
        await publish([sim.native_telemetry(band, seq=2, ts_ms=ms + 1000, values={"battery": 20})])
        raised = await wait_for(
            pg,
            "SELECT count(*) FROM alarm WHERE device_id = $1 AND type = 'LOW_BATTERY'",
            device_id,
            expect=1,
        )
        assert raised == 1
    alarm = await _alarm(pg, device_id, "LOW_BATTERY")
    assert alarm is not None
    assert json.loads(alarm["details"])["policy"][0] == f"alarm.low_battery[*]@{today.isoformat()}"


def _clock_from(start: dt.datetime) -> Callable[[], dt.datetime]:
    """A clock that starts at ``start`` and runs at the wall clock's pace."""
    t0 = time.monotonic()
    return lambda: start + dt.timedelta(seconds=time.monotonic() - t0)


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> bool:  # noqa: ASYNC109
    for _ in range(int(timeout / 0.02)):
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


async def test_policy_watch_loads_the_new_day_at_local_midnight(
    pg: asyncpg.Connection,  # noqa: F811
) -> None:
    day = local_date(dt.datetime.now(dt.UTC)) + dt.timedelta(days=30)
    next_day = day + dt.timedelta(days=1)
    almost_midnight = dt.datetime.combine(day, dt.time(23, 59, 59, 500_000), SHANGHAI)
    policy = PolicyByDay()
    watch = PolicyWatch(policy, DSN, refresh_s=60, clock=_clock_from(almost_midnight))
    stopping = asyncio.Event()
    async with policy_row(pg, "alarm.low_battery", {"pct": 40}, next_day):
        task = asyncio.create_task(watch.run(stopping))
        try:
            assert await _until(lambda: watch.reloads["connect"] == 1)
            assert policy.today == day
            assert policy.at(almost_midnight).battery_low_pct == 15
            assert await _until(lambda: watch.reloads["day"] == 1)
            assert policy.today == next_day
            th = policy.at(dt.datetime.combine(next_day, dt.time(0, 0, 1), SHANGHAI))
            assert (th.battery_low_pct, th.battery_ref) == (
                40,
                f"alarm.low_battery[*]@{next_day.isoformat()}",
            )
            assert watch.reloads["interval"] == 0
        finally:
            stopping.set()
            await task


async def test_policy_watch_reloads_every_interval_without_a_notify(
    pg: asyncpg.Connection,  # noqa: F811
) -> None:
    today = local_date(dt.datetime.now(dt.UTC))
    policy = PolicyByDay()
    watch = PolicyWatch(policy, DSN, refresh_s=0.3)
    stopping = asyncio.Event()
    task = asyncio.create_task(watch.run(stopping))
    try:
        assert await _until(lambda: policy.today == today)
        assert policy.at(dt.datetime.now(dt.UTC)).hr_high == 130
        row = {"low_bpm": 40, "high_bpm": 120, "sustain_seconds": 120}
        async with policy_row(pg, "alarm.vitals.heart_rate", row, today):  # no NOTIFY
            assert await _until(lambda: policy.at(dt.datetime.now(dt.UTC)).hr_high == 120)
            assert watch.reloads["interval"] >= 1
            assert watch.reloads["notify"] == 0
    finally:
        stopping.set()
        await task


async def test_offline_job_reads_the_policy_valid_on_its_now(pg: asyncpg.Connection) -> None:  # noqa: F811
    home = await seed_home(pg)
    meter = home.ids[home.uid("meter")]  # mains powered: seeded limit 600 s
    now = dt.datetime.now(dt.UTC)
    day_before = now - dt.timedelta(days=1)
    today = local_date(now)
    silent = dt.timedelta(minutes=6)
    async with policy_row(pg, "alarm.device_offline", {"seconds": 300}, today, scope="mains"):
        await pg.execute("UPDATE device SET last_seen_at = $2 WHERE id = $1", meter, day_before - silent)
        await jobs.check_offline(pg, now=day_before)
        assert await _alarm(pg, meter, "DEVICE_OFFLINE") is None
        await pg.execute("UPDATE device SET last_seen_at = $2 WHERE id = $1", meter, now - silent)
        await jobs.check_offline(pg, now=now)
    alarm = await _alarm(pg, meter, "DEVICE_OFFLINE")
    assert alarm is not None
    assert json.loads(alarm["details"])["policy"] == [
        f"alarm.device_offline[mains]@{today.isoformat()}",
        f"alarm.severity[DEVICE_OFFLINE]@{SEEDED}",
    ]


async def test_load_thresholds_reads_rows_over_the_seed(pg: asyncpg.Connection) -> None:  # noqa: F811
    day = local_date(dt.datetime.now(dt.UTC)) + dt.timedelta(days=40)
    value = {"severity": "CRITICAL", "dementia_severity": "CRITICAL"}
    async with policy_row(pg, "alarm.severity", value, day, scope="WANDERING"):
        before = await load_thresholds(pg, day - dt.timedelta(days=1))
        on = await load_thresholds(pg, day)
    assert (before.severity["WANDERING"].for_elder(False), on.severity["WANDERING"].for_elder(False)) == (
        "MAJOR",
        "CRITICAL",
    )
    assert on.severity["WANDERING"].ref == f"alarm.severity[WANDERING]@{day.isoformat()}"
