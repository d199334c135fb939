"""Self-clearing alarms and storms against the real database: a device heard again, a battery fine
again, activity resumed; two raises 1 ms apart from two connections fold into one alarm; a device
raising too many alarms is grouped and flagged, and its storm ends when it quietens."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from callcentre.autoclear import ClearReason, autoclear
from callcentre.contract import AlarmCandidate, raise_alarm
from callcentre.escalation_runner import run_due
from callcentre.storms import group_storms
from core.settings import Settings
from iot_ingest import storage
from tests.conftest import TEST_DB_URL
from tests.factories import Factory
from tests.support.alarms import add_device, driver, jsonb, policy_row, raise_

pytestmark = pytest.mark.integration


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _alarm(conn: asyncpg.Connection, alarm_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT cleared_at, cleared_by, outcome, storm_id, count FROM alarm WHERE id = $1", alarm_id
    )
    assert row is not None
    return row


async def _cleared_events(conn: asyncpg.Connection, alarm_id: int) -> list[dict[str, object]]:
    rows = await conn.fetch(
        "SELECT actor_id, data::text AS data FROM alarm_event WHERE alarm_id = $1 AND kind = 'cleared'",
        alarm_id,
    )
    return [{"actor_id": r["actor_id"], **jsonb(r["data"])} for r in rows]


async def test_a_device_offline_clears_itself_when_the_device_is_heard_again(
    db: AsyncSession, make: Factory
) -> None:
    conn = await driver(db)
    elder = await make.elder()
    device = await add_device(conn, elder.id, "smoke", power="mains")
    silent_since = _now() - dt.timedelta(minutes=20)
    await conn.execute(
        "UPDATE device SET last_seen_at = $2, online = false WHERE id = $1", device, silent_since
    )
    offline = await raise_(conn, "DEVICE_OFFLINE", "WARNING", device_id=device, elder_id=elder.id)
    await run_due(conn, now=offline.after(1))  # it has its chain; being cleared stops it

    assert await autoclear(conn, now=offline.after(30)) == {}
    # Its last will (offline) moves last_seen_at on but does not bring it back.
    await conn.execute(
        "UPDATE device SET last_seen_at = $2, online = false WHERE id = $1", device, offline.after(40)
    )
    assert await autoclear(conn, now=offline.after(45)) == {}
    assert (await _alarm(conn, offline.id))["cleared_at"] is None

    await conn.execute(
        "UPDATE device SET last_seen_at = $2, online = true WHERE id = $1", device, offline.after(50)
    )
    assert await autoclear(conn, now=offline.after(60)) == {ClearReason.DEVICE_HEARD: 1}
    row = await _alarm(conn, offline.id)
    assert (row["cleared_at"], row["cleared_by"], row["outcome"]) == (offline.after(60), None, "technical")
    assert await _cleared_events(conn, offline.id) == [
        {"actor_id": None, "auto": True, "reason": "device_heard", "outcome": "technical"}
    ]
    # Cleared, it stays in the record, escalates no more, and a new outage is a new alarm.
    assert await autoclear(conn, now=offline.after(90)) == {}
    assert (await run_due(conn, now=offline.after(7200))).steps == 0
    again = await raise_(conn, "DEVICE_OFFLINE", "WARNING", device_id=device, elder_id=elder.id)
    assert again.id != offline.id


async def test_a_low_battery_clears_itself_when_a_later_reading_is_fine(
    db: AsyncSession, make: Factory
) -> None:
    conn = await driver(db)
    elder = await make.elder()
    band = await add_device(conn, elder.id, "vitals_band")
    leak = await add_device(conn, elder.id, "water_leak")
    t = _now().replace(microsecond=0)
    store = await storage.make_store(conn)
    await store.create_ahead(conn, today=t.date(), days_ahead=1)
    low_band = await raise_(conn, "LOW_BATTERY", "WARNING", device_id=band, elder_id=elder.id, at=t)
    low_leak = await raise_(conn, "LOW_BATTERY", "WARNING", device_id=leak, elder_id=elder.id, at=t)

    async def reading(device: int, metric: str, value: float, seconds: int) -> None:
        await conn.execute(
            "INSERT INTO telemetry (device_id, at, metric, value) VALUES ($1, $2, $3, $4)",
            device,
            t + dt.timedelta(seconds=seconds),
            metric,
            value,
        )

    await reading(band, "battery", 12, 0)  # the reading that raised it
    await reading(leak, "battery_low", 1, 0)
    assert await autoclear(conn, now=t + dt.timedelta(seconds=30)) == {}
    await reading(band, "battery", 14, 60)  # still below alarm.low_battery's 15 %
    await reading(leak, "battery", 90, 60)
    await reading(leak, "battery_low", 1, 60)  # the flag still says low
    assert await autoclear(conn, now=t + dt.timedelta(seconds=90)) == {}
    await reading(band, "battery", 97, 120)  # a new battery
    await reading(leak, "battery_low", 0, 120)
    assert await autoclear(conn, now=t + dt.timedelta(seconds=150)) == {ClearReason.BATTERY_OK: 2}
    for alarm in (low_band, low_leak):
        assert (await _alarm(conn, alarm.id))["outcome"] == "technical"
        assert [e["reason"] for e in await _cleared_events(conn, alarm.id)] == ["battery_ok"]


async def test_inactivity_clears_itself_when_activity_resumes(db: AsyncSession, make: Factory) -> None:
    conn = await driver(db)
    elder = await make.elder()
    other = await make.elder()
    motion = await add_device(conn, elder.id, "motion")
    other_door = await add_device(conn, other.id, "door")
    quiet = await raise_(conn, "INACTIVITY", "MAJOR", elder_id=elder.id, details={"quiet_daytime_s": 43200})

    async def event(device: int, kind: str, seconds: float) -> None:
        await conn.execute(
            "INSERT INTO device_event (device_id, at, type, data) VALUES ($1, $2, $3, '{}')",
            device,
            quiet.after(seconds),
            kind,
        )

    await event(motion, "motion", -600)  # before the alarm: the quiet it alarmed on
    await event(other_door, "door_open", 30)  # someone else's home
    await event(motion, "tamper", 40)  # not activity
    assert await autoclear(conn, now=quiet.after(60)) == {}
    await event(motion, "motion", 90)
    assert await autoclear(conn, now=quiet.after(120)) == {ClearReason.ACTIVITY_RESUMED: 1}
    row = await _alarm(conn, quiet.id)
    assert (row["cleared_at"], row["cleared_by"], row["outcome"]) == (quiet.after(120), None, "technical")
    assert [e["reason"] for e in await _cleared_events(conn, quiet.id)] == ["activity_resumed"]


async def test_an_alarm_about_a_person_never_clears_itself(db: AsyncSession, make: Factory) -> None:
    conn = await driver(db)
    elder = await make.elder()
    button = await add_device(conn, elder.id, "sos_button")
    await conn.execute(
        "UPDATE device SET last_seen_at = now() + interval '1 minute', online = true WHERE id = $1", button
    )
    sos = await raise_(conn, "SOS", "CRITICAL", device_id=button, elder_id=elder.id)
    assert await autoclear(conn, now=sos.after(3600)) == {}
    assert (await _alarm(conn, sos.id))["cleared_at"] is None


# --- Storms ------------------------------------------------------------------------------------------


@pytest.fixture
async def committed_device(db: AsyncSession) -> AsyncIterator[tuple[int, int]]:
    """A device of a seeded (committed) elder, itself committed so that other connections see it;
    removed with its alarms afterwards. Yields (device id, elder id)."""
    pg = await asyncpg.connect(Settings(database_url=TEST_DB_URL).asyncpg_dsn)
    try:
        elder_id = await pg.fetchval("SELECT min(id) FROM elder WHERE status = 'active'")
        device = await add_device(pg, elder_id, "sos_button", tag="race")
        yield device, elder_id
    finally:
        await pg.execute("DELETE FROM alarm WHERE device_id = $1", device)
        await pg.execute("DELETE FROM device WHERE id = $1", device)
        await pg.close()


async def test_two_raises_a_millisecond_apart_from_two_connections_make_one_alarm(
    committed_device: tuple[int, int],
) -> None:
    device, elder_id = committed_device
    dsn = Settings(database_url=TEST_DB_URL).asyncpg_dsn
    first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        t = _now()
        started = asyncio.Event()

        async def press(pg: asyncpg.Connection, at: dt.datetime) -> tuple[int, bool]:
            async with pg.transaction():
                write = await raise_alarm(pg, AlarmCandidate("SOS", "CRITICAL", device, elder_id, at))
                started.set()
                await asyncio.sleep(0.05)  # both inserts are in flight before either commits
            return write.alarm_id, write.created

        results = await asyncio.gather(press(first, t), press(second, t + dt.timedelta(milliseconds=1)))
        assert started.is_set()
        assert results[0][0] == results[1][0]
        assert sorted(created for _, created in results) == [False, True]
        rows = await first.fetch("SELECT id, count FROM alarm WHERE device_id = $1 AND type = 'SOS'", device)
        assert [(r["id"], r["count"]) for r in rows] == [(results[0][0], 2)]
        kinds = await first.fetch(
            "SELECT kind FROM alarm_event WHERE alarm_id = $1 ORDER BY id", results[0][0]
        )
        assert [k["kind"] for k in kinds] == ["raised", "repeated"]
    finally:
        await first.close()
        await second.close()


async def test_a_device_raising_too_many_alarms_is_grouped_flagged_and_its_storm_ends_when_quiet(
    db: AsyncSession, make: Factory
) -> None:
    conn = await driver(db)
    elder = await make.elder()
    noisy = await add_device(conn, elder.id, "water_leak")
    calm = await add_device(conn, elder.id, "smoke")
    await policy_row(conn, "alarm.storm", "*", {"alarms": 4, "minutes": 10}, on=_now())
    tamper = await raise_(conn, "TAMPER", "MINOR", device_id=noisy, elder_id=elder.id)
    await raise_(conn, "TAMPER", "MINOR", device_id=noisy, elder_id=elder.id)  # folds: count 2
    leak = await raise_(conn, "WATER_LEAK", "MAJOR", device_id=noisy, elder_id=elder.id)
    for _ in range(4):  # four messages on the calm device: at the limit, not above it
        await raise_(conn, "SMOKE", "CRITICAL", device_id=calm, elder_id=elder.id)
    first = await group_storms(conn, now=_now())
    assert (first.opened, first.grouped) == (0, 0)  # three messages from the noisy one so far

    # The ingest folds a burst of five messages in one write: one event, the count up by five.
    await conn.execute("UPDATE alarm SET count = count + 5 WHERE id = $1", leak.id)
    result = await group_storms(conn, now=_now())
    assert (result.storming, result.opened, result.grouped) == (1, 1, 2)
    storm = await conn.fetchrow(
        "SELECT id, device_id, peak_events, ended_at, policy FROM alarm_storm WHERE device_id = $1", noisy
    )
    assert storm is not None
    assert (storm["peak_events"], storm["ended_at"]) == (8, None)
    assert storm["policy"].startswith("alarm.storm[*]@")
    for alarm_id in (tamper.id, leak.id):
        assert (await _alarm(conn, alarm_id))["storm_id"] == storm["id"]
        (grouped,) = await conn.fetch(
            "SELECT data::text AS data FROM alarm_event WHERE alarm_id = $1 AND kind = 'grouped'", alarm_id
        )
        assert jsonb(grouped["data"])["storm_id"] == storm["id"]
    assert (
        await conn.fetchval("SELECT count(*) FROM alarm WHERE device_id = $1 AND storm_id IS NOT NULL", calm)
        == 0
    )

    # An alarm raised while the storm is open joins it; grouping twice writes no second event.
    gas = await raise_(conn, "GAS", "CRITICAL", device_id=noisy, elder_id=elder.id)
    again = await group_storms(conn, now=_now())
    assert (again.opened, again.grouped) == (0, 1)
    assert (await _alarm(conn, gas.id))["storm_id"] == storm["id"]
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM alarm_event WHERE kind = 'grouped' AND alarm_id = ANY($1)",
            [tamper.id, leak.id, gas.id],
        )
        == 3
    )

    # A whole window without a storm ends it; the alarms keep their group.
    later = _now() + dt.timedelta(minutes=11)
    quiet = await group_storms(conn, now=later)
    assert (quiet.storming, quiet.ended) == (0, 1)
    assert await conn.fetchval("SELECT ended_at FROM alarm_storm WHERE id = $1", storm["id"]) == later
    assert (await _alarm(conn, tamper.id))["storm_id"] == storm["id"]
