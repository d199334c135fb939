"""Running escalation chains: freezing a chain on each new alarm, running the due steps, returning
acknowledged-but-open alarms to the queue (issue #11). The rules are :mod:`callcentre.escalation`'s.

**Where the clock lives.** Every alarm carries ``escalation_due_at``: when the runner must next look at
it. A new alarm is inserted due at once (the column defaults to ``now()``), so the one query below
finds new alarms and due steps alike, on one partial index (active alarms by due time). Nothing is
kept in a process's memory: a runner killed at any point leaves the database as its last commit did,
and the next pass carries on from there.

**Freezing.** The ingest inserts alarms through :mod:`callcentre.contract`'s one statement; the runner
freezes the chain on an alarm the first time it sees it (chain NULL), a pass every
:data:`callcentre.jobs.ESCALATE_EVERY_S` seconds, so within that time of the raise. The policy applied
is the one valid on the alarm's local date (its ``received_at``), so a late pass freezes what a prompt
one would have. The family of an elder whose alarm is of a notifiable severity is told in that same
transaction (``callcentre.family_notify``).

**Exactly once.** The due alarms are locked ``FOR UPDATE SKIP LOCKED`` (two runners share the work, an
operator's update in flight is left for the next pass); each step is applied by a conditional update
of the alarm's position (``WHERE id AND cycle AND round AND step``) with its ``escalated`` timeline
event and its outbox rows (``core.outbox.enqueue``, idempotent by :func:`~callcentre.escalation.step_key`
plus the recipient), all in the pass's transaction, which the scheduler commits. Each alarm is worked
in a savepoint: one alarm's failure is logged and leaves the others' steps to commit.

Only flushes here: the caller (the scheduler's run) owns the transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import structlog

from callcentre import seed as callcentre_seed
from callcentre.contract import Severity
from callcentre.escalation import (
    CHAIN_KEY,
    FAMILY_KEY,
    ONCALL_KEY,
    POLICY_PREFIXES,
    AlarmEscalation,
    Chain,
    ChainInvalid,
    Position,
    Requeue,
    RunStep,
    StepAction,
    Wait,
    decide,
    family_recipients,
    first_due,
    frozen_chain,
    parse_chain,
    parse_family_rule,
    parse_oncall,
    step_key,
)
from callcentre.timeline import EventKind, record
from core.clock import SHANGHAI, local_date
from core.outbox import enqueue_sql
from core.policy import PolicyEntry, PolicySnapshot, load_policy_conn, snapshot_from_rows

log = structlog.get_logger("callcentre.escalation")

BATCH: Final = 100  # alarms locked and worked at a time
# A pass takes further batches while alarms are due, for up to this long (wall clock): a burst of new
# alarms is worked through at the database's pace, not at one batch per pass.
PASS_BUDGET_S: Final = 1.0
# A pass runs at most this many steps of one alarm (every step of a chain that waits 0 s between them);
# a bound, so a malformed chain can never spin.
MAX_STEPS_PER_PASS: Final = 20
HEARTBEAT_JOB: Final = "runner"

# The most severe first, then the longest due: a burst of technical alarms never holds back an SOS.
_SEVERITY_RANK: Final = (
    "CASE a.severity " + " ".join(f"WHEN '{s.value}' THEN {i}" for i, s in enumerate(Severity)) + " END"
)
_DUE: Final = f"""
SELECT a.id, a.type, a.severity, a.elder_id, a.district_id, a.received_at,
       a.acknowledged_at, a.acknowledged_by, a.assignee_id,
       a.escalation_chain::text AS chain, a.escalation_cycle, a.escalation_round, a.escalation_step,
       a.escalation_due_at,
       (SELECT max(ev.at) FROM alarm_event ev WHERE ev.alarm_id = a.id AND ev.kind = 'reopened')
           AS reopened_at,
       e.name AS elder_name, d.code AS district_code, d.name AS district_name
