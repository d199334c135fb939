"""Chart reads over telemetry: bucketed vitals of an elder and the raw history of one device.

Vitals are ``date_bin`` buckets (origin 2000-01-01 UTC, the rollups' grid) with count, mean, min and
max. When the bucket is a whole number of minutes or hours, the buckets older than the rollups' lag
come from ``telemetry_1m``/``telemetry_1h`` (plain tables kept by a job, or TimescaleDB continuous
aggregates) and only the recent tail is aggregated from raw ``telemetry``; count, sum, min and max
merge exactly, so the answer is the same either way. The rollups are assumed complete for data older
than their lag (the refresh job recomputes a 2-hour lookback; older backfills need a manual refresh).

The pure helpers (:func:`parse_bucket`, :func:`check_window`, :func:`plan_source`) take ``now`` and
raise :class:`core.errors.Invalid` with stable codes; the two reads apply the registry's scoping.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Invalid
from core.identity.authz import Principal
from iot_ingest.inventory import get_device
from iot_ingest.models import Device
from registry.service.elders import visible_elder

ORIGIN: Final = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
# Vital-sign metrics and their canonical units (iot_ingest.normalise.METRIC_RANGES).
VITAL_UNITS: Final[Mapping[str, str]] = {
    "hr": "bpm",
    "spo2": "%",
    "body_temp": "°C",
    "bp_sys": "mmHg",
    "bp_dia": "mmHg",
    "resp_rate": "breaths/min",
}
MIN_BUCKET: Final = dt.timedelta(seconds=10)
MAX_BUCKET: Final = dt.timedelta(days=7)
MAX_BUCKETS: Final = 2000
MAX_RANGE: Final = dt.timedelta(days=400)  # the default telemetry retention
DEFAULT_VITALS_RANGE: Final = dt.timedelta(hours=24)
DEFAULT_HISTORY_RANGE: Final = dt.timedelta(days=7)
MAX_HISTORY_RANGE: Final = dt.timedelta(days=31)
# (table, width, lag): buckets that ended more than ``lag`` ago are in the rollup table.
ROLLUPS: Final = (
    ("telemetry_1h", dt.timedelta(hours=1), dt.timedelta(hours=2)),
    ("telemetry_1m", dt.timedelta(minutes=1), dt.timedelta(minutes=5)),
)

_BUCKET = re.compile(r"^([1-9][0-9]{0,5})(s|m|h|d)$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_bucket(value: str) -> dt.timedelta:
    """``30s``, ``5m``, ``1h``, ``1d`` → a width between 10 seconds and 7 days."""
    m = _BUCKET.match(value)
    if m is None:
        raise Invalid(
            f"bucket {value!r} is not a width like 30s, 5m, 1h or 1d.",
            code="vitals.bucket_invalid",
            field="bucket",
        )
    width = dt.timedelta(seconds=int(m[1]) * _UNIT_SECONDS[m[2]])
    if not MIN_BUCKET <= width <= MAX_BUCKET:
        raise Invalid(
            f"bucket must be between 10s and 7d, not {value}.",
            code="vitals.bucket_out_of_range",
            field="bucket",
        )
    return width


def check_window(
    start: dt.datetime | None,
    end: dt.datetime | None,
    *,
    now: dt.datetime,
    default: dt.timedelta,
    longest: dt.timedelta,
    prefix: str,
) -> tuple[dt.datetime, dt.datetime]:
    """``[from, to)`` with defaults (``to`` = now, ``from`` = to - default); aware times only."""
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.utcoffset() is None:
            raise Invalid(
                f"{name} needs a time zone (e.g. 2026-11-20T08:00:00+08:00 or ...Z).",
                code="time.timezone_required",
                field=name,
            )
    end = (end or now).astimezone(dt.UTC)
    start = (start or end - default).astimezone(dt.UTC)
    if start >= end:
        raise Invalid("from must be before to.", code=f"{prefix}.range_invalid", field="from")
    if end - start > longest:
        raise Invalid(
            f"The range may span at most {longest.days} days.", code=f"{prefix}.range_too_long", field="from"
        )
    return start, end


def _floor(t: dt.datetime, width: dt.timedelta) -> dt.datetime:
    return ORIGIN + ((t - ORIGIN) // width) * width


@dataclass(frozen=True, slots=True)
class SourcePlan:
    """Buckets in ``[start, end)``; rows before ``rollup_until`` come from ``table`` (None: all raw)."""

    start: dt.datetime
    end: dt.datetime
    table: str | None
    rollup_until: dt.datetime | None


def plan_source(
    start: dt.datetime, end: dt.datetime, bucket: dt.timedelta, *, now: dt.datetime
) -> SourcePlan:
    """Snap the range to whole buckets and pick the coarsest rollup whose width divides the bucket."""
    start = _floor(start, bucket)
    end = _floor(end, bucket) + (bucket if _floor(end, bucket) < end else dt.timedelta(0))
    if (end - start) // bucket > MAX_BUCKETS:
        raise Invalid(
            f"That range holds more than {MAX_BUCKETS} buckets; choose a wider bucket.",
            code="vitals.too_many_buckets",
            field="bucket",
        )
    for table, width, lag in ROLLUPS:
        if bucket % width:
            continue
        until = min(_floor(now - lag, width), end)
        if until > start:
            return SourcePlan(start, end, table, until)
    return SourcePlan(start, end, None, None)


@dataclass(frozen=True, slots=True)
class Bucket:
    at: dt.datetime
    avg: float
    min: float
    max: float
    count: int


@dataclass(frozen=True, slots=True)
class Vitals:
    elder_id: int
    metric: str
    unit: str
    bucket: dt.timedelta
    plan: SourcePlan
    points: list[Bucket]


_RAW_PART: Final = """
    SELECT date_bin(CAST(:bucket AS interval), t.at, CAST(:origin AS timestamptz)) AS b,
           count(*) AS n, sum(t.value) AS s,
           min(t.value) AS lo, max(t.value) AS hi
    FROM telemetry t
    WHERE t.device_id IN (SELECT id FROM device WHERE elder_id = :elder_id)
      AND t.metric = :metric AND t.at >= :raw_from AND t.at < :end
    GROUP BY 1
