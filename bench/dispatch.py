"""Dispatch benchmark: ``eldercare bench dispatch --json FILE``.

1. Matching core over 10,000 caregivers and 100,000 elders (synthetic, in memory, around Xiaogan's
   district centres): ``match_latency_ms_p50`` / ``match_latency_ms_p99`` (target p99 ≤ 5 ms).
2. A day plan of 500 visits for 60 caregivers: ``dayplan_seconds`` (target ≤ 15 s),
   ``dayplan_travel_ratio_vs_ortools`` (our travel ÷ OR-Tools guided local search given
   ``--ortools-seconds`` on the same instance, same run; target ≤ 1.05) and ``hard_rule_violations``
   (checked independently of the planner; must be 0).
3. ``order_to_offer_ms_p99`` end to end (target ≤ 50 ms): an as-soon-as-possible order placed through
   the service layer against real PostgreSQL — order row, candidate search, offer row — timed until
   its transaction has committed. The database (``--database-url``, recreated and migrated) holds
   ``--caregivers`` caregivers on shift and ``--elders`` elders spread like the matching instance;
   one provider per district, contracted for the services its caregivers do.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import gc
import json
import math
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from core.clock import SHANGHAI
from dispatch.matching import (
    Booking,
    CaregiverIndex,
    CaregiverProfile,
    CertificateInfo,
    OrderRequest,
    match,
)
from dispatch.policies import policies_on
from dispatch.routing import (
    DayPlanInstance,
    PlanCaregiver,
    PlanPolicy,
    PlanVisit,
    hard_rule_violations,
    plan_day,
    solve_ortools,
)

# DOMAIN §1 district centres, kind, share of the population (estimates for a synthetic spread).
CENTRES = [
    (30.92, 113.91, False, 0.30),  # Xiaonan (urban)
    (30.66, 113.84, False, 0.16),  # Hanchuan
    (30.93, 113.57, False, 0.12),  # Yingcheng
    (31.26, 113.69, False, 0.12),  # Anlu
    (31.02, 113.75, True, 0.10),  # Yunmeng
    (31.26, 113.99, True, 0.10),  # Xiaochang
    (31.56, 114.13, True, 0.10),  # Dawu
]
DAY = dt.date(2026, 12, 2)  # a Wednesday
# Dispatch's seeded policy of that day: the matching norms and what each service asks of a caregiver.
POLICIES = policies_on(DAY)
SERVICES = {
    code: POLICIES.service(code, code) for code in ("MEAL", "CLEAN", "BATH", "ESCORT", "VISIT", "CARE")
}
DURATION_S = {"MEAL": 600, "CLEAN": 3600, "BATH": 2700, "ESCORT": 3600, "VISIT": 1800, "CARE": 3600}


def _place(rnd: random.Random, spread_deg: float) -> tuple[float, float, bool]:
    lat, lon, rural, _ = rnd.choices(CENTRES, weights=[c[3] for c in CENTRES])[0]
    return lat + rnd.gauss(0, spread_deg), lon + rnd.gauss(0, spread_deg), rural


def _profile(rnd: random.Random, cid: int, day: dt.date, p_certified: float = 0.6) -> CaregiverProfile:
    skills = {"CLEAN", "ESCORT", "VISIT"}
    certs: list[CertificateInfo] = []
    if rnd.random() < p_certified:
        skills |= {"BATH", "CARE"}
        # Some certificates run out around the plan date.
        expires = day + dt.timedelta(days=rnd.choice([-1, 0, 1, 30, 365, 365, 365]))
        certs.append(
            CertificateInfo("eldercare_worker", rnd.choice([3, 4, 4, 5]), dt.date(2023, 1, 1), expires)
        )
    if rnd.random() < 0.5:
        skills.add("MEAL")
        certs.append(CertificateInfo("health", None, dt.date(2026, 1, 1), dt.date(2027, 1, 1)))
    start_h = rnd.choice([7, 8, 8, 9])
    return CaregiverProfile(
        id=cid,
        gender="F" if rnd.random() < 0.8 else "M",
        skills=frozenset(skills),
        certificates=tuple(certs),
        shift_start=dt.time(start_h),
        shift_end=dt.time(start_h + rnd.choice([8, 9, 10])),
        work_days=frozenset(rnd.choice([{1, 2, 3, 4, 5}, {1, 2, 3, 4, 5, 6}, {3, 4, 5, 6, 7}])),
        daily_capacity=rnd.choice([6, 8, 8, 10]),
        rating=round(rnd.uniform(3.5, 5.0), 1),
    )


def bench_matching(seed: int, n_caregivers: int, n_elders: int, n_orders: int) -> dict[str, float]:
    """Latency of :func:`dispatch.matching.match` alone, over ``n_orders`` random orders."""
    rnd = random.Random(seed)
    now = dt.datetime.combine(DAY, dt.time(10), SHANGHAI).astimezone(dt.UTC)
    index = CaregiverIndex()
    profiles: dict[int, CaregiverProfile] = {}
    for cid in range(1, n_caregivers + 1):
        p = _profile(rnd, cid, DAY)
        booked = []
        for _ in range(rnd.randint(0, 4)):
            start = now + dt.timedelta(minutes=rnd.randint(-120, 360))
            booked.append(Booking(start, start + dt.timedelta(minutes=45)))
        profiles[cid] = dataclasses.replace(p, bookings=tuple(booked))
        lat, lon, _ = _place(rnd, 0.05)
        index.update(cid, lat, lon, p.skills)
    elders = [(_place(rnd, 0.05), rnd.choice("FFM"), rnd.random() < 0.2) for _ in range(n_elders)]
    policy = POLICIES.match
    codes = list(SERVICES)
    latencies: list[float] = []
    cpu: list[float] = []
    empty = 0
    # The service keeps this snapshot for hours: freeze it so the cyclic GC does not rescan it.
    gc.collect()
    gc.freeze()
    for i in range(n_orders):
        eid = rnd.randrange(n_elders)
        (lat, lon, rural), gender, allows = elders[eid]
        code = rnd.choice(codes)
        urgent = i % 2 == 0
        order = OrderRequest(
            elder_id=eid,
            elder_gender=gender,
            elder_allows_any_gender=allows,
            lat=lat,
            lon=lon,
            rural=rural,
            service=SERVICES[code],
            start=now if urgent else now + dt.timedelta(minutes=rnd.randint(60, 300)),
            duration_s=DURATION_S[code],
            asap=urgent,
            urgent=urgent,
            blocked=frozenset(rnd.sample(range(1, n_caregivers + 1), rnd.randint(0, 2))),
            continuity={rnd.randint(1, n_caregivers): rnd.randint(1, 6) for _ in range(rnd.randint(0, 3))},
        )
        c0, t0 = time.thread_time(), time.perf_counter()
        res = match(order, index=index, profiles=profiles, policy=policy, now=now)
        latencies.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
        empty += not res.candidates
    gc.unfreeze()
    latencies.sort()
    cpu.sort()
    p99 = int(0.99 * (len(latencies) - 1))
    return {
        "match_latency_ms_p50": round(statistics.median(latencies), 3),
        "match_latency_ms_p99": round(latencies[p99], 3),
        # CPU time of the matching thread: the same calls without preemption by other processes.
        "match_cpu_ms_p50": round(statistics.median(cpu), 3),
        "match_cpu_ms_p99": round(cpu[p99], 3),
        "match_orders": n_orders,
        "match_orders_without_candidate": empty,
        "caregivers": n_caregivers,
        "elders": n_elders,
    }


def dayplan_instance(seed: int, n_visits: int, n_caregivers: int) -> DayPlanInstance:
    """A next-day instance in Xiaonan: mixed services, time windows, continuity preferences."""
    rnd = random.Random(seed)
    centre = (30.92, 113.91)
    cgs = []
    for cid in range(1, n_caregivers + 1):
        p = _profile(rnd, cid, DAY, p_certified=0.8)
        p = dataclasses.replace(
            p, work_days=frozenset({1, 2, 3, 4, 5}), daily_capacity=rnd.choice([9, 10, 12])
        )
        cgs.append(
            PlanCaregiver(p, centre[0] + rnd.gauss(0, 0.03), centre[1] + rnd.gauss(0, 0.03), rural=False)
        )
    visits = []
    codes = list(SERVICES)
    weights = [2, 3, 1, 1, 2, 2]
    for vid in range(1, n_visits + 1):
        code = rnd.choices(codes, weights=weights)[0]
        if code == "MEAL":
            open_s = rnd.choice([10 * 3600 + 1800, 11 * 3600])
            width = 3600
        else:
            open_s = rnd.randrange(8 * 3600, 16 * 3600, 900)
            width = rnd.choice([1800, 3600, 7200])
        gender = "F" if rnd.random() < 0.6 else "M"
        pref = rnd.randint(1, n_caregivers) if rnd.random() < 0.5 else None
        visits.append(
            PlanVisit(
                id=vid,
                elder_id=vid,
                lat=centre[0] + rnd.gauss(0, 0.03),
                lon=centre[1] + rnd.gauss(0, 0.03),
                rural=False,
                service=SERVICES[code],
                elder_gender=gender,
                elder_allows_any_gender=rnd.random() < 0.3,
                window_open_s=open_s,
                window_close_s=open_s + width,
                duration_s=DURATION_S[code],
                blocked=frozenset(rnd.sample(range(1, n_caregivers + 1), 1))
                if rnd.random() < 0.1
                else frozenset(),
                preferred_caregiver=pref,
            )
        )
    return DayPlanInstance(
        DAY + dt.timedelta(days=0), tuple(visits), tuple(cgs), PlanPolicy(match=POLICIES.match)
    )


def bench_dayplan(
    seed: int, n_visits: int, n_caregivers: int, ortools_s: float, our_s: float
) -> dict[str, float]:
    inst = dayplan_instance(seed, n_visits, n_caregivers)
    t0 = time.perf_counter()
    ours = plan_day(inst, time_limit_s=our_s)
    seconds = time.perf_counter() - t0
    ref = solve_ortools(inst, time_limit_s=ortools_s)
    violations = hard_rule_violations(inst, ours) + hard_rule_violations(inst, ref)
    return {
        "dayplan_visits": n_visits,
        "dayplan_caregivers": n_caregivers,
        "dayplan_seconds": round(seconds, 2),
        "dayplan_travel_s": ours.travel_s,
        "dayplan_unassigned": len(ours.unassigned),
        "dayplan_continuity_misses": ours.continuity_misses,
        "ortools_seconds": ortools_s,
        "ortools_travel_s": ref.travel_s,
        "ortools_unassigned": len(ref.unassigned),
        "ortools_continuity_misses": ref.continuity_misses,
        "dayplan_travel_ratio_vs_ortools": round(ours.travel_s / max(1, ref.travel_s), 4),
        "dayplan_objective_ratio_vs_ortools": round(ours.objective / max(1, ref.objective), 4),
        "hard_rule_violations": len(violations),
    }


BENCH_DB_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/eldercare_bench_dispatch"
BENCH_SKILLS = ("CLEAN", "ESCORT", "VISIT")  # what the order-to-offer caregivers do and are contracted for


async def _order_to_offer(
    url: str, seed: int, n_caregivers: int, n_elders: int, n_orders: int
) -> dict[str, float]:
    import asyncpg
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import insert, select, text
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from core.identity.authz import Principal
    from core.identity.models import AppUser, Role
    from core.logging import configure_logging
    from core.seed import seed_reference
    from core.settings import PROJECT_ROOT
    from dispatch.seed import SEED as DISPATCH_SEED
    from registry.models import Caregiver, Community, District, Elder, Provider, ProviderDistrict, Street
    from registry.seed import SEED as REGISTRY_SEED

    configure_logging(json=True, level="WARNING")
    from dispatch import orders
    from dispatch.models import CaregiverPosition, ProviderService

    base, _, name = url.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")
    conn = await asyncpg.connect(base + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["url"] = url
    await asyncio.to_thread(command.upgrade, cfg, "heads")
    engine = create_async_engine(url, pool_size=2)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    rnd = random.Random(seed)
    now = dt.datetime.combine(DAY, dt.time(10), SHANGHAI).astimezone(dt.UTC)
    async with factory() as s, s.begin():
        # The places, and the policies the orders and offers read (dispatch's and the registry's).
        await seed_reference(s, today=DAY, domains=(REGISTRY_SEED, DISPATCH_SEED))
        districts = (await s.execute(select(District.id, District.lat, District.lon, District.kind))).all()
        communities: dict[int, list[int]] = {}
        for cid, did in await s.execute(
            select(Community.id, Street.district_id).join(Street, Street.id == Community.street_id)
        ):
            communities.setdefault(did, []).append(cid)
        providers = await s.scalars(
            insert(Provider).returning(Provider.id),
            [
                {
                    "name": f"bench provider {d.id}",
                    "licence_no": f"B-{d.id}",
                    "contract_no": f"C-{d.id}",
                    "contract_from": dt.date(2026, 1, 1),
                    "phone": "07120000000",
                    "address": "bench",
                }
                for d in districts
            ],
        )
        provider_of = dict(zip([d.id for d in districts], providers.all(), strict=True))
        await s.execute(
            insert(ProviderDistrict), [{"provider_id": p, "district_id": d} for d, p in provider_of.items()]
        )
        # Every provider is contracted for the services its caregivers do (and the orders ask for).
        await s.execute(
            insert(ProviderService),
            [
                {"provider_id": p, "service_code": code, "valid_from": dt.date(2026, 1, 1), "valid_to": None}
                for p in provider_of.values()
                for code in BENCH_SKILLS
            ],
        )
        near = {(round(d.lat, 2), round(d.lon, 2)): d.id for d in districts}

        def district_at(lat: float, lon: float) -> int:
            best: int = min(near.items(), key=lambda kv: (kv[0][0] - lat) ** 2 + (kv[0][1] - lon) ** 2)[1]
            return best

        cg_rows, pos_rows = [], []
        for i in range(n_caregivers):
            lat, lon, _ = _place(rnd, 0.04)
            cg_rows.append(
                {
                    "provider_id": provider_of[district_at(lat, lon)],
                    "name": f"护理员{i}",
                    "gender": rnd.choice("MF"),
                    "phone": f"139{i:08d}",
                    "skills": list(BENCH_SKILLS),
                    "shift_start": dt.time(7),
                    "shift_end": dt.time(19),
                    "work_days": [1, 2, 3, 4, 5, 6, 7],
                    "home_lat": lat,
                    "home_lon": lon,
                    "daily_capacity": 8,
                    "rating": round(rnd.uniform(3.5, 5.0), 2),
                }
            )
            pos_rows.append((lat + rnd.gauss(0, 0.005), lon + rnd.gauss(0, 0.005)))
        cg_ids = (await s.scalars(insert(Caregiver).returning(Caregiver.id), cg_rows)).all()
        await s.execute(
            insert(CaregiverPosition),
            [
                {
                    "caregiver_id": c,
                    "lat": la,
                    "lon": lo,
                    "at": now,
                    "on_shift": True,
                    "shift_started_at": now,
                }
                for c, (la, lo) in zip(cg_ids, pos_rows, strict=True)
            ],
        )
        elder_rows = []
        for i in range(n_elders):
            lat, lon, _ = _place(rnd, 0.05)
            did = district_at(lat, lon)
            elder_rows.append(
                {
                    "name": f"老人{i}",
                    "gender": rnd.choice("MF"),
                    "birth_on": dt.date(1940, 1, 1),
                    "id_number": f"BENCH{i:013d}",
                    "address": "bench",
                    "lat": lat,
                    "lon": lon,
                    "community_id": rnd.choice(communities[did]),
                    "district_id": did,
                    "living_situation": "alone",
                }
            )
        for k in range(0, n_elders, 10_000):
            await s.execute(insert(Elder), elder_rows[k : k + 10_000])
        elder_ids = (await s.scalars(select(Elder.id))).all()
        operator = await s.scalar(
            insert(AppUser)
            .values(username="bench_operator", display_name="bench", password_hash="!", role="operator")  # noqa: S106 - unusable
            .returning(AppUser.id)
        )
    async with engine.connect() as conn:
        await conn.execute(text("ANALYZE"))
    actor = Principal(user_id=int(operator or 0), username="bench_operator", role=Role.OPERATOR)
    timings: list[float] = []
    offered = 0
    for i in range(n_orders + 20):
        t0 = time.perf_counter()
        async with factory() as s, s.begin():
            order = await orders.place_order(
                session=s,
                actor=actor,
                elder_id=rnd.choice(elder_ids),
                # BENCH_SKILLS, listed in the order earlier runs drew from (same orders, comparable runs)
                service_code=rnd.choice(["CLEAN", "VISIT", "ESCORT"]),
                now=now,
                asap=True,
            )
        elapsed = (time.perf_counter() - t0) * 1000
        if i >= 20:  # warm-up: connection pool, statement caches
            timings.append(elapsed)
            offered += order.state == "offered"
    await engine.dispose()
    timings.sort()
    return {
        "order_to_offer_ms_p50": round(statistics.median(timings), 2),
        "order_to_offer_ms_p99": round(timings[max(0, math.ceil(0.99 * len(timings)) - 1)], 2),
        "order_to_offer_orders": len(timings),
        "order_to_offer_offered_share": round(offered / len(timings), 3),
    }


def bench_order_to_offer(
    url: str, seed: int, n_caregivers: int, n_elders: int, n_orders: int
) -> dict[str, float]:
    return asyncio.run(_order_to_offer(url, seed, n_caregivers, n_elders, n_orders))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="eldercare bench dispatch", description=__doc__)
    ap.add_argument("--json", type=Path, help="write the figures to this file")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--caregivers", type=int, default=10_000)
    ap.add_argument("--elders", type=int, default=100_000)
    ap.add_argument("--orders", type=int, default=2_000)
    ap.add_argument("--visits", type=int, default=500)
    ap.add_argument("--plan-caregivers", type=int, default=60)
    ap.add_argument("--ortools-seconds", type=float, default=60.0)
    ap.add_argument("--plan-seconds", type=float, default=14.0, help="our planner's local-search budget")
    ap.add_argument("--only", choices=["match", "dayplan", "offer"])
    ap.add_argument("--database-url", default=BENCH_DB_URL, help="throwaway database for order_to_offer")
    ap.add_argument("--offer-orders", type=int, default=500)
    args = ap.parse_args(argv)
    out: dict[str, float] = {}
    if args.only in (None, "match"):
        out.update(bench_matching(args.seed, args.caregivers, args.elders, args.orders))
    if args.only in (None, "dayplan"):
        out.update(
            bench_dayplan(
                args.seed, args.visits, args.plan_caregivers, args.ortools_seconds, args.plan_seconds
            )
        )
    if args.only in (None, "offer"):
        out.update(
            bench_order_to_offer(
                args.database_url, args.seed, args.caregivers, args.elders, args.offer_orders
            )
        )
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
