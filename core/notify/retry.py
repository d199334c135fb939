"""When to try a failed notification again, and when to give up (pure; ``now`` and the jitter passed in).

The schedule is dated policy, ``notify.retry`` (scope ``*``, or a channel's name for a channel of its
own): ``base_seconds`` before the second attempt, doubling after each failure up to ``max_seconds``,
at most ``max_attempts`` attempts in all. Each delay gets "equal jitter" (half fixed, half random), so
rows that failed together — a receiver that was down — do not come back together.
A receiver's ``Retry-After`` is honoured when it asks for longer, within ``max_seconds``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from core.notify.channel import DeliveryResult, Outcome
from core.policy import PolicyDefault, PolicyEntry, PolicySnapshot

RETRY_KEY: Final = "notify.retry"
POLICY_PREFIX: Final = "notify."

NOTIFY_POLICY_DEFAULTS: tuple[PolicyDefault, ...] = (
    PolicyDefault(
        RETRY_KEY,
        "*",
        {"base_seconds": 10, "max_seconds": 3600, "max_attempts": 12},
        "notification retries, project default [E]: exponential back-off with equal jitter, "
        "10 s doubling to 1 h, 12 attempts (about 5 h in all)",
    ),
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float
    max_s: float
    max_attempts: int

    @classmethod
    def from_entry(cls, entry: PolicyEntry) -> RetryPolicy:
        policy = cls(
            base_s=entry.number("base_seconds"),
            max_s=entry.number("max_seconds"),
            max_attempts=int(entry.number("max_attempts")),
        )
        if policy.base_s <= 0 or policy.max_s < policy.base_s or policy.max_attempts < 1:
            raise ValueError(f"policy {entry.ref()}: need 0 < base_seconds <= max_seconds, max_attempts >= 1")
        return policy


def retry_policy(snapshot: PolicySnapshot, channel: str) -> RetryPolicy:
    """The channel's own ``notify.retry`` row, else the general one."""
    return RetryPolicy.from_entry(snapshot.entry_or_star(RETRY_KEY, channel))


def backoff_s(policy: RetryPolicy, attempt: int, *, jitter: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based). ``jitter`` in [0, 1) picks
    the delay within its upper half: ``d/2 + jitter * d/2`` with ``d = min(max, base * 2^(attempt-1))``."""
    if not 0 <= jitter < 1:
        raise ValueError("jitter is in [0, 1)")
    delay = min(policy.max_s, policy.base_s * 2.0 ** min(attempt - 1, 62))
    return delay / 2 + jitter * delay / 2


@dataclass(frozen=True, slots=True)
class Decision:
    """What becomes of the row after an attempt: ``status`` (``sent``, ``pending`` or ``dead``), when to
    try again (``pending`` only) and the error to record."""

    status: str
    next_attempt_at: dt.datetime | None = None
    error: str | None = None


def decide(
    result: DeliveryResult, *, attempt: int, policy: RetryPolicy, now: dt.datetime, jitter: float
) -> Decision:
    """The row's next state after attempt number ``attempt`` returned ``result``."""
    if result.outcome is Outcome.SENT:
        return Decision("sent")
    error = result.error or result.outcome.value
    if result.outcome is Outcome.PERMANENT:
        return Decision("dead", error=error)
    if attempt >= policy.max_attempts:
        return Decision("dead", error=f"gave up after {attempt} attempts: {error}")
    delay = backoff_s(policy, attempt, jitter=jitter)
    if result.retry_after_s is not None:
        delay = max(delay, min(result.retry_after_s, policy.max_s))
    return Decision("pending", next_attempt_at=now + dt.timedelta(seconds=delay), error=error)
