"""Start at risk (DOMAIN §6), the pure rule: travel from where the caregiver is + margin against the
time left to the start; stale or missing positions; urban and rural speeds; dated policy."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest

from core.policy import POLICY_EPOCH, snapshot_from_rows
from dispatch.matching import METRES_PER_DEGREE_LAT, travel_seconds
from dispatch.seed import POLICY_DEFAULTS
from dispatch.start_risk import (
    POLICY_KEY,
    Basis,
    Fix,
    PendingStart,
    StartRiskPolicy,
    assess,
    reason_note,
    start_risk_policy,
    starts_at_risk,
)

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 4, 2, 0, tzinfo=dt.UTC)  # Friday 10:00 in Xiaogan
TODAY = dt.date(2026, 12, 4)
ELDER = (30.92, 113.91)
M_PER_DEG_LAT = METRES_PER_DEGREE_LAT
SEEDED = next(d.value for d in POLICY_DEFAULTS if d.key == POLICY_KEY)


def _policy(
    day: dt.date = TODAY, rows: Sequence[tuple[str, str, dict[str, Any], dt.date]] = ()
) -> StartRiskPolicy:
    snapshot = snapshot_from_rows(day, [(k, sc, v, f, None) for k, sc, v, f in rows], POLICY_DEFAULTS)
    return start_risk_policy(snapshot)


def _north(metres: float) -> tuple[float, float]:
    return ELDER[0] + metres / M_PER_DEG_LAT, ELDER[1]


def _order(
    *,
    start_in_s: float,
    position_m: float | None = 5000,
    position_age_s: float = 30,
    home_m: float = 5000,
    rural: bool = False,
    order_id: int = 1,
) -> PendingStart:
    position = None
    if position_m is not None:
        lat, lon = _north(position_m)
        position = Fix(lat, lon, NOW - dt.timedelta(seconds=position_age_s))
    home = _north(home_m)
    return PendingStart(
        order_id=order_id,
        caregiver_id=7,
        start_at=NOW + dt.timedelta(seconds=start_in_s),
        elder_lat=ELDER[0],
        elder_lon=ELDER[1],
        rural=rural,
        home_lat=home[0],
        home_lon=home[1],
        position=position,
    )


def test_the_policy_is_the_seeded_row_with_its_reference() -> None:
    p = _policy()
    assert (p.margin_s, p.stale_position_s, p.lookahead_s, p.unlocated_s) == (
        SEEDED["margin_seconds"],
        SEEDED["stale_position_seconds"],
        SEEDED["lookahead_seconds"],
        SEEDED["unlocated_seconds"],
    )
    # DOMAIN §6: × 1.3 detour, 15 km/h urban, 30 km/h rural (seeded dispatch.detour / dispatch.speed).
    assert (p.travel.detour_factor, p.travel.urban_speed_kmh, p.travel.rural_speed_kmh) == (1.3, 15, 30)
    assert p.refs[0] == f"{POLICY_KEY}[*]@{POLICY_EPOCH.isoformat()}"
    assert "dispatch.speed[rural]@2026-01-01" in p.refs


def test_exactly_enough_time_is_not_at_risk_one_second_less_is() -> None:
    p = _policy()
    travel = assess(_order(start_in_s=3600), now=NOW, policy=p).travel_s
    # 5 km urban: 5000 × 1.3 / (15 km/h) = 1560 s.
    assert travel == travel_seconds(5000, rural=False, policy=p.travel) == 1560
    enough = assess(_order(start_in_s=travel + p.margin_s), now=NOW, policy=p)
    assert (enough.at_risk, enough.basis, enough.required_s) == (False, Basis.POSITION, travel + p.margin_s)
    short = assess(_order(start_in_s=travel + p.margin_s - 1), now=NOW, policy=p)
    assert short.at_risk


def test_the_margin_counts_travel_alone_would_fit() -> None:
    p = _policy()
    travel = 1560
    # The travel fits with time to spare, but less than the margin to spare: at risk.
    inside_margin = assess(_order(start_in_s=travel + p.margin_s / 2), now=NOW, policy=p)
    assert inside_margin.at_risk
    assert not assess(_order(start_in_s=travel + p.margin_s + 60), now=NOW, policy=p).at_risk


def test_a_stale_position_is_replaced_by_home() -> None:
    p = _policy()
    # Last seen 300 m away, home 20 km away; the start is 30 min off.
    fresh = assess(
        _order(start_in_s=1800, position_m=300, position_age_s=p.stale_position_s, home_m=20_000),
        now=NOW,
        policy=p,
    )
    assert (fresh.basis, fresh.at_risk) == (Basis.POSITION, False)  # exactly stale_position_s old: fresh
    stale = assess(
        _order(start_in_s=1800, position_m=300, position_age_s=p.stale_position_s + 1, home_m=20_000),
        now=NOW,
        policy=p,
    )
    assert (stale.basis, stale.at_risk) == (Basis.HOME, True)
    assert stale.travel_s == travel_seconds(20_000, rural=False, policy=p.travel)
    assert stale.position_age_s == p.stale_position_s + 1


def test_no_position_uses_home_and_is_at_risk_within_the_unlocated_time() -> None:
    p = _policy()
    # Home next door (100 m): the travel alone would leave plenty of time.
    far_off = assess(_order(start_in_s=p.unlocated_s + 60, position_m=None, home_m=100), now=NOW, policy=p)
    assert (far_off.basis, far_off.position_age_s, far_off.at_risk) == (Basis.HOME, None, False)
    assert far_off.required_s == p.unlocated_s
    at_floor = assess(_order(start_in_s=p.unlocated_s, position_m=None, home_m=100), now=NOW, policy=p)
    assert not at_floor.at_risk
    inside = assess(_order(start_in_s=p.unlocated_s - 1, position_m=None, home_m=100), now=NOW, policy=p)
    assert inside.at_risk
    # A fresh position next door has no such floor: the caregiver is seen, and near.
    seen = assess(_order(start_in_s=p.unlocated_s - 60, position_m=100, home_m=100), now=NOW, policy=p)
    assert not seen.at_risk
    # Home far away: the travel from home decides, before the floor.
    far_home = assess(_order(start_in_s=3000, position_m=None, home_m=20_000), now=NOW, policy=p)
    assert far_home.at_risk


def test_rural_speed_halves_the_travel() -> None:
    p = _policy()
    urban = assess(_order(start_in_s=1500, position_m=5000), now=NOW, policy=p)
    rural = assess(_order(start_in_s=1500, position_m=5000, rural=True), now=NOW, policy=p)
    assert (urban.travel_s, rural.travel_s) == (1560, 780)
    assert urban.at_risk
    assert not rural.at_risk


def test_a_started_window_is_at_risk_and_far_starts_are_not_watched() -> None:
    p = _policy()
    late = assess(_order(start_in_s=-120, position_m=100), now=NOW, policy=p)
    assert late.at_risk
    assert late.seconds_left == -120
    # 40 km away is far too far, but the start is beyond the lookahead: not watched yet.
    beyond = assess(_order(start_in_s=p.lookahead_s + 1, position_m=40_000), now=NOW, policy=p)
    assert (beyond.watched, beyond.at_risk) == (False, False)
    edge = assess(_order(start_in_s=p.lookahead_s, position_m=40_000), now=NOW, policy=p)
    assert (edge.watched, edge.at_risk) == (True, True)


def test_a_later_policy_row_changes_the_margin_from_its_date() -> None:
    later = TODAY + dt.timedelta(days=1)
    rows = [(POLICY_KEY, "*", {**SEEDED, "margin_seconds": 20 * 60}, later)]
    today, tomorrow = _policy(TODAY, rows), _policy(later, rows)
    assert today.margin_s == SEEDED["margin_seconds"]
    assert tomorrow.margin_s == 20 * 60
    assert tomorrow.refs[0] == f"{POLICY_KEY}[*]@{later.isoformat()}"
    # 1560 s of travel with 10 minutes to spare: fine under today's margin, at risk from that date.
    order = _order(start_in_s=1560 + 600)
    assert not assess(order, now=NOW, policy=today).at_risk
    assert assess(order, now=NOW, policy=tomorrow).at_risk


def test_a_later_speed_row_changes_the_estimate() -> None:
    rows = [("dispatch.speed", "urban", {"kmh": 30}, TODAY)]
    faster = _policy(TODAY, rows)
    assert assess(_order(start_in_s=1500), now=NOW, policy=faster).travel_s == 780
    assert "dispatch.speed[urban]@2026-12-04" in faster.refs


def test_only_orders_at_risk_come_back_by_order_id() -> None:
    p = _policy()
    orders = [
        _order(order_id=9, start_in_s=600),
        _order(order_id=3, start_in_s=7000, position_m=100),
        _order(order_id=4, start_in_s=60),
    ]
    assert [a.order_id for a in starts_at_risk(orders, now=NOW, policy=p)] == [4, 9]


def test_the_reason_note_says_why_in_at_most_200_characters() -> None:
    p = _policy()
    a = assess(_order(start_in_s=1200, position_age_s=90), now=NOW, policy=p)
    note = reason_note(a, p)
    assert note.startswith("start_at_risk: caregiver 7 not set off; travel 26.0 min from last position")
    assert "(1.5 min old)" in note
    assert "20.0 min to start" in note
    assert note.endswith(f"{POLICY_KEY}[*]@2026-01-01")
    assert len(note) <= 200
    home = reason_note(assess(_order(start_in_s=60, position_m=None), now=NOW, policy=p), p)
    assert "from home (no position)" in home
