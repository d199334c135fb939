"""Dispatch policies are dated ``policy_value`` rows read through the one reader, with dispatch's seeded
defaults as the only fallback: what each rule reads, from which day, and how a row is read."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from core.policy import PolicyMissing, snapshot_from_rows
from dispatch.matching import MatchWeights, ServiceRule
from dispatch.policies import (
    Policies,
    SignOffPinPolicy,
    continuity_days_sql,
    min_on_site_minutes,
    policies_from,
    policies_on,
    policy_number_sql,
    seeded_number,
)
from dispatch.seed import POLICY_DEFAULTS
from dispatch.verification import QualityWeights

pytestmark = pytest.mark.unit

DAY = dt.date(2026, 12, 2)
ON = dt.date(2027, 3, 1)  # the day a later row takes effect
BEFORE = ON - dt.timedelta(days=1)

Row = tuple[str, str, dict[str, Any], dt.date, dt.date | None]


def _from(key: str, value: dict[str, Any], scope: str = "*", valid_from: dt.date = ON) -> Row:
    return (key, scope, value, valid_from, None)


def test_the_seeded_defaults_alone_give_the_domain_norms() -> None:
    p = policies_on(DAY)
    m = p.match
    assert (m.detour_factor, m.urban_speed_kmh, m.rural_speed_kmh) == (1.3, 15.0, 30.0)
    assert (m.urgent_eta_urban_min, m.urgent_eta_rural_min, m.max_eta_min) == (15.0, 30.0, 60.0)
    assert (m.continuity_saturation, m.walk_circle_urban_m, m.walk_circle_rural_m) == (4, 1000.0, 0.0)
    assert m.weights == MatchWeights(travel=0.5, continuity=0.25, fairness=0.15, rating=0.1)
    v = p.verification
    assert (v.max_check_in_distance_urban_m, v.max_check_in_distance_rural_m) == (200.0, 500.0)
    assert (v.min_on_site_ratio, v.sign_off_within_s, v.callback_ratio) == (0.8, 86_400, 0.1)
    assert (v.early_check_in_s, v.late_check_in_s) == (1800, 1800)
    assert (p.offer.offer_seconds, p.offer.max_attempts) == (60, 3)
    assert (p.cancellation.notice_s, p.cancellation.late_fee_fen) == (7200, 1000)
    assert p.quality == QualityWeights(rating=0.35, callback=0.25, exceptions=0.2, complaints=0.2)
    assert (p.continuity_days, p.sign_off_pin) == (30, SignOffPinPolicy(max_failures=5, lock_s=900))
    assert (p.dayplan.max_s, p.dayplan.min_s, p.dayplan.per_visit_s) == (5.0, 0.2, 0.02)
    assert p.escalate_at_minute == 20 * 60
    # DOMAIN §3: what each service asks of the caregiver, and its minimum time on site.
    assert p.service("BATH", "BATH") == ServiceRule("BATH", "BATH", "eldercare_worker", 4, True, 45)
    assert p.service("CARE", "CARE") == ServiceRule("CARE", "CARE", "eldercare_worker", 4, False, 60)
    assert p.service("MEAL", "MEAL") == ServiceRule("MEAL", "MEAL", "health", None, False, 0)
    assert p.service("CLEAN", "CLEAN") == ServiceRule("CLEAN", "CLEAN", None, None, False, 60)
    assert p.service("ERRAND", "ERRAND").min_minutes == 0


def test_the_seeded_rows_read_back_equal_the_defaults_themselves() -> None:
    # A database holding only the seed gives the same policies as the defaults alone.
    rows = [(d.key, d.scope, d.value, dt.date(2026, 1, 1), None) for d in POLICY_DEFAULTS]
    from_rows = policies_on(DAY, rows)
    alone = policies_on(DAY)
    assert dataclasses.replace(from_rows, snapshot=alone.snapshot) == alone
    assert all(e.origin == "row" for e in from_rows.snapshot.rows.values())


# (what, key, scope, value from ON, reading, value before ON, value on ON)
DATED: list[tuple[str, str, str, dict[str, Any], Callable[[Policies], object], object, object]] = [
    ("max eta", "dispatch.max_eta", "*", {"seconds": 1800}, lambda p: p.match.max_eta_min, 60.0, 30.0),
    (
        "continuity saturation",
        "dispatch.continuity_saturation",
        "*",
        {"visits": 8},
        lambda p: p.match.continuity_saturation,
        4,
        8,
    ),
    (
        "walk circle",
        "dispatch.walk_circle",
        "urban",
        {"metres": 500},
        lambda p: p.match.walk_circle_urban_m,
        1000.0,
        500.0,
    ),
    (
        "a walk circle for rural areas too",
        "dispatch.walk_circle",
        "rural",
        {"metres": 2000},
        lambda p: p.match.walk_circle_rural_m,
        0.0,
        2000.0,
    ),
    (
        "continuity window",
        "dispatch.continuity_window",
        "*",
        {"days": 14},
        lambda p: p.continuity_days,
        30,
        14,
    ),
    (
        "urgent eta, urban",
        "dispatch.urgent_eta_max",
        "urban",
        {"seconds": 600},
        lambda p: p.match.urgent_eta_urban_min,
        15.0,
        10.0,
    ),
    ("detour", "dispatch.detour", "*", {"bp": 15_000}, lambda p: p.match.detour_factor, 1.3, 1.5),
    ("rural speed", "dispatch.speed", "rural", {"kmh": 40}, lambda p: p.match.rural_speed_kmh, 30.0, 40.0),
    (
        "evening cut-off of the day plans",
        "dispatch.dayplan",
        "*",
        {"escalate_at_minute": 18 * 60},
        lambda p: (p.escalate_at_minute, p.dayplan.max_s),
        (1200, 5.0),
        (1080, 5.0),
    ),
    (
        "planner budget",
        "dispatch.dayplan",
        "*",
        {"max_ms": 1000},
        lambda p: (p.dayplan.max_s, p.escalate_at_minute),
        (5.0, 1200),
        (1.0, 1200),
    ),
    ("offer window", "dispatch.offer_window", "*", {"seconds": 90}, lambda p: p.offer.offer_seconds, 60, 90),
    (
        "minimum on-site ratio",
        "verification.min_onsite",
        "*",
        {"bp": 9000},
        lambda p: p.verification.min_on_site_ratio,
        0.8,
        0.9,
    ),
    (
        "check-in radius, rural",
        "verification.checkin_radius",
        "rural",
        {"metres": 800},
        lambda p: p.verification.max_check_in_distance_rural_m,
        500.0,
        800.0,
    ),
    (
        "late cancellation fee",
        "dispatch.late_cancel_fee",
        "*",
        {"fen": 2000},
        lambda p: p.cancellation.late_fee_fen,
        1000,
        2000,
    ),
    (
        "bathing: certificate and level",
        "service.requirement",
        "BATH",
        {"certificate": "nurse", "max_level": None},
        lambda p: (
            p.service("BATH", "BATH").certificate_kind,
            p.service("BATH", "BATH").max_certificate_level,
        ),
        ("eldercare_worker", 4),
        ("nurse", None),
    ),
    (
        "cleaning gains a certificate",
        "service.requirement",
        "CLEAN",
        {"certificate": "health", "max_level": None, "same_gender": False},
        lambda p: p.service("CLEAN", "CLEAN").certificate_kind,
        None,
        "health",
    ),
    (
        "bathing: no same-gender rule any more",
        "service.requirement",
        "BATH",
        {"same_gender": False},
        lambda p: (p.service("BATH", "BATH").same_gender, p.service("BATH", "BATH").certificate_kind),
        (True, "eldercare_worker"),
        (False, "eldercare_worker"),
    ),
    (
        "care: level 3 or above",
        "service.requirement",
        "CARE",
        {"certificate": "eldercare_worker", "max_level": 3, "same_gender": False},
        lambda p: p.service("CARE", "CARE").max_certificate_level,
        4,
        3,
    ),
    (
        "minimum on site",
        "service.price_fen",
        "VISIT",
        {"fen": 3000, "unit": "visit", "min_minutes": 45},
        lambda p: p.service("VISIT", "VISIT").min_minutes,
        30,
        45,
    ),
]


@pytest.mark.parametrize(
    ("what", "key", "scope", "value", "read", "before", "on"), DATED, ids=[c[0] for c in DATED]
)
def test_a_later_row_applies_from_its_day_and_not_the_day_before(
    what: str,
    key: str,
    scope: str,
    value: dict[str, Any],
    read: Callable[[Policies], object],
    before: object,
    on: object,
) -> None:
    rows = [_from(key, value, scope)]
    assert read(policies_on(BEFORE, rows)) == before, what
    assert read(policies_on(ON, rows)) == on, what
    # A row that ends goes back to what was valid before it (here: the seeded default).
    ended = [(key, scope, value, ON, ON + dt.timedelta(days=9))]
    assert read(policies_on(ON + dt.timedelta(days=10), ended)) == before, what


def test_weights_come_from_policy_rows_in_basis_points() -> None:
    rows = [
        _from(
            "dispatch.match_weights",
            {"travel_bp": 7000, "continuity_bp": 1000, "fairness_bp": 1000, "rating_bp": 1000},
        ),
        _from(
            "dispatch.quality_weights",
            {"rating_bp": 2500, "callback_bp": 2500, "exceptions_bp": 2500, "complaints_bp": 2500},
        ),
    ]
    p = policies_on(ON, rows)
    assert p.match.weights == MatchWeights(travel=0.7, continuity=0.1, fairness=0.1, rating=0.1)
    assert p.quality == QualityWeights(rating=0.25, callback=0.25, exceptions=0.25, complaints=0.25)


def test_the_latest_valid_from_wins() -> None:
    rows = [
        _from("dispatch.offer_window", {"seconds": 90}, valid_from=dt.date(2027, 1, 1)),
        _from("dispatch.offer_window", {"seconds": 120}, valid_from=dt.date(2027, 2, 1)),
    ]
    assert policies_on(dt.date(2027, 1, 31), rows).offer.offer_seconds == 90
    assert policies_on(dt.date(2027, 2, 1), rows).offer.offer_seconds == 120


def test_a_number_the_row_does_not_give_is_the_seeded_default_as_sql_reads_it() -> None:
    def days(value: dict[str, Any]) -> int:
        return policies_on(ON, [_from("dispatch.continuity_window", value)]).continuity_days

    assert days({"days": 14}) == 14
    # Fractions are cut to whole days; a negative window counts nothing.
    assert (days({"days": 7.9}), days({"days": -3})) == (7, 0)
    # Not a JSON number (true, text, absent): the seeded default, as core.policy.policy_number reads it.
    for bad in ({"days": True}, {"days": "60"}, {"weeks": 2}):
        assert days(bad) == 30, bad
    # Another scope is another policy.
    assert policies_on(ON, [_from("dispatch.continuity_window", {"days": 60}, "rural")]).continuity_days == 30


def test_sign_off_pin_limit_comes_from_the_policy() -> None:
    def pin(value: dict[str, Any]) -> SignOffPinPolicy:
        return policies_on(ON, [_from("verification.signoff_pin", value)]).sign_off_pin

    assert pin({"max_failures": 3, "lock_minutes": 60}) == SignOffPinPolicy(max_failures=3, lock_s=3600)
    assert pin({"lock_minutes": 0.5}) == SignOffPinPolicy(max_failures=5, lock_s=30)
    # At least one wrong PIN is allowed before the lock; a lock is never negative.
    assert pin({"max_failures": 0, "lock_minutes": -5}) == SignOffPinPolicy(max_failures=1, lock_s=0)


def test_a_requirement_row_names_what_it_changes_and_null_means_none() -> None:
    # A field left out keeps the seeded one; a field set to null is no requirement.
    only_level = policies_on(ON, [_from("service.requirement", {"max_level": 3}, "BATH")])
    assert only_level.service("BATH", "BATH") == ServiceRule("BATH", "BATH", "eldercare_worker", 3, True, 45)
    none = {"certificate": None, "max_level": None, "same_gender": False}
    lifted = policies_on(ON, [_from("service.requirement", none, "BATH")])
    assert lifted.service("BATH", "BATH") == ServiceRule("BATH", "BATH", None, None, False, 45)
    # A new price without min_minutes keeps the minimum; null means a delivery (no minimum).
    price = policies_on(ON, [_from("service.price_fen", {"fen": 4500, "unit": "hour"}, "CLEAN")])
    assert price.service("CLEAN", "CLEAN").min_minutes == 60
    delivery = [_from("service.price_fen", {"fen": 4500, "unit": "hour", "min_minutes": None}, "CLEAN")]
    assert policies_on(ON, delivery).service("CLEAN", "CLEAN").min_minutes == 0
    # The same reading for a price row fetched in SQL (order placement's default duration).
    assert min_on_site_minutes("CLEAN", {"fen": 4500}) == 60
    assert min_on_site_minutes("CLEAN", {"fen": 4500, "min_minutes": 90}) == 90
    assert min_on_site_minutes("MEAL", None) == 0
    # A service the policy knows nothing about is a deployment error, not "no requirement".
    with pytest.raises(PolicyMissing):
        policies_on(ON).service("NEW", "NEW")
    with pytest.raises(TypeError, match="max_level"):
        policies_on(ON, [_from("service.requirement", {"max_level": "four"}, "BATH")]).service("BATH", "BATH")


def test_sql_fallbacks_are_the_seeded_defaults() -> None:
    assert seeded_number("dispatch.continuity_window", "days") == 30
    assert seeded_number("dispatch.dayplan", "escalate_at_minute") == 1200
    with pytest.raises(LookupError):
        seeded_number("dispatch.nothing", "days")
    # coalesce(<the row valid on the day>, <the seeded default>): the default is a bound parameter.
    for expr, default in (
        (policy_number_sql("dispatch.max_eta", "seconds", DAY), 3600.0),
        (continuity_days_sql(DAY), 30.0),
    ):
        params = select(expr).compile().params
        assert default in params.values()


def test_a_snapshot_of_other_defaults_is_refused_rather_than_guessed() -> None:
    with pytest.raises(PolicyMissing):
        policies_from(snapshot_from_rows(DAY, [], ()))
