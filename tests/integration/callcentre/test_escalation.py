"""Escalation against the real database, with the clock injected: the chain frozen on a new alarm and
the family told, each step in order with its timeline event and outbox rows, nothing twice, the steps
stopping on acknowledgement and clearing, the return to the queue, and the auditor with its metrics."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from callcentre.escalation_audit import audit_escalations
from callcentre.escalation_runner import PassResult, run_due
from callcentre.timeline import EventKind, record
from core.clock import local_date
from core.identity.models import Role
from core.settings import Settings
from registry.models import Elder
from tests.conftest import TEST_DB_URL, Client
from tests.factories import Factory
from tests.support.alarms import Raised, driver, jsonb, policy_row, raise_

pytestmark = pytest.mark.integration

SOS_REF = "callcentre.escalation[SOS]@2026-01-01"


async def _events(conn: asyncpg.Connection, alarm_id: int, *kinds: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT kind, actor_id, data::text AS data, at FROM alarm_event"
        " WHERE alarm_id = $1 AND kind = ANY($2) ORDER BY id",
        alarm_id,
        list(kinds) or [k.value for k in EventKind],
    )
    return rows


async def _outbox(conn: asyncpg.Connection, alarm_id: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT channel, recipient, kind, payload::text AS payload, idempotency_key FROM notification_outbox"
        " WHERE ref = $1 ORDER BY id",
        f"alarm:{alarm_id}",
    )
    return rows


async def _state(conn: asyncpg.Connection, alarm_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        """SELECT escalation_chain::text AS chain, escalation_cycle, escalation_round, escalation_step,
                  escalation_due_at, acknowledged_at, acknowledged_by, assignee_id, first_acknowledged_at,
                  first_acknowledged_by, requeued_at FROM alarm WHERE id = $1""",
        alarm_id,
    )
    assert row is not None
    return row


def _position(row: asyncpg.Record) -> tuple[int, int, int]:
    return (row["escalation_cycle"], row["escalation_round"], row["escalation_step"])


async def _acknowledge(conn: asyncpg.Connection, alarm_id: int, user_id: int, at: dt.datetime) -> None:
    """As the operator console acknowledges (callcentre.console's conditional update and event)."""
    await conn.execute(
        "UPDATE alarm SET acknowledged_at = $2, acknowledged_by = $3, assignee_id = $3, assigned_at = $2"
        " WHERE id = $1 AND acknowledged_at IS NULL",
        alarm_id,
        at,
        user_id,
    )
    await record(conn, alarm_id, EventKind.ACKNOWLEDGED, actor_id=user_id)


async def _elder_with_family(make: Factory) -> Elder:
    elder = await make.elder(contacts=[("王大", "son", "13911110001"), ("王二", "daughter", "13911110002")])
    await make.guardian(elder, phone="13911110002", name="王二")  # also a contact: told once
    await make.guardian(elder, phone="13911110003", name="李三", primary=True)
    return elder


async def test_a_new_alarm_gets_its_chain_frozen_and_a_critical_ones_family_is_told_in_that_pass(
    db: AsyncSession, make: Factory
) -> None:
    conn = await driver(db)
    elder = await _elder_with_family(make)
    sos = await raise_(conn, "SOS", "CRITICAL", elder_id=elder.id)
    inactivity = await raise_(conn, "INACTIVITY", "MAJOR", elder_id=elder.id)
    assert (await _state(conn, sos.id))["chain"] is None

    result = await run_due(conn, now=sos.after(1))
    assert result.frozen >= 2

    state = await _state(conn, sos.id)
    chain = jsonb(state["chain"])
    assert chain["ref"] == SOS_REF
    assert [s["action"] for s in chain["steps"]] == [
        "notify_operators",
        "notify_supervisors",
        "notify_oncall",
        "webhook",
    ]
    assert (_position(state), state["escalation_due_at"]) == ((0, 1, 0), sos.after(60))
    family = await _outbox(conn, sos.id)
    assert [(r["channel"], r["recipient"], r["kind"]) for r in family] == [
        ("sms", "13911110001", "alarm.family"),
        ("sms", "13911110002", "alarm.family"),
        ("sms", "13911110003", "alarm.family"),
    ]
    payload = jsonb(family[0]["payload"])
    assert (payload["alarm_id"], payload["type"], payload["elder_name"]) == (sos.id, "SOS", elder.name)
    (notified,) = await _events(conn, sos.id, "notified")
    assert jsonb(notified["data"]) == {
        "audience": "family",
        "channel": "sms",
        "recipients": 3,
        "policy": "callcentre.family_notify[*]@2026-01-01",
    }
    # A MAJOR alarm gets its own type's chain (the default), and the family is not told of it.
    assert jsonb((await _state(conn, inactivity.id))["chain"])["ref"] == "callcentre.escalation[*]@2026-01-01"
    assert await _outbox(conn, inactivity.id) == []

    # The same pass again changes nothing: nothing is due before 60 s.
    again = await run_due(conn, now=sos.after(1))
    assert (again.frozen, again.steps) == (0, 0)
    assert len(await _outbox(conn, sos.id)) == 3


async def _staff(make: Factory, elder: Elder) -> dict[str, int]:
    """Supervisors: two who may work the alarm (its district's, a city-wide one) and two who are not
    told (another district's; one without a phone)."""
    accounts = {
        "xiaonan": await make.account(Role.SUPERVISOR, districts=("420902",)),
        "citywide": await make.account(Role.SUPERVISOR),
        "dawu": await make.account(Role.SUPERVISOR, districts=("420922",)),
        "no_phone": await make.account(Role.SUPERVISOR, districts=("420902",)),
        "operator": await make.account(Role.OPERATOR, districts=("420902",)),
    }
    for i, name in enumerate(("xiaonan", "citywide", "dawu", "operator")):
        accounts[name].user.phone = f"1370000000{i}"
    await make.db.flush()
    return {name: a.user.id for name, a in accounts.items()}


async def test_each_step_runs_in_order_once_with_its_event_and_outbox_rows(
    db: AsyncSession, make: Factory
) -> None:
    conn = await driver(db)
    elder = await make.elder()
    await _staff(make, elder)
    sos = await raise_(conn, "SOS", "CRITICAL", elder_id=elder.id)
    await policy_row(
        conn,
        "callcentre.oncall",
        "420902",
        {
            "contacts": ["sms:13800000001", "wechat:oc_duty", "pager:9"],
            "webhook": "http://127.0.0.1:9/incident",
        },
        on=sos.at,
    )
    schedule = [1, 59, 60, 61, 179, 180, 480, 540, 660, 960, 1020, 1140, 1440, 2040, 2700]
    for seconds in schedule:
        await run_due(conn, now=sos.after(seconds))

    escalated = await _events(conn, sos.id, "escalated")
    steps = [jsonb(e["data"]) for e in escalated]
    assert [(d["round"], d["step"], d["action"]) for d in steps] == [
        (r, i, a)
        for r in (1, 2, 3)
        for i, a in enumerate(("notify_operators", "notify_supervisors", "notify_oncall", "webhook"))
    ]
    # Each at its time: 60 s, then 0 s, 120 s and 300 s after the step before, round after round.
    offsets = [round((dt.datetime.fromisoformat(d["due_at"]) - sos.at).total_seconds()) for d in steps]
    assert offsets == [60, 60, 180, 480, 540, 540, 660, 960, 1020, 1020, 1140, 1440]
    assert steps[0] == {
        "action": "notify_operators",
        "cycle": 0,
        "round": 1,
        "step": 0,
        "chain": SOS_REF,
        "due_at": sos.after(60).isoformat(),
        "channel": "console",
        "recipients": 0,
    }
    assert (steps[1]["channel"], steps[1]["recipients"]) == ("sms", 2)
    assert (steps[2]["oncall"], steps[2]["recipients"], steps[2]["invalid_contacts"]) == (
        f"callcentre.oncall[420902]@{local_date(sos.at).isoformat()}",
        2,
        1,
    )
    assert steps[3]["recipients"] == 1

    rows = await _outbox(conn, sos.id)
    escalations = [r for r in rows if r["kind"] == "alarm.escalated"]
    per_round = [
        ("sms", "13700000000"),  # the district's supervisor
        ("sms", "13700000001"),  # the city-wide one
        ("sms", "13800000001"),  # on call
        ("wechat", "oc_duty"),
        ("webhook", "http://127.0.0.1:9/incident"),
    ]
    assert [(r["channel"], r["recipient"]) for r in escalations] == per_round * 3
    assert len({r["idempotency_key"] for r in escalations}) == 15
    assert escalations[0]["idempotency_key"].startswith(f"alarm:{sos.id}:esc:0.1.1:")
    payload = jsonb(escalations[-1]["payload"])
    assert (payload["action"], payload["round"], payload["step"]) == ("webhook", 3, 3)

    # After three rounds the chain is exhausted: it only looks again, ten minutes on, for an
    # acknowledgement to time.
    state = await _state(conn, sos.id)
    assert _position(state) == (0, 4, 0)
    assert state["escalation_due_at"] > sos.after(2700)
    await run_due(conn, now=sos.after(5000))
    assert len(await _events(conn, sos.id, "escalated")) == 12


async def test_a_pass_run_twice_at_the_same_instant_notifies_once(db: AsyncSession, make: Factory) -> None:
    conn = await driver(db)
    elder = await _elder_with_family(make)
    await _staff(make, elder)
    sos = await raise_(conn, "SOS", "CRITICAL", elder_id=elder.id)
    for _ in range(2):
        await run_due(conn, now=sos.after(0))
        await run_due(conn, now=sos.after(60))
        await run_due(conn, now=sos.after(60))
    assert [jsonb(e["data"])["step"] for e in await _events(conn, sos.id, "escalated")] == [0, 1]
    assert len(await _events(conn, sos.id, "notified")) == 1
    assert len(await _outbox(conn, sos.id)) == 3 + 2  # the family, the two supervisors


async def test_acknowledged_it_stops_and_still_open_after_its_limit_it_returns_to_the_queue(
    db: AsyncSession, make: Factory
) -> None:
    conn = await driver(db)
    elder = await make.elder()
    operator = await make.account(Role.OPERATOR, districts=("420902",))
    sos = await raise_(conn, "SOS", "CRITICAL", elder_id=elder.id)
    await run_due(conn, now=sos.after(1))
    await _acknowledge(conn, sos.id, operator.user_id, sos.after(30))

    await run_due(conn, now=sos.after(60))
    state = await _state(conn, sos.id)
    assert await _events(conn, sos.id, "escalated") == []
    assert (_position(state), state["escalation_due_at"]) == ((0, 1, 0), sos.after(630))

    await run_due(conn, now=sos.after(629))
    assert await _events(conn, sos.id, "requeued") == []
    await run_due(conn, now=sos.after(630))
    state = await _state(conn, sos.id)
    assert (state["acknowledged_at"], state["acknowledged_by"], state["assignee_id"]) == (None, None, None)
    assert (state["first_acknowledged_at"], state["first_acknowledged_by"]) == (
        sos.after(30),
        operator.user_id,
    )
    assert (state["requeued_at"], _position(state), state["escalation_due_at"]) == (
        sos.after(630),
        (1, 1, 0),
        sos.after(690),
    )
    (requeued,) = await _events(conn, sos.id, "requeued")
    data = jsonb(requeued["data"])
    assert (data["acknowledged_by"], data["assignee_id"], data["requeue_after_s"], data["cycle"]) == (
        operator.user_id,
        operator.user_id,
        600,
        1,
    )
    # The original acknowledgement stays in the timeline, before the return to the queue.
    assert [e["kind"] for e in await _events(conn, sos.id, "acknowledged", "requeued")] == [
        "acknowledged",
        "requeued",
    ]

    # Back in the queue it escalates again, as a new cycle with keys of its own.
    await run_due(conn, now=sos.after(690))
    steps = [jsonb(e["data"]) for e in await _events(conn, sos.id, "escalated")]
    assert [(d["cycle"], d["round"], d["step"]) for d in steps] == [(1, 1, 0), (1, 1, 1)]
    # Acknowledged again (a second acknowledgement): the first one is still the one kept.
    await _acknowledge(conn, sos.id, operator.user_id, sos.after(700))
    await run_due(conn, now=sos.after(1300))
    state = await _state(conn, sos.id)
    assert state["first_acknowledged_at"] == sos.after(30)
    assert state["escalation_cycle"] == 2


async def test_a_cleared_alarm_escalates_no_more_and_a_reopened_one_is_timed_from_its_reopening(
    db: AsyncSession, make: Factory
) -> None:
    conn = await driver(db)
    elder = await make.elder()
    operator = await make.account(Role.OPERATOR, districts=("420902",))
    sos = await raise_(conn, "SOS", "CRITICAL", elder_id=elder.id)
    await run_due(conn, now=sos.after(1))
    await run_due(conn, now=sos.after(60))
    await _acknowledge(conn, sos.id, operator.user_id, sos.after(65))
    await conn.execute(
        "UPDATE alarm SET cleared_at = $2, cleared_by = $3, outcome = 'false_alarm' WHERE id = $1",
        sos.id,
        sos.after(70),
        operator.user_id,
    )
    for seconds in (180, 480, 700, 3000):
        await run_due(conn, now=sos.after(seconds))
    assert len(await _events(conn, sos.id, "escalated")) == 2  # the two steps due at 60 s
    assert await _events(conn, sos.id, "requeued") == []

    # Reopened an hour later (it keeps its acknowledgement): back in the queue ten minutes after that.
    await conn.execute(
        "UPDATE alarm SET cleared_at = NULL, cleared_by = NULL, outcome = NULL WHERE id = $1", sos.id
    )
    await conn.execute(
        "INSERT INTO alarm_event (alarm_id, at, kind, actor_id, district_id)"
        " SELECT id, $2, 'reopened', $3, district_id FROM alarm WHERE id = $1",
        sos.id,
        sos.after(3600),
        operator.user_id,
    )
    await run_due(conn, now=sos.after(3601))
    assert (await _state(conn, sos.id))["escalation_due_at"] == sos.after(4200)
    await run_due(conn, now=sos.after(4200))
    assert len(await _events(conn, sos.id, "requeued")) == 1


async def test_a_chain_policy_applies_from_its_date_and_one_that_cannot_run_falls_back_to_the_seeded_one(
    db: AsyncSession, make: Factory
) -> None:
    conn = await driver(db)
    elder = await make.elder()
    now = dt.datetime.now(dt.UTC)
    fast = {
        "steps": [{"action": "notify_supervisors", "wait_s": 5}],
        "rounds": 1,
        "requeue_after_s": 0,
        "staff_channel": "wechat",
    }
    await policy_row(conn, "callcentre.escalation", "FALL", fast, on=now)
    await policy_row(
        conn,
        "callcentre.escalation",
        "GAS",
        {**fast, "steps": [{"action": "page_everyone", "wait_s": 5}]},
        on=now,
    )
    fall = await raise_(conn, "FALL", "CRITICAL", elder_id=elder.id)
    gas = await raise_(conn, "GAS", "CRITICAL", elder_id=elder.id)
    await run_due(conn, now=fall.after(1))
    chain = jsonb((await _state(conn, fall.id))["chain"])
    assert chain["ref"] == f"callcentre.escalation[FALL]@{local_date(now).isoformat()}"
    assert (chain["steps"], chain["staff_channel"]) == (fast["steps"], "wechat")
    assert jsonb((await _state(conn, gas.id))["chain"])["ref"] == "callcentre.escalation[GAS]@2026-01-01"
    # Frozen: a change of policy after the raise leaves the alarm's chain as it was.
    await policy_row(conn, "callcentre.escalation", "FALL", {**fast, "rounds": 5}, on=now)
    await run_due(conn, now=fall.after(5))
    assert jsonb((await _state(conn, fall.id))["chain"])["rounds"] == 1


async def test_the_auditor_finds_every_alarm_accounted_for_or_names_the_problem_and_metrics_export_it(
    db: AsyncSession, make: Factory, client: Client
) -> None:
    conn = await driver(db)
    elder = await make.elder()
    operator = await make.account(Role.OPERATOR, districts=("420902",))
    healthy = await raise_(conn, "SOS", "CRITICAL", elder_id=elder.id)
    acked = await raise_(conn, "FALL", "CRITICAL", elder_id=elder.id)
    await run_due(conn, now=healthy.after(1))
    await _acknowledge(conn, acked.id, operator.user_id, acked.after(10))
    await run_due(conn, now=healthy.after(60))

    report = await audit_escalations(conn, now=healthy.after(61))
    assert report.checked >= 2
    mine = [e for e in report.examples if e["alarm_id"] in (healthy.id, acked.id)]
    assert mine == []

    # A new alarm the runner has not seen (it stopped): not frozen after the grace period, and the
    # healthy one's next step overdue, and the runner's beat old.
    stalled: Raised = await raise_(conn, "SMOKE", "CRITICAL", elder_id=elder.id)
    report = await audit_escalations(conn, now=stalled.after(300))
    assert {"alarm_id": stalled.id, "problem": "not_frozen"} in report.examples
    assert {"alarm_id": healthy.id, "problem": "overdue"} in report.examples
    assert report.problems["runner_stale"] == 1
    beat = await conn.fetchrow(
        "SELECT beat_at, problems, details::text AS details FROM escalation_heartbeat WHERE job = 'auditor'"
    )
    assert beat is not None
    assert (beat["beat_at"], beat["problems"]) == (stalled.after(300), report.total)
    assert jsonb(beat["details"])["problems"]["not_frozen"] >= 1

    metrics = (await client.get("/metrics")).text
    assert 'eldercare_escalation_heartbeat_timestamp_seconds{job="auditor"}' in metrics
    assert 'eldercare_escalation_heartbeat_timestamp_seconds{job="runner"}' in metrics
    assert f'eldercare_escalation_problems{{job="auditor"}} {float(report.total)}' in metrics
    assert 'eldercare_escalation_audit_problems{problem="runner_stale"} 1.0' in metrics


async def test_two_runners_at_once_run_each_step_once() -> None:
    """Two runner passes on two connections at once (as two scheduler processes would, were the job's
    lock not there): the alarm the first holds is skipped by the second, and once the first commits
    there is nothing left for anyone to do."""
    dsn = Settings(database_url=TEST_DB_URL).asyncpg_dsn
    first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    alarm_id = None

    async def second_pass(now: dt.datetime) -> PassResult:
        async with second.transaction():
            return await run_due(second, now=now)

    async def both(now: dt.datetime) -> tuple[PassResult, PassResult]:
        tx = first.transaction()
        await tx.start()
        try:
            mine = await run_due(first, now=now)
            other = asyncio.create_task(second_pass(now))
            # The second pass has read the due alarms (skipping the one the first holds) once it waits
            # for the first's heartbeat row.
            while not await first.fetchval(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid = $1", second.get_server_pid()
            ):
                assert not other.done(), other
                await asyncio.sleep(0.02)
        finally:
            await tx.commit()
        return mine, await other

    try:
        elder_id = await first.fetchval("SELECT min(id) FROM elder WHERE status = 'active'")
        async with first.transaction():
            sos = await raise_(first, "SOS", "CRITICAL", elder_id=elder_id)
        alarm_id = sos.id
        mine, other = await both(sos.after(0))
        assert (mine.frozen, other.alarms) == (1, 0)
        mine, other = await both(sos.after(60))
        assert (mine.steps, other.alarms) == (2, 0)
        assert (await second_pass(sos.after(60))).steps == 0
        assert [jsonb(e["data"])["step"] for e in await _events(first, sos.id, "escalated")] == [0, 1]
        # One outbox row per recipient the events count, none more.
        told = [jsonb(e["data"])["recipients"] for e in await _events(first, sos.id, "notified", "escalated")]
        assert len(await _outbox(first, sos.id)) == sum(told)
    finally:
        if alarm_id is not None:
            await first.execute("DELETE FROM notification_outbox WHERE ref = $1", f"alarm:{alarm_id}")
            await first.execute("DELETE FROM alarm WHERE id = $1", alarm_id)
        await first.execute("DELETE FROM escalation_heartbeat")
        await first.close()
        await second.close()


async def test_the_most_severe_alarm_is_worked_first_and_one_that_fails_holds_back_no_other(
    db: AsyncSession, make: Factory
) -> None:
    conn = await driver(db)
    elder = await make.elder()
    other = await make.elder()
    offline = await raise_(conn, "DEVICE_OFFLINE", "WARNING", elder_id=elder.id)
    sos = await raise_(conn, "SOS", "CRITICAL", elder_id=elder.id)
    # One batch of one, no time for another: the SOS, raised later, goes first.
    first = await run_due(conn, now=sos.after(1), limit=1, budget_s=0)
    assert first.frozen == 1
    assert (await _state(conn, sos.id))["chain"] is not None
    assert (await _state(conn, offline.id))["chain"] is None
    # Batches follow one another while alarms are due.
    rest = await run_due(conn, now=sos.after(1), limit=1, budget_s=60)
    assert rest.frozen >= 1
    assert (await _state(conn, offline.id))["chain"] is not None

    # A frozen chain that cannot be read (hand-edited) fails its alarm alone; the others' steps commit,
    # and the auditor names it.
    broken = await raise_(conn, "FALL", "CRITICAL", elder_id=other.id)
    await run_due(conn, now=broken.after(1))
    await conn.execute(
        """UPDATE alarm SET escalation_chain = '{"ref": "x", "steps": 7}', escalation_due_at = $2
           WHERE id = $1""",
        broken.id,
        broken.after(1),
    )
    result = await run_due(conn, now=sos.after(60))
    assert result.failed == 1
    assert [jsonb(e["data"])["step"] for e in await _events(conn, sos.id, "escalated")] == [0, 1]
    assert await _events(conn, broken.id, "escalated") == []
    report = await audit_escalations(conn, now=sos.after(61))
    assert {"alarm_id": broken.id, "problem": "chain_invalid"} in report.examples
