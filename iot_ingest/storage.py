"""Telemetry storage: one interface over two back ends, plus the ingest write paths (asyncpg).

The back end is fixed by migration 0002 (native daily range partitions, or a TimescaleDB hypertable);
:func:`detect_backend` reads which one the database has. Everything the consumer and the jobs need
goes through :class:`TelemetryStore`, so callers never branch on the back end themselves.

All functions take an open asyncpg connection; the caller owns the transaction (``async with
conn.transaction()``), except the maintenance methods, which are single statements. Alarms are the
call centre's table: the priority write embeds its SQL (:func:`callcentre.contract.fold_device_alarms`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import asyncpg

from callcentre.contract import AlarmCandidate, AlarmWrite, details_json, fold_device_alarms

Backend = Literal["partitioned", "timescale"]

TELEMETRY_COLUMNS: Final = ("device_id", "at", "metric", "value", "seq", "unit")
DEAD_LETTER_COLUMNS: Final = ("received_at", "topic", "payload", "reason", "detail")
ROLLUPS: Final = (("telemetry_1m", dt.timedelta(minutes=1)), ("telemetry_1h", dt.timedelta(hours=1)))

_STAGE_DDL: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS ingest_stage_msg "
    "(device_id bigint, msg_key bigint, seen_at timestamptz) ON COMMIT DELETE ROWS"
)
_CLAIM_STAGED: Final = """
    INSERT INTO ingest_dedup (device_id, msg_key, seen_at)
    SELECT DISTINCT ON (device_id, msg_key) device_id, msg_key, seen_at FROM ingest_stage_msg
    ORDER BY device_id, msg_key  -- key order, like the priority write: no deadlock between writers
    ON CONFLICT DO NOTHING
    RETURNING device_id, msg_key
"""

TelemetryRow = tuple[int, dt.datetime, str, float, int | None, str | None]  # unit: SenML's, else None
DeadLetterRow = tuple[dt.datetime, str, bytes, str, str]
MsgKey = tuple[int, int]
# The ``ingest_dedup.device_id`` under which keys of dead-lettered messages are claimed (no device
# has id 0), so that a rejected event arriving through both MQTT sessions is stored once.
DEAD_LETTER_DEVICE: Final = 0


async def detect_backend(conn: asyncpg.Connection) -> Backend:
    """Which back end migration 0002 created: a hypertable, or a natively partitioned table."""
    is_hypertable = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
           AND to_regclass('timescaledb_information.hypertables') IS NOT NULL"""
    )
    if is_hypertable:
        found = await conn.fetchval(
            "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'telemetry'"
        )
        if found:
            return "timescale"
    return "partitioned"


class TelemetryStore(Protocol):
    """Back-end specific maintenance; the write path (COPY into ``telemetry``) is shared."""

    backend: Backend

    async def ensure_days(self, conn: asyncpg.Connection, days: Iterable[dt.date]) -> None:
        """Make sure rows dated on these UTC days can be inserted."""

    async def create_ahead(self, conn: asyncpg.Connection, *, today: dt.date, days_ahead: int) -> int:
        """Create storage for the coming days; returns how many partitions were created."""

    async def drop_expired(
        self, conn: asyncpg.Connection, *, today: dt.date, retention_days: int
    ) -> list[str]:
        """Drop telemetry older than the retention; returns the partitions dropped."""

    async def refresh_rollups(
        self, conn: asyncpg.Connection, *, start: dt.datetime, end: dt.datetime
    ) -> None:
        """Bring the per-minute and per-hour rollups up to date for [start, end)."""