FROM alarm a
LEFT JOIN elder e ON e.id = a.elder_id
LEFT JOIN district d ON d.id = a.district_id
WHERE a.cleared_at IS NULL AND a.escalation_due_at <= $1 AND NOT (a.id = ANY($3::bigint[]))
ORDER BY {_SEVERITY_RANK}, a.escalation_due_at, a.id
LIMIT $2
FOR UPDATE OF a SKIP LOCKED"""  # noqa: S608 - constants only

_FREEZE: Final = """UPDATE alarm SET escalation_chain = $2::jsonb, escalation_cycle = 0, escalation_round = 1,
    escalation_step = 0, escalation_due_at = $3
WHERE id = $1 AND escalation_chain IS NULL AND cleared_at IS NULL"""

_MOVE: Final = """UPDATE alarm SET escalation_cycle = $5, escalation_round = $6, escalation_step = $7,
    escalation_due_at = $8
WHERE id = $1 AND escalation_cycle = $2 AND escalation_round = $3 AND escalation_step = $4
  AND cleared_at IS NULL"""

# Back to the queue: unacknowledged and unassigned again. The first acknowledgement stays on the row
# (first_acknowledged_at/by, for the service levels) and in the timeline (its ``acknowledged`` event,
# and the ``requeued`` event's data). SET expressions read the row as it was.
_REQUEUE: Final = """UPDATE alarm SET
    first_acknowledged_at = COALESCE(first_acknowledged_at, acknowledged_at),
    first_acknowledged_by = CASE WHEN first_acknowledged_at IS NULL THEN acknowledged_by
                                 ELSE first_acknowledged_by END,
    acknowledged_at = NULL, acknowledged_by = NULL, assignee_id = NULL, assigned_at = NULL,
    requeued_at = $4, escalation_cycle = $5, escalation_round = 1, escalation_step = 0,
    escalation_due_at = $6
WHERE id = $1 AND acknowledged_at = $2 AND escalation_cycle = $3 AND cleared_at IS NULL"""

_FAMILY: Final = """
SELECT phone FROM (
    SELECT c.phone, 0 AS grp, c.position AS ord FROM emergency_contact c WHERE c.elder_id = $1
    UNION ALL
    SELECT g.phone, 1, CASE WHEN eg.is_primary THEN 0 ELSE 1 END * 1000000 + g.id
    FROM elder_guardian eg JOIN guardian g ON g.id = eg.guardian_id WHERE eg.elder_id = $1
) f ORDER BY grp, ord"""

# The supervisors who may work the alarm: of its district, or city-wide (no districts of their own).
_SUPERVISORS: Final = """
SELECT u.id, u.phone FROM app_user u
WHERE u.role = 'supervisor' AND u.is_active AND u.phone IS NOT NULL
  AND (EXISTS (SELECT 1 FROM user_district ud WHERE ud.user_id = u.id AND ud.district_id = $1)
       OR NOT EXISTS (SELECT 1 FROM user_district ud WHERE ud.user_id = u.id))
ORDER BY u.id"""

_HEARTBEAT: Final = """INSERT INTO escalation_heartbeat (job, beat_at, alarms, problems, details)
VALUES ($1, $2, $3, $4, $5::jsonb)
ON CONFLICT (job) DO UPDATE SET beat_at = excluded.beat_at, alarms = excluded.alarms,
    problems = excluded.problems, details = excluded.details"""


def _defaults() -> tuple[Any, ...]:
    return callcentre_seed.SEED.policies


class Policies:
    """The call centre's policy snapshots of one pass, by local date (one query per date)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._days: dict[dt.date, PolicySnapshot] = {}

    async def on(self, day: dt.date) -> PolicySnapshot:
        if day not in self._days:
            self._days[day] = await load_policy_conn(
                self._conn, day=day, prefixes=POLICY_PREFIXES, defaults=_defaults()
            )
        return self._days[day]


def default_chain(alarm_type: str) -> Chain:
    """The seeded chain of ``alarm_type`` (or ``*``): what an alarm gets when the policy row in effect
    cannot be run (a row the policy API accepted by shape but that names an unknown action)."""
    seeded = snapshot_from_rows(dt.date.max, [], _defaults())
    entry = seeded.entry_or_star(CHAIN_KEY, alarm_type)
    return parse_chain(entry.value, ref=entry.ref())