"""
_ROLLUP_PART: Final = """
    SELECT date_bin(CAST(:bucket AS interval), r.bucket, CAST(:origin AS timestamptz)) AS b,
           sum(r.n) AS n, sum(r.sum) AS s,
           min(r.min) AS lo, max(r.max) AS hi
    FROM {table} r
    WHERE r.device_id IN (SELECT id FROM device WHERE elder_id = :elder_id)
      AND r.metric = :metric AND r.bucket >= :start AND r.bucket < :rollup_until
    GROUP BY 1
"""


async def elder_vitals(
    *,
    session: AsyncSession,
    actor: Principal,
    elder_id: int,
    metric: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    bucket: str,
    now: dt.datetime,
) -> Vitals:
    """Bucketed readings of one vital metric from every device of the elder (scoped like the elder
    record: 404 when the actor may not see the elder). Values are in the metric's unit."""
    if metric not in VITAL_UNITS:
        raise Invalid(
            f"metric must be one of {', '.join(VITAL_UNITS)}.", code="vitals.metric_unknown", field="metric"
        )
    width = parse_bucket(bucket)
    lo, hi = check_window(
        start, end, now=now, default=DEFAULT_VITALS_RANGE, longest=MAX_RANGE, prefix="vitals"
    )
    plan = plan_source(lo, hi, width, now=now)
    await visible_elder(session, actor, elder_id)
    params: dict[str, Any] = {
        "bucket": width,
        "origin": ORIGIN,
        "elder_id": elder_id,
        "metric": metric,
        "start": plan.start,
        "end": plan.end,
        "raw_from": plan.rollup_until or plan.start,
        "rollup_until": plan.rollup_until,
    }
    parts = [_RAW_PART]
    if plan.table is not None:
        parts.append(_ROLLUP_PART.format(table=plan.table))
    sql = f"""SELECT b, sum(n)::bigint AS n, sum(s) / sum(n)::float8 AS avg, min(lo) AS lo, max(hi) AS hi
              FROM ({" UNION ALL ".join(parts)}) parts GROUP BY b ORDER BY b"""  # noqa: S608 - constants
    rows = (await session.execute(text(sql), params)).all()
    points = [Bucket(r.b, float(r.avg), float(r.lo), float(r.hi), int(r.n)) for r in rows]
    return Vitals(elder_id, metric, VITAL_UNITS[metric], width, plan, points)


@dataclass(frozen=True, slots=True)
class HistoryRow:
    at: dt.datetime
    kind: str
    seq: int | None
    metric: str | None
    value: float | None
    unit: str | None
    type: str | None
    data: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class History:
    device_id: int
    start: dt.datetime
    end: dt.datetime
    limit: int
    truncated: bool
    rows: list[HistoryRow]


_HISTORY: Final = """
    (SELECT t.at, 'telemetry' AS kind, t.seq, t.metric, t.value, t.unit, NULL::text AS type,
            NULL::jsonb AS data
     FROM telemetry t WHERE t.device_id = :device_id AND t.at >= :start AND t.at < :end
     ORDER BY t.at DESC LIMIT :take)
    UNION ALL
    (SELECT e.at, 'event', e.seq, NULL, NULL, NULL, e.type, e.data
     FROM device_event e WHERE e.device_id = :device_id AND e.at >= :start AND e.at < :end
     ORDER BY e.at DESC LIMIT :take)
    ORDER BY at DESC, kind, metric, type LIMIT :take
"""


async def device_history(
    *,
    session: AsyncSession,
    actor: Principal,
    device_id: int,
    start: dt.datetime | None,
    end: dt.datetime | None,
    limit: int,
    now: dt.datetime,
) -> History:
    """Raw readings and events of one device in ``[from, to)``, newest first, at most ``limit``
    (scoped like the device record: 404 when the actor may not see it)."""
    lo, hi = check_window(
        start, end, now=now, default=DEFAULT_HISTORY_RANGE, longest=MAX_HISTORY_RANGE, prefix="history"
    )
    device: Device = await get_device(session=session, actor=actor, device_id=device_id)
    rows = (
        await session.execute(
            text(_HISTORY), {"device_id": device.id, "start": lo, "end": hi, "take": limit + 1}
        )
    ).all()
    items = [HistoryRow(r.at, r.kind, r.seq, r.metric, r.value, r.unit, r.type, r.data) for r in rows[:limit]]
    return History(device.id, lo, hi, limit, len(rows) > limit, items)
