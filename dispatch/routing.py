"""Day plans: assign the next day's visits to caregivers and order each caregiver's route.

Pure core. A route starts at the caregiver's home no earlier than the shift start and is back home no
later than the shift end (commuting is working time); each visit starts inside its time window;
visits per route ≤ daily capacity; only eligible caregivers (skill, certificate valid on the plan
date, same-gender rule, not blocked, works that weekday). Objective, in seconds: total travel +
``continuity_penalty_s`` for each visit not given to its preferred caregiver + ``unassigned_penalty_s``
for each visit left unplanned.

Method: regret-2 parallel insertion with O(1) time-window checks (earliest/latest start arrays),
then relocate / exchange local search; :func:`solve_ortools` runs OR-Tools routing with guided local
search on the same model, cold (the benchmark's reference) or warm-started from our plan.
:func:`replan` repairs a plan after cancellations or a caregiver calling in sick, moving nothing that
does not have to move. A visit with ``assigned_to`` is fixed (under way, or booked outside the plan): it
stays with that caregiver at ``window_open_s`` and the other visits are planned around it. Times are
seconds after local midnight of the plan date (Asia/Shanghai).
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import structlog

from core.geo import EARTH_RADIUS_M
from dispatch.matching import CaregiverProfile, MatchPolicy, ServiceRule, has_required_certificate

log = structlog.get_logger(__name__)

INF = 10**12


@dataclass(frozen=True, slots=True)
class PlanVisit:
    """A visit to plan; the visit must *start* within [window_open_s, window_close_s]."""

    id: int
    elder_id: int
    lat: float
    lon: float
    rural: bool
    service: ServiceRule
    elder_gender: str
    elder_allows_any_gender: bool
    window_open_s: int
    window_close_s: int
    duration_s: int
    blocked: frozenset[int] = frozenset()
    preferred_caregiver: int | None = None  # who served this elder most in the continuity window
    # Fixed: this caregiver's already (under way, or booked outside the plan); it starts at window_open_s
    # (the caller pins the window) and no hard rule is re-checked for it.
    assigned_to: int | None = None


@dataclass(frozen=True, slots=True)
class PlanCaregiver:
    profile: CaregiverProfile
    home_lat: float
    home_lon: float
    rural: bool = False


@dataclass(frozen=True, slots=True)
class PlanPolicy:
    """Travel comes from the day's matching policy (``match``); the penalties weigh the planner's
    objective (search tuning, not policy)."""

    match: MatchPolicy
    continuity_penalty_s: int = 600
    unassigned_penalty_s: int = 100_000


@dataclass(frozen=True, slots=True)
class DayPlanInstance:
    day: dt.date
    visits: tuple[PlanVisit, ...]
    caregivers: tuple[PlanCaregiver, ...]
    policy: PlanPolicy


@dataclass(frozen=True, slots=True)
class Stop:
    visit_id: int
    start_s: int  # seconds after local midnight


@dataclass(frozen=True, slots=True)
class DayPlan:
    routes: dict[int, tuple[Stop, ...]]  # caregiver id → stops in order
    unassigned: tuple[int, ...]
    travel_s: int
    continuity_misses: int
    objective: int


def eligible(cg: PlanCaregiver, v: PlanVisit, day: dt.date) -> bool:
    """The static hard rules of DOMAIN §6 for planning ``v`` on ``day`` with ``cg``."""
    p = cg.profile
    if not p.is_active or day.isoweekday() not in p.work_days:
        return False
    if v.service.skill not in p.skills or p.id in v.blocked:
        return False
    if not has_required_certificate(p, v.service, day):
        return False
    return not (v.service.same_gender and not v.elder_allows_any_gender and p.gender != v.elder_gender)


def _shift_s(t: dt.time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


class _Model:
    """Indices: visits 0..V-1, caregiver homes V..V+C-1. Travel in whole seconds."""

    def __init__(self, inst: DayPlanInstance) -> None:
        self.inst = inst
        vs, cs = inst.visits, inst.caregivers
        self.V, self.C = len(vs), len(cs)
        pts = [(v.lat, v.lon, v.rural) for v in vs] + [(c.home_lat, c.home_lon, c.rural) for c in cs]
        self.travel = _travel_matrix(pts, inst.policy.match)
        self.open = [v.window_open_s for v in vs] + [_shift_s(c.profile.shift_start) for c in cs]
        self.close = [v.window_close_s for v in vs] + [_shift_s(c.profile.shift_end) for c in cs]
        self.dur = [v.duration_s for v in vs] + [0] * self.C
        self.cap = [c.profile.daily_capacity for c in cs]
        ids = {c.profile.id: ci for ci, c in enumerate(cs)}
        # Caregiver index of each fixed visit (-1: its caregiver is not in the instance), None if free.
        self.fixed: list[int | None] = [
            None if v.assigned_to is None else ids.get(v.assigned_to, -1) for v in vs
        ]
        self.elig: list[list[int]] = []
        for v, f in zip(vs, self.fixed, strict=True):
            if f is None:
                self.elig.append([ci for ci, c in enumerate(cs) if eligible(c, v, inst.day)])
            else:  # a fixed visit goes only to its own caregiver, if present
                self.elig.append([f] if f >= 0 else [])
        self.pref = [
            ids.get(v.preferred_caregiver, -1) if v.preferred_caregiver is not None else -1 for v in vs
        ]
        self.pen = inst.policy.continuity_penalty_s

    def admit_fixed(self, c: int, route: list[int]) -> None:
        """Make the model accept ``route``, caregiver ``c``'s fixed visits in start order, whatever the
        shift or capacity say: the shift is widened just enough to reach the first and get home from the
        last (which leaves no room for another visit before or after them), the capacity raised to hold
        them, and fixed visits that overlap one another may run late."""
        if not route:
            return
        home = self.V + c
        self.cap[c] = max(self.cap[c], len(route))
        first, last = route[0], route[-1]
        self.open[home] = min(self.open[home], self.open[first] - self.travel[home][first])
        close, self.close[home] = self.close[home], INF
        if self.schedule(c, route) is None:
            for v in route:
                self.close[v] = INF
        starts = self.schedule(c, route)
        if starts is None:  # pragma: no cover - nothing is left that could fail
            raise AssertionError("internal error: fixed visits could not be admitted")
        self.close[home] = max(close, starts[-1] + self.dur[last] + self.travel[last][home])

    def pen_of(self, v: int, c: int) -> int:
        p = self.pref[v]
        return self.pen if p >= 0 and p != c else 0

    def schedule(self, c: int, route: Sequence[int]) -> list[int] | None:
        """Visit start times along ``route`` for caregiver ``c``, or None if infeasible."""
        if len(route) > self.cap[c]:
            return None
        home = self.V + c
        t, prev = self.open[home], home
        starts = []
        for v in route:
            s = max(t + self.travel[prev][v], self.open[v])
            if s > self.close[v]:
                return None
            starts.append(s)
            t, prev = s + self.dur[v], v
        if t + self.travel[prev][home] > self.close[home]:
            return None
        return starts

    def route_travel(self, c: int, route: Sequence[int]) -> int:
        if not route:
            return 0
        home = self.V + c
        tr = self.travel
        total = tr[home][route[0]] + tr[route[-1]][home]
        for a, b in itertools.pairwise(route):
            total += tr[a][b]
        return total

    def route_cost(self, c: int, route: Sequence[int]) -> int:
        return self.route_travel(c, route) + sum(self.pen_of(v, c) for v in route)


def _travel_matrix(pts: list[tuple[float, float, bool]], policy: MatchPolicy) -> list[list[int]]:
    """Symmetric travel seconds; the urban (slower) speed applies unless both ends are rural.

    The distance is :func:`core.geo.haversine_m`, inlined with each point's trigonometry computed once
    instead of once per pair (n² pairs per plan); a unit test holds the two equal."""
    n = len(pts)
    rad = [(math.radians(lat), math.radians(lon), math.cos(math.radians(lat))) for lat, lon, _ in pts]
    k_urban = policy.detour_factor / (policy.urban_speed_kmh / 3.6)
    k_rural = policy.detour_factor / (policy.rural_speed_kmh / 3.6)
    out = [[0] * n for _ in range(n)]
    r2 = 2 * EARTH_RADIUS_M
    for i in range(n):
        pi, li, ci = rad[i]
        ri = pts[i][2]
        row = out[i]
        for j in range(i + 1, n):
            pj, lj, cj = rad[j]
            a = math.sin((pj - pi) / 2) ** 2 + ci * cj * math.sin((lj - li) / 2) ** 2
            d = r2 * math.asin(min(1.0, math.sqrt(a)))
            t = math.ceil(d * (k_rural if ri and pts[j][2] else k_urban))
            row[j] = t
            out[j][i] = t
    return out


# --- Construction ------------------------------------------------------------------------------


class _Routes:
    """Routes with earliest/latest start arrays for O(1) insertion checks."""

    def __init__(self, m: _Model) -> None:
        self.m = m
        self.r: list[list[int]] = [[] for _ in range(m.C)]
        self.early: list[list[int]] = [[] for _ in range(m.C)]
        self.late: list[list[int]] = [[] for _ in range(m.C)]
        for c in range(m.C):
            self.refresh(c)

    def refresh(self, c: int) -> None:
        """Recompute earliest start E and latest start L for each position (home at both ends)."""
        m = self.m
        home = m.V + c
        seq = [home, *self.r[c], home]
        n = len(seq)
        early = [0] * n
        early[0] = m.open[home]
        for i in range(1, n):
            a, b = seq[i - 1], seq[i]
            early[i] = max(early[i - 1] + m.dur[a] + m.travel[a][b], m.open[b] if i < n - 1 else 0)
        late = [0] * n
        late[n - 1] = m.close[home]
        for i in range(n - 2, -1, -1):
            a, b = seq[i], seq[i + 1]
            lim = m.close[a] if i > 0 else m.close[home]
            late[i] = min(lim, late[i + 1] - m.travel[a][b] - m.dur[a])
        self.early[c] = early
        self.late[c] = late

    def best_insertion(self, v: int, c: int) -> tuple[int, int]:
        """(cost increase, position) of the cheapest feasible insertion of v into route c, or (INF, -1)."""
        m = self.m
        route = self.r[c]
        if len(route) >= m.cap[c]:
            return INF, -1
        home = m.V + c
        tr, dur = m.travel, m.dur
        early, late = self.early[c], self.late[c]
        ov, cv, dv = m.open[v], m.close[v], dur[v]
        trv = tr[v]
        best, pos = INF, -1
        prev = home
        for p in range(len(route) + 1):
            nxt = route[p] if p < len(route) else home
            s = early[p] + dur[prev] + tr[prev][v]
            if s < ov:
                s = ov
            if s <= cv and s + dv + trv[nxt] <= late[p + 1]:
                delta = tr[prev][v] + trv[nxt] - tr[prev][nxt]
                if delta < best:
                    best, pos = delta, p
            elif s > cv:
                break  # later positions only start later
            prev = nxt
        if pos < 0:
            return INF, -1
        return best + m.pen_of(v, c), pos

    def insert(self, v: int, c: int, pos: int) -> None:
        self.r[c].insert(pos, v)
        self.refresh(c)

    def remove(self, v: int, c: int) -> None:
        self.r[c].remove(v)
        self.refresh(c)


def _place_fixed(routes: _Routes, skip: frozenset[int] = frozenset()) -> None:
    """Start each caregiver's route with their fixed visits (indices in ``skip`` left out)."""
    m = routes.m
    by_c: dict[int, list[int]] = {}
    for v, c in enumerate(m.fixed):
        if c is not None and c >= 0 and v not in skip:
            by_c.setdefault(c, []).append(v)
    for c, vs in by_c.items():
        vs.sort(key=m.open.__getitem__)
        m.admit_fixed(c, vs)
        routes.r[c] = vs
        routes.refresh(c)


