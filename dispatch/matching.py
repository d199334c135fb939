"""Real-time matching: hard rules, scoring and a grid index over caregivers' current positions.

Pure core (DOMAIN §6): plain frozen dataclasses in, values out; ``now`` is always passed in and every
threshold, weight and service requirement arrives as data (:class:`MatchPolicy`, :class:`ServiceRule`),
read from dated policy by :mod:`dispatch.policies`. No policy number is written here.

Units: distances in metres, times in seconds (ETAs also shown in minutes where named so), instants as
timezone-aware UTC datetimes; shifts and work days are Asia/Shanghai local wall-clock values.
"""

from __future__ import annotations

import datetime as dt
import enum
import heapq
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from core.clock import SHANGHAI, local_date
from core.geo import EARTH_RADIUS_M, haversine_m

METRES_PER_DEGREE_LAT = math.pi * EARTH_RADIUS_M / 180.0


class Rejection(enum.StrEnum):
    """Why a caregiver is not a candidate for an order (first failing hard rule)."""

    INACTIVE = "inactive"
    SKILL = "skill"
    CERTIFICATE = "certificate"
    GENDER = "gender"
    BLOCKED = "blocked"
    OFF_DAY = "off_day"
    OUTSIDE_HOURS = "outside_hours"
    OVERLAP = "overlap"
    CAPACITY = "capacity"
    TOO_FAR = "too_far"
    LATE = "late"


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """A certificate; valid on every date from ``issued_on`` to ``expires_on`` inclusive."""

    kind: str
    level: int | None
    issued_on: dt.date
    expires_on: dt.date

    def valid_on(self, day: dt.date) -> bool:
        return self.issued_on <= day <= self.expires_on


@dataclass(frozen=True, slots=True)
class ServiceRule:
    """What a catalogue service asks of the caregiver on one day (DOMAIN §3): policy
    ``service.requirement[code]`` and ``service.price_fen[code].min_minutes`` valid that day.

    ``max_certificate_level``: 养老护理员 levels run 5 (junior) … 1 (senior technician); "level 4 or
    above" is ``max_certificate_level=4``. ``min_minutes`` is the minimum time on site (0 = delivery).
    """

    code: str
    skill: str
    certificate_kind: str | None
    max_certificate_level: int | None
    same_gender: bool
    min_minutes: int


@dataclass(frozen=True, slots=True)
class Booking:
    """The time a visit keeps its caregiver busy, as a half-open UTC interval [start, end); ``end`` None:
    under way past its expected end, busy until the (unknown) check-out. Built by :func:`busy_interval`."""

    start: dt.datetime
    end: dt.datetime | None

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        """Whether [start, end) meets this booking."""
        return self.start < end and (self.end is None or start < self.end)


def busy_interval(
    *,
    scheduled_start: dt.datetime,
    scheduled_end: dt.datetime,
    check_in_at: dt.datetime | None,
    check_out_at: dt.datetime | None,
    now: dt.datetime,
) -> Booking:
    """When a booked visit (its order accepted or later, not cancelled or a no-show) keeps its caregiver
    busy, following what actually happened rather than the schedule:

    * not checked in yet: the scheduled [start, end);
    * checked out (and then verified, rated, held as an exception): from check-in to check-out, so the
      caregiver is free from the check-out on, however early;
    * checked in, not out: from the check-in for the scheduled length (or to the scheduled end if that
      is later); once that has passed with no check-out, open-ended (busy until the check-out).
    """
    if check_out_at is not None:
        start = check_in_at if check_in_at is not None else scheduled_start
        return Booking(min(start, check_out_at), check_out_at)
    if check_in_at is None:
        return Booking(scheduled_start, scheduled_end)
    expected_end = max(scheduled_end, check_in_at + (scheduled_end - scheduled_start))
    return Booking(check_in_at, expected_end if now < expected_end else None)