def chain_for(snapshot: PolicySnapshot, alarm_type: str) -> Chain:
    entry: PolicyEntry = snapshot.entry_or_star(CHAIN_KEY, alarm_type)
    try:
        return parse_chain(entry.value, ref=entry.ref())
    except ChainInvalid as e:
        log.error("escalation.policy_invalid", ref=entry.ref(), error=str(e))
        return default_chain(alarm_type)


@dataclass
class PassResult:
    """What one pass did (counts), for the log and the heartbeat."""

    alarms: int = 0
    frozen: int = 0
    steps: int = 0
    requeued: int = 0
    notifications: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def add(self, other: PassResult) -> None:
        for name, value in dataclasses.asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass(frozen=True, slots=True)
class _Alarm:
    id: int
    type: str
    severity: str
    elder_id: int | None
    district_id: int | None
    received_at: dt.datetime
    acknowledged_by: int | None
    assignee_id: int | None
    elder_name: str | None
    district_code: str | None
    district_name: str | None

    def payload(self, **more: Any) -> dict[str, Any]:
        """What a notification says (flat scalars: SMS templates take them as parameters)."""
        return {
            "alarm_id": self.id,
            "type": self.type,
            "severity": self.severity,
            "elder_name": self.elder_name or "",
            "district": self.district_name or "",
            "raised_at": self.received_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
            **more,
        }


def _recipient_key(base: str, channel: str, recipient: str) -> str:
    digest = hashlib.sha256(f"{channel}:{recipient}".encode()).hexdigest()[:16]
    return f"{base}:{digest}"


async def run_due(
    conn: asyncpg.Connection, *, now: dt.datetime, limit: int = BATCH, budget_s: float = PASS_BUDGET_S
) -> PassResult:
    """One pass: the active alarms due by ``now``, most severe first, ``limit`` at a time while there
    are more and ``budget_s`` lasts (each alarm at most once): frozen if new, their due steps run,
    returned to the queue if acknowledged too long ago; then the heartbeat. The caller owns the
    transaction."""
    result = PassResult()
    policies = Policies(conn)
    seen: list[int] = []
    started = time.monotonic()
    while True:
        rows = await conn.fetch(_DUE, now, limit, seen)
        seen.extend(r["id"] for r in rows)
        await _work_batch(conn, rows, now=now, policies=policies, result=result)
        if len(rows) < limit or time.monotonic() - started >= budget_s:
            break
    await conn.execute(
        _HEARTBEAT, HEARTBEAT_JOB, now, result.alarms, result.failed, json.dumps(result.as_dict())
    )
    if result.steps or result.frozen or result.requeued or result.failed:
        log.info("escalation.pass", **result.as_dict())
    return result


async def _work_batch(
    conn: asyncpg.Connection,
    rows: list[asyncpg.Record],
    *,
    now: dt.datetime,
    policies: Policies,
    result: PassResult,
) -> None:
    """Work a batch in one savepoint; if one alarm fails, again alarm by alarm, each in its own, so the
    failing one is logged and left for the next pass and the others' steps still commit."""
    batch = PassResult()
    try:
        async with conn.transaction():
            for row in rows:
                batch.alarms += 1
                await _work(conn, row, now=now, policies=policies, result=batch)
    except Exception:
        log.warning("escalation.batch_split", alarms=len(rows))
    else:
        result.add(batch)
        return
    for row in rows:
        one = PassResult(alarms=1)
        try:
            async with conn.transaction():
                await _work(conn, row, now=now, policies=policies, result=one)
        except Exception:
            one = PassResult(alarms=1, failed=1)
            log.exception("escalation.alarm_failed", alarm_id=row["id"])
        result.add(one)