def _regret_insert(routes: _Routes, todo: Iterable[int], touched: set[int] | None = None) -> list[int]:  # noqa: C901 - the planner's inner loop; helper calls here cost measurable time in bench dispatch
    """Insert visits by regret-2 (largest gap between best and second-best route first).

    Returns the visits that fit nowhere; adds the routes it changed to ``touched``.
    """
    m = routes.m
    pending = set(todo)
    costs: dict[int, dict[int, tuple[int, int]]] = {}
    for v in pending:
        costs[v] = {c: routes.best_insertion(v, c) for c in m.elig[v]}
    left: list[int] = []
    while pending:
        pick, pick_key, pick_c, pick_pos = -1, (-INF, 0), -1, -1
        for v in pending:
            b1, b2, bc, bp = INF, INF, -1, -1
            for c, (cost, pos) in costs[v].items():
                if cost < b1:
                    b2, b1, bc, bp = b1, cost, c, pos
                elif cost < b2:
                    b2 = cost
            if b1 >= INF:
                continue
            key = (b2 - b1 if b2 < INF else INF, -b1)
            if key > pick_key:
                pick, pick_key, pick_c, pick_pos = v, key, bc, bp
        if pick < 0:
            left.extend(sorted(pending))
            break
        routes.insert(pick, pick_c, pick_pos)
        if touched is not None:
            touched.add(pick_c)
        pending.discard(pick)
        del costs[pick]
        for v in pending:
            if pick_c in costs[v]:
                costs[v][pick_c] = routes.best_insertion(v, pick_c)
    return left


