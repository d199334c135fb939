"""The call centre's service-level figures (DOMAIN §7, issue #11): for the alarms received in a
period, the shares acknowledged within 60 s and within 180 s against their targets (dated policy
``alarm.ack_sla``: ``within_60s_bp``, ``within_180s_bp``), the median and 90th percentile of the time
to acknowledge (acknowledged − received) and to clear (cleared − received), the false-alarm share,
overall and by operator, by alarm type and by district.

One statement (``percentile_cont`` and ``GROUPING SETS``) gives the counts and percentiles of every
group; :func:`figures` turns a group's counts into shares (pure, basis points rounded half-up).

Which alarms count for a target of N seconds: those acknowledged, and those whose N seconds passed
unanswered while they were active (an alarm 20 s old is not yet a miss, nor is a technical alarm that
cleared itself within N seconds before anyone answered it); met are those acknowledged within N
seconds (exactly N included). An operator sees the figures of the alarms they acknowledged; the other
readers those of their districts (city-wide when unscoped).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from callcentre import seed
from callcentre.alarms import raw_connection
from callcentre.lifecycle import Action as LifecycleAction
from callcentre.lifecycle import Outcome, check_role
from callcentre.schemas import DistrictFigures, Figures, Kpis, OperatorFigures, Share, TypeFigures
from core.clock import local_date
from core.errors import Invalid
from core.identity.authz import Principal
from core.identity.models import Role
from core.policy import load_policy
from registry.scope import by_district, sees_all_elders

SLA_KEY: Final = "alarm.ack_sla"
LONGEST: Final = dt.timedelta(days=400)
BP: Final = 10_000

_SQL: Final = """WITH a AS (
    SELECT coalesce(a.first_acknowledged_by, a.acknowledged_by) AS operator_id, a.type, a.district_id,
           a.outcome, a.cleared_at IS NOT NULL AS cleared,
           EXTRACT(EPOCH FROM coalesce(a.first_acknowledged_at, a.acknowledged_at) - a.received_at)::float8
               AS ack_s,
           EXTRACT(EPOCH FROM a.cleared_at - a.received_at)::float8 AS clear_s,
           EXTRACT(EPOCH FROM coalesce(a.cleared_at, $3) - a.received_at)::float8 AS active_s
    FROM alarm a
    WHERE a.received_at >= $1 AND a.received_at < $2
      AND ($4::int[] IS NULL OR a.district_id = ANY($4::int[]))
      AND ($5::bigint IS NULL OR coalesce(a.first_acknowledged_by, a.acknowledged_by) = $5::bigint)
), g AS (
    SELECT GROUPING(operator_id, type, district_id) AS grouping, operator_id, type, district_id,
           count(*) AS alarms,
           count(ack_s) AS acknowledged,
           count(*) FILTER (WHERE cleared) AS cleared,
           count(*) FILTER (WHERE ack_s <= 60) AS met_60,
           count(*) FILTER (WHERE ack_s IS NOT NULL OR active_s >= 60) AS counted_60,
           count(*) FILTER (WHERE ack_s <= 180) AS met_180,
           count(*) FILTER (WHERE ack_s IS NOT NULL OR active_s >= 180) AS counted_180,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ack_s) AS ack_p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY ack_s) AS ack_p90,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY clear_s) AS clear_p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY clear_s) AS clear_p90,
           count(*) FILTER (WHERE cleared AND outcome = $6) AS false_alarms,
           count(*) FILTER (WHERE cleared AND outcome IS NOT NULL) AS with_outcome
    FROM a
    GROUP BY GROUPING SETS ((), (operator_id), (type), (district_id))
)
SELECT g.*, u.display_name AS operator_name, d.name AS district_name
FROM g LEFT JOIN app_user u ON u.id = g.operator_id LEFT JOIN district d ON d.id = g.district_id
ORDER BY g.grouping DESC, g.operator_id NULLS LAST, g.type NULLS LAST, g.district_id NULLS LAST"""

# GROUPING(operator_id, type, district_id) of each grouping set: a bit per column left out.
_OVERALL, _BY_OPERATOR, _BY_TYPE, _BY_DISTRICT = 0b111, 0b011, 0b101, 0b110


@dataclass(frozen=True, slots=True)
class Targets:
    """Acknowledgement targets in basis points (policy ``alarm.ack_sla`` of the period's last day)."""

    within_60s_bp: int
    within_180s_bp: int


def share_bp(part: int, whole: int) -> int | None:
    """``part / whole`` in basis points, rounded half-up; ``None`` when ``whole`` is 0."""
    if whole <= 0:
        return None
    return (2 * part * BP + whole) // (2 * whole)


def share(met: int, counted: int, target_bp: int) -> Share:
    value = share_bp(met, counted)
    return Share(
        met=met,
        counted=counted,
        share_bp=value,
        target_bp=target_bp,
        meets_target=None if value is None else value >= target_bp,
    )


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def figures(row: Mapping[str, Any], targets: Targets) -> Figures:
    """A group's figures from its counts and percentiles (a row of the statement)."""
    return Figures(
        alarms=row["alarms"],
        acknowledged=row["acknowledged"],
        cleared=row["cleared"],
        ack_within_60s=share(row["met_60"], row["counted_60"], targets.within_60s_bp),
        ack_within_180s=share(row["met_180"], row["counted_180"], targets.within_180s_bp),
        ack_median_s=_seconds(row["ack_p50"]),
        ack_p90_s=_seconds(row["ack_p90"]),
        clear_median_s=_seconds(row["clear_p50"]),
        clear_p90_s=_seconds(row["clear_p90"]),
        false_alarms=row["false_alarms"],
        false_alarm_share_bp=share_bp(row["false_alarms"], row["with_outcome"]),
    )


_EMPTY: Final = {
    "alarms": 0,
    "acknowledged": 0,
    "cleared": 0,
    "met_60": 0,
    "counted_60": 0,
    "met_180": 0,
    "counted_180": 0,
    "ack_p50": None,
    "ack_p90": None,
    "clear_p50": None,
    "clear_p90": None,
    "false_alarms": 0,
    "with_outcome": 0,
}


def check_period(start: dt.datetime, end: dt.datetime) -> None:
    """``[start, end)``: aware instants, start before end, at most :data:`LONGEST` apart."""
    for name, value in (("from", start), ("to", end)):
        if value.utcoffset() is None:
            raise Invalid(f"{name} needs a time zone.", code="time.timezone_required", field=name)
    if start >= end:
        raise Invalid("from must be before to.", code="kpis.range_invalid", field="from")
    if end - start > LONGEST:
        raise Invalid(
            f"The period may span at most {LONGEST.days} days.", code="kpis.range_too_long", field="from"
        )


async def load_targets(session: AsyncSession, day: dt.date) -> Targets:
    snapshot = await load_policy(session, day=day, prefixes=(SLA_KEY,), defaults=seed.POLICY_DEFAULTS)
    entry = snapshot.entry(SLA_KEY)
    return Targets(round(entry.number("within_60s_bp")), round(entry.number("within_180s_bp")))


async def kpis(
    session: AsyncSession, principal: Principal, *, start: dt.datetime, end: dt.datetime, now: dt.datetime
) -> Kpis:
    """The figures of the alarms received in ``[start, end)`` that the principal may read:
    supervisors, admins and civil-affairs officers those of their districts (city-wide when
    unscoped); an operator those they acknowledged (``scope`` ``own``)."""
    check_role(principal, LifecycleAction.VIEW)
    check_period(start, end)
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    own = principal.role == Role.OPERATOR
    districts: list[int] | None = None
    if by_district(principal):
        districts = sorted(principal.district_ids)
    elif not sees_all_elders(principal):
        districts = []
    targets = await load_targets(session, local_date(min(end - dt.timedelta(microseconds=1), now)))
    conn = await raw_connection(session)
    rows = (
        await conn.fetch(
            _SQL,
            start,
            end,
            now,
            districts,
            principal.user_id if own else None,
            Outcome.FALSE_ALARM.value,
        )
        if districts != []
        else []
    )
    overall = next((r for r in rows if r["grouping"] == _OVERALL), _EMPTY)
    return Kpis(
        start=start,
        end=end,
        scope="own" if own else "all",
        overall=figures(overall, targets),
        by_operator=[
            OperatorFigures(r["operator_id"], r["operator_name"], figures(r, targets))
            for r in rows
            if r["grouping"] == _BY_OPERATOR
        ],
        by_type=[TypeFigures(r["type"], figures(r, targets)) for r in rows if r["grouping"] == _BY_TYPE],
        by_district=[
            DistrictFigures(r["district_id"], r["district_name"], figures(r, targets))
            for r in rows
            if r["grouping"] == _BY_DISTRICT
        ],
    )
