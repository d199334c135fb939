"""Escalation chains, pure: which step is due, what comes after it, the return to the queue, the
seeded chains, on-call lists and the auditor's verdicts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from callcentre.contract import AlarmType
from callcentre.escalation import (
    CHAIN_KEY,
    FAMILY_KEY,
    ONCALL_KEY,
    AlarmEscalation,
    AuditedAlarm,
    Chain,
    ChainInvalid,
    Contact,
    Position,
    Problem,
    Requeue,
    RunStep,
    Step,
    StepAction,
    Wait,
    WaitReason,
    audit,
    decide,
    family_recipients,
    first_due,
    frozen_chain,
    parse_chain,
    parse_contact,
    parse_family_rule,
    parse_oncall,
    requeue_at,
    step_key,
)
from callcentre.seed import SEED
from core.policy import snapshot_from_rows

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 12, 3, 2, 0, tzinfo=dt.UTC)  # the raise
A = StepAction


def s(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


CHAIN = Chain(
    ref="callcentre.escalation[SOS]@2026-01-01",
    steps=(
        Step(A.NOTIFY_OPERATORS, 60),
        Step(A.NOTIFY_SUPERVISORS, 0),
        Step(A.NOTIFY_ONCALL, 120),
        Step(A.WEBHOOK, 300),
    ),
    rounds=2,
    requeue_after_s=600,
    staff_channel="sms",
)


def at(
    cycle: int, rnd: int, step: int, due: dt.datetime | None, ack: dt.datetime | None = None
) -> AlarmEscalation:
    return AlarmEscalation(Position(cycle, rnd, step), due, ack)


def walk(
    chain: Chain, start: dt.datetime, until: dt.datetime, tick_s: float = 1.0
) -> list[tuple[float, str]]:
    """Run the rules on a clock ticking every ``tick_s`` from ``start`` to ``until``, applying each
    decision as the runner does; returns (seconds after T0, step key) of each step run."""
    state = at(0, 1, 0, first_due(chain, start))
    ran: list[tuple[float, str]] = []
    now = start
    while now <= until:
        for _ in range(20):
            d = decide(chain, state, now)
            if not isinstance(d, RunStep):
                break
            ran.append(((now - T0).total_seconds(), step_key(7, d.position)))
            state = AlarmEscalation(d.next, d.next_due_at, None)
        now += dt.timedelta(seconds=tick_s)
    return ran


def test_each_step_runs_in_order_once_at_its_time_and_the_chain_repeats_its_rounds() -> None:
    ran = walk(CHAIN, T0, s(3600))
    assert ran == [
        (60, "alarm:7:esc:0.1.0"),
        (60, "alarm:7:esc:0.1.1"),  # 0 s after the one before: the same pass
        (180, "alarm:7:esc:0.1.2"),
        (480, "alarm:7:esc:0.1.3"),
        (540, "alarm:7:esc:0.2.0"),  # round 2: the first step's wait again, after the last step
        (540, "alarm:7:esc:0.2.1"),
        (660, "alarm:7:esc:0.2.2"),
        (960, "alarm:7:esc:0.2.3"),
    ]


def test_nothing_runs_before_its_time() -> None:
    state = at(0, 1, 0, s(60))
    assert decide(CHAIN, state, s(59.999)) == Wait(s(60), WaitReason.STEP_DUE)
    run = decide(CHAIN, state, s(60))
    assert isinstance(run, RunStep)
    assert (run.position, run.step, run.due_at, run.next, run.next_due_at) == (
        Position(0, 1, 0),
        Step(A.NOTIFY_OPERATORS, 60),
        s(60),
        Position(0, 1, 1),
        s(60),
    )


def test_a_late_runner_runs_the_overdue_step_and_times_the_next_from_then() -> None:
    """Down for ten minutes: the pending step runs on its return, the next waits its full wait
    after that, so a backlog is never fired at once."""
    run = decide(CHAIN, at(0, 1, 2, s(180)), s(780))
    assert isinstance(run, RunStep)
    assert (run.position.step, run.due_at, run.next, run.next_due_at) == (
        2,
        s(180),
        Position(0, 1, 3),
        s(1080),
    )


def test_after_the_last_round_the_chain_is_exhausted_and_looks_again_for_an_acknowledgement() -> None:
    run = decide(CHAIN, at(0, 2, 3, s(960)), s(960))
    assert isinstance(run, RunStep)
    assert (run.next, run.next_due_at) == (Position(0, 3, 0), s(960 + 600))
    assert decide(CHAIN, at(0, 3, 0, s(1560)), s(1560)) == Wait(s(2160), WaitReason.EXHAUSTED)
    never = Chain(CHAIN.ref, CHAIN.steps, 1, 0, "sms")
    last = decide(never, at(0, 1, 3, s(480)), s(480))
    assert isinstance(last, RunStep)
    assert last.next_due_at is None
    assert decide(never, at(0, 2, 0, None), s(9999)) == Wait(None, WaitReason.EXHAUSTED)


def test_acknowledged_steps_stop_and_it_returns_to_the_queue_after_its_limit() -> None:
    acked = at(0, 1, 2, s(180), ack=s(90))
    assert decide(CHAIN, acked, s(180)) == Wait(s(690), WaitReason.ACKNOWLEDGED)
    assert decide(CHAIN, acked, s(689)) == Wait(s(690), WaitReason.ACKNOWLEDGED)
    back = decide(CHAIN, acked, s(690))
    assert back == Requeue(s(90), Position(1, 1, 0), s(690 + 60))
    # The new cycle escalates again from its first step, with keys of its own.
    again = decide(CHAIN, AlarmEscalation(back.next, back.next_due_at, None), s(750))
    assert isinstance(again, RunStep)
    assert step_key(7, again.position) == "alarm:7:esc:1.1.0"


def test_a_reopened_alarm_is_timed_from_its_reopening() -> None:
    reopened = AlarmEscalation(Position(0, 3, 0), s(2000), acknowledged_at=s(90), reopened_at=s(3000))
    assert requeue_at(CHAIN, reopened) == s(3600)
    assert decide(CHAIN, reopened, s(3100)) == Wait(s(3600), WaitReason.ACKNOWLEDGED)


def test_without_a_requeue_limit_an_acknowledged_alarm_is_left_alone() -> None:
    keep = Chain(CHAIN.ref, CHAIN.steps, 2, 0, "sms")
    assert decide(keep, at(0, 1, 1, s(60), ack=s(30)), s(99999)) == Wait(None, WaitReason.ACKNOWLEDGED)


def test_a_chain_without_steps_never_escalates_but_still_requeues() -> None:
    empty = Chain("x[*]@2026-01-01", (), 1, 600, "sms")
    assert first_due(empty, T0) is None
    assert decide(empty, at(0, 1, 0, None), s(10)) == Wait(s(610), WaitReason.NO_STEPS)
    assert isinstance(decide(empty, at(0, 1, 0, s(610), ack=s(5)), s(610)), Requeue)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"steps": "x", "rounds": 1, "requeue_after_s": 0, "staff_channel": "sms"}, "steps must be a list"),
        (
            {
                "steps": [{"action": "page", "wait_s": 1}],
                "rounds": 1,
                "requeue_after_s": 0,
                "staff_channel": "sms",
            },
            "action 'page'",
        ),
        (
            {
                "steps": [{"action": "webhook", "wait_s": -1}],
                "rounds": 1,
                "requeue_after_s": 0,
                "staff_channel": "sms",
            },
            "wait_s",
        ),
        ({"steps": [], "rounds": 0, "requeue_after_s": 0, "staff_channel": "sms"}, "rounds"),
        ({"steps": [], "rounds": 1, "requeue_after_s": 1.5, "staff_channel": "sms"}, "requeue_after_s"),
        ({"steps": [], "rounds": 1, "requeue_after_s": 0, "staff_channel": "fax"}, "staff_channel"),
    ],
)
def test_a_chain_that_cannot_run_is_refused_with_the_reason(value: dict[str, Any], error: str) -> None:
    with pytest.raises(ChainInvalid, match=error):
        parse_chain(value, ref="r")


def test_the_frozen_copy_reads_back_as_the_same_chain() -> None:
    assert frozen_chain(CHAIN.to_json()) == CHAIN
    with pytest.raises(ChainInvalid, match="no ref"):
        frozen_chain({k: v for k, v in CHAIN.to_json().items() if k != "ref"})


SEEDED = snapshot_from_rows(dt.date(2026, 12, 3), [], SEED.policies)


@pytest.mark.parametrize("alarm_type", list(AlarmType))
def test_every_alarm_type_has_a_seeded_chain_that_runs(alarm_type: AlarmType) -> None:
    entry = SEEDED.entry_or_star(CHAIN_KEY, alarm_type.value)
    chain = parse_chain(entry.value, ref=entry.ref())
    assert chain.rounds >= 1
    assert chain.steps


def test_urgent_alarms_reach_a_supervisor_at_the_acknowledgement_target_and_requeue_after_ten_minutes() -> (
    None
):
    """DOMAIN §7: unacknowledged after 60 s → escalate to a supervisor and notify again; the issue:
    an SOS acknowledged and still open after 10 minutes returns to the queue."""
    entry = SEEDED.entry_or_star(CHAIN_KEY, "SOS")
    chain = parse_chain(entry.value, ref=entry.ref())
    assert entry.ref() == "callcentre.escalation[SOS]@2026-01-01"
    assert chain.steps[:2] == (Step(A.NOTIFY_OPERATORS, 60), Step(A.NOTIFY_SUPERVISORS, 0))
    assert SEEDED.number("alarm.ack_sla", "escalate_after_seconds") == chain.steps[0].wait_s
    assert chain.requeue_after_s == 600
    family = parse_family_rule(SEEDED.value(FAMILY_KEY), ref="f")
    assert family.applies("CRITICAL")
    assert not family.applies("MAJOR")
    assert family.channel == "sms"


def test_on_call_contacts_are_channel_and_recipient_and_bad_entries_are_set_aside() -> None:
    assert parse_contact("sms:13912345678") == Contact("sms", "13912345678")
    assert parse_contact("webhook:https://oncall.example/hook") == Contact(
        "webhook", "https://oncall.example/hook"
    )
    for bad in ("13912345678", "fax:123", "sms:"):
        with pytest.raises(ValueError, match="channel:recipient"):
            parse_contact(bad)
    oncall = parse_oncall(
        {"contacts": ["sms:13912345678", "pager:1", "wechat:oX1"], "webhook": "ftp://x"}, ref="o"
    )
    assert oncall.contacts == (Contact("sms", "13912345678"), Contact("wechat", "oX1"))
    assert (oncall.webhook, oncall.invalid) == ("", ("pager:1", "ftp://x"))
    seeded = SEEDED.entry_or_star(ONCALL_KEY, "420902")
    assert parse_oncall(seeded.value, ref=seeded.ref()).contacts == ()


def test_the_family_is_each_number_once_in_calling_order() -> None:
    assert family_recipients(["139", "138 ", "", "139", "137"]) == ["139", "138", "137"]


def _audited(
    *,
    chain: dict[str, Any] | None = None,
    position: Position = Position(0, 1, 0),
    due: dt.datetime | None = None,
    ack: dt.datetime | None = None,
) -> AuditedAlarm:
    return AuditedAlarm(1, T0, chain, position, due, ack)


GRACE = dt.timedelta(seconds=30)


@pytest.mark.parametrize(
    ("alarm", "now", "problem"),
    [
        (_audited(), s(10), None),  # raised 10 s ago: the runner has the grace period to freeze it
        (_audited(), s(31), Problem.NOT_FROZEN),
        (_audited(chain={"ref": "x", "steps": 1}), s(31), Problem.CHAIN_INVALID),
        (_audited(chain=CHAIN.to_json(), due=s(60)), s(80), None),
        (_audited(chain=CHAIN.to_json(), due=s(60)), s(91), Problem.OVERDUE),
        (
            _audited(chain=CHAIN.to_json(), position=Position(0, 1, 4), due=s(60)),
            s(61),
            Problem.POSITION_INVALID,
        ),
        (_audited(chain=CHAIN.to_json(), due=None), s(61), Problem.NO_NEXT_STEP),
        (_audited(chain=CHAIN.to_json(), due=None, ack=s(5)), s(61), Problem.NO_REQUEUE),
        (_audited(chain=CHAIN.to_json(), due=s(605), ack=s(5)), s(61), None),
        # Exhausted: fine while it is timed to look again for an acknowledgement.
        (_audited(chain=CHAIN.to_json(), position=Position(0, 3, 0), due=s(2000)), s(1990), None),
        (
            _audited(chain=CHAIN.to_json(), position=Position(0, 3, 0), due=None),
            s(1990),
            Problem.NO_NEXT_STEP,
        ),
        # A chain that never requeues: acknowledged or exhausted, nothing to time is the documented reason.
        (_audited(chain={**CHAIN.to_json(), "requeue_after_s": 0}, due=None, ack=s(5)), s(61), None),
        (
            _audited(chain={**CHAIN.to_json(), "requeue_after_s": 0}, position=Position(0, 3, 0), due=None),
            s(9999),
            None,
        ),
    ],
)
def test_the_auditor_accepts_a_timed_next_step_or_a_documented_reason(
    alarm: AuditedAlarm, now: dt.datetime, problem: Problem | None
) -> None:
    assert audit(alarm, now=now, grace=GRACE) == problem
