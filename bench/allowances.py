"""Allowance roster benchmark: ``eldercare bench allowances --json FILE``.

1. The pure rules (:func:`billing.allowances.roster`) over ``--elders`` synthetic elders in memory
   (ages 60-105, a fifth assessed at levels 2-4 with a low-income category, some deceased or moved
   in the month before, some registered late): ``rules_elders_per_s`` for both allowances, against
   the ceiling of the same run, computing each elder's age alone (``rules_ceiling_elders_per_s``),
   and their ratio.
2. Against PostgreSQL (``--database-url``, recreated and migrated): the same elders copied in, then
   the November 2026 roster of each allowance generated through the service as the 1st-of-month job
   does (``generate_old_age_seconds``, ``generate_disability_seconds``, lines, totals), regenerated
   (``regenerate_old_age_seconds``; ``checksum_stable`` must be true) and exported as XLSX by a
   civil-affairs officer of one district, as officers do (``export_xlsx_seconds``,
   ``export_lines``). The ceiling of the same run: reading the elder columns the generation reads,
   all rows, in one query (``read_elders_seconds``); ``generate_vs_read_ratio``.
   ``total_fen_matches``: the roster's stored total equals the sum of its lines.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path

from billing.allowances import (
    AllowanceKind,
    AllowancePolicy,
    AssessmentSpan,
    CategorySpan,
    ElderFacts,
    add_months,
    allowance_policy,
    facts_day,
    policies_needed,
    previous_from_facts,
    roster,
)
from billing.seed import POLICY_DEFAULTS
from core.policy import snapshot_from_rows
from registry.idcard import age_on

BENCH_DB_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/eldercare_bench_allowances"
MONTH = dt.date(2026, 11, 1)
NOW = dt.datetime(2026, 11, 20, 2, tzinfo=dt.UTC)  # 10:00 in Shanghai
LONG_AGO = dt.datetime(2025, 1, 1, 2, tzinfo=dt.UTC)
CATEGORIES = ("destitute", "subsistence", "low_income", "veteran")


def synthetic_facts(n: int, seed: int, district_ids: Sequence[int]) -> list[ElderFacts]:
    """``n`` elders with the spread the module docstring describes (deterministic for a seed)."""
    rnd = random.Random(seed)
    out = []
    october = dt.date(2026, 10, 1)
    for i in range(1, n + 1):
        birth = dt.date(1921, 1, 1) + dt.timedelta(days=rnd.randrange(45 * 365))
        status, status_on = "active", None
        roll = rnd.random()
        if roll < 0.02:
            status, status_on = "deceased", october + dt.timedelta(days=rnd.randrange(31))
        elif roll < 0.03:
            status, status_on = "moved", october + dt.timedelta(days=rnd.randrange(31))
        registered = (
            october + dt.timedelta(days=rnd.randrange(31)) if rnd.random() < 0.01 else LONG_AGO.date()
        )
        cats: tuple[CategorySpan, ...] = ()
        found: tuple[AssessmentSpan, ...] = ()
        if rnd.random() < 0.2:
            cats = (CategorySpan(rnd.choice(CATEGORIES), dt.date(2026, 1, 1)),)
            assessed = dt.date(2026, 1, 1) + dt.timedelta(days=rnd.randrange(300))
            found = (AssessmentSpan(rnd.choice((1, 2, 3, 4)), assessed, assessed + dt.timedelta(days=364)),)
        out.append(
            ElderFacts(
                elder_id=i,
                district_id=district_ids[i % len(district_ids)],
                birth_on=birth,
                registered_on=registered,
                status=status,
                status_on=status_on,
                categories=cats,
                assessments=found,
            )
        )
    return out


ELDER_COLUMNS = [
    "id", "name", "gender", "birth_on", "id_number", "address", "lat", "lon", "community_id", "district_id",
    "living_situation", "has_dementia", "allows_any_gender_bathing", "medical_notes", "status", "status_on",
    "created_at", "updated_at",
]  # fmt: skip
ASSESSMENT_COLUMNS = [
    "elder_id", "items", "has_dementia_dx", "has_other_mental_dx", "recent_incidents", "total",
    "preliminary_level", "final_level", "assessor", "assessed_on", "valid_until",
]  # fmt: skip


def elder_row(f: ElderFacts, community_of: dict[int, int]) -> tuple[object, ...]:
    registered_at = dt.datetime.combine(f.registered_on, dt.time(4), dt.UTC)
    return (
        f.elder_id, f"老人{f.elder_id}", "M", f.birth_on, f"{f.elder_id:018d}", "孝感市", 30.9, 113.9,
        community_of[f.district_id], f.district_id, "alone", False, False, "", f.status, f.status_on,
        registered_at, LONG_AGO,
    )  # fmt: skip


def assessment_row(elder_id: int, a: AssessmentSpan) -> tuple[object, ...]:
    return (elder_id, "{}", False, False, [], 0, a.level, a.level, "bench", a.assessed_on, a.valid_until)


def _policies() -> dict[dt.date, AllowancePolicy]:
    return {
        m: allowance_policy(snapshot_from_rows(m, [], POLICY_DEFAULTS)) for m in policies_needed(MONTH, 12)
    }


def bench_rules(n: int, seed: int) -> dict[str, float]:
    facts = synthetic_facts(n, seed, range(1, 8))
    policies = _policies()
    day = facts_day(MONTH)
    t0 = time.perf_counter()
    ages = sum(age_on(f.birth_on, day) for f in facts)
    ceiling = time.perf_counter() - t0
    lines = 0
    t0 = time.perf_counter()
    for kind in AllowanceKind:
        last = add_months(MONTH, -1)
        before = previous_from_facts(kind, last, facts, policies[last])
        lines += len(roster(kind, MONTH, facts, policies, before))
    spent = time.perf_counter() - t0
    per_s = 2 * n / spent
    ceiling_per_s = n / ceiling if ceiling > 0 else float("inf")
    assert ages > 0
    return {
        "rules_elders": n,
        "rules_lines": lines,
        "rules_seconds": round(spent, 3),
        "rules_elders_per_s": round(per_s),
        "rules_ceiling_elders_per_s": round(ceiling_per_s),
        "rules_ratio_to_ceiling": round(per_s / ceiling_per_s, 4),
    }


async def _bench_database(url: str, n: int, seed: int) -> dict[str, float | bool]:
    import asyncpg
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import func, select, text
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from billing import allowance_service as service
    from billing import exports
    from billing.allowance_models import AllowanceLine
    from billing.seed import SEED as BILLING_SEED
    from core.identity.authz import Principal
    from core.identity.models import AppUser, Role
    from core.logging import configure_logging
    from core.seed import seed_reference
    from core.settings import PROJECT_ROOT
    from registry.models import Community, Street
    from registry.seed import SEED as REGISTRY_SEED

    configure_logging(json=True, level="WARNING")
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    base, _, name = dsn.rpartition("/")
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
    async with factory() as s, s.begin():
        await seed_reference(s, today=NOW.date(), domains=(REGISTRY_SEED, BILLING_SEED))
        places = (await s.execute(select(Community.id, Street.district_id).join(Street))).all()
        admin = AppUser(
            username="bench_admin",
            display_name="bench",
            password_hash="-",  # noqa: S106 - not a hash: this account never signs in
            role=Role.ADMIN.value,
        )
        s.add(admin)
        await s.flush()
        admin_id = admin.id
    facts = synthetic_facts(n, seed, [d for _, d in places])
    by_district: dict[int, int] = {}
    for community_id, district_id in places:
        by_district.setdefault(district_id, community_id)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "elder", columns=ELDER_COLUMNS, records=[elder_row(f, by_district) for f in facts]
        )
        await conn.copy_records_to_table(
            "elder_category",
            columns=["elder_id", "category", "valid_from"],
            records=[(f.elder_id, c.category, c.valid_from) for f in facts for c in f.categories],
        )
        await conn.copy_records_to_table(
            "assessment",
            columns=ASSESSMENT_COLUMNS,
            records=[assessment_row(f.elder_id, a) for f in facts for a in f.assessments],
        )
        await conn.execute("SELECT setval('elder_id_seq', (SELECT max(id) FROM elder))")
        await conn.execute("ANALYZE")
    finally:
        await conn.close()

    out: dict[str, float | bool] = {"db_elders": n}
    async with factory() as s:
        t0 = time.perf_counter()
        rows = (
            await s.execute(
                text("SELECT id, district_id, birth_on, created_at, status, status_on FROM elder")
            )
        ).all()
        out["read_elders_seconds"] = round(time.perf_counter() - t0, 3)
        assert len(rows) == n
    checksums = []
    for kind in (AllowanceKind.OLD_AGE, AllowanceKind.DISABILITY, AllowanceKind.OLD_AGE):
        async with factory() as s, s.begin():
            t0 = time.perf_counter()
            made = await service.generate_roster(session=s, kind=kind, month=MONTH, actor=None, now=NOW)
        spent = round(time.perf_counter() - t0, 3)
        r = made.roster
        if kind == AllowanceKind.DISABILITY:
            out |= {"generate_disability_seconds": spent, "disability_lines": r.lines}
            continue
        checksums.append(r.checksum)
        if len(checksums) == 1:
            out |= {
                "generate_old_age_seconds": spent,
                "old_age_lines": r.lines,
                "old_age_added": r.added,
                "old_age_stopped": r.stopped,
                "old_age_total_fen": r.total_fen,
                "old_age_backpay_fen": r.backpay_fen,
            }
            async with factory() as s2:
                summed = await s2.scalar(
                    select(func.sum(AllowanceLine.amount_fen)).where(AllowanceLine.roster_id == r.id)
                )
            out["total_fen_matches"] = int(summed or 0) == r.total_fen
        else:
            out["regenerate_old_age_seconds"] = spent
    out["checksum_stable"] = len(set(checksums)) == 1
    district = places[0][1]
    officer = Principal(
        user_id=admin_id, username="bench_admin", role=Role.CIVIL_AFFAIRS, district_ids=frozenset({district})
    )
    async with factory() as s, s.begin():
        t0 = time.perf_counter()
        file = await exports.allowance_roster_export(
            session=s, actor=officer, kind=AllowanceKind.OLD_AGE, month=MONTH, fmt="xlsx"
        )
        out["export_xlsx_seconds"] = round(time.perf_counter() - t0, 3)
        out["export_lines"] = file.lines
        out["export_xlsx_bytes"] = len(file.content)
        summed = await s.scalar(
            select(func.sum(AllowanceLine.amount_fen)).where(
                AllowanceLine.roster_id == made.roster.id, AllowanceLine.district_id == district
            )
        )
        out["export_total_matches"] = file.total_fen == int(summed or 0)
    await engine.dispose()
    generate = float(out["generate_old_age_seconds"])
    out["generate_vs_read_ratio"] = round(generate / max(float(out["read_elders_seconds"]), 1e-6), 1)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="eldercare bench allowances", description=__doc__)
    ap.add_argument("--json", type=Path, help="write the figures to this file")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--elders", type=int, default=100_000)
    ap.add_argument("--only", choices=["rules", "database"])
    ap.add_argument("--database-url", default=BENCH_DB_URL, help="throwaway database (recreated)")
    args = ap.parse_args(argv)
    out: dict[str, float | bool] = {}
    if args.only in (None, "rules"):
        out.update(bench_rules(args.elders, args.seed))
    if args.only in (None, "database"):
        out.update(asyncio.run(_bench_database(args.database_url, args.elders, args.seed)))
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
