"""Sign-in throttling rules: progressive account locks, forgetting idle counts, the seeded policy."""

from __future__ import annotations

import datetime as dt

import pytest

from core.identity.login_rules import (
    POLICY_KEY,
    AccountPolicy,
    failures_so_far,
    lock_seconds,
    login_policy_from,
    retry_after_s,
)
from core.seed import AUTH_POLICY_DEFAULTS

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)
ACCOUNT = AccountPolicy(max_failures=5, lock_s=30, max_lock_s=900, forget_after_s=86_400)


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(1, 0), (4, 0), (5, 30), (6, 60), (7, 120), (9, 480), (10, 900), (11, 900), (10_000, 900)],
)
def test_locks_double_from_the_threshold_up_to_the_maximum(failures: int, seconds: int) -> None:
    assert lock_seconds(failures, ACCOUNT) == seconds


@pytest.mark.parametrize(
    ("last_failed", "expected"),
    [
        (None, 0),
        (NOW - dt.timedelta(hours=1), 7),
        (NOW - dt.timedelta(days=1), 0),
        (NOW - dt.timedelta(days=2), 0),
    ],
)
def test_an_idle_count_is_forgotten(last_failed: dt.datetime | None, expected: int) -> None:
    assert failures_so_far(7, last_failed, NOW, ACCOUNT) == expected


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after_s(NOW + dt.timedelta(seconds=29.2), NOW) == 30
    assert retry_after_s(NOW, NOW) == 1
    assert retry_after_s(NOW - dt.timedelta(seconds=5), NOW) == 1


def test_the_seeded_policy_lets_a_call_centre_sign_in_and_limits_guessing() -> None:
    rows = {p.scope: p.value for p in AUTH_POLICY_DEFAULTS if p.key == POLICY_KEY}
    policy = login_policy_from(rows["account"], rows["address"])
    assert policy.account == ACCOUNT
    # Fifty operators behind one address, each mistyping once at the start of a shift, are not refused.
    assert policy.address.max_failures >= 50
    assert (policy.address.max_failures, policy.address.window_s) == (100, 600)


def test_a_malformed_policy_is_refused_and_silly_numbers_are_bounded() -> None:
    address = {"max_failures": 100, "window_seconds": 600}
    with pytest.raises(ValueError, match="lock_seconds"):
        login_policy_from({"max_failures": 5, "lock_seconds": "30"}, address)
    silly = {"max_failures": 0, "lock_seconds": -1, "max_lock_seconds": 0, "forget_after_seconds": True}
    with pytest.raises(ValueError, match="forget_after_seconds"):
        login_policy_from(silly, address)
    bounded = login_policy_from({**silly, "forget_after_seconds": 0}, address).account
    assert bounded == AccountPolicy(max_failures=1, lock_s=1, max_lock_s=1, forget_after_s=1)