# --- Local search ------------------------------------------------------------------------------


def _local_search(routes: _Routes, deadline: float, neighbours: list[list[int]]) -> None:  # noqa: C901 - the planner's inner loop; helper calls here cost measurable time in bench dispatch
    """Relocate and exchange moves, first improvement, until no move helps or the deadline passes."""
    m = routes.m
    where = {v: c for c in range(m.C) for v in routes.r[c]}
    improved = True
    while improved and time.monotonic() < deadline:
        improved = False
        # Relocate: take a visit out and put it back at its cheapest place anywhere.
        for v in range(m.V):
            c0 = where.get(v)
            if c0 is None or m.fixed[v] is not None:
                continue
            old = routes.r[c0]
            i = old.index(v)
            without = old[:i] + old[i + 1 :]
            saving = m.route_cost(c0, old) - m.route_cost(c0, without)
            routes.r[c0] = without
            routes.refresh(c0)
            best, bc, bp = INF, -1, -1
            for c in m.elig[v]:
                cost, pos = routes.best_insertion(v, c)
                if cost < best:
                    best, bc, bp = cost, c, pos
            if bc >= 0 and best < saving:
                routes.insert(v, bc, bp)
                where[v] = bc
                improved = True
            else:
                routes.r[c0] = old
                routes.refresh(c0)
        if time.monotonic() >= deadline:
            break
        # Exchange two visits of different routes (nearby pairs only).
        for v in range(m.V):
            cv = where.get(v)
            if cv is None or m.fixed[v] is not None:
                continue
            for w in neighbours[v]:
                cw = where.get(w)
                if cw is None or cw == cv or cw not in m.elig[v] or cv not in m.elig[w]:
                    continue
                rv, rw = routes.r[cv], routes.r[cw]
                before = m.route_cost(cv, rv) + m.route_cost(cw, rw)
                nv = [w if x == v else x for x in rv]
                nw = [v if x == w else x for x in rw]
                after = m.route_cost(cv, nv) + m.route_cost(cw, nw)
                if after < before and m.schedule(cv, nv) is not None and m.schedule(cw, nw) is not None:
                    routes.r[cv], routes.r[cw] = nv, nw
                    routes.refresh(cv)
                    routes.refresh(cw)
                    where[v], where[w] = cw, cv
                    improved = True
                    break


