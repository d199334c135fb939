"""Dispatch policies are read from dated ``policy_value`` rows, with DOMAIN defaults when absent."""

from __future__ import annotations

import pytest

from dispatch.common import CONTINUITY_DAYS, SignOffPinPolicy, policies_from
from dispatch.matching import MatchWeights
from dispatch.seed import POLICY_DEFAULTS
from dispatch.verification import QualityWeights, VerificationPolicy

pytestmark = pytest.mark.unit


def test_no_rows_gives_the_domain_defaults() -> None:
    p = policies_from([])
    assert p.match.weights == MatchWeights()
    assert p.quality == QualityWeights()
    assert p.offer.offer_seconds == 60


def test_weights_come_from_policy_rows_in_basis_points() -> None:
    p = policies_from(
        [
            (
                "dispatch.match_weights",
                "*",
                {"travel_bp": 7000, "continuity_bp": 1000, "fairness_bp": 1000, "rating_bp": 1000},
            ),
            (
                "dispatch.quality_weights",
                "*",
                {"rating_bp": 2500, "callback_bp": 2500, "exceptions_bp": 2500, "complaints_bp": 2500},
            ),
        ]
    )
    assert p.match.weights == MatchWeights(travel=0.7, continuity=0.1, fairness=0.1, rating=0.1)
    assert p.quality == QualityWeights(rating=0.25, callback=0.25, exceptions=0.25, complaints=0.25)


def test_a_later_row_wins_and_seeded_defaults_equal_the_code_defaults() -> None:
    rows = [
        ("dispatch.offer_window", "*", {"seconds": 60}),
        ("dispatch.offer_window", "*", {"seconds": 90}),
    ]
    assert policies_from(rows).offer.offer_seconds == 90
    seeded = [(d.key, d.scope, d.value) for d in POLICY_DEFAULTS if d.key.startswith("dispatch.")]
    from_seed = policies_from(seeded)
    assert from_seed.match.weights == MatchWeights()
    assert from_seed.quality == QualityWeights()


def test_continuity_window_is_whole_days_from_the_policy() -> None:
    assert policies_from([]).continuity_days == CONTINUITY_DAYS == 30
    rows = [("dispatch.continuity_window", "*", {"days": 14})]
    assert policies_from(rows).continuity_days == 14
    # Fractions are cut to whole days; a negative window counts nothing.
    assert policies_from([("dispatch.continuity_window", "*", {"days": 7.9})]).continuity_days == 7
    assert policies_from([("dispatch.continuity_window", "*", {"days": -3})]).continuity_days == 0
    # Not a JSON number (true, text, absent): the default, as the SQL twin reads it.
    for bad in ({"days": True}, {"days": "60"}, {"weeks": 2}):
        assert policies_from([("dispatch.continuity_window", "*", bad)]).continuity_days == 30, bad
    # Another scope is another policy.
    assert policies_from([("dispatch.continuity_window", "rural", {"days": 60})]).continuity_days == 30


def test_sign_off_pin_limit_comes_from_the_policy() -> None:
    assert policies_from([]).sign_off_pin == SignOffPinPolicy(max_failures=5, lock_s=900)
    rows = [("verification.signoff_pin", "*", {"max_failures": 3, "lock_minutes": 60})]
    assert policies_from(rows).sign_off_pin == SignOffPinPolicy(max_failures=3, lock_s=3600)
    half = [("verification.signoff_pin", "*", {"lock_minutes": 0.5})]
    assert policies_from(half).sign_off_pin == SignOffPinPolicy(max_failures=5, lock_s=30)
    # At least one wrong PIN is allowed before the lock; a lock is never negative.
    silly = [("verification.signoff_pin", "*", {"max_failures": 0, "lock_minutes": -5})]
    assert policies_from(silly).sign_off_pin == SignOffPinPolicy(max_failures=1, lock_s=0)


def test_seeded_continuity_and_pin_policies_equal_the_code_defaults() -> None:
    seeded = [(d.key, d.scope, d.value) for d in POLICY_DEFAULTS]
    keys = {d.key for d in POLICY_DEFAULTS}
    assert {"dispatch.continuity_window", "verification.signoff_pin"} <= keys
    p = policies_from(seeded)
    assert p.continuity_days == CONTINUITY_DAYS
    assert p.sign_off_pin == SignOffPinPolicy()


def test_check_in_time_tolerances_are_seeded_policy() -> None:
    seeded = [(d.key, d.scope, d.value) for d in POLICY_DEFAULTS if d.key.startswith("verification.")]
    assert policies_from(seeded).verification == VerificationPolicy()
    rows = [("verification.checkin_early", "*", {"seconds": 600})]
    assert policies_from(rows).verification.early_check_in_s == 600
    rows = [("verification.checkin_late", "*", {"seconds": 900})]
    assert policies_from(rows).verification.late_check_in_s == 900
