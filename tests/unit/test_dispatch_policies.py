"""Dispatch policies are read from dated ``policy_value`` rows, with DOMAIN defaults when absent."""

from __future__ import annotations

import pytest

from core.seed_data import POLICY_DEFAULTS
from dispatch.common import policies_from
from dispatch.matching import MatchWeights
from dispatch.verification import QualityWeights

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
