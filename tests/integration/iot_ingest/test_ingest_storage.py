"""Telemetry storage back ends and the ingest jobs, against real PostgreSQL.

Uses the migrated database of tests/integration/iot_ingest/test_ingest.py (fixtures imported from there).
"""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from iot_ingest import jobs, storage
from tests.integration.iot_ingest.test_ingest import ingest_db, pg, seed_home  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


async def test_partitions_created_ahead_and_dropped_by_retention(pg: asyncpg.Connection) -> None:  # noqa: F811
    if await storage.detect_backend(pg) != "partitioned":
        pytest.skip("native partitions are the fallback back end; this server has TimescaleDB")
    now = dt.datetime.now(dt.UTC)
    today = now.date()
    old_day = today - dt.timedelta(days=30)
    await pg.execute("SELECT ensure_telemetry_partitions($1, $1)", old_day)
    old_at = dt.datetime.combine(old_day, dt.time(12), dt.UTC)
    await pg.execute("INSERT INTO telemetry VALUES (1, $1, 'hr', 60, NULL)", old_at)
    result = await jobs.maintain_telemetry(pg, now=now, days_ahead=10, retention_days=20)
    names = {
        r[0]
        for r in await pg.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'telemetry'::regclass"
        )
    }
    assert f"telemetry_p{(today + dt.timedelta(days=10)):%Y%m%d}" in names
    assert f"telemetry_p{old_day:%Y%m%d}" not in names
    assert result["dropped"] == [f"telemetry_p{old_day:%Y%m%d}"]
    assert await pg.fetchval("SELECT count(*) FROM telemetry WHERE at = $1", old_at) == 0
    brin = await pg.fetchval(
        "SELECT count(*) FROM pg_indexes WHERE tablename = $1 AND indexdef LIKE '%USING brin%'",
        f"telemetry_p{today:%Y%m%d}",
    )
    assert brin == 1


async def test_rollups_bucket_by_minute_and_hour(pg: asyncpg.Connection) -> None:  # noqa: F811
    device = 900_000 + dt.datetime.now(dt.UTC).microsecond
    base = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    rows = [(device, base + dt.timedelta(seconds=20 * i), "hr", float(60 + i), None, None) for i in range(9)]
    await storage.copy_telemetry(pg, rows)
    await jobs.refresh_rollups(pg, now=base + dt.timedelta(hours=1), lookback=dt.timedelta(hours=1))
    minutes = await pg.fetch(
        "SELECT bucket, n, min, max, sum FROM telemetry_1m WHERE device_id = $1 ORDER BY bucket", device
    )
    assert [(m["n"], m["min"], m["max"]) for m in minutes] == [(3, 60, 62), (3, 63, 65), (3, 66, 68)]
    hour = await pg.fetchrow("SELECT n, sum FROM telemetry_1h WHERE device_id = $1", device)
    assert hour["n"] == 9
    assert hour["sum"] == sum(60 + i for i in range(9))
    # Idempotent: running again does not double count.
    await jobs.refresh_rollups(pg, now=base + dt.timedelta(hours=1), lookback=dt.timedelta(hours=1))
    assert await pg.fetchval("SELECT n FROM telemetry_1h WHERE device_id = $1", device) == 9


async def test_offline_job_raises_once_and_marks_offline(pg: asyncpg.Connection) -> None:  # noqa: F811
    home = await seed_home(pg)
    meter = home.ids[home.uid("meter")]  # mains powered
    now = dt.datetime.now(dt.UTC)
    await pg.execute(
        "UPDATE device SET last_seen_at = $2, online = true WHERE id = $1",
        meter,
        now - dt.timedelta(minutes=11),
    )
    assert await jobs.check_offline(pg, now=now) >= 1
    await jobs.check_offline(pg, now=now)  # a second run must not repeat it
    alarm = await pg.fetchrow("SELECT type, severity, count FROM alarm WHERE device_id = $1", meter)
    assert tuple(alarm) == ("DEVICE_OFFLINE", "WARNING", 1)
    assert await pg.fetchval("SELECT online FROM device WHERE id = $1", meter) is False


async def test_inactivity_job(pg: asyncpg.Connection) -> None:  # noqa: F811
    home = await seed_home(pg)
    now = dt.datetime.now(dt.UTC)
    await pg.execute(
        "UPDATE elder_monitoring SET updated_at = $2, day_start_minute = 0, day_end_minute = 1440 "
        "WHERE elder_id = $1",
        home.elder_id,
        now - dt.timedelta(hours=13),
    )
    door = home.ids[home.uid("door")]
    # A door sensor that has never reported is not installed yet: no inactivity watch without one.
    await jobs.check_inactivity(pg, now=now)
    assert await pg.fetchval("SELECT count(*) FROM alarm WHERE elder_id = $1", home.elder_id) == 0
    await pg.execute(
        "UPDATE device SET last_seen_at = $2, created_at = $3 WHERE id = $1",
        door,
        now - dt.timedelta(hours=1),
        now - dt.timedelta(days=2),
    )
    await jobs.check_inactivity(pg, now=now)
    row = await pg.fetchrow(
        "SELECT severity, device_id FROM alarm WHERE elder_id = $1 AND type = 'INACTIVITY'", home.elder_id
    )
    assert row is not None
    assert row["severity"] == "MAJOR"
    assert row["device_id"] is None


async def test_dedup_window_prune(pg: asyncpg.Connection) -> None:  # noqa: F811
    now = dt.datetime.now(dt.UTC)
    await pg.execute(
        "INSERT INTO ingest_dedup VALUES (-1, 1, $1), (-1, 2, $2)", now - dt.timedelta(days=1), now
    )
    await jobs.prune_dedup(pg, now=now)
    assert [r[0] for r in await pg.fetch("SELECT msg_key FROM ingest_dedup WHERE device_id = -1")] == [2]


