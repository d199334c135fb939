"""Escalation chains (issue #11, after Grafana OnCall's escalation chains): the pure rules.

A chain is dated policy (``callcentre.escalation``, scope = the alarm type, ``*`` for the rest; seeded in
:mod:`callcentre.seed`): steps run in order, each ``wait_s`` seconds after the one before (the first
after the raise), and the whole chain runs ``rounds`` times. When the call centre first sees an alarm
it *freezes* the chain on it (a copy in ``alarm.escalation_chain`` with the policy's
``key[scope]@date``), so a policy changed later applies to later alarms only.

Where an alarm stands is four columns of ``alarm``, never a process's memory:

* ``escalation_cycle`` — 0 from the raise, one more each time the alarm returns to the queue;
* ``escalation_round`` (from 1) and ``escalation_step`` (from 0) — the *pending* step; past the last
  round (``round = rounds + 1``) the chain is exhausted;
* ``escalation_due_at`` — when the runner must look at the alarm next: the pending step's due time, or
  (acknowledged) when it returns to the queue, or (exhausted) when to look again for an
  acknowledgement to time; NULL when there is nothing left to time.

:func:`decide` says, from the frozen chain, the alarm's state and ``now``, what is due: run the pending
step (and what comes after it), return an acknowledged alarm to the queue, or wait. A step's effect
is keyed by (alarm, cycle, round, step) — :func:`step_key` — so it can be applied at most once; the
runner (:mod:`callcentre.escalation_runner`) applies it with a conditional update of those columns in
the same transaction as its timeline event and outbox rows.

Steps stop while the alarm is acknowledged and for good once it is cleared. *Acknowledged is not
resolved*: an alarm acknowledged ``requeue_after_s`` ago (or reopened that long ago, whichever is
later) and still open returns to the queue — unacknowledged and unassigned again — and its chain
starts over as a new cycle.

No I/O here: the runner reads, this module decides, the runner writes.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

CHAIN_KEY: Final = "callcentre.escalation"  # scope: the alarm type, or "*"
ONCALL_KEY: Final = "callcentre.oncall"  # scope: the district code, or "*"
FAMILY_KEY: Final = "callcentre.family_notify"  # scope "*"
AUDIT_KEY: Final = "callcentre.escalation_audit"  # scope "*"
POLICY_PREFIXES: Final = ("callcentre.",)

# Channels a notification may take (core.notify delivers them); "console" is the operators' screen:
# the timeline event itself, no outbox row.
CHANNELS: Final = frozenset({"sms", "wechat", "webhook"})


class StepAction(enum.StrEnum):
    NOTIFY_OPERATORS = "notify_operators"  # the district's consoles alert again (the timeline event)
    NOTIFY_SUPERVISORS = "notify_supervisors"  # the district's supervisors, by the chain's staff channel
    NOTIFY_ONCALL = "notify_oncall"  # the district's on-call list (callcentre.oncall)
    WEBHOOK = "webhook"  # the district's incident webhook (callcentre.oncall's ``webhook``)


class ChainInvalid(ValueError):
    """A chain (policy row or frozen copy) that cannot be run; the message says why."""


@dataclass(frozen=True, slots=True)
class Step:
    action: StepAction
    wait_s: int  # seconds after the previous step (the first: after the raise or the return to the queue)


@dataclass(frozen=True, slots=True)
class Chain:
    """A frozen escalation chain. ``rounds`` ≥ 1; ``requeue_after_s`` 0 means never requeue."""

    ref: str  # the policy row it was copied from, ``key[scope]@valid_from``
    steps: tuple[Step, ...]
    rounds: int
    requeue_after_s: int
    staff_channel: str

    def to_json(self) -> dict[str, Any]:
        """The copy stored on the alarm (``alarm.escalation_chain``)."""
        return {
            "ref": self.ref,
            "steps": [{"action": s.action.value, "wait_s": s.wait_s} for s in self.steps],
            "rounds": self.rounds,
            "requeue_after_s": self.requeue_after_s,
            "staff_channel": self.staff_channel,
        }


def _int(value: Mapping[str, Any], name: str, *, minimum: int) -> int:
    v = value.get(name)
    if isinstance(v, bool) or not isinstance(v, int | float) or v != int(v) or v < minimum:
        raise ChainInvalid(f"{name} must be an integer ≥ {minimum}, not {v!r}")
    return int(v)


def parse_chain(value: Mapping[str, Any], *, ref: str) -> Chain:
    """A chain from a policy value (or a frozen copy); :class:`ChainInvalid` names what is wrong."""
    raw_steps = value.get("steps")
    if not isinstance(raw_steps, list):
        raise ChainInvalid(f"steps must be a list, not {raw_steps!r}")
    steps: list[Step] = []
    for i, raw in enumerate(raw_steps):
        if not isinstance(raw, dict):
            raise ChainInvalid(f"steps[{i}] must be an object")
        try:
            action = StepAction(str(raw.get("action")))
        except ValueError:
            raise ChainInvalid(
                f"steps[{i}].action {raw.get('action')!r} is not one of {list(StepAction)}"
            ) from None
        steps.append(Step(action, _int(raw, "wait_s", minimum=0)))
    channel = value.get("staff_channel")
    if channel not in CHANNELS:
        raise ChainInvalid(f"staff_channel must be one of {sorted(CHANNELS)}, not {channel!r}")
    return Chain(
        ref=ref,
        steps=tuple(steps),
        rounds=_int(value, "rounds", minimum=1),
        requeue_after_s=_int(value, "requeue_after_s", minimum=0),
        staff_channel=str(channel),
    )


def frozen_chain(stored: Mapping[str, Any]) -> Chain:
    """The chain frozen on an alarm (its own ``ref`` inside)."""
    ref = stored.get("ref")
    if not isinstance(ref, str):
        raise ChainInvalid("the frozen chain has no ref")
    return parse_chain(stored, ref=ref)


# --- Where an alarm stands, and what is due ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Position:
    """A step of a chain in one cycle: ``round`` from 1, ``step`` from 0."""

    cycle: int
    round: int
    step: int


@dataclass(frozen=True, slots=True)
class AlarmEscalation:
    """What the rules need of an alarm (UTC instants). ``reopened_at``: its latest reopening, if any."""

    position: Position
    due_at: dt.datetime | None
    acknowledged_at: dt.datetime | None
    reopened_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class RunStep:
    """Run ``step`` (at ``position``, due at ``due_at``), then stand at ``next`` looking again at
    ``next_due_at``."""

    position: Position
    step: Step
    due_at: dt.datetime
    next: Position
    next_due_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Requeue:
    """Return the acknowledged alarm to the queue: a new cycle from its first step."""

    acknowledged_at: dt.datetime
    next: Position
    next_due_at: dt.datetime | None


class WaitReason(enum.StrEnum):
    STEP_DUE = "step_due"  # the pending step is not due yet
    ACKNOWLEDGED = "acknowledged"  # until it returns to the queue (or for good: no requeue limit)
    EXHAUSTED = "exhausted"  # every round has run; look again later for an acknowledgement
    NO_STEPS = "no_steps"


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing is due: look again at ``due_at`` (None: nothing left to time)."""

    due_at: dt.datetime | None
    reason: WaitReason


