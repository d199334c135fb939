"""Scheduled ingest work: telemetry partitions and retention, rollups, de-dup window, offline and inactivity.

Each job takes an open asyncpg connection and ``now`` (UTC) and owns its short transaction; alarms are
written through the call centre's contract (:func:`callcentre.contract.raise_alarm`). The
scheduler (APScheduler, wired by the lead) decides how often to call them. Suggested cadence:
``maintain_telemetry`` hourly, ``refresh_rollups`` every minute, ``prune_dedup`` every 5 minutes,
``check_offline`` every minute, ``check_inactivity`` every 5 minutes.
"""

from __future__ import annotations

import datetime as dt

import asyncpg
import structlog

from callcentre import seed as callcentre_seed
from callcentre.contract import raise_alarm
from core.clock import local_date
from core.policy import load_policy_conn
from core.scheduler import JobContext, every, schedule
from iot_ingest import storage
from iot_ingest.alarm_policy import load_thresholds
from iot_ingest.models import DeviceKind
from iot_ingest.monitoring.rules import DEFAULT_KEY, daytime_of
from iot_ingest.rules import (
    POLICY_PREFIXES,
    DaySchedule,
    DeviceContext,
    inactivity_alarm,
    offline_alarm,
    thresholds_from,
)

log = structlog.get_logger("iot_ingest.jobs")

DEFAULT_RETENTION_DAYS = 400
DEFAULT_DEDUP_WINDOW = dt.timedelta(hours=6)
ACTIVITY_EVENTS = ("motion", "door_open")
# Devices whose events tell that someone moves about the home.
ACTIVITY_SENSORS = (DeviceKind.MOTION.value, DeviceKind.DOOR.value)