@pytest.mark.timescale
async def test_timescale_backend(pg: asyncpg.Connection) -> None:  # noqa: F811
    if await storage.detect_backend(pg) != "timescale":
        pytest.skip("TimescaleDB extension not installed on this server")
    store = await storage.make_store(pg)
    now = dt.datetime.now(dt.UTC)
    await storage.copy_telemetry(pg, [(1, now, "hr", 60.0, None, None)])
    await store.refresh_rollups(pg, start=now - dt.timedelta(hours=2), end=now)
    policies = await pg.fetchval(
        "SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_name = 'telemetry'"
    )
    assert policies >= 2


async def test_priority_write_claims_once_and_folds_alarms(pg: asyncpg.Connection) -> None:  # noqa: F811
    """One statement: only claimed keys store rows; two alarms of one (device, type) fold into one
    row with their count; the last availability change per device wins; a replay stores nothing."""
    from callcentre.contract import AlarmCandidate

    home = await seed_home(pg)
    band, door = home.ids[home.uid("band")], home.ids[home.uid("door")]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def sos(key: int, seconds: int) -> tuple[int, AlarmCandidate]:
        at = now + dt.timedelta(seconds=seconds)
        return key, AlarmCandidate("SOS", "CRITICAL", band, home.elder_id, at, {"n": key})

    batch = storage.PriorityBatch(
        keys=[(band, 11, now), (band, 12, now), (door, 13, now), (door, 14, now)],
        events=[
            (band, 11, now, "sos", {"n": 11}, 1),
            (band, 12, now + dt.timedelta(seconds=5), "sos", {"n": 12}, 2),
            (door, 13, now, "offline", {}, None),
            (door, 14, now + dt.timedelta(seconds=1), "online", {}, None),
        ],
        readings=[(band, 11, now, "hr", 72.0, 1, None), (band, 11, now, "voltage", 120.1, 1, "V")],
        availability=[(door, 13, False, now), (door, 14, True, now + dt.timedelta(seconds=1))],
        alarms=[sos(11, 0), sos(12, 5)],
    )
    claimed, alarms = await storage.write_priority(pg, batch)
    assert claimed == {(band, 11), (band, 12), (door, 13), (door, 14)}
    assert [(a.created, a.count) for a in alarms] == [(True, 2)]
    row = await pg.fetchrow(
        "SELECT count, first_seen_at, last_seen_at FROM alarm WHERE id = $1", alarms[0].alarm_id
    )
    assert (row["count"], row["first_seen_at"], row["last_seen_at"]) == (
        2,
        now,
        now + dt.timedelta(seconds=5),
    )
    assert await pg.fetchval("SELECT count(*) FROM device_event WHERE device_id = ANY($1)", [band, door]) == 4
    units = await pg.fetch("SELECT metric, unit FROM telemetry WHERE device_id = $1 ORDER BY metric", band)
    assert [(u["metric"], u["unit"]) for u in units] == [("hr", None), ("voltage", "V")]
    assert await pg.fetchval("SELECT online FROM device WHERE id = $1", door) is True

    # A replay of the same keys plus one new SOS: only the new one is stored, the alarm counts it.
    batch.keys.append((band, 15, now))
    batch.events.append((band, 15, now + dt.timedelta(seconds=9), "sos", {"n": 15}, 3))
    batch.alarms.append(sos(15, 9))
    claimed, alarms = await storage.write_priority(pg, batch)
    assert claimed == {(band, 15)}
    assert [(a.created, a.count) for a in alarms] == [(False, 3)]
    assert await pg.fetchval("SELECT count(*) FROM device_event WHERE device_id = $1", band) == 3
    assert await pg.fetchval("SELECT count(*) FROM telemetry WHERE device_id = $1", band) == 2


async def test_concurrent_priority_writes_of_the_same_events_do_not_deadlock(
    pg: asyncpg.Connection,  # noqa: F811
    ingest_db: str,  # noqa: F811
) -> None:
    """Both MQTT sessions carry events, so two workers' priority writes often claim the same keys at
    once, in whatever order their batches hold them. Claims go in key order: they wait, never deadlock,
    and each event is stored exactly once."""
    import asyncio

    from callcentre.contract import AlarmCandidate

    home = await seed_home(pg)
    band = home.ids[home.uid("band")]
    now = dt.datetime.now(dt.UTC)
    a, b = await asyncpg.connect(ingest_db), await asyncpg.connect(ingest_db)
    try:
        for round_ in range(20):
            keys = [round_ * 1000 + i for i in range(40)]

            def batch(order: list[int]) -> storage.PriorityBatch:
                return storage.PriorityBatch(
                    keys=[(band, k, now) for k in order],
                    events=[(band, k, now, "button", {"k": k}, k) for k in order],
                    alarms=[
                        (k, AlarmCandidate("SOS", "CRITICAL", band, home.elder_id, now, {})) for k in order
                    ],
                )

            (fresh_a, _), (fresh_b, _) = await asyncio.gather(
                storage.write_priority(a, batch(keys)), storage.write_priority(b, batch(keys[::-1]))
            )
            assert fresh_a.isdisjoint(fresh_b)
            assert fresh_a | fresh_b == {(band, k) for k in keys}
        assert await pg.fetchval("SELECT count(*) FROM device_event WHERE device_id = $1", band) == 800
        assert await pg.fetchval("SELECT count FROM alarm WHERE device_id = $1 AND type = 'SOS'", band) == 800
    finally:
        await a.close()
        await b.close()
