"""Billing benchmark: ``eldercare bench billing --json FILE``.

Closes one month (October 2026) for ``--elders`` elders (100,000) and ``--visits`` visits (1,500,000)
in a throwaway database (``--database-url``, dropped, recreated and migrated), generated with COPY:
the seven districts' elders with their categories, long-term-care coverage and assessments (some
changing mid-month), providers and caregivers, signed service agreements, and the month's orders and
visits — mostly verified, some with an open exception, pending, verified after the cut-off, too short
on site, duplicated, or on a hospital day.

Prints:

* ``close_seconds`` (target ≤ 60 s) for ``billing.settlement.close_period`` — adjudication, the payer
  waterfall, the ledger postings and the statements, committed — and ``visits_per_s``;
* ``checksum``: the digest of every statement's SHA-256 (identical on a second run over the same
  seed: the generator and the close are deterministic);
* ``total_fen`` (payable lines) and ``ledger_total_fen`` (the close batch's transfers net of
  reversals): equal;
* ``ledger_transfers_per_s`` (transfers posted ÷ the posting step's seconds) and
  ``close_transfers_per_s`` (÷ the whole close);
* the ceilings, measured in the same run: ``copy_rows_per_s`` (COPY of the month's visit rows into a
  bare table like ``visit``), ``line_insert_rows_per_s`` and ``insert_rows_per_s`` (one INSERT … SELECT
  of the close's line rows, and of its transfer rows, into bare tables), with the ratios
  ``visits_per_s_vs_copy``, ``visits_per_s_vs_line_insert`` and ``ledger_transfers_vs_insert``.

* the exports (``billing.settlement_exports``) after the close, as an admin: the statement of the
  provider with the most lines as XLSX (``export_provider_xlsx_seconds``, ``export_provider_lines``)
  and CSV (``export_provider_csv_seconds``), and the summary of the district with the most lines
  (``export_district_xlsx_seconds``); the ceiling of the same run, reading that provider's lines
  with everything the file shows (``export_read_lines_seconds``), and the ratio
  ``export_xlsx_vs_read``; ``export_totals_match``: the provider's file settles its statement's
  amount, and the district's file its statement's, to the fen.

The close posts one transfer per pair of accounts (a payer's fund in a district and a provider; an
elder's co-pay and a provider): about one per elder and provider, each line's parts kept in its line.
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
from typing import Any

BENCH_DB_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/eldercare_bench_billing"
MONTH = dt.date(2026, 10, 1)
# After the October period's cut-off (5 November 00:00 Asia/Shanghai, policy settlement.cutoff).
CLOSE_AT = dt.datetime(2026, 11, 6, 2, 0, tzinfo=dt.UTC)
VERIFIED_AT = dt.datetime(2026, 11, 1, 4, 0, tzinfo=dt.UTC)
LATE_VERIFIED_AT = dt.datetime(2026, 11, 10, 4, 0, tzinfo=dt.UTC)
# Share of the population by district (DOMAIN §1 order of the seed), estimates.
DISTRICT_SHARE = (0.30, 0.16, 0.12, 0.12, 0.10, 0.10, 0.10)
SERVICE_MIX = {
    "MEAL": 0.30,
    "CLEAN": 0.15,
    "BATH": 0.08,
    "ESCORT": 0.07,
    "MEDESC": 0.05,
    "VISIT": 0.15,
    "ERRAND": 0.08,
    "CARE": 0.12,
}
DURATION_S = {
    "MEAL": 900,
    "CLEAN": 3600,
    "BATH": 2700,
    "ESCORT": 5400,
    "MEDESC": 7200,
    "VISIT": 1800,
    "ERRAND": 1800,
    "CARE": 3600,
}
CATEGORIES = ("destitute", "subsistence", "low_income", "family_planning", "veteran", "elderly_alone")
PROVIDERS_PER_DISTRICT = 20
VISITS_PER_CAREGIVER_DAY = 6


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _recreate(url: str) -> None:
    import asyncpg

    base, _, name = _dsn(url).rpartition("/")
    conn = await asyncpg.connect(base + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _migrate_and_seed(url: str) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from billing.seed import SEED as BILLING_SEED
    from core.seed import seed_reference
    from core.settings import PROJECT_ROOT
    from dispatch.seed import SEED as DISPATCH_SEED
    from registry.seed import SEED as REGISTRY_SEED

    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["url"] = url
    await asyncio.to_thread(command.upgrade, cfg, "heads")
    engine = create_async_engine(url, pool_size=1)
    try:
        async with async_sessionmaker(engine)() as s, s.begin():
            await seed_reference(s, today=MONTH, domains=(REGISTRY_SEED, DISPATCH_SEED, BILLING_SEED))
    finally:
        await engine.dispose()


def _local(day: dt.date, minute: int) -> dt.datetime:
    from core.clock import SHANGHAI

    return dt.datetime.combine(day, dt.time(minute // 60, minute % 60), SHANGHAI).astimezone(dt.UTC)


async def generate(url: str, seed: int, n_elders: int, n_visits: int) -> dict[str, float]:  # noqa: C901 - one linear script
    """Fill the database; returns the COPY ceiling (visit rows per second)."""
    import asyncpg

    from dispatch.seed import SERVICES

    rnd = random.Random(seed)
    price = {s.code: s.price_fen for s in SERVICES}
    conn = await asyncpg.connect(_dsn(url))
    try:
        # Bulk loading consistent rows: no foreign-key or user triggers (the rows are made consistent
        # above; the agreements are written as signed, which their freeze trigger would refuse item by item).
        await conn.execute("SET session_replication_role = replica")
        districts = await conn.fetch("SELECT id, lat, lon FROM district ORDER BY code")
        communities: dict[int, list[tuple[int, float, float]]] = {}
        for r in await conn.fetch(
            "SELECT c.id, s.district_id, c.lat, c.lon FROM community c JOIN street s ON s.id = c.street_id "
            "ORDER BY c.id"
        ):
            communities.setdefault(r[1], []).append((r[0], r[2], r[3]))
        d_ids = [d[0] for d in districts]
        # Providers: 20 per district, contracted for every service.
        providers: dict[int, list[int]] = {}
        prov_rows: list[tuple[Any, ...]] = []
        pd_rows: list[tuple[Any, ...]] = []
        ps_rows: list[tuple[Any, ...]] = []
        pid = 0
        for did in d_ids:
            for _ in range(PROVIDERS_PER_DISTRICT):
                pid += 1
                providers.setdefault(did, []).append(pid)
                prov_rows.append(
                    (
                        pid,
                        f"bench provider {pid}",
                        f"B-LIC-{pid}",
                        f"B-CON-{pid}",
                        dt.date(2026, 1, 1),
                        None,
                        "07120000000",
                        "bench",
                        True,
                    )
                )
                pd_rows.append((pid, did))
                ps_rows.extend((pid, code, dt.date(2026, 1, 1), None) for code in price)
        await conn.copy_records_to_table(
            "provider",
            records=prov_rows,
            columns=[
                "id",
                "name",
                "licence_no",
                "contract_no",
                "contract_from",
                "contract_to",
                "phone",
                "address",
                "is_active",
            ],
        )
        await conn.copy_records_to_table(
            "provider_district", records=pd_rows, columns=["provider_id", "district_id"]
        )
        await conn.copy_records_to_table(
            "provider_service",
            records=ps_rows,
            columns=["provider_id", "service_code", "valid_from", "valid_to"],
        )
        # Caregivers: enough for about six visits a day each, spread over the providers.
        n_caregivers = max(len(prov_rows), n_visits // (31 * VISITS_PER_CAREGIVER_DAY))
        caregivers: dict[int, list[int]] = {}
        cg_rows = []
        all_providers = [p for did in d_ids for p in providers[did]]
        for cid in range(1, n_caregivers + 1):
            p = all_providers[(cid - 1) % len(all_providers)]
            caregivers.setdefault(p, []).append(cid)
            cg_rows.append(
                (
                    cid,
                    p,
                    f"护理员{cid}",
                    rnd.choice("FFFM"),
                    f"139{cid:08d}",
                    list(price),
                    dt.time(7),
                    dt.time(20),
                    [1, 2, 3, 4, 5, 6, 7],
                    30.9,
                    113.9,
                    8,
                    4.5,
                    True,
                )
            )
        await conn.copy_records_to_table(
            "caregiver",
            records=cg_rows,
            columns=[
                "id",
                "provider_id",
                "name",
                "gender",
                "phone",
                "skills",
                "shift_start",
                "shift_end",
                "work_days",
                "home_lat",
                "home_lon",
                "daily_capacity",
                "rating",
                "is_active",
            ],
        )
        # Elders, their facts, and a signed agreement each with one provider of their district.
        Rows = list[tuple[Any, ...]]
        elder_rows: Rows = []
        cat_rows: Rows = []
        cov_rows: Rows = []
        asm_rows: Rows = []
        abs_rows: Rows = []
        agr_rows: Rows = []
        item_rows: Rows = []
        sig_rows: Rows = []
        elders: list[tuple[int, int, int, float, float, list[str]]] = []
        mid = MONTH + dt.timedelta(days=14)
        for eid in range(1, n_elders + 1):
            did = rnd.choices(d_ids, weights=DISTRICT_SHARE)[0]
            com, lat, lon = rnd.choice(communities[did])
            lat, lon = lat + rnd.uniform(-0.004, 0.004), lon + rnd.uniform(-0.004, 0.004)
            birth = dt.date(rnd.randint(1925, 1965), rnd.randint(1, 12), rnd.randint(1, 28))
            status, status_on = "active", None
            x = rnd.random()
            if x < 0.002:
                status, status_on = "deceased", MONTH + dt.timedelta(days=rnd.randint(3, 27))
            elif x < 0.004:
                status, status_on = "moved", MONTH + dt.timedelta(days=rnd.randint(3, 27))
            elder_rows.append(
                (
                    eid,
                    f"老人{eid}",
                    rnd.choice("MF"),
                    birth,
                    f"B{eid:017d}",
                    "bench",
                    lat,
                    lon,
                    com,
                    did,
                    rnd.choice(("alone", "empty_nest", "with_family")),
                    False,
                    False,
                    "",
                    status,
                    status_on,
                )
            )
            if rnd.random() < 0.28:
                cat = rnd.choice(CATEGORIES)
                ends = mid if rnd.random() < 0.03 else None
                cat_rows.append((len(cat_rows) + 1, eid, cat, dt.date(2026, 1, 1), ends))
                if rnd.random() < 0.1:
                    cat_rows.append(
                        (len(cat_rows) + 1, eid, rnd.choice(CATEGORIES[:3]), dt.date(2026, 3, 1), None)
                    )
            if rnd.random() < 0.6:
                level = rnd.choices((0, 1, 2, 3, 4), weights=(5, 25, 35, 25, 10))[0]
                assessed = dt.date(2026, rnd.randint(1, 9), rnd.randint(1, 28))
                until = assessed + dt.timedelta(days=364)
                if rnd.random() < 0.02:  # expires mid-month
                    until = MONTH + dt.timedelta(days=rnd.randint(5, 25))
                asm_rows.append(
                    (
                        len(asm_rows) + 1,
                        eid,
                        "{}",
                        False,
                        False,
                        [],
                        0,
                        level,
                        level,
                        "bench",
                        assessed,
                        until,
                    )
                )
                if rnd.random() < 0.02:  # re-assessed mid-month at another level
                    again = MONTH + dt.timedelta(days=rnd.randint(5, 25))
                    lv = min(4, level + 1)
                    asm_rows.append(
                        (
                            len(asm_rows) + 1,
                            eid,
                            "{}",
                            False,
                            False,
                            [],
                            0,
                            lv,
                            lv,
                            "bench",
                            again,
                            again + dt.timedelta(days=364),
                        )
                    )
                if level >= 2 and rnd.random() < 0.45:
                    cov_rows.append((len(cov_rows) + 1, eid, f"LTC{eid}", dt.date(2026, 1, 1), None))
            if rnd.random() < 0.005:
                start = MONTH + dt.timedelta(days=rnd.randint(0, 25))
                abs_rows.append((len(abs_rows) + 1, eid, "hospital", start, start + dt.timedelta(days=3), ""))
            p = rnd.choice(providers[did])
            services = rnd.sample(list(SERVICE_MIX), k=rnd.randint(2, 4))
            aid = len(agr_rows) + 1
            agr_rows.append(
                (
                    aid,
                    eid,
                    p,
                    None,
                    dt.date(2026, 1, 1),
                    dt.date(2026, 12, 31),
                    dt.date(2026, 1, 1),
                    "signed",
                    VERIFIED_AT - dt.timedelta(days=300),
                )
            )
            item_rows.extend((aid, s, price[s], "unit", "bench") for s in services)
            sig_rows.append(
                (
                    len(sig_rows) + 1,
                    aid,
                    "provider",
                    "bench",
                    "paper_scan",
                    "scan.pdf",
                    VERIFIED_AT - dt.timedelta(days=300),
                )
            )
            elders.append((eid, did, p, lat, lon, services))
        await conn.copy_records_to_table(
            "elder",
            records=elder_rows,
            columns=[
                "id",
                "name",
                "gender",
                "birth_on",
                "id_number",
                "address",
                "lat",
                "lon",
                "community_id",
                "district_id",
                "living_situation",
                "has_dementia",
                "allows_any_gender_bathing",
                "medical_notes",
                "status",
                "status_on",
            ],
        )
        await conn.copy_records_to_table(
            "elder_category",
            records=cat_rows,
            columns=["id", "elder_id", "category", "valid_from", "valid_to"],
        )
        await conn.copy_records_to_table(
            "ltc_coverage",
            records=cov_rows,
            columns=["id", "elder_id", "policy_no", "valid_from", "valid_to"],
        )
        await conn.copy_records_to_table(
            "assessment",
            records=asm_rows,
            columns=[
                "id",
                "elder_id",
                "items",
                "has_dementia_dx",
                "has_other_mental_dx",
                "recent_incidents",
                "total",
                "preliminary_level",
                "final_level",
                "assessor",
                "assessed_on",
                "valid_until",
            ],
        )
        await conn.copy_records_to_table(
            "elder_absence", records=abs_rows, columns=["id", "elder_id", "kind", "from_on", "to_on", "note"]
        )
        # Agreements are inserted as signed (the trigger freezes terms, not the insert).
        await conn.copy_records_to_table(
            "service_agreement",
            records=agr_rows,
            columns=[
                "id",
                "elder_id",
                "provider_id",
                "guardian_id",
                "valid_from",
                "valid_to",
                "price_list_on",
                "state",
                "signed_at",
            ],
        )
        await conn.copy_records_to_table(
            "service_agreement_item",
            records=item_rows,
            columns=["agreement_id", "service_code", "price_fen", "unit", "price_ref"],
        )
        await conn.copy_records_to_table(
            "agreement_signature",
            records=sig_rows,
            columns=["id", "agreement_id", "party", "signer_name", "method", "document_ref", "signed_at"],
        )
        # The month's orders and visits.
        order_rows: list[tuple[Any, ...]] = []
        visit_rows: list[tuple[Any, ...]] = []
        exc_rows: list[tuple[Any, ...]] = []
        per_elder = max(1, n_visits // n_elders)
        vid = 0
        codes = list(SERVICE_MIX)
        weights = [SERVICE_MIX[c] for c in codes]
        for eid, _did, p, lat, lon, services in elders:
            cgs = caregivers[p]
            for _ in range(per_elder):
                if vid >= n_visits:
                    break
                vid += 1
                svc = rnd.choices(services, weights=[weights[codes.index(s)] for s in services])[0]
                day = MONTH + dt.timedelta(days=rnd.randint(0, 30))
                start = _local(day, rnd.randrange(8 * 60, 18 * 60, 15))
                dur = DURATION_S[svc]
                cg = cgs[(eid + vid) % len(cgs)]
                check_in = start + dt.timedelta(minutes=rnd.randint(-5, 10))
                on_site = dur if rnd.random() > 0.02 else dur // 2
                check_out = check_in + dt.timedelta(seconds=on_site + rnd.randint(0, 300))
                x = rnd.random()
                if x < 0.01:
                    state, verification, verified_at = "exception", "exception", None
                    exc_rows.append(
                        (len(exc_rows) + 1, vid, "no_sign_off", check_out + dt.timedelta(days=1), "")
                    )
                elif x < 0.02:
                    state, verification, verified_at = "checked_out", "pending", None
                elif x < 0.03:
                    state, verification, verified_at = "verified", "verified", LATE_VERIFIED_AT
                else:
                    state, verification, verified_at = "verified", "verified", VERIFIED_AT
                order_rows.append(
                    (
                        vid,
                        eid,
                        svc,
                        p,
                        cg,
                        state,
                        False,
                        False,
                        start,
                        start + dt.timedelta(minutes=30),
                        dur,
                        "",
                        price[svc],
                        0,
                        "operator",
                        0,
                    )
                )
                visit_rows.append(
                    (
                        vid,
                        vid,
                        svc,
                        eid,
                        cg,
                        p,
                        start,
                        start + dt.timedelta(seconds=dur),
                        check_in,
                        lat + rnd.uniform(-0.0005, 0.0005),
                        lon + rnd.uniform(-0.0005, 0.0005),
                        "gps",
                        False,
                        check_out,
                        lat,
                        lon,
                        "gps",
                        "{}",
                        check_out,
                        "pin",
                        verification,
                        verified_at,
                    )
                )
        # A few duplicates: a second order and visit for the same elder, service and start.
        for _ in range(n_visits // 1000):
            src = rnd.choice(visit_rows)
            vid += 1
            o = order_rows[src[0] - 1]
            order_rows.append((vid, *o[1:]))
            visit_rows.append((vid, vid, *src[2:]))
        order_cols = [
            "id",
            "elder_id",
            "service_code",
            "provider_id",
            "caregiver_id",
            "state",
            "asap",
            "urgent",
            "window_start_at",
            "window_end_at",
            "duration_s",
            "requirements",
            "price_fen",
            "offer_attempts",
            "created_by_role",
            "cancellation_fee_fen",
        ]
        visit_cols = [
            "id",
            "order_id",
            "service_code",
            "elder_id",
            "caregiver_id",
            "provider_id",
            "scheduled_start_at",
            "scheduled_end_at",
            "check_in_at",
            "check_in_lat",
            "check_in_lon",
            "check_in_method",
            "check_in_qr_ok",
            "check_out_at",
            "check_out_lat",
            "check_out_lon",
            "check_out_method",
            "checklist",
            "signed_off_at",
            "sign_off_method",
            "verification",
            "verified_at",
        ]
        await conn.copy_records_to_table("service_order", records=order_rows, columns=order_cols)
        await conn.copy_records_to_table("visit", records=visit_rows, columns=visit_cols)
        # The ceiling: COPY of the same visit rows into a bare table like ``visit`` (no index, no key).
        await conn.execute("CREATE UNLOGGED TABLE bench_copy_ceiling (LIKE visit INCLUDING DEFAULTS)")
        t0 = time.perf_counter()
        await conn.copy_records_to_table("bench_copy_ceiling", records=visit_rows, columns=visit_cols)
        copy_s = time.perf_counter() - t0
        await conn.execute("DROP TABLE bench_copy_ceiling")
        await conn.copy_records_to_table(
            "visit_exception", records=exc_rows, columns=["id", "visit_id", "code", "detected_at", "note"]
        )
        for table in (
            "provider",
            "caregiver",
            "elder",
            "elder_category",
            "ltc_coverage",
            "assessment",
            "elder_absence",
            "service_agreement",
            "agreement_signature",
            "service_order",
            "visit",
            "visit_exception",
        ):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 1)) FROM {table}"  # noqa: S608 - constants
            )
        await conn.execute("VACUUM ANALYZE")
        return {"copy_rows_per_s": round(len(visit_rows) / copy_s), "visits": len(visit_rows)}
    finally:
        await conn.close()


async def close_month(url: str) -> dict[str, Any]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from billing.settlement import close_period, ensure_period
    from billing.statements import checksum
    from core.logging import configure_logging

    configure_logging(json=True, level="WARNING")
    engine = create_async_engine(url, pool_size=2)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with factory() as s, s.begin():
            period = await ensure_period(session=s, month=MONTH)
        t0 = time.perf_counter()
        async with factory() as s, s.begin():
            # The scheduled close at the cut-off (no user): what the job runs.
            result = await close_period(session=s, actor=None, period_id=period.id, now=CLOSE_AT)
        close_s = time.perf_counter() - t0
        stats = result.stats
        assert stats is not None
        async with factory() as s:
            total = await s.scalar(
                text(
                    "SELECT coalesce(sum(amount_fen), 0) FROM settlement_line "
                    "WHERE period_id = :p AND payable"
                ),
                {"p": period.id},
            )
            ledger_total = await s.scalar(
                text(
                    "SELECT coalesce(sum(CASE WHEN kind IN ('correction', 'reversal') THEN -amount_fen "
                    "ELSE amount_fen END), 0) "
                    "FROM ledger_transfer WHERE period_id = :p "
                    "AND kind IN ('share', 'copay', 'correction', 'reversal')"
                ),
                {"p": period.id},
            )
            digests = [(st.kind, st.subject_id, st.sha256) for st in result.statements]
            # The ceilings in the same run: the close's transfer rows, and its line rows, each copied by
            # one INSERT … SELECT into a bare table (no index, no constraint, no trigger).
            rates = {}
            for name, table in (("transfers", "ledger_transfer"), ("lines", "settlement_line")):
                await s.execute(text(f"CREATE TEMP TABLE bare_{name} AS SELECT * FROM {table} WITH NO DATA"))  # noqa: S608 - constants
                t1 = time.perf_counter()
                copied: Any = await s.execute(
                    text(f"INSERT INTO bare_{name} SELECT * FROM {table} WHERE period_id = :p"),  # noqa: S608 - constants
                    {"p": period.id},
                )
                rates[name] = int(copied.rowcount) / max(time.perf_counter() - t1, 1e-9)
            await s.rollback()
        exports = await _exports(factory, period.id)
        return {
            **exports,
            "close_seconds": round(close_s, 2),
            "lines": stats.lines,
            "exact_lines": stats.exact_lines,
            "visits_per_s": round(stats.lines / close_s),
            "checksum": checksum(digests),
            "statements": len(digests),
            "total_fen": int(total or 0),
            "ledger_total_fen": int(ledger_total or 0),
            "ledger_transfers": stats.transfers,
            "ledger_posting_seconds": stats.posting_s,
            "ledger_transfers_per_s": round(stats.transfers / max(stats.posting_s, 1e-9)),
            "close_transfers_per_s": round(stats.transfers / close_s),
            "insert_rows_per_s": round(rates["transfers"]),
            "line_insert_rows_per_s": round(rates["lines"]),
            "steps": stats.steps,
        }
    finally:
        await engine.dispose()


async def _exports(factory: Any, period_id: int) -> dict[str, Any]:
    """Time the statement exports of the biggest provider and district (module docstring)."""
    from sqlalchemy import func, select

    from billing.exports import Format
    from billing.settlement_exports import provider_lines, statement_export
    from billing.settlement_models import SettlementLine, SettlementStatement, StatementKind
    from core.identity.authz import Principal
    from core.identity.models import Role

    admin = Principal(user_id=0, username="bench", role=Role.ADMIN)
    out: dict[str, Any] = {}
    matches = True
    # The bench has no users: the exports' audit rows are never flushed (no_autoflush), then rolled back.
    async with factory() as s:
        with s.no_autoflush:
            for kind, column in ((StatementKind.PROVIDER, SettlementLine.provider_id),
                                 (StatementKind.DISTRICT, SettlementLine.district_id)):  # fmt: skip
                subject = await s.scalar(
                    select(column).where(SettlementLine.period_id == period_id)
                    .group_by(column).order_by(func.count().desc(), column).limit(1)
                )  # fmt: skip
                stated = await s.scalar(
                    select(SettlementStatement.amount_fen).where(
                        SettlementStatement.period_id == period_id,
                        SettlementStatement.kind == kind.value,
                        SettlementStatement.subject_id == subject,
                    )
                )
                formats: tuple[Format, ...] = ("xlsx", "csv") if kind == StatementKind.PROVIDER else ("xlsx",)
                for fmt in formats:
                    t0 = time.perf_counter()
                    exported = await statement_export(
                        session=s, actor=admin, period_id=period_id, kind=kind, subject_id=int(subject),
                        as_of=None, fmt=fmt,
                    )  # fmt: skip
                    out[f"export_{kind.value}_{fmt}_seconds"] = round(time.perf_counter() - t0, 2)
                    out[f"export_{kind.value}_{fmt}_bytes"] = len(exported.file.content)
                    matches = matches and exported.tally.settled_fen == stated
                out[f"export_{kind.value}_lines"] = exported.tally.lines
                if kind == StatementKind.PROVIDER:
                    t0 = time.perf_counter()
                    await provider_lines(
                        s, actor=admin, period_id=period_id, provider_id=int(subject), as_of=None
                    )
                    out["export_read_lines_seconds"] = round(time.perf_counter() - t0, 2)
        await s.rollback()
    out["export_xlsx_vs_read"] = round(
        out["export_provider_xlsx_seconds"] / max(out["export_read_lines_seconds"], 1e-9), 1
    )
    out["export_totals_match"] = matches
    return out


async def run(
    url: str, seed: int, n_elders: int, n_visits: int, *, generate_only: bool = False
) -> dict[str, Any]:
    t0 = time.perf_counter()
    await _recreate(url)
    await _migrate_and_seed(url)
    ceiling = await generate(url, seed, n_elders, n_visits)
    generated_s = time.perf_counter() - t0
    if generate_only:
        return {**ceiling, "generate_seconds": round(generated_s, 1)}
    out = await close_month(url)
    out.update(ceiling)
    out["generate_seconds"] = round(generated_s, 1)
    out["visits_per_s_vs_copy"] = round(out["visits_per_s"] / max(1, out["copy_rows_per_s"]), 4)
    out["visits_per_s_vs_line_insert"] = round(out["visits_per_s"] / max(1, out["line_insert_rows_per_s"]), 4)
    out["ledger_transfers_vs_insert"] = round(
        out["ledger_transfers_per_s"] / max(1, out["insert_rows_per_s"]), 4
    )
    out["totals_match"] = out["total_fen"] == out["ledger_total_fen"]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="eldercare bench billing", description=__doc__)
    ap.add_argument("--json", type=Path, help="write the figures to this file")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--elders", type=int, default=100_000)
    ap.add_argument("--visits", type=int, default=1_500_000)
    ap.add_argument("--database-url", default=BENCH_DB_URL, help="throwaway database (dropped and recreated)")
    ap.add_argument("--generate-only", action="store_true", help="fill the database, do not close")
    args = ap.parse_args(argv)
    out = asyncio.run(
        run(args.database_url, args.seed, args.elders, args.visits, generate_only=args.generate_only)
    )
    body = json.dumps(out, indent=2)
    print(body)
    if args.json:
        args.json.write_text(body + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