def _objective(routes: _Routes, unassigned: Iterable[int]) -> int:
    m = routes.m
    total = sum(m.route_cost(c, r) for c, r in enumerate(routes.r) if r)
    return total + sum(1 for _ in unassigned) * m.inst.policy.unassigned_penalty_s


def _ruin_recreate(
    routes: _Routes, unassigned: list[int], deadline: float, neighbours: list[list[int]], seed: int
) -> list[int]:
    """Large-neighbourhood search: remove a cluster of nearby visits, re-insert them (and the unplanned
    ones) by regret, keep the result if the objective does not get worse. Returns the unplanned visits.
    """
    import random

    m = routes.m
    rnd = random.Random(seed)
    best = _objective(routes, unassigned)
    while time.monotonic() < deadline:
        where = {v: c for c in range(m.C) for v in routes.r[c]}
        centre = rnd.choice(unassigned) if unassigned and rnd.random() < 0.5 else rnd.randrange(m.V)
        size = rnd.randint(8, 30)
        cluster = [w for w in [centre, *neighbours[centre]][:size] if w in where and m.fixed[w] is None]
        if not cluster:
            continue
        saved = {c: list(routes.r[c]) for c in {where[w] for w in cluster}}
        for w in cluster:
            routes.r[where[w]].remove(w)
        for c in saved:
            routes.refresh(c)
        touched = set(saved)
        left = _regret_insert(routes, [*cluster, *unassigned], touched=touched)
        cost = _objective(routes, left)
        if cost <= best:
            best, unassigned = cost, left
        else:
            for c in touched:
                routes.r[c] = saved.get(
                    c, [v for v in routes.r[c] if v not in cluster and v not in unassigned]
                )
                routes.refresh(c)
    return unassigned


