"""The set-based close against the real database: each rejection reason, shares computed by hand,
the review signals, a visit verified after the cut-off settled as an adjustment in the next period
(against the budget its month already used), a reopen whose re-close adds only correcting entries, and
statements read as they stood."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.adjudication import Reason
from billing.ledger_models import LedgerTransfer
from billing.settlement import close_period, ensure_period, reopen_period
from billing.settlement_models import SettlementLine, SettlementPeriod, SettlementStatement, StatementKind
from billing.signals import Signal
from billing.statements import statement_as_of
from core.identity.authz import Principal
from core.identity.models import Role
from registry.models import ElderAbsence
from tests.factories import Factory
from tests.support import billing as sb

pytestmark = pytest.mark.integration

CLOSE_AT = dt.datetime(2026, 11, 6, 2, tzinfo=dt.UTC)


def _admin(w: sb.World) -> Principal:
    return Principal(user_id=w.admin.user_id, username="admin", role=Role.ADMIN)


async def _lines(db: AsyncSession, period_id: int) -> dict[int, SettlementLine]:
    rows = await db.scalars(
        select(SettlementLine).where(SettlementLine.period_id == period_id).order_by(SettlementLine.revision)
    )
    return {line.visit_id: line for line in rows}  # the latest revision wins


async def test_every_reason_and_the_shares(db: AsyncSession, make: Factory) -> None:
    w = await sb.world(make)
    # LTC at level 3 (90 % within 900 yuan) and the voucher (50 % within 800 yuan, not VISIT).
    insured = await sb.elder(make, w, level=3, ltc=True)
    # Only the voucher (level 2): it does not cover VISIT.
    voucher_only = await sb.elder(make, w, level=2)
    nobody = await sb.elder(make, w)  # no assessment, no category: entitled to nothing
    no_agreement = await sb.elder(make, w, categories=("subsistence",), agreement=False)
    # Destitute (特困): 100 % within 600 yuan: two CARE hours use 12,000 fen, the rest is capped.
    capped = await sb.elder(make, w, categories=("destitute",))
    v = {
        "ltc": await sb.visit(db, w, insured, service="CARE", day=dt.date(2026, 10, 2)),
        "short": await sb.visit(db, w, insured, service="CLEAN", day=dt.date(2026, 10, 3), on_site_s=1800),
        "pending": await sb.visit(
            db, w, insured, service="CLEAN", day=dt.date(2026, 10, 4), verification="pending"
        ),
        "open": await sb.visit(
            db, w, insured, service="CLEAN", day=dt.date(2026, 10, 5), verification="exception"
        ),
        "closed_exc": await sb.visit(
            db,
            w,
            insured,
            service="CLEAN",
            day=dt.date(2026, 10, 6),
            verification="exception",
            open_exception=False,
        ),
        "late": await sb.visit(db, w, insured, service="MEAL", day=dt.date(2026, 10, 7), verified_at=sb.LATE),
        "not_covered": await sb.visit(db, w, voucher_only, service="VISIT", day=dt.date(2026, 10, 8)),
        "voucher": await sb.visit(db, w, voucher_only, service="MEAL", day=dt.date(2026, 10, 9)),
        "not_eligible": await sb.visit(db, w, nobody, service="MEAL", day=dt.date(2026, 10, 10)),
        "not_contracted": await sb.visit(db, w, no_agreement, service="MEAL", day=dt.date(2026, 10, 11)),
        "cap1": await sb.visit(db, w, capped, service="CARE", day=dt.date(2026, 10, 12), duration_s=36_000),
        "cap2": await sb.visit(db, w, capped, service="CARE", day=dt.date(2026, 10, 13)),
    }
    # The same elder, service and start as "voucher": a duplicate (the later id).
    v["dup"] = await sb.visit(db, w, voucher_only, service="MEAL", day=dt.date(2026, 10, 9))
    period = await ensure_period(session=db, month=sb.OCTOBER)
    result = await close_period(session=db, actor=_admin(w), period_id=period.id, now=CLOSE_AT)
    assert result.closed_now
    lines = await _lines(db, period.id)
    reason = {k: lines[x.id].reason for k, x in v.items()}
    assert reason == {
        "ltc": None,
        "short": Reason.UNITS_MISMATCH,
        "pending": Reason.NO_VERIFIED_VISIT,
        "open": Reason.UNRESOLVED_EXCEPTION,
        "closed_exc": Reason.NO_VERIFIED_VISIT,  # resolved as rejected: never verified
        "late": Reason.NO_VERIFIED_VISIT,  # verified after the cut-off: next period
        "not_covered": Reason.NOT_COVERED,
        "voucher": None,
        "not_eligible": Reason.NOT_ELIGIBLE,
        "not_contracted": Reason.NOT_CONTRACTED,
        "cap1": None,
        "cap2": Reason.CAP_REACHED,
        "dup": Reason.DUPLICATE,
    }
    ltc = lines[v["ltc"].id]  # CARE, one hour, 6000 fen: LTC 90 % = 5400, voucher 50 % of 600 = 300
    assert (ltc.ltc_fen, ltc.voucher_fen, ltc.local_fen, ltc.copay_fen) == (5400, 300, 0, 300)
    vo = lines[v["voucher"].id]  # MEAL 1200: voucher 600
    assert (vo.voucher_fen, vo.copay_fen) == (600, 600)
    cap1 = lines[v["cap1"].id]  # ten hours of CARE, 60,000 fen, destitute 100 % within 60,000
    assert (cap1.local_fen, cap1.copay_fen) == (60_000, 0)
    cap2 = lines[v["cap2"].id]
    assert (cap2.local_fen, cap2.copay_fen, cap2.payable) == (0, 6000, True)
    # Rejected for the public payers only: the co-pay stands. For the visit itself: nothing.
    assert (lines[v["not_covered"].id].copay_fen, lines[v["not_covered"].id].payable) == (3000, True)
    assert lines[v["not_eligible"].id].copay_fen == 1200
    assert not lines[v["short"].id].payable
    assert lines[v["short"].id].copay_fen == 0
    # The ledger holds exactly the payable lines' parts.
    payable = sum(x.amount_fen for x in lines.values() if x.payable)
    posted = await db.scalar(
        select(func.sum(LedgerTransfer.amount_fen)).where(LedgerTransfer.period_id == period.id)
    )
    assert posted == payable


async def test_review_signals(db: AsyncSession, make: Factory) -> None:
    w = await sb.world(make, capacity=2)
    e = await sb.elder(make, w, categories=("subsistence",))
    day = dt.date(2026, 10, 14)
    # Three visits in a day for a caregiver who can do two: all three flagged.
    a = await sb.visit(db, w, e, service="MEAL", day=day, hour=8, duration_s=900)
    # 20 minutes after the check-out 9 km away: impossible at 15 km/h.
    b = await sb.visit(
        db, w, e, service="MEAL", day=day, hour=8, minute=35, duration_s=900, lat=e.lat, lon=e.lon + 0.09
    )
    c = await sb.visit(db, w, e, service="MEAL", day=day, hour=12, duration_s=900)
    d = await sb.visit(db, w, e, service="MEAL", day=dt.date(2026, 10, 20), duration_s=900)
    db.add(
        ElderAbsence(
            elder_id=e.id, kind="hospital", from_on=dt.date(2026, 10, 19), to_on=dt.date(2026, 10, 21)
        )
    )
    await db.flush()
    period = await ensure_period(session=db, month=sb.OCTOBER)
    await close_period(session=db, actor=_admin(w), period_id=period.id, now=CLOSE_AT)
    lines = await _lines(db, period.id)
    assert lines[a.id].signals == Signal.CAREGIVER_OVERLOAD
    assert lines[b.id].signals == Signal.CAREGIVER_OVERLOAD | Signal.IMPOSSIBLE_TRAVEL
    assert lines[c.id].signals == Signal.CAREGIVER_OVERLOAD  # three hours later: reachable
    assert lines[d.id].signals == Signal.HOSPITAL_DAY
    # Signals flag; they do not reject.
    assert all(lines[x.id].outcome == "passed" for x in (a, b, c, d))


async def test_a_billing_jump_is_flagged_against_the_previous_months(db: AsyncSession, make: Factory) -> None:
    w = await sb.world(make)
    e = await sb.elder(make, w)
    previous = []
    for month in (dt.date(2026, 7, 1), dt.date(2026, 8, 1), dt.date(2026, 9, 1)):
        p = SettlementPeriod(
            month=month, state="paid", payment_reference="B", cutoff_at=sb.local(month, 0), close_revision=1
        )
        db.add(p)
        await db.flush()
        db.add(
            SettlementStatement(
                period_id=p.id,
                kind="provider",
                subject_id=w.provider.id,
                version=1,
                line_count=1,
                amount_fen=10_000,
                public_fen=0,
                copay_fen=10_000,
                body="{}",
                sha256="0" * 64,
                created_at=sb.VERIFIED,
            )
        )  # fmt: skip
        previous.append(p)
    await db.flush()
    for i in range(5):  # 5 × 60,000 fen against 10,000 a month before
        await sb.visit(db, w, e, service="CARE", day=dt.date(2026, 10, 2 + i), duration_s=36_000)
    period = await ensure_period(session=db, month=sb.OCTOBER)
    result = await close_period(session=db, actor=_admin(w), period_id=period.id, now=CLOSE_AT)
    lines = await _lines(db, period.id)
    assert all(x.signals & Signal.BILLING_JUMP for x in lines.values() if x.provider_id == w.provider.id)
    mine = next(s for s in result.statements if s.kind == "provider" and s.subject_id == w.provider.id)
    assert '"billing_jump":true' in mine.body


async def test_late_verification_lands_as_an_adjustment_against_the_months_budget(
    db: AsyncSession, make: Factory
) -> None:
    w = await sb.world(make)
    # Destitute: 100 % within 600 yuan a month.
    e = await sb.elder(make, w, categories=("destitute",))
    await sb.visit(db, w, e, service="CARE", day=dt.date(2026, 10, 2), duration_s=32_400)  # 54,000 fen
    late = await sb.visit(db, w, e, service="CARE", day=dt.date(2026, 10, 3), verified_at=sb.LATE)  # 6000
    october = await ensure_period(session=db, month=sb.OCTOBER)
    await close_period(session=db, actor=_admin(w), period_id=october.id, now=CLOSE_AT)
    assert (await _lines(db, october.id))[late.id].reason == Reason.NO_VERIFIED_VISIT
    november = await db.scalar(select(SettlementPeriod).where(SettlementPeriod.month == sb.NOVEMBER))
    assert november is not None  # the close opened the next period
    # November closes after its cut-off (5 December).
    await close_period(
        session=db, actor=_admin(w), period_id=november.id, now=dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    )
    adj = (await _lines(db, november.id))[late.id]
    assert (adj.kind, adj.outcome, adj.service_month) == ("adjustment", "passed", sb.OCTOBER)
    # October's budget had 6,000 fen left after the 54,000 already paid: the adjustment takes it.
    assert (adj.local_fen, adj.copay_fen) == (6000, 0)
    # A December close does not list it again: it is paid.
    december = await ensure_period(session=db, month=dt.date(2026, 12, 1))
    await close_period(
        session=db, actor=_admin(w), period_id=december.id, now=dt.datetime(2027, 1, 6, tzinfo=dt.UTC)
    )
    assert late.id not in await _lines(db, december.id)


async def test_a_reopen_and_reclose_only_adds_correcting_entries(db: AsyncSession, make: Factory) -> None:
    w = await sb.world(make)
    e = await sb.elder(make, w)  # entitled to nothing: the co-pay is the whole price
    kept = await sb.visit(db, w, e, service="MEAL", day=dt.date(2026, 10, 2))
    changed = await sb.visit(db, w, e, service="CLEAN", day=dt.date(2026, 10, 3))
    period = await ensure_period(session=db, month=sb.OCTOBER)
    first = await close_period(session=db, actor=_admin(w), period_id=period.id, now=CLOSE_AT)
    v1 = next(s for s in first.statements if s.kind == "provider" and s.subject_id == w.provider.id)
    before = await db.scalar(
        select(func.count()).select_from(LedgerTransfer).where(LedgerTransfer.period_id == period.id)
    )
    # Reopen with nothing changed: the re-close writes nothing and the statement keeps its hash.
    later = CLOSE_AT + dt.timedelta(days=1)
    await reopen_period(session=db, actor=_admin(w), period_id=period.id, reason="check", now=later)
    again = await close_period(session=db, actor=_admin(w), period_id=period.id, now=later)
    same = next(s for s in again.statements if s.kind == "provider" and s.subject_id == w.provider.id)
    assert (same.version, same.sha256) == (1, v1.sha256)
    assert again.stats is not None
    assert again.stats.lines_written == 0
    # The elder turns out to have been in a category all along: reopen, re-close.
    await sb.category(db, e.id, "subsistence", dt.date(2026, 1, 1), None)
    await reopen_period(session=db, actor=_admin(w), period_id=period.id, reason="category", now=later)
    third = await close_period(
        session=db, actor=_admin(w), period_id=period.id, now=later + dt.timedelta(hours=1)
    )
    assert third.stats is not None
    assert third.stats.lines_written == 2
    lines = await _lines(db, period.id)
    assert lines[changed.id].revision == 3
    assert lines[changed.id].local_fen == 3600
    assert lines[kept.id].local_fen == 1080
    v3 = next(s for s in third.statements if s.kind == "provider" and s.subject_id == w.provider.id)
    assert v3.version == 2
    assert v3.sha256 != v1.sha256
    # The first lines and their transfers are all still there; corrections were added.
    assert (
        await db.scalar(
            select(func.count()).select_from(SettlementLine).where(SettlementLine.period_id == period.id)
        )
        == 4
    )
    kinds = set(await db.scalars(select(LedgerTransfer.kind).where(LedgerTransfer.period_id == period.id)))
    assert "correction" in kinds
    after = await db.scalar(
        select(func.count()).select_from(LedgerTransfer).where(LedgerTransfer.period_id == period.id)
    )
    assert after is not None
    assert before is not None
    assert after > before
    # As of before the re-close, the statement reads as it was.
    old = await statement_as_of(
        session=db, period_id=period.id, kind=StatementKind.PROVIDER, subject_id=w.provider.id, as_of=later
    )
    assert old is not None
    assert old.sha256 == v1.sha256
