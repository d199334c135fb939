"""The escalation auditor and its heartbeat (issue #11): every active alarm has a valid next step, or a
documented reason to have none, and someone can tell from outside that this is being checked.

Each run checks every active alarm with :func:`callcentre.escalation.audit` — its chain frozen within
the grace period of its raise, readable, at a position the chain has, and its next look timed and not
more than the grace period overdue; *no* next step is fine only for an alarm acknowledged under a chain
that never requeues, or one whose chain has run out and never requeues — and checks that the runner
itself has beaten within the grace period (policy ``callcentre.escalation_audit``). Problems are
logged (``escalation.audit_problem``) and written, with the run, to the ``auditor`` row of
``escalation_heartbeat``, which the runner also beats into (``runner``).

The scheduler writes the heartbeats; the API exports them on ``/metrics`` (:func:`export_metrics`,
listed in the composition root), so a stopped scheduler shows as a beat growing old:

* ``eldercare_escalation_heartbeat_timestamp_seconds{job}`` — the last beat (Unix seconds);
* ``eldercare_escalation_alarms{job}`` — alarms the runner worked / the auditor checked in its last run;
* ``eldercare_escalation_problems{job}`` — alarms that failed (runner) / problems found (auditor);
* ``eldercare_escalation_audit_problems{problem}`` — the auditor's last findings by kind.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import structlog
from prometheus_client import Gauge
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callcentre import seed as callcentre_seed
from callcentre.escalation import AUDIT_KEY, POLICY_PREFIXES, AuditedAlarm, Position, Problem, audit
from callcentre.escalation_runner import HEARTBEAT_JOB as RUNNER_JOB
from callcentre.models import EscalationHeartbeat
from core.clock import local_date
from core.policy import load_policy_conn

log = structlog.get_logger("callcentre.escalation_audit")

AUDITOR_JOB: Final = "auditor"
RUNNER_STALE: Final = "runner_stale"  # not an alarm's problem: the runner has not beaten in time
EXAMPLES: Final = 20  # alarms named per run in the heartbeat's details

_ACTIVE: Final = """
SELECT id, received_at, escalation_chain::text AS chain, escalation_cycle, escalation_round,
       escalation_step, escalation_due_at, acknowledged_at
FROM alarm WHERE cleared_at IS NULL ORDER BY id"""

_BEAT: Final = """INSERT INTO escalation_heartbeat (job, beat_at, alarms, problems, details)
VALUES ($1, $2, $3, $4, $5::jsonb)
ON CONFLICT (job) DO UPDATE SET beat_at = excluded.beat_at, alarms = excluded.alarms,
    problems = excluded.problems, details = excluded.details"""


@dataclass(frozen=True, slots=True)
class AuditReport:
    checked: int
    problems: dict[str, int]  # by kind, including runner_stale
    examples: list[dict[str, Any]]  # [{"alarm_id", "problem"}], the first few

    @property
    def total(self) -> int:
        return sum(self.problems.values())


async def audit_escalations(conn: asyncpg.Connection, *, now: dt.datetime) -> AuditReport:
    """Check every active alarm's escalation and the runner's heartbeat; log and record what is wrong
    (the ``auditor`` heartbeat). The caller owns the transaction."""
    snapshot = await load_policy_conn(
        conn, day=local_date(now), prefixes=POLICY_PREFIXES, defaults=callcentre_seed.SEED.policies
    )
    grace = dt.timedelta(seconds=snapshot.number(AUDIT_KEY, "grace_s"))
    found: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    rows = await conn.fetch(_ACTIVE)
    for r in rows:
        problem = audit(
            AuditedAlarm(
                id=r["id"],
                received_at=r["received_at"],
                chain=json.loads(r["chain"]) if r["chain"] is not None else None,
                position=Position(r["escalation_cycle"], r["escalation_round"], r["escalation_step"]),
                due_at=r["escalation_due_at"],
                acknowledged_at=r["acknowledged_at"],
            ),
            now=now,
            grace=grace,
        )
        if problem is not None:
            found[problem.value] += 1
            if len(examples) < EXAMPLES:
                examples.append({"alarm_id": r["id"], "problem": problem.value})
    runner_beat = await conn.fetchval("SELECT beat_at FROM escalation_heartbeat WHERE job = $1", RUNNER_JOB)
    # Only a runner that should have beaten by now is stale: with nothing active it still beats, so
    # a missing or old beat means no runner is working.
    if rows and (runner_beat is None or runner_beat + grace < now):
        found[RUNNER_STALE] += 1
    report = AuditReport(len(rows), dict(found), examples)
    for kind, count in sorted(found.items()):
        ids = [e["alarm_id"] for e in examples if e["problem"] == kind]
        log.warning("escalation.audit_problem", problem=kind, count=count, alarm_ids=ids)
    details = {
        "problems": report.problems,
        "examples": examples,
        "runner_beat_at": runner_beat.isoformat() if runner_beat else None,
        "grace_s": grace.total_seconds(),
    }
    await conn.execute(_BEAT, AUDITOR_JOB, now, report.checked, report.total, json.dumps(details))
    return report


# --- /metrics ---------------------------------------------------------------------------------------

_BEAT_AT = Gauge(
    "eldercare_escalation_heartbeat_timestamp_seconds",
    "When the escalation job last ran (Unix seconds), as the scheduler recorded it",
    ["job"],
)
_ALARMS = Gauge(
    "eldercare_escalation_alarms", "Alarms worked (runner) or checked (auditor) in the last run", ["job"]
)
_PROBLEMS = Gauge(
    "eldercare_escalation_problems",
    "Alarms that failed (runner) or problems found (auditor) in the last run",
    ["job"],
)
_AUDIT = Gauge(
    "eldercare_escalation_audit_problems", "The escalation auditor's last findings by kind", ["problem"]
)
_KINDS: Final = (*(p.value for p in Problem), RUNNER_STALE)


async def export_metrics(session: AsyncSession) -> None:
    """Set the escalation gauges from the heartbeats the scheduler wrote (one query)."""
    rows = (await session.execute(select(EscalationHeartbeat))).scalars().all()
    for row in rows:
        _BEAT_AT.labels(job=row.job).set(row.beat_at.timestamp())
        _ALARMS.labels(job=row.job).set(row.alarms)
        _PROBLEMS.labels(job=row.job).set(row.problems)
        if row.job == AUDITOR_JOB:
            problems = row.details.get("problems", {}) if isinstance(row.details, dict) else {}
            for kind in _KINDS:
                value = problems.get(kind, 0) if isinstance(problems, dict) else 0
                _AUDIT.labels(problem=kind).set(value if isinstance(value, int) else 0)