@dataclass
class PartitionedStore:
    """Native PostgreSQL range partitions, one per UTC day, named ``telemetry_pYYYYMMDD``."""

    backend: Backend = "partitioned"

    def __post_init__(self) -> None:
        self._known: set[dt.date] = set()

    async def ensure_days(self, conn: asyncpg.Connection, days: Iterable[dt.date]) -> None:
        missing = sorted(set(days) - self._known)
        if not missing:
            return
        await conn.execute("SELECT ensure_telemetry_partitions($1, $2)", missing[0], missing[-1])
        self._known.update(
            missing[0] + dt.timedelta(days=i) for i in range((missing[-1] - missing[0]).days + 1)
        )

    async def create_ahead(self, conn: asyncpg.Connection, *, today: dt.date, days_ahead: int) -> int:
        made = await conn.fetchval(
            "SELECT ensure_telemetry_partitions($1, $2)", today, today + dt.timedelta(days=days_ahead)
        )
        return int(made)

    async def drop_expired(
        self, conn: asyncpg.Connection, *, today: dt.date, retention_days: int
    ) -> list[str]:
        cutoff = today - dt.timedelta(days=retention_days)
        names = await conn.fetch(
            """SELECT c.relname FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'telemetry'::regclass AND c.relname ~ '^telemetry_p[0-9]{8}$'"""
        )
        dropped: list[str] = []
        for (name,) in names:
            day = dt.datetime.strptime(name[len("telemetry_p") :], "%Y%m%d").date()  # noqa: DTZ007 - a date
            if day < cutoff:
                # Detach first so concurrent inserts into current partitions never wait on the drop.
                await conn.execute(f'ALTER TABLE telemetry DETACH PARTITION "{name}"')
                await conn.execute(f'DROP TABLE "{name}"')
                self._known.discard(day)
                dropped.append(name)
        return sorted(dropped)

    async def refresh_rollups(
        self, conn: asyncpg.Connection, *, start: dt.datetime, end: dt.datetime
    ) -> None:
        for table, width in ROLLUPS:
            lo, hi = _align(start, width), _align(end, width)
            if hi <= lo:
                continue
            # Whole buckets are recomputed, so re-running for the same window is idempotent.
            await conn.execute(
                f"""INSERT INTO {table} (device_id, metric, bucket, n, sum, min, max)
                    SELECT device_id, metric, date_bin($3::interval, at, TIMESTAMPTZ '2000-01-01'),
                           count(*), sum(value), min(value), max(value)
                    FROM telemetry WHERE at >= $1 AND at < $2
                    GROUP BY 1, 2, 3
                    ON CONFLICT (device_id, metric, bucket) DO UPDATE
                    SET n = excluded.n, sum = excluded.sum, min = excluded.min, max = excluded.max""",  # noqa: S608
                lo,
                hi,
                width,
            )


@dataclass
class TimescaleStore:
    """TimescaleDB hypertable: chunks, compression, retention and continuous aggregates are policies."""

    backend: Backend = "timescale"

    async def ensure_days(self, conn: asyncpg.Connection, days: Iterable[dt.date]) -> None:
        return None  # chunks are created on insert

    async def create_ahead(self, conn: asyncpg.Connection, *, today: dt.date, days_ahead: int) -> int:
        return 0

    async def drop_expired(
        self, conn: asyncpg.Connection, *, today: dt.date, retention_days: int
    ) -> list[str]:
        # The retention policy added by the migration runs inside TimescaleDB's job scheduler; an
        # explicit call keeps this job meaningful if the policy was removed or a shorter one is wanted.
        rows = await conn.fetch(
            "SELECT drop_chunks('telemetry', older_than => $1::interval)",
            dt.timedelta(days=retention_days),
        )
        return [str(r[0]) for r in rows]

    async def refresh_rollups(
        self, conn: asyncpg.Connection, *, start: dt.datetime, end: dt.datetime
    ) -> None:
        for table, _width in ROLLUPS:
            await conn.execute(
                f"CALL refresh_continuous_aggregate('{table}', $1::timestamptz, $2::timestamptz)", start, end
            )


async def make_store(conn: asyncpg.Connection) -> TelemetryStore:
    return TimescaleStore() if await detect_backend(conn) == "timescale" else PartitionedStore()