def _neighbours(m: _Model, k: int) -> list[list[int]]:
    out = []
    for v in range(m.V):
        row = m.travel[v]
        out.append(sorted((w for w in range(m.V) if w != v), key=row.__getitem__)[:k])
    return out


def _to_plan(m: _Model, routes: list[list[int]], unassigned: Iterable[int]) -> DayPlan:
    inst = m.inst
    out: dict[int, tuple[Stop, ...]] = {}
    travel = misses = 0
    for c, route in enumerate(routes):
        if not route:
            continue
        starts = m.schedule(c, route)
        if starts is None:
            raise AssertionError("internal error: an infeasible route was built")
        out[inst.caregivers[c].profile.id] = tuple(
            Stop(inst.visits[v].id, s) for v, s in zip(route, starts, strict=True)
        )
        travel += m.route_travel(c, route)
        misses += sum(1 for v in route if m.pen_of(v, c))
    left = tuple(sorted(inst.visits[v].id for v in unassigned))
    pol = inst.policy
    objective = travel + misses * pol.continuity_penalty_s + len(left) * pol.unassigned_penalty_s
    return DayPlan(out, left, travel, misses, objective)


def plan_day(inst: DayPlanInstance, *, time_limit_s: float = 10.0, seed: int = 1) -> DayPlan:
    """Build a day plan within about ``time_limit_s`` wall seconds: regret insertion, local search,
    then ruin-and-recreate with local search polishing each time the budget allows.
    """
    t0 = time.monotonic()
    deadline = t0 + time_limit_s
    m = _Model(inst)
    routes = _Routes(m)
    _place_fixed(routes)
    near = _neighbours(m, 40)
    left = _regret_insert(routes, [v for v in range(m.V) if m.fixed[v] is None or m.fixed[v] == -1])
    _local_search(routes, deadline, [n[:12] for n in near])
    left = _ruin_recreate(routes, left, t0 + 0.85 * time_limit_s, near, seed)
    _local_search(routes, deadline, [n[:12] for n in near])
    if left:
        left = _regret_insert(routes, left)
    plan = _to_plan(m, routes.r, left)
    log.info(
        "dispatch.dayplan.built",
        visits=m.V,
        caregivers=m.C,
        unassigned=len(plan.unassigned),
        travel_s=plan.travel_s,
        seconds=round(time.monotonic() - t0, 3),
    )
    return plan


