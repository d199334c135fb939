"""Day plans: hard rules on small hand-made instances, the independent checker, re-planning."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random

import pytest

from bench.dispatch import dayplan_instance
from core.geo import haversine_m
from dispatch.matching import CaregiverProfile, CertificateInfo
from dispatch.policies import policies_on
from dispatch.routing import (
    DayPlan,
    DayPlanInstance,
    PlanCaregiver,
    PlanPolicy,
    PlanVisit,
    Stop,
    _travel_matrix,
    hard_rule_violations,
    plan_day,
    replan,
)

pytestmark = pytest.mark.unit

DAY = dt.date(2026, 12, 3)  # Thursday
SEEDED = policies_on(DAY)  # dispatch's seeded policy: travel norms and the catalogue's rules
BATH = SEEDED.service("BATH", "BATH")
CLEAN = SEEDED.service("CLEAN", "CLEAN")


def cg(cid: int, **kw: object) -> PlanCaregiver:
    prof: dict[str, object] = {
        "id": cid,
        "gender": "F",
        "skills": frozenset({"BATH", "CLEAN"}),
        "certificates": (CertificateInfo("eldercare_worker", 4, dt.date(2024, 1, 1), dt.date(2027, 1, 1)),),
        "shift_start": dt.time(8),
        "shift_end": dt.time(17),
        "work_days": frozenset({1, 2, 3, 4, 5}),
        "daily_capacity": 8,
        "rating": 4.5,
    }
    prof.update(kw)
    return PlanCaregiver(CaregiverProfile(**prof), 30.92, 113.91)  # type: ignore[arg-type]


def visit(vid: int, **kw: object) -> PlanVisit:
    base: dict[str, object] = {
        "id": vid,
        "elder_id": vid,
        "lat": 30.925,
        "lon": 113.915,
        "rural": False,
        "service": CLEAN,
        "elder_gender": "F",
        "elder_allows_any_gender": False,
        "window_open_s": 9 * 3600,
        "window_close_s": 12 * 3600,
        "duration_s": 3600,
    }
    base.update(kw)
    return PlanVisit(**base)  # type: ignore[arg-type]


def inst(visits: list[PlanVisit], cgs: list[PlanCaregiver], day: dt.date = DAY) -> DayPlanInstance:
    return DayPlanInstance(day, tuple(visits), tuple(cgs), PlanPolicy(match=SEEDED.match))


def owner(plan: DayPlan, vid: int) -> int | None:
    return next((c for c, stops in plan.routes.items() if any(s.visit_id == vid for s in stops)), None)


# (name, caregivers, visit, expected owner or None)
CASES: list[tuple[str, list[PlanCaregiver], PlanVisit, int | None]] = [
    ("only the skilled caregiver", [cg(1, skills=frozenset({"CLEAN"})), cg(2)], visit(1, service=BATH), 2),
    (
        "certificate expires tomorrow: not planned the day after",
        [
            cg(
                1,
                certificates=(
                    CertificateInfo("eldercare_worker", 4, dt.date(2024, 1, 1), DAY - dt.timedelta(days=1)),
                ),
            )
        ],
        visit(1, service=BATH),
        None,
    ),
    (
        "certificate expiring on the plan date is still valid",
        [cg(1, certificates=(CertificateInfo("eldercare_worker", 4, dt.date(2024, 1, 1), DAY),))],
        visit(1, service=BATH),
        1,
    ),
    ("bathing a man needs a man", [cg(1), cg(2, gender="M")], visit(1, service=BATH, elder_gender="M"), 2),
    (
        "unless he allows otherwise (continuity decides)",
        [cg(1), cg(2, gender="M")],
        visit(1, service=BATH, elder_gender="M", elder_allows_any_gender=True, preferred_caregiver=1),
        1,
    ),
    (
        "blocked caregiver is never planned",
        [cg(1), cg(2)],
        visit(1, blocked=frozenset({1}), preferred_caregiver=1),
        2,
    ),
    ("not a work day", [cg(1, work_days=frozenset({1, 2}))], visit(1), None),
    ("window outside the shift", [cg(1)], visit(1, window_open_s=17 * 3600, window_close_s=18 * 3600), None),
    ("continuity preferred", [cg(1), cg(2), cg(3)], visit(1, preferred_caregiver=3), 3),
]


@pytest.mark.parametrize(("name", "cgs", "v", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hard_rules_in_plans(name: str, cgs: list[PlanCaregiver], v: PlanVisit, expected: int | None) -> None:
    instance = inst([v], cgs)
    plan = plan_day(instance, time_limit_s=0.5)
    assert owner(plan, v.id) == expected, name
    assert hard_rule_violations(instance, plan) == []
    if expected is None:
        assert plan.unassigned == (v.id,)


def test_capacity_and_time_windows() -> None:
    # Three one-hour visits, all 9:00–10:00 starts: one caregiver can do at most one on time... two
    # caregivers with capacity 1 each: exactly two are planned, the third reported unassigned.
    visits = [visit(i, window_open_s=9 * 3600, window_close_s=10 * 3600) for i in (1, 2, 3)]
    instance = inst(visits, [cg(1, daily_capacity=1), cg(2, daily_capacity=1)])
    plan = plan_day(instance, time_limit_s=0.5)
    assert len(plan.unassigned) == 1
    assert sum(len(s) for s in plan.routes.values()) == 2
    assert hard_rule_violations(instance, plan) == []


def test_checker_finds_what_the_planner_must_avoid() -> None:
    v = visit(1, service=BATH, elder_gender="M")
    instance = inst([v, visit(2)], [cg(1, daily_capacity=1)])
    bad = DayPlan(
        routes={1: (Stop(1, 8 * 3600), Stop(2, 9 * 3600))},
        unassigned=(),
        travel_s=0,
        continuity_misses=0,
        objective=0,
    )
    problems = hard_rule_violations(instance, bad)
    assert any("capacity" in p for p in problems)
    assert any("gender" in p for p in problems)
    assert any("outside its window" in p for p in problems)
    assert any("overlap" in p for p in problems)


def test_generated_instance_plans_without_violations_and_replans_minimally() -> None:
    instance = dayplan_instance(7, 60, 12)
    plan = plan_day(instance, time_limit_s=1.5)
    assert hard_rule_violations(instance, plan) == []
    assert len(plan.unassigned) <= 6
    # A caregiver calls in sick and one visit is cancelled.
    sick = max(plan.routes, key=lambda c: len(plan.routes[c]))
    other = next(c for c in plan.routes if c != sick)
    cancelled = plan.routes[other][0].visit_id
    new = replan(instance, plan, cancelled=frozenset({cancelled}), unavailable=frozenset({sick}))
    assert sick not in new.routes
    assert owner(new, cancelled) is None
    assert cancelled not in new.unassigned
    # Every visit not of the sick caregiver keeps its caregiver.
    for c, stops in plan.routes.items():
        if c == sick:
            continue
        for s in stops:
            if s.visit_id != cancelled:
                assert owner(new, s.visit_id) == c
    # Violations are checked on the instance without the cancelled visit.
    remaining = dataclasses.replace(instance, visits=tuple(v for v in instance.visits if v.id != cancelled))
    assert hard_rule_violations(remaining, new) == []
    moved = {s.visit_id for s in plan.routes[sick]}
    assert moved <= {s.visit_id for stops in new.routes.values() for s in stops} | set(new.unassigned)


def starts(plan: DayPlan) -> dict[int, tuple[int, int]]:
    """visit id → (caregiver, start)."""
    return {s.visit_id: (c, s.start_s) for c, stops in plan.routes.items() for s in stops}


def test_a_fixed_visit_stays_and_the_plan_routes_around_it() -> None:
    # Caregiver 2 is already booked 9:00-10:00 (outside the plan); the elder of visit 1 prefers 2, but
    # 2 cannot be there 9:00-9:30, so 1 goes to caregiver 1 and the booking stays where it is.
    booked = visit(10, window_open_s=9 * 3600, window_close_s=9 * 3600, assigned_to=2)
    free = visit(1, window_open_s=9 * 3600, window_close_s=9 * 3600 + 1800, preferred_caregiver=2)
    instance = inst([booked, free], [cg(1), cg(2)])
    plan = plan_day(instance, time_limit_s=0.3)
    assert starts(plan) == {10: (2, 9 * 3600), 1: (1, 9 * 3600)}
    assert hard_rule_violations(instance, plan) == []


def test_fixed_visits_outside_the_shift_are_kept_and_nothing_is_added_beyond_them() -> None:
    # Booked 7:00 (before the 8:00 shift) and 16:30-17:30 (past its end): both kept, the shift widened
    # just enough to reach and leave them; a visit before the first or after the last is not planned,
    # one at noon is.
    early = visit(10, window_open_s=7 * 3600, window_close_s=7 * 3600, assigned_to=1)
    late = visit(11, window_open_s=16 * 3600 + 1800, window_close_s=16 * 3600 + 1800, assigned_to=1)
    dawn = visit(1, window_open_s=6 * 3600, window_close_s=6 * 3600 + 1800, duration_s=1200)
    dusk = visit(3, window_open_s=17 * 3600 + 2400, window_close_s=18 * 3600, duration_s=1200)
    noon = visit(2, window_open_s=12 * 3600, window_close_s=13 * 3600)
    instance = inst([early, late, dawn, noon, dusk], [cg(1)])
    plan = plan_day(instance, time_limit_s=0.3)
    assert [s.visit_id for s in plan.routes[1]] == [10, 2, 11]
    assert starts(plan)[10] == (1, 7 * 3600)
    assert starts(plan)[11] == (1, 16 * 3600 + 1800)
    assert plan.unassigned == (1, 3)
    # The checker still sees the bookings' own breaches (they are not the plan's doing) and nothing else.
    problems = hard_rule_violations(instance, plan)
    assert problems
    assert all("visit 10" in p or "back home" in p for p in problems), problems


def test_replan_keeps_starts_and_a_sick_caregivers_visit_under_way() -> None:
    instance = dayplan_instance(7, 60, 12)
    plan = plan_day(instance, time_limit_s=1.0)
    sick = max(plan.routes, key=lambda c: len(plan.routes[c]))
    under_way = plan.routes[sick][0]
    assert len(plan.routes[sick]) >= 2
    # The sick caregiver's first visit has started: a fixed point at its planned start.
    instance = dataclasses.replace(
        instance,
        visits=tuple(
            dataclasses.replace(
                v, window_open_s=under_way.start_s, window_close_s=under_way.start_s, assigned_to=sick
            )
            if v.id == under_way.visit_id
            else v
            for v in instance.visits
        ),
    )
    new = replan(instance, plan, unavailable=frozenset({sick}))
    old, got = starts(plan), starts(new)
    assert new.routes[sick] == (under_way,)
    for vid, (c, start) in old.items():
        if c != sick:
            assert got[vid] == (c, start)  # caregiver and start kept
    for c, stops in plan.routes.items():
        if c != sick:
            kept = [s.visit_id for s in stops]
            assert [s.visit_id for s in new.routes[c] if s.visit_id in kept] == kept  # sequence kept
    rest = {s.visit_id for s in plan.routes[sick][1:]}
    assert rest <= set(got) | set(new.unassigned)
    assert all(got[v][0] != sick for v in rest if v in got)
    assert hard_rule_violations(instance, new) == []


def test_replan_places_orphans_no_earlier_than_now_and_moves_what_broke_a_rule() -> None:
    # Caregiver 1 held visits 1 (9:00-10:00) and 2 (10:00-13:00) and calls in sick at 11:00; visit 3 was
    # caregiver 2's, whose elder has blocked 2 since.
    v1 = visit(1, window_open_s=9 * 3600, window_close_s=10 * 3600, duration_s=1800)
    v2 = visit(2, window_open_s=10 * 3600, window_close_s=13 * 3600, duration_s=1800)
    v3 = visit(3, window_open_s=14 * 3600, window_close_s=15 * 3600, duration_s=1800, blocked=frozenset({2}))
    instance = inst([v1, v2, v3], [cg(1), cg(2), cg(3)])
    previous = DayPlan(
        routes={1: (Stop(1, 9 * 3600), Stop(2, 10 * 3600)), 2: (Stop(3, 14 * 3600),)},
        unassigned=(),
        travel_s=0,
        continuity_misses=0,
        objective=0,
    )
    new = replan(instance, previous, unavailable=frozenset({1}), not_before_s=11 * 3600)
    got = starts(new)
    assert new.unassigned == (1,)  # its window closed before now
    assert got[2][0] in (2, 3)
    assert got[2][1] >= 11 * 3600
    assert got[3][0] == 3
    assert 1 not in new.routes
    assert hard_rule_violations(instance, new) == []


def test_the_travel_matrix_is_the_one_haversine() -> None:
    # The planner inlines core.geo.haversine_m for speed; the seconds must be exactly those it gives.
    rnd = random.Random(7)
    pts = [
        (30.9 + rnd.uniform(-0.4, 0.4), 113.9 + rnd.uniform(-0.4, 0.4), rnd.random() < 0.3) for _ in range(40)
    ]
    policy = SEEDED.match
    matrix = _travel_matrix(pts, policy)
    for i, (lat1, lon1, rural1) in enumerate(pts):
        for j, (lat2, lon2, rural2) in enumerate(pts):
            speed = policy.rural_speed_kmh if rural1 and rural2 else policy.urban_speed_kmh
            seconds = haversine_m(lat1, lon1, lat2, lon2) * (policy.detour_factor / (speed / 3.6))
            assert matrix[i][j] == (0 if i == j else math.ceil(seconds))
