"""Sign-in throttling rules (pure): how long a run of failures locks an account, when a source
address has failed too often. Only failures count; a successful sign-in never uses up a budget.

The numbers are dated policy data (``policy_value`` key ``auth.login_failures``, scopes ``account``
and ``address``, seeded from :data:`core.seed.AUTH_POLICY_DEFAULTS`); these functions take them and
``now`` as parameters.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

POLICY_KEY = "auth.login_failures"


@dataclass(frozen=True, slots=True)
class AccountPolicy:
    """From the ``max_failures``-th failure in a row, each failure locks the account: first for
    ``lock_s`` seconds, then twice as long per further failure, never longer than ``max_lock_s``.
    A count whose last failure is ``forget_after_s`` seconds old starts again."""

    max_failures: int
    lock_s: int
    max_lock_s: int
    forget_after_s: int


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """At most ``max_failures`` failed sign-ins from one source address in ``window_s`` seconds."""

    max_failures: int
    window_s: int


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    account: AccountPolicy
    address: AddressPolicy


def _int(value: Mapping[str, Any], name: str, *, at_least: int) -> int:
    v = value.get(name)
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise ValueError(f"policy {POLICY_KEY}: {name} must be a number, not {v!r}")
    return max(at_least, int(v))


def login_policy_from(account: Mapping[str, Any], address: Mapping[str, Any]) -> LoginPolicy:
    """The policy from the ``value`` of its two rows (``account`` and ``address`` scopes)."""
    return LoginPolicy(
        account=AccountPolicy(
            max_failures=_int(account, "max_failures", at_least=1),
            lock_s=_int(account, "lock_seconds", at_least=1),
            max_lock_s=_int(account, "max_lock_seconds", at_least=1),
            forget_after_s=_int(account, "forget_after_seconds", at_least=1),
        ),
        address=AddressPolicy(
            max_failures=_int(address, "max_failures", at_least=1),
            window_s=_int(address, "window_seconds", at_least=1),
        ),
    )


def lock_seconds(failures: int, policy: AccountPolicy) -> int:
    """How long (seconds) the ``failures``-th failure in a row locks the account; 0 = not at all."""
    beyond = failures - policy.max_failures
    if beyond < 0:
        return 0
    # Capped exponent: the doubling passes any sane maximum long before 2**30.
    doubled: int = policy.lock_s << min(beyond, 30)
    return min(policy.max_lock_s, doubled)


def failures_so_far(
    failures: int, last_failed_at: dt.datetime | None, now: dt.datetime, p: AccountPolicy
) -> int:
    """The count a new failure adds to: the stored one, unless it has been idle long enough to forget."""
    if last_failed_at is None or now - last_failed_at >= dt.timedelta(seconds=p.forget_after_s):
        return 0
    return failures


def retry_after_s(until: dt.datetime, now: dt.datetime) -> int:
    """Whole seconds until ``until`` (at least 1), for a ``Retry-After`` header."""
    return max(1, math.ceil((until - now).total_seconds()))