async def _work(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    *,
    now: dt.datetime,
    policies: Policies,
    result: PassResult,
) -> None:
    alarm = _Alarm(
        row["id"],
        row["type"],
        row["severity"],
        row["elder_id"],
        row["district_id"],
        row["received_at"],
        row["acknowledged_by"],
        row["assignee_id"],
        row["elder_name"],
        row["district_code"],
        row["district_name"],
    )
    state = AlarmEscalation(
        position=Position(row["escalation_cycle"], row["escalation_round"], row["escalation_step"]),
        due_at=row["escalation_due_at"],
        acknowledged_at=row["acknowledged_at"],
        reopened_at=row["reopened_at"],
    )
    if row["chain"] is None:
        chain = await _freeze(conn, alarm, policies=policies, result=result)
        if chain is None:
            return
        state = dataclasses.replace(
            state, position=Position(0, 1, 0), due_at=first_due(chain, alarm.received_at)
        )
    else:
        chain = frozen_chain(json.loads(row["chain"]))
    stored_due = state.due_at  # what the row holds now
    for _ in range(MAX_STEPS_PER_PASS):
        decision = decide(chain, state, now)
        if isinstance(decision, Wait):
            if decision.due_at != stored_due:
                await _move(conn, alarm.id, state.position, state.position, decision.due_at)
            return
        if isinstance(decision, Requeue):
            if not await _requeue(conn, alarm, state, decision, chain, now=now):
                return
            result.requeued += 1
            state = AlarmEscalation(decision.next, decision.next_due_at, None, state.reopened_at)
            stored_due = decision.next_due_at
            continue
        assert isinstance(decision, RunStep)
        if not await _move(conn, alarm.id, decision.position, decision.next, decision.next_due_at):
            return
        sent = await _run_step(conn, alarm, chain, decision, now=now, policies=policies)
        result.steps += 1
        result.notifications += sent
        state = dataclasses.replace(state, position=decision.next, due_at=decision.next_due_at)
        stored_due = decision.next_due_at
    # Still due after the bound (a chain of many 0 s steps): the next pass goes on from here.
    log.warning("escalation.step_bound", alarm_id=alarm.id, steps=MAX_STEPS_PER_PASS)


async def _move(
    conn: asyncpg.Connection, alarm_id: int, at: Position, to: Position, due_at: dt.datetime | None
) -> bool:
    """Move the alarm from position ``at`` to ``to``, due at ``due_at``; False if it no longer stands
    at ``at`` (someone else moved it: nothing is applied twice)."""
    status = await conn.execute(
        _MOVE, alarm_id, at.cycle, at.round, at.step, to.cycle, to.round, to.step, due_at
    )
    return bool(status == "UPDATE 1")


async def _freeze(
    conn: asyncpg.Connection, alarm: _Alarm, *, policies: Policies, result: PassResult
) -> Chain | None:
    """Copy the chain in effect on the alarm's local date onto it and tell the family if its severity
    calls for it; None if another pass froze it first."""
    snapshot = await policies.on(local_date(alarm.received_at))
    chain = chain_for(snapshot, alarm.type)
    due = first_due(chain, alarm.received_at)
    status = await conn.execute(_FREEZE, alarm.id, json.dumps(chain.to_json()), due)
    if status != "UPDATE 1":
        return None
    result.frozen += 1
    family = parse_family_rule(snapshot.value(FAMILY_KEY), ref=snapshot.entry(FAMILY_KEY).ref())
    if alarm.elder_id is not None and family.applies(alarm.severity):
        result.notifications += await _notify_family(conn, alarm, channel=family.channel, ref=family.ref)
    return chain


async def _notify_family(conn: asyncpg.Connection, alarm: _Alarm, *, channel: str, ref: str) -> int:
    phones = family_recipients([r["phone"] for r in await conn.fetch(_FAMILY, alarm.elder_id)])
    base = f"alarm:{alarm.id}:family"
    await _enqueue(conn, alarm, "alarm.family", alarm.payload(), [(channel, p) for p in phones], base)
    await record(
        conn,
        alarm.id,
        EventKind.NOTIFIED,
        data={"audience": "family", "channel": channel, "recipients": len(phones), "policy": ref},
    )
    return len(phones)