Decision = RunStep | Requeue | Wait


def _seconds(s: int) -> dt.timedelta:
    return dt.timedelta(seconds=s)


def first_due(chain: Chain, start: dt.datetime) -> dt.datetime | None:
    """When the first step of a cycle that starts at ``start`` (the raise, the return to the queue) is
    due; None for a chain without steps."""
    return start + _seconds(chain.steps[0].wait_s) if chain.steps else None


def is_exhausted(chain: Chain, position: Position) -> bool:
    return not chain.steps or position.round > chain.rounds


def _after(chain: Chain, position: Position) -> Position:
    """The position after ``position``: the next step, or the first of the next round."""
    if position.step + 1 < len(chain.steps):
        return Position(position.cycle, position.round, position.step + 1)
    return Position(position.cycle, position.round + 1, 0)


def _recheck(chain: Chain, now: dt.datetime) -> dt.datetime | None:
    """When to look again at an alarm with no step left: its acknowledgement may come later and must
    still be timed for the return to the queue (never, without a requeue limit)."""
    return now + _seconds(chain.requeue_after_s) if chain.requeue_after_s else None


def requeue_at(chain: Chain, alarm: AlarmEscalation) -> dt.datetime | None:
    """When an acknowledged alarm returns to the queue: ``requeue_after_s`` after its acknowledgement
    or its latest reopening, whichever is later; None if the chain never requeues or it is not
    acknowledged."""
    if alarm.acknowledged_at is None or not chain.requeue_after_s:
        return None
    since = max(alarm.acknowledged_at, alarm.reopened_at or alarm.acknowledged_at)
    return since + _seconds(chain.requeue_after_s)