@dataclass(frozen=True, slots=True)
class CaregiverProfile:
    """A caregiver as matching sees it; the current position lives in :class:`CaregiverIndex`."""

    id: int
    gender: str
    skills: frozenset[str]
    certificates: tuple[CertificateInfo, ...]
    shift_start: dt.time
    shift_end: dt.time
    work_days: frozenset[int]  # ISO weekdays, 1 = Monday
    daily_capacity: int
    rating: float  # 1.0 … 5.0
    bookings: tuple[Booking, ...] = ()
    is_active: bool = True


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order to match. ``start`` is the requested start; for ``asap`` it is the earliest start."""

    elder_id: int
    elder_gender: str
    elder_allows_any_gender: bool
    lat: float
    lon: float
    rural: bool
    service: ServiceRule
    start: dt.datetime
    duration_s: int
    asap: bool = False
    urgent: bool = False
    blocked: frozenset[int] = frozenset()
    # Continuity of care: caregiver id → visits to this elder in the last 30 days.
    continuity: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MatchWeights:
    """Weights of the soft preferences (policy ``dispatch.match_weights``); each term is scaled to
    0..1 before weighting."""

    travel: float
    continuity: float
    fairness: float
    rating: float


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    """Dispatch norms of DOMAIN §6 valid on one day (policy keys ``dispatch.*``, read by
    :func:`dispatch.policies.policies_from`).

    ``max_eta_min``: the search horizon of an order that is not urgent (``dispatch.max_eta``);
    ``continuity_saturation``: this many visits in the continuity window give the full continuity
    term (``dispatch.continuity_saturation``); ``walk_circle_*_m``: the 15-minute home-care circle
    (一刻钟居家养老服务圈, ``dispatch.walk_circle``) of an area kind, 0 where it has none
    (:func:`travel_term`)."""

    detour_factor: float
    urban_speed_kmh: float
    rural_speed_kmh: float
    urgent_eta_urban_min: float
    urgent_eta_rural_min: float
    max_eta_min: float
    continuity_saturation: int
    walk_circle_urban_m: float
    walk_circle_rural_m: float
    weights: MatchWeights


@dataclass(frozen=True, slots=True)
class Candidate:
    caregiver_id: int
    score: float
    eta_s: int
    start: dt.datetime  # when the visit would start (UTC)
    distance_m: float


@dataclass(frozen=True, slots=True)
class MatchResult:
    candidates: tuple[Candidate, ...]  # best first
    rejected: Mapping[Rejection, int]  # how many caregivers in range failed each rule


# --- Geometry ----------------------------------------------------------------------------------


def travel_seconds(distance_m: float, *, rural: bool, policy: MatchPolicy) -> int:
    """Travel estimate: straight-line metres × detour factor at the area's speed, rounded up to seconds."""
    speed_ms = (policy.rural_speed_kmh if rural else policy.urban_speed_kmh) / 3.6
    return math.ceil(distance_m * policy.detour_factor / speed_ms)


def max_distance_m(eta_min: float, *, rural: bool, policy: MatchPolicy) -> float:
    """The straight-line distance reachable within ``eta_min`` minutes."""
    speed_ms = (policy.rural_speed_kmh if rural else policy.urban_speed_kmh) / 3.6
    return eta_min * 60.0 * speed_ms / policy.detour_factor