async def _requeue(
    conn: asyncpg.Connection,
    alarm: _Alarm,
    state: AlarmEscalation,
    decision: Requeue,
    chain: Chain,
    *,
    now: dt.datetime,
) -> bool:
    status = await conn.execute(
        _REQUEUE,
        alarm.id,
        decision.acknowledged_at,
        state.position.cycle,
        now,
        decision.next.cycle,
        decision.next_due_at,
    )
    if status != "UPDATE 1":
        return False
    await record(
        conn,
        alarm.id,
        EventKind.REQUEUED,
        data={
            "acknowledged_at": decision.acknowledged_at.isoformat(),
            "acknowledged_by": alarm.acknowledged_by,
            "assignee_id": alarm.assignee_id,
            "requeue_after_s": chain.requeue_after_s,
            "reopened_at": state.reopened_at.isoformat() if state.reopened_at else None,
            "cycle": decision.next.cycle,
            "chain": chain.ref,
        },
    )
    return True


async def _run_step(
    conn: asyncpg.Connection,
    alarm: _Alarm,
    chain: Chain,
    run: RunStep,
    *,
    now: dt.datetime,
    policies: Policies,
) -> int:
    """The step's effects: its outbox rows and its ``escalated`` event (with when it was due, so the
    record shows any lateness). Returns the rows written."""
    position, step = run.position, run.step
    key = step_key(alarm.id, position)
    data: dict[str, Any] = {
        "action": step.action.value,
        "cycle": position.cycle,
        "round": position.round,
        "step": position.step,
        "chain": chain.ref,
        "due_at": run.due_at.isoformat(),
    }
    targets: list[tuple[str, str]] = []  # (channel, recipient)
    if step.action == StepAction.NOTIFY_OPERATORS:
        data["channel"] = "console"  # the consoles alert on the event itself
    elif step.action == StepAction.NOTIFY_SUPERVISORS:
        rows = await conn.fetch(_SUPERVISORS, alarm.district_id) if alarm.district_id is not None else []
        targets = [(chain.staff_channel, r["phone"]) for r in rows]
        data["channel"] = chain.staff_channel
    else:
        snapshot = await policies.on(local_date(now))
        entry = snapshot.entry_or_star(ONCALL_KEY, alarm.district_code or "*")
        oncall = parse_oncall(entry.value, ref=entry.ref())
        data["oncall"] = oncall.ref
        if oncall.invalid:
            data["invalid_contacts"] = len(oncall.invalid)
            log.warning("escalation.oncall_invalid", ref=oncall.ref, entries=list(oncall.invalid))
        if step.action == StepAction.NOTIFY_ONCALL:
            targets = [(c.channel, c.recipient) for c in oncall.contacts]
        elif oncall.webhook:
            targets = [("webhook", oncall.webhook)]
        else:
            data["skipped"] = "no webhook configured"
    payload = alarm.payload(
        action=step.action.value, cycle=position.cycle, round=position.round, step=position.step
    )
    sent = await _enqueue(conn, alarm, "alarm.escalated", payload, targets, key)
    data["recipients"] = sent
    await record(conn, alarm.id, EventKind.ESCALATED, data=data)
    log.debug("escalation.step", alarm_id=alarm.id, key=key, action=step.action.value, recipients=sent)
    return sent


async def _enqueue(
    conn: asyncpg.Connection,
    alarm: _Alarm,
    kind: str,
    payload: dict[str, Any],
    targets: list[tuple[str, str]],
    key: str,
) -> int:
    """One outbox row per distinct (channel, recipient), keyed ``key`` + the recipient, in one round
    trip (core.outbox's statement, once per row). Returns the recipients."""
    distinct = list(dict.fromkeys(targets))
    body = json.dumps(payload, default=str)
    await conn.executemany(
        enqueue_sql(),
        [(ch, to, kind, f"alarm:{alarm.id}", body, _recipient_key(key, ch, to)) for ch, to in distinct],
    )
    return len(distinct)