def replan(
    inst: DayPlanInstance,
    previous: DayPlan,
    *,
    cancelled: frozenset[int] = frozenset(),
    unavailable: frozenset[int] = frozenset(),
    not_before_s: int | None = None,
) -> DayPlan:
    """Repair ``previous`` after visits are cancelled or caregivers become unavailable (ids).

    Minimal change: a visit that keeps a place keeps its caregiver, its place in the route and its start.
    Only the visits of unavailable caregivers, earlier unplanned ones and ones their caregiver can no
    longer take (a hard rule broke since, e.g. the elder blocked them) look for a new place, by regret
    insertion into the gaps, starting no earlier than ``not_before_s`` (now, in seconds after midnight).
    Fixed visits (``assigned_to``) stay where they are even with an unavailable caregiver, who gets
    nothing else. ``inst`` must still list the cancelled visits; they end up neither planned nor
    unassigned.
    """
    m = _Model(inst)
    vidx = {v.id: i for i, v in enumerate(inst.visits)}
    cidx = {c.profile.id: i for i, c in enumerate(inst.caregivers)}
    gone = frozenset(vidx[v] for v in cancelled if v in vidx)
    routes = _Routes(m)
    _place_fixed(routes, skip=gone)
    orphans = [vidx[v] for v in previous.unassigned if v in vidx and vidx[v] not in gone]
    orphans = [v for v in orphans if m.fixed[v] is None or m.fixed[v] == -1]
    for cid, stops in previous.routes.items():
        c = cidx[cid]
        for s in stops:
            v, f = vidx[s.visit_id], m.fixed[vidx[s.visit_id]]
            if v in gone or (f is not None and f >= 0):
                continue  # fixed visits are placed already
            if f is not None or cid in unavailable or c not in m.elig[v]:
                orphans.append(v)  # (a fixed visit whose caregiver is missing ends up unassigned)
                continue
            # Keep the start; mixed urban/rural speeds can break the triangle inequality, so check.
            window = m.open[v], m.close[v]
            m.open[v] = m.close[v] = s.start_s
            route = routes.r[c]
            pos = bisect.bisect_right([m.open[w] for w in route], s.start_s)
            candidate = [*route[:pos], v, *route[pos:]]
            if m.schedule(c, candidate) is None:
                m.open[v], m.close[v] = window
                orphans.append(v)
            else:
                routes.r[c] = candidate
    for c in range(m.C):
        routes.refresh(c)
    for cid in unavailable:
        if cid in cidx:
            m.cap[cidx[cid]] = len(routes.r[cidx[cid]])
    if not_before_s is not None:
        for v in orphans:
            m.open[v] = max(m.open[v], not_before_s)
    left = _regret_insert(routes, orphans)
    return _to_plan(m, routes.r, left)


# --- OR-Tools ----------------------------------------------------------------------------------


def solve_ortools(
    inst: DayPlanInstance,
    *,
    time_limit_s: float,
    initial: DayPlan | None = None,
    first_solution: str = "PARALLEL_CHEAPEST_INSERTION",
) -> DayPlan:
    """The same model in OR-Tools routing with guided local search for ``time_limit_s`` seconds.

    Cold start uses ``first_solution`` (a FirstSolutionStrategy name; parallel cheapest insertion
    copes best with optional visits); with ``initial`` the search starts from that plan.
    """
    from ortools.constraint_solver import pywrapcp, routing_enums_pb2  # heavy import, only here

    m = _Model(inst)
    n_nodes = m.V + m.C
    homes = [m.V + c for c in range(m.C)]
    manager = pywrapcp.RoutingIndexManager(n_nodes, m.C, homes, homes)
    routing = pywrapcp.RoutingModel(manager)
    # Transit matrices are indexed by node; OR-Tools maps its indices itself.
    for c in range(m.C):
        cost = [row[:] for row in m.travel]
        for v in range(m.V):
            pen = m.pen_of(v, c)
            if pen:
                for row in cost:
                    row[v] += pen
        cb = routing.RegisterTransitMatrix(cost)
        routing.SetArcCostEvaluatorOfVehicle(cb, c)
    time_rows = [[m.travel[i][j] + m.dur[i] for j in range(n_nodes)] for i in range(n_nodes)]
    time_cb = routing.RegisterTransitMatrix(time_rows)
    routing.AddDimension(time_cb, 24 * 3600, 24 * 3600, False, "time")
    tdim = routing.GetDimensionOrDie("time")
    for v in range(m.V):
        tdim.CumulVar(manager.NodeToIndex(v)).SetRange(m.open[v], m.close[v])
    for c in range(m.C):
        home = m.V + c
        tdim.CumulVar(routing.Start(c)).SetRange(m.open[home], m.close[home])
        tdim.CumulVar(routing.End(c)).SetRange(m.open[home], m.close[home])
    count_cb = routing.RegisterUnaryTransitVector([1] * m.V + [0] * m.C)
    routing.AddDimensionWithVehicleCapacity(count_cb, 0, m.cap, True, "count")
    for v in range(m.V):
        idx = manager.NodeToIndex(v)
        routing.AddDisjunction([idx], inst.policy.unassigned_penalty_s)
        # -1 = not performed. (SetAllowedVehiclesForIndex's Python binding rejects lists in 9.15.)
        routing.VehicleVar(idx).SetValues([-1, *m.elig[v]])
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = getattr(routing_enums_pb2.FirstSolutionStrategy, first_solution)
    params.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    params.time_limit.FromMilliseconds(int(time_limit_s * 1000))
    if initial is not None:
        routing.CloseModelWithParameters(params)
        vidx = {v.id: i for i, v in enumerate(inst.visits)}
        init_routes = [
            [manager.NodeToIndex(vidx[s.visit_id]) for s in initial.routes.get(c.profile.id, ())]
            for c in inst.caregivers
        ]
        start = routing.ReadAssignmentFromRoutes(init_routes, True)
        solution = routing.SolveFromAssignmentWithParameters(start, params)
    else:
        solution = routing.SolveWithParameters(params)
    if solution is None:
        raise RuntimeError("OR-Tools found no solution")
    routes: list[list[int]] = []
    planned: set[int] = set()
    for c in range(m.C):
        idx = routing.Start(c)
        route = []
        idx = solution.Value(routing.NextVar(idx))
        while not routing.IsEnd(idx):
            node = manager.IndexToNode(idx)
            route.append(node)
            planned.add(node)
            idx = solution.Value(routing.NextVar(idx))
        routes.append(route)
    return _to_plan(m, routes, [v for v in range(m.V) if v not in planned])