def _align(t: dt.datetime, width: dt.timedelta) -> dt.datetime:
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    return epoch + ((t - epoch) // width) * width


# --- Write paths -----------------------------------------------------------------------------------


async def prepare_connection(conn: asyncpg.Connection) -> None:
    """Per-connection setup for the batch writer (temp staging table for de-duplication keys)."""
    await conn.execute(_STAGE_DDL)


async def claim_keys_copy(
    conn: asyncpg.Connection, keys: Sequence[tuple[int, int, dt.datetime]]
) -> set[MsgKey]:
    """Record message keys via COPY; returns the keys not seen before (the ones to store).

    Call it once per transaction: the staging table empties itself at commit (``ON COMMIT DELETE
    ROWS``), which is also why it cannot work outside one.
    """
    if not keys:
        return set()
    if not conn.is_in_transaction():
        raise RuntimeError("claim_keys_copy needs a transaction (its staging table empties at commit)")
    await conn.copy_records_to_table("ingest_stage_msg", records=keys)
    rows = await conn.fetch(_CLAIM_STAGED)
    return {(r[0], r[1]) for r in rows}


async def copy_telemetry(conn: asyncpg.Connection, rows: Sequence[TelemetryRow]) -> None:
    if rows:
        await conn.copy_records_to_table("telemetry", records=rows, columns=TELEMETRY_COLUMNS)


async def copy_dead_letters(conn: asyncpg.Connection, rows: Sequence[DeadLetterRow]) -> None:
    if rows:
        await conn.copy_records_to_table("dead_letter", records=rows, columns=DEAD_LETTER_COLUMNS)


async def touch_devices(conn: asyncpg.Connection, last_seen: dict[int, dt.datetime]) -> None:
    """Advance ``last_seen_at`` (and mark online) for many devices; rows are updated in id order."""
    if not last_seen:
        return
    ids = sorted(last_seen)
    await conn.execute(
        """UPDATE device d SET last_seen_at = GREATEST(d.last_seen_at, v.at), online = true
           FROM unnest($1::bigint[], $2::timestamptz[]) AS v(id, at)
           WHERE d.id = v.id AND (d.last_seen_at IS NULL OR d.last_seen_at < v.at OR d.online IS NOT TRUE)""",
        ids,
        [last_seen[i] for i in ids],
    )


async def touch_gateways(conn: asyncpg.Connection, last_seen: dict[str, dt.datetime]) -> None:
    if not last_seen:
        return
    uids = sorted(last_seen)
    await conn.execute(
        """UPDATE gateway g SET last_seen_at = GREATEST(g.last_seen_at, v.at)
           FROM unnest($1::text[], $2::timestamptz[]) AS v(uid, at) WHERE g.uid = v.uid""",
        uids,
        [last_seen[u] for u in uids],
    )


# --- The priority write: one statement ---------------------------------------------------------------

# The alarms of the claimed messages, written by the call centre's SQL (the alarm table's one writer).
_PRIORITY_ALARMS: Final = fold_device_alarms(
    """unnest($21::bigint[], $22::bigint[], $23::text[], $24::text[], $25::bigint[],
                $26::timestamptz[], $27::jsonb[], $28::int[]) AS x(d, k, t, sev, elder, at, details, ord)
    JOIN claimed c ON c.device_id = x.d AND c.msg_key = x.k"""
)
_PRIORITY_WRITE: Final = f"""
WITH claimed AS (
    INSERT INTO ingest_dedup (device_id, msg_key, seen_at)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[]) AS m(d, k, seen)
    ORDER BY d, k  -- every writer claims in key order: overlapping claims wait, never deadlock
    ON CONFLICT DO NOTHING
    RETURNING device_id, msg_key
), ev AS (
    INSERT INTO device_event (device_id, at, type, data, seq)
    SELECT e.d, e.at, e.t, e.data, e.seq
    FROM unnest($4::bigint[], $5::bigint[], $6::timestamptz[], $7::text[], $8::jsonb[], $9::bigint[])
         AS e(d, k, at, t, data, seq)
    JOIN claimed c ON c.device_id = e.d AND c.msg_key = e.k
), tl AS (
    INSERT INTO telemetry (device_id, at, metric, value, seq, unit)
    SELECT r.d, r.at, r.metric, r.value, r.seq, r.unit
    FROM unnest($10::bigint[], $11::bigint[], $12::timestamptz[], $13::text[], $14::float8[], $15::bigint[],
                $29::text[])
         AS r(d, k, at, metric, value, seq, unit)
    JOIN claimed c ON c.device_id = r.d AND c.msg_key = r.k
), av AS (
    UPDATE device dv SET online = a.online, last_seen_at = GREATEST(dv.last_seen_at, a.at)
    FROM (
        SELECT DISTINCT ON (a.d) a.d, a.online, a.at
        FROM unnest($16::bigint[], $17::bigint[], $18::bool[], $19::timestamptz[], $20::int[])
             AS a(d, k, online, at, ord)
        JOIN claimed c ON c.device_id = a.d AND c.msg_key = a.k
        ORDER BY a.d, a.ord DESC
    ) a
    WHERE dv.id = a.d
), al AS (
    {_PRIORITY_ALARMS}
)
SELECT (SELECT array_agg(ARRAY[device_id, msg_key]) FROM claimed) AS claimed,
       (SELECT array_agg(ARRAY[id, created::int, count]) FROM al) AS alarms
"""  # noqa: S608 - constants only


@dataclass(slots=True)
class PriorityBatch:
    """Rows of one priority write, each tagged with its message's (device id, key): only the rows
    of messages whose key is claimed (not seen before) are stored. Every key must occur once."""

    keys: list[tuple[int, int, dt.datetime]] = field(default_factory=list)  # device, key, seen at
    events: list[tuple[int, int, dt.datetime, str, dict[str, Any], int | None]] = field(default_factory=list)
    # device, key, at, metric, value, seq, unit
    readings: list[tuple[int, int, dt.datetime, str, float, int | None, str | None]] = field(
        default_factory=list
    )
    availability: list[tuple[int, int, bool, dt.datetime]] = field(default_factory=list)
    alarms: list[tuple[int, AlarmCandidate]] = field(default_factory=list)  # key, device alarm


async def write_priority(
    conn: asyncpg.Connection, batch: PriorityBatch
) -> tuple[set[MsgKey], list[AlarmWrite]]:
    """Store a priority batch in one statement (so in one round trip, its own transaction):
    claim the keys, then insert the events and readings, set availability (the last change per
    device wins) and raise or count the alarms of the claimed messages only. Alarms of one
    (device, type) are folded into one row first (``count`` adds up), as one INSERT may touch a row
    once; rows are locked in (device, type) order. Returns the claimed keys and the alarm writes.
    """
    ev, rd, av = batch.events, batch.readings, batch.availability
    al = batch.alarms
    for _, a in al:
        if a.device_id is None:  # the ingest's rules always name the device
            raise ValueError(f"a device alarm without a device: {a.type}")
    row = await conn.fetchrow(
        _PRIORITY_WRITE,
        [k[0] for k in batch.keys],
        [k[1] for k in batch.keys],
        [k[2] for k in batch.keys],
        [e[0] for e in ev],
        [e[1] for e in ev],
        [e[2] for e in ev],
        [e[3] for e in ev],
        [json.dumps(e[4], default=str) for e in ev],
        [e[5] for e in ev],
        [r[0] for r in rd],
        [r[1] for r in rd],
        [r[2] for r in rd],
        [r[3] for r in rd],
        [r[4] for r in rd],
        [r[5] for r in rd],
        [a[0] for a in av],
        [a[1] for a in av],
        [a[2] for a in av],
        [a[3] for a in av],
        list(range(len(av))),
        [a.device_id for _, a in al],
        [k for k, _ in al],
        [a.type for _, a in al],
        [a.severity for _, a in al],
        [a.elder_id for _, a in al],
        [a.at for _, a in al],
        [details_json(a.details) for _, a in al],
        list(range(len(al))),
        [r[6] for r in rd],
    )
    assert row is not None
    claimed = {(int(d), int(k)) for d, k in row["claimed"] or ()}
    writes = [AlarmWrite(int(i), bool(c), int(n)) for i, c, n in row["alarms"] or ()]
    return claimed, writes


async def prune_dedup(conn: asyncpg.Connection, *, older_than: dt.datetime) -> int:
    """Forget message keys seen before ``older_than`` (end of the de-duplication window)."""
    status = await conn.execute("DELETE FROM ingest_dedup WHERE seen_at < $1", older_than)
    return int(status.split()[-1])