class CaregiverIndex:
    """A uniform lat/lon grid of buckets over caregivers' current positions, one grid per skill.

    Chosen over a KD-tree because positions change every few seconds (an update is O(1) per skill
    here, a tree would need rebuilding) and queries are small-radius (≤ ~12 km), so few cells are
    scanned. Keeping one grid per skill means a query never even looks at caregivers who lack the
    service's skill. ``cell_deg`` of 0.01° is about 1.1 km north-south in Xiaogan.
    """

    ANY = "*"

    def __init__(self, cell_deg: float = 0.01) -> None:
        self.cell_deg = cell_deg
        self._grids: dict[str, dict[tuple[int, int], dict[int, tuple[float, float]]]] = {}
        self._where: dict[int, tuple[tuple[int, int], frozenset[str], tuple[float, float]]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def _cell(self, lat: float, lon: float) -> tuple[int, int]:
        return (math.floor(lat / self.cell_deg), math.floor(lon / self.cell_deg))

    def update(self, caregiver_id: int, lat: float, lon: float, skills: Iterable[str] | None = None) -> None:
        """Insert or move a caregiver; ``skills`` (default: unchanged, or none) picks the grids."""
        old = self._where.get(caregiver_id)
        kept: frozenset[str] = old[1] if old is not None else frozenset()
        tags = kept if skills is None else frozenset(skills)
        self.remove(caregiver_id)
        cell = self._cell(lat, lon)
        for tag in (self.ANY, *tags):
            self._grids.setdefault(tag, {}).setdefault(cell, {})[caregiver_id] = (lat, lon)
        self._where[caregiver_id] = (cell, tags, (lat, lon))

    def remove(self, caregiver_id: int) -> None:
        entry = self._where.pop(caregiver_id, None)
        if entry is None:
            return
        cell, tags, _ = entry
        for tag in (self.ANY, *tags):
            grid = self._grids[tag]
            bucket = grid[cell]
            del bucket[caregiver_id]
            if not bucket:
                del grid[cell]

    def position(self, caregiver_id: int) -> tuple[float, float] | None:
        entry = self._where.get(caregiver_id)
        return None if entry is None else entry[2]

    def rings(
        self, lat: float, lon: float, radius_m: float, skill: str | None = None
    ) -> Iterator[tuple[float, list[tuple[int, float]]]]:
        """Yield (lower bound in metres, [(caregiver id, distance m)]) ring by ring outwards.

        Every caregiver in a ring is at least the bound away; those farther than ``radius_m`` are
        left out; with ``skill`` only caregivers having it are seen. Ring k holds the cells at
        Chebyshev distance k from the query's cell; its bound is the distance from the query point
        to the nearest edge of ring k.
        """
        grid = self._grids.get(self.ANY if skill is None else skill, {})
        ci, cj = self._cell(lat, lon)
        fi = lat / self.cell_deg - ci  # position inside the own cell, 0..1
        fj = lon / self.cell_deg - cj
        cell_h = self.cell_deg * METRES_PER_DEGREE_LAT
        # The narrowest width of a cell in the rows that may be reached (cos falls towards the pole).
        far_lat = min(89.0, abs(lat) + radius_m / METRES_PER_DEGREE_LAT + self.cell_deg)
        cell_w = cell_h * max(math.cos(math.radians(far_lat)), 0.01)
        edge = min(fi * cell_h, (1 - fi) * cell_h, fj * cell_w, (1 - fj) * cell_w)
        cell_min = min(cell_h, cell_w)
        k = 0
        while True:
            # 0.995: the grid's flat geometry may overstate a great-circle distance very slightly.
            bound = 0.0 if k == 0 else 0.995 * ((k - 1) * cell_min + edge)
            if bound > radius_m:
                return
            found: list[tuple[int, float]] = []
            for i, j in _ring_cells(ci, cj, k):
                bucket = grid.get((i, j))
                if not bucket:
                    continue
                for cid, (clat, clon) in bucket.items():
                    d = haversine_m(lat, lon, clat, clon)
                    if d <= radius_m:
                        found.append((cid, d))
            yield bound, found
            k += 1


def _ring_cells(ci: int, cj: int, k: int) -> Iterable[tuple[int, int]]:
    if k == 0:
        return ((ci, cj),)
    top = [(ci - k, cj + d) for d in range(-k, k + 1)]
    bottom = [(ci + k, cj + d) for d in range(-k, k + 1)]
    left = [(ci + d, cj - k) for d in range(-k + 1, k)]
    right = [(ci + d, cj + k) for d in range(-k + 1, k)]
    return top + bottom + left + right


# --- Hard rules --------------------------------------------------------------------------------


def has_required_certificate(cg: CaregiverProfile, rule: ServiceRule, day: dt.date) -> bool:
    """Whether the caregiver holds the service's certificate, valid on ``day``, at the required level."""
    if rule.certificate_kind is None:
        return True
    for cert in cg.certificates:
        if cert.kind != rule.certificate_kind or not cert.valid_on(day):
            continue
        if rule.max_certificate_level is None:
            return True
        if cert.level is not None and cert.level <= rule.max_certificate_level:
            return True
    return False


def static_rejection(cg: CaregiverProfile, order: OrderRequest, day: dt.date) -> Rejection | None:
    """The rules that do not depend on where the caregiver is or when the visit starts."""
    if not cg.is_active:
        return Rejection.INACTIVE
    rule = order.service
    if rule.skill not in cg.skills:
        return Rejection.SKILL
    if not has_required_certificate(cg, rule, day):
        return Rejection.CERTIFICATE
    if rule.same_gender and not order.elder_allows_any_gender and cg.gender != order.elder_gender:
        return Rejection.GENDER
    if cg.id in order.blocked:
        return Rejection.BLOCKED
    return None


def timing_rejection(cg: CaregiverProfile, start: dt.datetime, end: dt.datetime) -> Rejection | None:
    """Work day, working hours, overlap and daily capacity for a visit at [start, end)."""
    local_start = start.astimezone(SHANGHAI)
    local_end = end.astimezone(SHANGHAI)
    day = local_start.date()
    if day.isoweekday() not in cg.work_days:
        return Rejection.OFF_DAY
    shift_open = dt.datetime.combine(day, cg.shift_start, SHANGHAI)
    shift_close = dt.datetime.combine(day, cg.shift_end, SHANGHAI)
    if local_start < shift_open or local_end > shift_close:
        return Rejection.OUTSIDE_HOURS
    same_day = 0
    for booking in cg.bookings:
        if booking.overlaps(start, end):
            return Rejection.OVERLAP
        if local_date(booking.start) == day:
            same_day += 1
    if same_day >= cg.daily_capacity:
        return Rejection.CAPACITY
    return None


def check_hard_rules(
    cg: CaregiverProfile,
    order: OrderRequest,
    *,
    distance_m: float,
    policy: MatchPolicy,
    now: dt.datetime,
) -> tuple[Rejection | None, int, dt.datetime]:
    """All hard rules for one caregiver at ``distance_m`` from the elder.

    Returns (first failing rule or None, ETA in seconds, visit start). For ``asap`` orders the visit
    starts at the later of ``now + ETA`` and ``order.start``; otherwise at ``order.start``, which the
    caregiver must be able to reach in time.
    """
    eta = travel_seconds(distance_m, rural=order.rural, policy=policy)
    arrival = now + dt.timedelta(seconds=eta)
    start = max(arrival, order.start) if order.asap else order.start
    reason = static_rejection(cg, order, local_date(start))
    if reason is not None:
        return reason, eta, start
    if eta > eta_horizon_min(order, policy) * 60:
        return Rejection.TOO_FAR, eta, start
    if not order.asap and arrival > order.start:
        return Rejection.LATE, eta, start
    end = start + dt.timedelta(seconds=order.duration_s)
    return timing_rejection(cg, start, end), eta, start


# --- Scoring -----------------------------------------------------------------------------------


def eta_horizon_min(order: OrderRequest, policy: MatchPolicy) -> float:
    """How far (minutes of travel) matching looks for a caregiver: the urgent limit of the area kind
    for an urgent order, else the search horizon."""
    if order.urgent:
        return policy.urgent_eta_rural_min if order.rural else policy.urgent_eta_urban_min
    return policy.max_eta_min


def walk_circle_m(order: OrderRequest, policy: MatchPolicy) -> float:
    """The radius (straight-line metres) of the order's 15-minute home-care circle, 0 if none applies.

    DOMAIN §6: the 一刻钟居家养老服务圈 is the ring of services a city elder reaches within a
    15-minute walk, about 1,000 m. Every caregiver inside it is "close by" in the sense of that
    policy, so for a visit booked for a set time travel stops telling them apart and continuity of
    care, fair workload and rating decide (:func:`travel_term`): a few hundred metres more change
    nothing for the elder, who is served at the booked start either way. An urgent or
    as-soon-as-possible order has no circle: its visit starts when the caregiver arrives, so every
    second of ETA counts."""
    if order.urgent or order.asap:
        return 0.0
    return policy.walk_circle_rural_m if order.rural else policy.walk_circle_urban_m


def travel_term(distance_m: float, eta_s: int, *, horizon_s: float, circle_m: float) -> float:
    """The travel preference in 0..1: full inside the walk circle (``circle_m``, see
    :func:`walk_circle_m`), else falling linearly with the ETA to 0 at the horizon. Never rises with
    distance, so a lower bound on distance gives an upper bound on the term (:func:`match` prunes on it)."""
    if distance_m <= circle_m:
        return 1.0
    return max(0.0, 1.0 - eta_s / horizon_s)


def score(
    cg: CaregiverProfile,
    order: OrderRequest,
    *,
    distance_m: float,
    eta_s: int,
    day: dt.date,
    policy: MatchPolicy,
) -> float:
    """Weighted sum of soft preferences, each in 0..1 (higher is better), for a caregiver
    ``distance_m`` (straight line) and ``eta_s`` away from the elder."""
    horizon_s = 60.0 * eta_horizon_min(order, policy)
    travel = travel_term(distance_m, eta_s, horizon_s=horizon_s, circle_m=walk_circle_m(order, policy))
    return _weighted(cg, order, travel=travel, day=day, policy=policy)


def _weighted(
    cg: CaregiverProfile, order: OrderRequest, *, travel: float, day: dt.date, policy: MatchPolicy
) -> float:
    w = policy.weights
    continuity = min(1.0, order.continuity.get(cg.id, 0) / max(1, policy.continuity_saturation))
    booked_today = sum(1 for b in cg.bookings if local_date(b.start) == day)
    fairness = 1.0 - min(1.0, booked_today / max(1, cg.daily_capacity))
    rating = min(1.0, max(0.0, (cg.rating - 1.0) / 4.0))
    return w.travel * travel + w.continuity * continuity + w.fairness * fairness + w.rating * rating


def match(  # noqa: C901 - one branch per hard filter of DOMAIN §6, in the order the rules are written
    order: OrderRequest,
    *,
    index: CaregiverIndex,
    profiles: Mapping[int, CaregiverProfile],
    policy: MatchPolicy,
    now: dt.datetime,
    limit: int = 5,
) -> MatchResult:
    """The best ``limit`` eligible caregivers for an order, best first.

    The elder's continuity caregivers are scored first; then the grid is scanned ring by ring and
    the scan stops as soon as no caregiver farther out could beat the current ``limit``-th best
    (their travel term only falls with distance, continuity is 0 and the other terms are at most 1).
    """
    eta_min = eta_horizon_min(order, policy)
    radius = max_distance_m(eta_min, rural=order.rural, policy=policy)
    w = policy.weights
    other_max = w.fairness + w.rating
    horizon_s = eta_min * 60.0
    circle_m = walk_circle_m(order, policy)
    best: list[tuple[float, int, Candidate]] = []  # min-heap of the top `limit`
    rejected: Counter[Rejection] = Counter()

    def consider(cid: int, distance: float) -> None:
        cg = profiles.get(cid)
        if cg is None:
            return
        reason, eta, start = check_hard_rules(cg, order, distance_m=distance, policy=policy, now=now)
        if reason is not None:
            rejected[reason] += 1
            return
        travel = travel_term(distance, eta, horizon_s=horizon_s, circle_m=circle_m)
        s = _weighted(cg, order, travel=travel, day=local_date(start), policy=policy)
        item = (s, -cid, Candidate(caregiver_id=cid, score=s, eta_s=eta, start=start, distance_m=distance))
        if len(best) < limit:
            heapq.heappush(best, item)
        elif (s, -cid) > best[0][:2]:
            heapq.heapreplace(best, item)

    for cid in order.continuity:
        cg = profiles.get(cid)
        pos = index.position(cid)
        if cg is None or order.service.skill not in cg.skills:
            continue
        if pos is not None:
            distance = haversine_m(order.lat, order.lon, pos[0], pos[1])
            if distance <= radius:
                consider(cid, distance)
    for bound, found in index.rings(order.lat, order.lon, radius, order.service.skill):
        if len(best) >= limit:
            bound_eta = travel_seconds(bound, rural=order.rural, policy=policy)
            term = travel_term(bound, bound_eta, horizon_s=horizon_s, circle_m=circle_m)
            if w.travel * term + other_max < best[0][0]:
                break
        found.sort(key=lambda f: f[1])
        for cid, distance in found:
            if len(best) >= limit:
                eta = travel_seconds(distance, rural=order.rural, policy=policy)
                term = travel_term(distance, eta, horizon_s=horizon_s, circle_m=circle_m)
                if w.travel * term + other_max < best[0][0]:
                    break  # sorted by distance: nobody farther in this ring can do better
            if cid not in order.continuity:
                consider(cid, distance)
    ranked = sorted(best, key=lambda t: (-t[0], -t[1]))
    return MatchResult(candidates=tuple(c for _, _, c in ranked), rejected=dict(rejected))
