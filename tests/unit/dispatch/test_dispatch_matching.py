"""Matching core: every hard rule as a table of cases, scoring, and the grid index against brute force."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import pytest

from core.clock import SHANGHAI
from core.geo import haversine_m
from dispatch.matching import (
    Booking,
    Candidate,
    CaregiverIndex,
    CaregiverProfile,
    CertificateInfo,
    OrderRequest,
    Rejection,
    busy_interval,
    check_hard_rules,
    match,
    max_distance_m,
    travel_seconds,
)
from dispatch.policies import policies_on

pytestmark = pytest.mark.unit

# Wednesday 2026-12-02, 10:00 in Xiaogan.
NOW = dt.datetime(2026, 12, 2, 10, 0, tzinfo=SHANGHAI).astimezone(dt.UTC)
TODAY = dt.date(2026, 12, 2)
# Dispatch's seeded policy of the day (no rows written since): the norms and the catalogue's rules.
SEEDED = policies_on(TODAY)
POLICY = SEEDED.match
BATH = SEEDED.service("BATH", "BATH")
MEAL = SEEDED.service("MEAL", "MEAL")
CLEAN = SEEDED.service("CLEAN", "CLEAN")


def _local(day: dt.date, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hh, mm, tzinfo=SHANGHAI).astimezone(dt.UTC)


def cg(**kw: object) -> CaregiverProfile:
    base: dict[str, object] = {
        "id": 1,
        "gender": "F",
        "skills": frozenset({"BATH", "MEAL", "CLEAN"}),
        "certificates": (
            CertificateInfo("eldercare_worker", 4, dt.date(2024, 1, 1), dt.date(2027, 1, 1)),
            CertificateInfo("health", None, dt.date(2026, 1, 1), dt.date(2026, 12, 31)),
        ),
        "shift_start": dt.time(8, 0),
        "shift_end": dt.time(18, 0),
        "work_days": frozenset({1, 2, 3, 4, 5}),
        "daily_capacity": 3,
        "rating": 4.5,
    }
    base.update(kw)
    return CaregiverProfile(**base)  # type: ignore[arg-type]


def order(**kw: object) -> OrderRequest:
    base: dict[str, object] = {
        "elder_id": 100,
        "elder_gender": "F",
        "elder_allows_any_gender": False,
        "lat": 30.92,
        "lon": 113.91,
        "rural": False,
        "service": BATH,
        "start": _local(TODAY, 14),
        "duration_s": 3600,
    }
    base.update(kw)
    return OrderRequest(**base)  # type: ignore[arg-type]


def _certs(expires_on: dt.date, level: int | None = 4, kind: str = "eldercare_worker") -> object:
    return (CertificateInfo(kind, level, dt.date(2024, 1, 1), expires_on),)


# (name, caregiver overrides, order overrides, distance m, expected rejection)
CASES: list[tuple[str, dict[str, object], dict[str, object], float, Rejection | None]] = [
    ("eligible", {}, {}, 1000, None),
    ("inactive", {"is_active": False}, {}, 1000, Rejection.INACTIVE),
    ("missing skill", {"skills": frozenset({"MEAL"})}, {}, 1000, Rejection.SKILL),
    ("no certificate", {"certificates": ()}, {}, 1000, Rejection.CERTIFICATE),
    (
        "certificate level 5 is below level 4",
        {"certificates": _certs(dt.date(2027, 1, 1), 5)},
        {},
        1000,
        Rejection.CERTIFICATE,
    ),
    (
        "certificate level 3 is above level 4",
        {"certificates": _certs(dt.date(2027, 1, 1), 3)},
        {},
        1000,
        None,
    ),
    ("certificate expires on the service date: still valid", {"certificates": _certs(TODAY)}, {}, 1000, None),
    (
        "certificate expired the day before",
        {"certificates": _certs(TODAY - dt.timedelta(days=1))},
        {},
        1000,
        Rejection.CERTIFICATE,
    ),
    (
        "certificate expires tomorrow, visit the day after",
        {"certificates": _certs(TODAY + dt.timedelta(days=1))},
        {"start": _local(TODAY + dt.timedelta(days=2), 10)},
        1000,
        Rejection.CERTIFICATE,
    ),
    (
        "certificate expires tomorrow, visit tomorrow",
        {"certificates": _certs(TODAY + dt.timedelta(days=1))},
        {"start": _local(TODAY + dt.timedelta(days=1), 10)},
        1000,
        None,
    ),
    (
        "certificate of the wrong kind",
        {"certificates": _certs(dt.date(2027, 1, 1), None, "health")},
        {},
        1000,
        Rejection.CERTIFICATE,
    ),
    (
        "meal needs a valid health certificate",
        {"certificates": _certs(dt.date(2026, 6, 30), None, "health")},
        {"service": MEAL},
        1000,
        Rejection.CERTIFICATE,
    ),
    ("cleaning needs no certificate", {"certificates": ()}, {"service": CLEAN}, 1000, None),
    ("bathing: other gender", {"gender": "M"}, {}, 1000, Rejection.GENDER),
    (
        "bathing: other gender allowed by elder",
        {"gender": "M"},
        {"elder_allows_any_gender": True},
        1000,
        None,
    ),
    ("cleaning: other gender is fine", {"gender": "M"}, {"service": CLEAN}, 1000, None),
    ("blocked by the elder", {}, {"blocked": frozenset({1})}, 1000, Rejection.BLOCKED),
    ("saturday is not a work day", {}, {"start": _local(dt.date(2026, 12, 5), 10)}, 1000, Rejection.OFF_DAY),
    (
        "starts before the shift",
        {},
        {"start": _local(TODAY + dt.timedelta(days=1), 7, 30)},
        1000,
        Rejection.OUTSIDE_HOURS,
    ),
    ("ends after the shift", {}, {"start": _local(TODAY, 17, 30)}, 1000, Rejection.OUTSIDE_HOURS),
    ("ends exactly at shift end", {}, {"start": _local(TODAY, 17)}, 1000, None),
    (
        "overlaps a booking",
        {"bookings": (Booking(_local(TODAY, 14, 30), _local(TODAY, 15, 30)),)},
        {},
        1000,
        Rejection.OVERLAP,
    ),
    (
        "touches a booking end-to-start",
        {"bookings": (Booking(_local(TODAY, 13), _local(TODAY, 14)),)},
        {},
        1000,
        None,
    ),
    (
        "under way past its expected end: busy until check-out",
        {"bookings": (Booking(_local(TODAY, 9), None),)},
        {"start": _local(TODAY, 16)},
        1000,
        Rejection.OVERLAP,
    ),
    (
        "daily capacity reached",
        {"bookings": tuple(Booking(_local(TODAY, h), _local(TODAY, h, 30)) for h in (8, 9, 11))},
        {},
        1000,
        Rejection.CAPACITY,
    ),
    (
        "bookings on another day do not count",
        {
            "bookings": tuple(
                Booking(_local(TODAY - dt.timedelta(days=1), h), _local(TODAY, h, 30)) for h in (9, 11, 12)
            )
        },
        {},
        1000,
        None,
    ),
    ("urgent urban: 15 min circle, inside", {}, {"urgent": True, "asap": True, "start": NOW}, 2800, None),
    (
        "urgent urban: 15 min circle, outside",
        {},
        {"urgent": True, "asap": True, "start": NOW},
        3000,
        Rejection.TOO_FAR,
    ),
    (
        "urgent rural: 30 min circle, inside",
        {},
        {"urgent": True, "asap": True, "start": NOW, "rural": True},
        11_000,
        None,
    ),
    (
        "urgent rural: 30 min circle, outside",
        {},
        {"urgent": True, "asap": True, "start": NOW, "rural": True},
        12_000,
        Rejection.TOO_FAR,
    ),
    (
        "scheduled order cannot be reached in time",
        {},
        {"start": NOW + dt.timedelta(minutes=5)},
        2000,
        Rejection.LATE,
    ),
    ("beyond the search horizon", {}, {}, 20_000, Rejection.TOO_FAR),
]


@pytest.mark.parametrize(
    ("name", "cg_kw", "order_kw", "distance", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_hard_rules(
    name: str,
    cg_kw: dict[str, object],
    order_kw: dict[str, object],
    distance: float,
    expected: Rejection | None,
) -> None:
    reason, _, _ = check_hard_rules(
        cg(**cg_kw), order(**order_kw), distance_m=distance, policy=POLICY, now=NOW
    )
    assert reason == expected, name


def test_travel_estimate_units() -> None:
    # 1 km straight line × 1.3 at 15 km/h = 312 s; at 30 km/h = 156 s.
    assert travel_seconds(1000, rural=False, policy=POLICY) == 312
    assert travel_seconds(1000, rural=True, policy=POLICY) == 156
    assert max_distance_m(15, rural=False, policy=POLICY) == pytest.approx(2884.6, abs=0.1)
    # One degree of latitude is about 111.2 km.
    assert haversine_m(30.0, 114.0, 31.0, 114.0) == pytest.approx(111_195, rel=1e-3)


def test_asap_starts_on_arrival() -> None:
    reason, eta, start = check_hard_rules(
        cg(), order(asap=True, start=NOW, service=CLEAN), distance_m=1000, policy=POLICY, now=NOW
    )
    assert reason is None
    assert eta == 312
    assert start == NOW + dt.timedelta(seconds=312)


ALL_SKILLS = ("BATH", "MEAL", "CLEAN")


def _index(positions: dict[int, tuple[float, float]]) -> CaregiverIndex:
    idx = CaregiverIndex()
    for cid, (lat, lon) in positions.items():
        idx.update(cid, lat, lon, ALL_SKILLS)
    return idx


def test_scoring_prefers_near_then_continuity_with_weights_as_data() -> None:
    near, far = 1, 2
    profiles = {
        near: cg(id=near),
        far: cg(id=far),
    }
    idx = _index({near: (30.921, 113.91), far: (30.935, 113.91)})  # ~110 m and ~1.7 km away
    o = order(service=CLEAN, continuity={far: 4})
    travel_weighted = dataclasses.replace(
        POLICY, weights=dataclasses.replace(POLICY.weights, travel=1.0, continuity=0.05)
    )
    travel_first = match(o, index=idx, profiles=profiles, policy=travel_weighted, now=NOW)
    assert [c.caregiver_id for c in travel_first.candidates] == [near, far]
    continuity_first = dataclasses.replace(
        POLICY, weights=dataclasses.replace(POLICY.weights, travel=0.1, continuity=0.9)
    )
    res = match(o, index=idx, profiles=profiles, policy=continuity_first, now=NOW)
    assert [c.caregiver_id for c in res.candidates] == [far, near]


def test_fairness_and_rating_break_ties() -> None:
    busy = cg(id=1, bookings=(Booking(_local(TODAY, 8), _local(TODAY, 9)),))
    idle = cg(id=2)
    low = cg(id=3, rating=2.0)
    idx = _index({1: (30.93, 113.91), 2: (30.93, 113.91), 3: (30.93, 113.91)})
    res = match(order(service=CLEAN), index=idx, profiles={1: busy, 2: idle, 3: low}, policy=POLICY, now=NOW)
    assert [c.caregiver_id for c in res.candidates] == [2, 1, 3]


def test_rejections_are_counted_and_blocked_never_offered() -> None:
    profiles = {1: cg(id=1), 2: cg(id=2, gender="M"), 3: cg(id=3)}
    idx = _index({1: (30.925, 113.91), 2: (30.921, 113.91), 3: (30.921, 113.911)})
    res = match(order(blocked=frozenset({3})), index=idx, profiles=profiles, policy=POLICY, now=NOW)
    assert [c.caregiver_id for c in res.candidates] == [1]
    assert res.rejected == {Rejection.GENDER: 1, Rejection.BLOCKED: 1}


def test_index_moves_and_removes() -> None:
    idx = _index({1: (30.92, 113.91)})
    idx.update(1, 31.26, 113.99)  # skills kept
    assert idx.position(1) == (31.26, 113.99)
    assert [f for _, f in idx.rings(30.92, 113.91, 5000) if f] == []
    assert [f for _, f in idx.rings(31.26, 113.99, 10, "BATH") if f] == [[(1, 0.0)]]
    idx.update(1, 31.26, 113.99, {"MEAL"})
    assert [f for _, f in idx.rings(31.26, 113.99, 10, "BATH") if f] == []
    idx.remove(1)
    assert len(idx) == 0
    assert idx.position(1) is None


@pytest.mark.parametrize("lat", [0.0, 30.92, 31.56, 60.0])
def test_ring_bounds_never_exceed_true_distances(lat: float) -> None:
    rnd = random.Random(3)
    idx = CaregiverIndex()
    for cid in range(300):
        idx.update(cid, lat + rnd.uniform(-0.08, 0.08), 113.9 + rnd.uniform(-0.08, 0.08))
    qlat, qlon = lat + 0.0037, 113.9031
    seen: list[int] = []
    for bound, found in idx.rings(qlat, qlon, 8000):
        assert all(d >= bound for _, d in found)
        seen.extend(cid for cid, _ in found)
    brute = [cid for cid in range(300) if haversine_m(qlat, qlon, *idx.position(cid)) <= 8000]  # type: ignore[misc]
    assert sorted(seen) == sorted(brute)


def test_match_equals_brute_force_on_random_instances() -> None:
    rnd = random.Random(7)
    profiles: dict[int, CaregiverProfile] = {}
    idx = CaregiverIndex()
    for cid in range(1, 801):
        lat, lon = 30.92 + rnd.gauss(0, 0.05), 113.91 + rnd.gauss(0, 0.05)
        skills = frozenset(s for s in ALL_SKILLS if rnd.random() < 0.7)
        idx.update(cid, lat, lon, skills)
        profiles[cid] = cg(
            skills=skills,
            id=cid,
            gender=rnd.choice("FM"),
            rating=rnd.uniform(3, 5),
        )
    regulars = {cid: rnd.randint(1, 5) for cid in rnd.sample(sorted(profiles), 40)}
    for trial in range(30):
        o = order(
            lat=30.92 + rnd.gauss(0, 0.04),
            lon=113.91 + rnd.gauss(0, 0.04),
            service=rnd.choice([BATH, CLEAN]),
            urgent=trial % 2 == 0,
            asap=trial % 2 == 0,
            start=NOW if trial % 2 == 0 else _local(TODAY, 15),
            continuity=regulars,
        )
        got = match(o, index=idx, profiles=profiles, policy=POLICY, now=NOW, limit=5)
        brute: list[Candidate] = []
        for cid, p in profiles.items():
            plat, plon = idx.position(cid) or (0.0, 0.0)
            one = CaregiverIndex()
            one.update(cid, plat, plon, p.skills)
            res = match(o, index=one, profiles={cid: p}, policy=POLICY, now=NOW)
            brute.extend(res.candidates)
        brute.sort(key=lambda c: (-c.score, c.caregiver_id))
        assert [c.caregiver_id for c in got.candidates] == [c.caregiver_id for c in brute[:5]]


# A visit scheduled 10:00-11:00 today, as it stands at various moments (DOMAIN §6: availability follows
# what actually happened).
SCHED = (_local(TODAY, 10), _local(TODAY, 11))
BUSY_CASES: list[tuple[str, dict[str, dt.datetime | None], dt.datetime, Booking]] = [
    ("not started: the schedule", {}, _local(TODAY, 9), Booking(*SCHED)),
    ("late and not started: still the schedule", {}, _local(TODAY, 12), Booking(*SCHED)),
    (
        "checked out early: free from the check-out",
        {"check_in_at": _local(TODAY, 10), "check_out_at": _local(TODAY, 10, 5)},
        _local(TODAY, 10, 6),
        Booking(_local(TODAY, 10), _local(TODAY, 10, 5)),
    ),
    (
        "checked out late: busy until the check-out",
        {"check_in_at": _local(TODAY, 10), "check_out_at": _local(TODAY, 11, 40)},
        _local(TODAY, 12),
        Booking(_local(TODAY, 10), _local(TODAY, 11, 40)),
    ),
    (
        "on site, inside its hour",
        {"check_in_at": _local(TODAY, 10)},
        _local(TODAY, 10, 30),
        Booking(*SCHED),
    ),
    (
        "checked in late: its full length from the check-in",
        {"check_in_at": _local(TODAY, 10, 20)},
        _local(TODAY, 10, 30),
        Booking(_local(TODAY, 10, 20), _local(TODAY, 11, 20)),
    ),
    (
        "checked in early: to the scheduled end",
        {"check_in_at": _local(TODAY, 9, 30)},
        _local(TODAY, 9, 45),
        Booking(_local(TODAY, 9, 30), _local(TODAY, 11)),
    ),
    (
        "running past its end: open until the check-out",
        {"check_in_at": _local(TODAY, 10)},
        _local(TODAY, 11, 15),
        Booking(_local(TODAY, 10), None),
    ),
]


@pytest.mark.parametrize(("name", "facts", "now", "expected"), BUSY_CASES, ids=[c[0] for c in BUSY_CASES])
def test_busy_interval_follows_what_happened(
    name: str, facts: dict[str, dt.datetime | None], now: dt.datetime, expected: Booking
) -> None:
    got = busy_interval(
        scheduled_start=SCHED[0],
        scheduled_end=SCHED[1],
        check_in_at=facts.get("check_in_at"),
        check_out_at=facts.get("check_out_at"),
        now=now,
    )
    assert got == expected, name


def test_a_caregiver_who_checked_out_early_is_matched_for_the_rest_of_the_slot() -> None:
    """Checked out at 10:05 from a 10:00-11:00 visit: an ASAP order at 10:10 goes to them; still on site
    at 11:15 past that hour, they get nothing until they check out."""
    early_out = busy_interval(
        scheduled_start=SCHED[0],
        scheduled_end=SCHED[1],
        check_in_at=SCHED[0],
        check_out_at=_local(TODAY, 10, 5),
        now=_local(TODAY, 10, 10),
    )
    overrun = busy_interval(
        scheduled_start=SCHED[0],
        scheduled_end=SCHED[1],
        check_in_at=SCHED[0],
        check_out_at=None,
        now=_local(TODAY, 11, 15),
    )
    idx = _index({1: (30.921, 113.91)})
    for booking, at, offered in (
        (early_out, _local(TODAY, 10, 10), [1]),
        (overrun, _local(TODAY, 11, 15), []),
    ):
        profiles = {1: cg(id=1, bookings=(booking,))}
        o = order(service=CLEAN, asap=True, start=at)
        res = match(o, index=idx, profiles=profiles, policy=POLICY, now=at)
        assert [c.caregiver_id for c in res.candidates] == offered