def decide(chain: Chain, alarm: AlarmEscalation, now: dt.datetime) -> Decision:
    """What is due for an active alarm at ``now``.

    * acknowledged: return to the queue at :func:`requeue_at` (a new cycle, its first step due
      ``steps[0].wait_s`` after ``now``), else wait for that time;
    * exhausted (or no steps): wait, looking again after ``requeue_after_s`` for an acknowledgement;
    * the pending step due (``due_at`` ≤ ``now``): run it; the next is due its ``wait_s`` after
      ``now`` (a step waits after the one before *ran*, so a runner that was down catches up one step
      at a time, never firing a backlog at once); past the last round, exhausted;
    * else wait until ``due_at``.
    """
    pos = alarm.position
    if alarm.acknowledged_at is not None:
        back = requeue_at(chain, alarm)
        if back is None:
            return Wait(None, WaitReason.ACKNOWLEDGED)
        if back > now:
            return Wait(back, WaitReason.ACKNOWLEDGED)
        return Requeue(alarm.acknowledged_at, Position(pos.cycle + 1, 1, 0), first_due(chain, now))
    if not chain.steps:
        return Wait(_recheck(chain, now), WaitReason.NO_STEPS)
    if is_exhausted(chain, pos):
        return Wait(_recheck(chain, now), WaitReason.EXHAUSTED)
    # A live step without a due time is never stored by the runner; a hand-edited row runs its step
    # now rather than never (the auditor reports such rows).
    due = now if alarm.due_at is None or pos.step >= len(chain.steps) else alarm.due_at
    if due > now:
        return Wait(due, WaitReason.STEP_DUE)
    step = chain.steps[min(pos.step, len(chain.steps) - 1)]
    nxt = _after(chain, pos)
    if is_exhausted(chain, nxt):
        return RunStep(pos, step, due, nxt, _recheck(chain, now))
    return RunStep(pos, step, due, nxt, now + _seconds(chain.steps[nxt.step].wait_s))


def step_key(alarm_id: int, position: Position) -> str:
    """The idempotency key of a step's effects (its outbox rows add the recipient)."""
    return f"alarm:{alarm_id}:esc:{position.cycle}.{position.round}.{position.step}"


# --- Who is told ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contact:
    channel: str  # sms | wechat | webhook
    recipient: str  # a phone number, an open id, a URL


def parse_contact(text: str) -> Contact:
    """``"sms:13912345678"``, ``"wechat:<open id>"`` or ``"webhook:https://…"``."""
    channel, sep, recipient = text.partition(":")
    if not sep or channel not in CHANNELS or not recipient.strip():
        raise ValueError(
            f"an on-call contact is 'channel:recipient' with a channel of {sorted(CHANNELS)}: {text!r}"
        )
    return Contact(channel, recipient.strip())