async def maintain_telemetry(
    conn: asyncpg.Connection,
    *,
    now: dt.datetime,
    days_ahead: int = 7,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> dict[str, object]:
    """Create storage ``days_ahead`` days ahead and drop telemetry older than ``retention_days``."""
    store = await storage.make_store(conn)
    today = now.astimezone(dt.UTC).date()
    made = await store.create_ahead(conn, today=today, days_ahead=days_ahead)
    dropped = await store.drop_expired(conn, today=today, retention_days=retention_days)
    log.info("telemetry.maintained", backend=store.backend, created=made, dropped=len(dropped))
    return {"backend": store.backend, "created": made, "dropped": dropped}


async def refresh_rollups(
    conn: asyncpg.Connection, *, now: dt.datetime, lookback: dt.timedelta = dt.timedelta(hours=2)
) -> None:
    """Recompute the minute and hour rollups over the last ``lookback`` (late data included)."""
    store = await storage.make_store(conn)
    await store.refresh_rollups(conn, start=now - lookback, end=now)


async def prune_dedup(
    conn: asyncpg.Connection, *, now: dt.datetime, window: dt.timedelta = DEFAULT_DEDUP_WINDOW
) -> int:
    """Forget de-duplication keys older than the window (seconds-level precision is enough)."""
    return await storage.prune_dedup(conn, older_than=now - window)


async def check_offline(conn: asyncpg.Connection, *, now: dt.datetime) -> int:
    """Raise DEVICE_OFFLINE for devices silent longer than the policy valid on ``now``'s local date
    allows (``alarm.device_offline[mains|battery]``); returns the alarms raised."""
    th = await load_thresholds(conn, local_date(now))
    rows = await conn.fetch(
        """SELECT d.id, d.elder_id, d.kind, d.power, d.last_seen_at,
                  coalesce(e.has_dementia, false) AS dementia
           FROM device d LEFT JOIN elder e ON e.id = d.elder_id
           WHERE d.status = 'active' AND d.last_seen_at IS NOT NULL
             AND d.last_seen_at < $1
             AND NOT EXISTS (SELECT 1 FROM alarm a WHERE a.device_id = d.id AND a.type = 'DEVICE_OFFLINE'
                             AND a.cleared_at IS NULL)""",
        now - dt.timedelta(seconds=min(th.offline_mains_s, th.offline_battery_s)),
    )
    raised = 0
    async with conn.transaction():
        for r in rows:
            ctx = DeviceContext(r["id"], r["elder_id"], r["kind"], r["power"], r["dementia"])
            alarm = offline_alarm(ctx, r["last_seen_at"], now, th)
            if alarm is None:
                continue
            await raise_alarm(conn, alarm)
            await conn.execute("UPDATE device SET online = false WHERE id = $1", r["id"])
            raised += 1
    if raised:
        log.info("alarm.offline_raised", count=raised)
    return raised


# The elders watched for inactivity, with what the rule needs: their own daytime window if they have
# one, else a default for their living situation ($3: the situations the policy has a default for).
# Only elders at home (status active) with an activity sensor that has reported (an active motion or
# door device seen at least once): without one, "no motion" would say nothing about the elder.
# ``sensors_since`` (the earliest such sensor's registration) bounds the count when no event ever came.
_INACTIVITY_SQL = """
SELECT e.id AS elder_id, e.living_situation,
       m.inactivity_hours, m.day_start_minute, m.day_end_minute, m.updated_at,
       s.sensors_since,
       (SELECT max(ev.at) FROM device_event ev JOIN device d ON d.id = ev.device_id
        WHERE d.elder_id = e.id AND ev.type = ANY($1::text[])) AS last_activity
FROM elder e
LEFT JOIN elder_monitoring m ON m.elder_id = e.id
CROSS JOIN LATERAL (
    SELECT min(d.created_at) AS sensors_since FROM device d
    WHERE d.elder_id = e.id AND d.status = 'active' AND d.kind = ANY($2::text[])
      AND d.last_seen_at IS NOT NULL
) s
WHERE e.status = 'active'
  AND (m.day_start_minute IS NOT NULL OR e.living_situation = ANY($3::text[]))
  AND s.sensors_since IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM alarm a WHERE a.elder_id = e.id AND a.type = 'INACTIVITY'
                  AND a.device_id IS NULL AND a.cleared_at IS NULL)
"""


async def check_inactivity(conn: asyncpg.Connection, *, now: dt.datetime) -> int:
    """Raise INACTIVITY for elders without motion or door events for their daytime allowance: their own
    daytime window, or the living-alone default (``alarm.monitoring_default``) valid on the local date
    of ``now``, as is the alarm's severity. Returns the alarms raised."""
    snapshot = await load_policy_conn(
        conn, day=local_date(now), prefixes=POLICY_PREFIXES, defaults=callcentre_seed.POLICY_DEFAULTS
    )
    th = thresholds_from(snapshot)  # the INACTIVITY severity
    defaults: dict[str, tuple[DaySchedule, str]] = {}
    for scope, entry in snapshot.scopes(DEFAULT_KEY).items():
        try:
            defaults[scope] = (daytime_of(entry), entry.ref())
        except (TypeError, ValueError) as e:  # a malformed row stops its default, not the others
            log.error("policy.invalid", key=DEFAULT_KEY, scope=scope, error=str(e))
    rows = await conn.fetch(_INACTIVITY_SQL, list(ACTIVITY_EVENTS), list(ACTIVITY_SENSORS), sorted(defaults))
    raised = 0
    async with conn.transaction():
        for r in rows:
            policy: tuple[str, ...] = ()
            if r["day_start_minute"] is not None:
                schedule = DaySchedule(r["day_start_minute"], r["day_end_minute"], r["inactivity_hours"])
                since = max(r["updated_at"], r["sensors_since"])
            else:
                schedule, ref = defaults[r["living_situation"]]
                since, policy = r["sensors_since"], (ref,)
            alarm = inactivity_alarm(
                elder_id=r["elder_id"],
                last_activity_at=r["last_activity"],
                monitored_since=since,
                schedule=schedule,
                now=now,
                th=th,
                policy=policy,
            )
            if alarm is not None:
                await raise_alarm(conn, alarm)
                raised += 1
    if raised:
        log.info("alarm.inactivity_raised", count=raised)
    return raised


# --- Registration with the platform scheduler ---------------------------------------------------
# The scheduler hands each run an SQLAlchemy session inside one transaction; these jobs speak asyncpg,
# so they use that session's driver connection (their own ``conn.transaction()`` blocks become
# savepoints inside the run's transaction, which the scheduler commits).


async def _driver_connection(ctx: JobContext) -> asyncpg.Connection:
    connection = await ctx.session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    return driver


@schedule.job("ingest.maintain_telemetry", every(hours=1))
async def _maintain_telemetry_job(ctx: JobContext) -> None:
    await maintain_telemetry(await _driver_connection(ctx), now=ctx.now)


@schedule.job("ingest.refresh_rollups", every(minutes=1))
async def _refresh_rollups_job(ctx: JobContext) -> None:
    conn = await _driver_connection(ctx)
    if await storage.detect_backend(conn) != "timescale":
        await refresh_rollups(conn, now=ctx.now)
        return
    # TimescaleDB refuses refresh_continuous_aggregate() inside a transaction block (even a
    # savepoint), and the scheduler's run is one; refresh on a separate autocommit connection
    # while the run's transaction holds the job's advisory lock.
    own = await asyncpg.connect(ctx.settings.asyncpg_dsn)
    try:
        await refresh_rollups(own, now=ctx.now)
    finally:
        await own.close()


@schedule.job("ingest.prune_dedup", every(minutes=5))
async def _prune_dedup_job(ctx: JobContext) -> None:
    await prune_dedup(await _driver_connection(ctx), now=ctx.now)


@schedule.job("ingest.check_offline", every(minutes=1))
async def _check_offline_job(ctx: JobContext) -> None:
    await check_offline(await _driver_connection(ctx), now=ctx.now)


@schedule.job("ingest.check_inactivity", every(minutes=5))
async def _check_inactivity_job(ctx: JobContext) -> None:
    await check_inactivity(await _driver_connection(ctx), now=ctx.now)