# --- Independent check -------------------------------------------------------------------------


def hard_rule_violations(inst: DayPlanInstance, plan: DayPlan) -> list[str]:
    """Every hard rule broken by ``plan``, checked from scratch (not with the planner's own arrays)."""
    from core.geo import haversine_m as hav
    from dispatch.matching import OrderRequest, static_rejection, travel_seconds

    pol = inst.policy.match
    visits = {v.id: v for v in inst.visits}
    cgs = {c.profile.id: c for c in inst.caregivers}
    problems: list[str] = []
    seen: set[int] = set()
    for cid, stops in plan.routes.items():
        cg = cgs[cid]
        p = cg.profile
        if inst.day.isoweekday() not in p.work_days:
            problems.append(f"caregiver {cid}: not a work day")
        if len(stops) > p.daily_capacity:
            problems.append(f"caregiver {cid}: {len(stops)} visits > capacity {p.daily_capacity}")
        lat, lon, rural = cg.home_lat, cg.home_lon, cg.rural
        t = _shift_s(p.shift_start)
        for s in stops:
            v = visits[s.visit_id]
            if s.visit_id in seen:
                problems.append(f"visit {v.id}: planned twice")
            seen.add(s.visit_id)
            req = OrderRequest(
                elder_id=v.elder_id,
                elder_gender=v.elder_gender,
                elder_allows_any_gender=v.elder_allows_any_gender,
                lat=v.lat,
                lon=v.lon,
                rural=v.rural,
                service=v.service,
                start=dt.datetime.combine(inst.day, dt.time(), dt.UTC),
                duration_s=v.duration_s,
                blocked=v.blocked,
            )
            reason = static_rejection(p, req, inst.day)
            if reason is not None:
                problems.append(f"visit {v.id} with caregiver {cid}: {reason}")
            arrive = t + travel_seconds(hav(lat, lon, v.lat, v.lon), rural=rural and v.rural, policy=pol)
            if s.start_s < arrive:
                problems.append(f"visit {v.id}: starts before the caregiver can arrive (overlap)")
            if not v.window_open_s <= s.start_s <= v.window_close_s:
                problems.append(f"visit {v.id}: starts outside its window")
            t = s.start_s + v.duration_s
            lat, lon, rural = v.lat, v.lon, v.rural
        back = t + travel_seconds(
            hav(lat, lon, cg.home_lat, cg.home_lon), rural=rural and cg.rural, policy=pol
        )
        if stops and back > _shift_s(p.shift_end):
            problems.append(f"caregiver {cid}: back home after the shift ends")
    missing = set(visits) - seen - set(plan.unassigned)
    problems.extend(f"visit {v}: neither planned nor reported unassigned" for v in sorted(missing))
    return problems