@dataclass(frozen=True, slots=True)
class OnCall:
    """A district's on-call list (``callcentre.oncall``): who is called, and the incident webhook."""

    ref: str
    contacts: tuple[Contact, ...]
    webhook: str  # "" when the deployment has none
    invalid: tuple[str, ...] = ()  # entries that could not be read (reported, skipped)


def parse_oncall(value: Mapping[str, Any], *, ref: str) -> OnCall:
    contacts: list[Contact] = []
    invalid: list[str] = []
    raw = value.get("contacts")
    for item in raw if isinstance(raw, list) else []:
        try:
            contacts.append(parse_contact(str(item)))
        except ValueError:
            invalid.append(str(item))
    webhook = value.get("webhook")
    url = webhook.strip() if isinstance(webhook, str) else ""
    if url and not url.startswith(("http://", "https://")):
        invalid.append(url)
        url = ""
    return OnCall(ref, tuple(contacts), url, tuple(invalid))


@dataclass(frozen=True, slots=True)
class FamilyRule:
    """Which alarms the family is told of (``callcentre.family_notify``), and how."""

    ref: str
    severities: frozenset[str]
    channel: str

    def applies(self, severity: str) -> bool:
        return severity in self.severities


def parse_family_rule(value: Mapping[str, Any], *, ref: str) -> FamilyRule:
    raw = value.get("severities")
    severities = frozenset(str(s) for s in raw) if isinstance(raw, list) else frozenset()
    channel = value.get("channel")
    if channel not in CHANNELS - {"webhook"}:
        raise ChainInvalid(f"{ref}: the family channel must be sms or wechat, not {channel!r}")
    return FamilyRule(ref, severities, str(channel))


def family_recipients(phones: Sequence[str]) -> list[str]:
    """The family's numbers in calling order (emergency contacts by position, then guardians), each
    once."""
    seen: dict[str, None] = {}
    for phone in phones:
        p = phone.strip()
        if p and p not in seen:
            seen[p] = None
    return list(seen)


# --- The auditor ------------------------------------------------------------------------------------


class Problem(enum.StrEnum):
    NOT_FROZEN = "not_frozen"  # no chain frozen on it within the grace period after its raise
    CHAIN_INVALID = "chain_invalid"  # the frozen copy cannot be read
    NO_NEXT_STEP = "no_next_step"  # neither acknowledged nor exhausted, and nothing timed
    NO_REQUEUE = "no_requeue"  # acknowledged, the chain requeues, and nothing timed
    OVERDUE = "overdue"  # timed more than the grace period ago: the runner is behind or stopped
    POSITION_INVALID = "position_invalid"  # a step or round the chain does not have


@dataclass(frozen=True, slots=True)
class AuditedAlarm:
    """An active alarm as the auditor reads it."""

    id: int
    received_at: dt.datetime
    chain: Mapping[str, Any] | None
    position: Position
    due_at: dt.datetime | None
    acknowledged_at: dt.datetime | None


def audit(alarm: AuditedAlarm, *, now: dt.datetime, grace: dt.timedelta) -> Problem | None:
    """Whether an active alarm has a valid next step, or a documented reason to have none
    (acknowledged without a requeue limit, chain exhausted without one, no steps)."""
    if alarm.chain is None:
        return Problem.NOT_FROZEN if alarm.received_at + grace < now else None
    try:
        chain = frozen_chain(alarm.chain)
    except ChainInvalid:
        return Problem.CHAIN_INVALID
    pos = alarm.position
    if pos.cycle < 0 or pos.round < 1 or pos.step < 0 or (chain.steps and pos.step >= len(chain.steps)):
        return Problem.POSITION_INVALID
    if alarm.due_at is not None:
        return Problem.OVERDUE if alarm.due_at + grace < now else None
    if alarm.acknowledged_at is not None:
        return Problem.NO_REQUEUE if chain.requeue_after_s else None
    if is_exhausted(chain, pos):
        return None if not chain.requeue_after_s else Problem.NO_NEXT_STEP
    return Problem.NO_NEXT_STEP
