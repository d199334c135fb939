"""Voucher accounts (养老服务消费补贴, the national care voucher, DOMAIN §4): issuing each month's voucher,
and reading a month's account.

**Issuing** (:func:`issue_vouchers`, the scheduled job ``billing.issue_vouchers``). On the 1st of each
month every elder entitled to the voucher that day (:func:`billing.eligibility.entitlements_on`: a valid
assessment at the voucher's ``min_level`` or above, alive and not moved away) gets one
:class:`~billing.models.VoucherIssue` for the month: the voucher's budget for the month (its
``budget_fen``; under the ``per_day`` model, the daily cap × the month's days left). The job runs daily:
on later days it issues the month's voucher to those who became entitled since (an assessment made on
the 10th) and to everyone if the scheduler was down on the 1st. One row per elder and month (unique,
``ON CONFLICT DO NOTHING``): running it again, or in two schedulers at once, issues nothing twice.

**The account** (:func:`voucher_account`). ``issued`` is the month's issue (0 if none); ``consumed`` the
voucher payer's shares of the month's priced visits (:mod:`billing.pricing`: verified visits, in
:data:`~billing.pricing.VISIT_ORDER`), each listed; ``balance = issued − consumed``. The voucher
expires at the end of its month (Asia/Shanghai) plus policy ``subsidy.voucher_expiry.grace_days``:
unused budget does not carry over, and after ``expires_at`` the balance is shown as ``expired``. Only
visits of the month consume its voucher. (A balance below 0 can only come from a budget raised within
the month after the voucher was issued: it is shown as it is.)

The ledger (settlement) posts issues and expiries later, referring to ``voucher_issue.id``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.eligibility import entitlements_on, load_elder_facts
from billing.models import VoucherIssue
from billing.pricing import SUBSIDY_DEFAULTS, load_rule_packs, local_start, month_of, price_elder_visits
from billing.rules import VOUCHER_EXPIRY_KEY, Payer, PayerRule, PaymentModel
from core.clock import local_date
from core.crud import get_or_404, not_found
from core.identity.authz import Principal
from core.policy import load_policy
from registry.models import Assessment, Elder
from registry.scope import sees_elder

log = structlog.get_logger(__name__)

# Elders handled per round trip when issuing (their facts are read set-based).
ISSUE_BATCH: Final = 5000


async def expires_at(session: AsyncSession, month_first: dt.date) -> dt.datetime:
    """When the voucher of the month starting ``month_first`` expires: the next month's first instant
    in Asia/Shanghai, plus the grace days of policy ``subsidy.voucher_expiry`` valid on the month's last
    day (UTC)."""
    _, last = month_of(month_first)
    policy = await load_policy(session, day=last, prefixes=[VOUCHER_EXPIRY_KEY], defaults=SUBSIDY_DEFAULTS)
    grace = int(policy.number(VOUCHER_EXPIRY_KEY, "grace_days"))
    return local_start(last + dt.timedelta(days=1 + grace)).astimezone(dt.UTC)


def issue_amount_fen(rule: PayerRule, day: dt.date) -> int:
    """The voucher issued on ``day`` for its month: the monthly budget, or under ``per_day`` the daily
    cap for each day left in the month (``day`` included)."""
    if rule.model is PaymentModel.PER_DAY:
        _, last = month_of(day)
        return rule.budget_fen * ((last - day).days + 1)
    return rule.budget_fen


async def _candidates(session: AsyncSession, day: dt.date, month_first: dt.date, min_level: int) -> list[int]:
    """Elders with an assessment valid on ``day`` at ``min_level`` or above and no voucher for the
    month yet: a cheap superset of those entitled (the rule itself decides, on their facts)."""
    issued = select(VoucherIssue.elder_id).where(VoucherIssue.month_on == month_first)
    stmt = (
        select(Assessment.elder_id)
        .distinct()
        .where(
            Assessment.assessed_on <= day,
            Assessment.valid_until >= day,
            Assessment.final_level >= min_level,
            Assessment.elder_id.not_in(issued),
        )
        .order_by(Assessment.elder_id)
    )
    return list((await session.scalars(stmt)).all())


async def issue_vouchers(*, session: AsyncSession, now: dt.datetime) -> int:
    """Issue the current month's voucher (Asia/Shanghai) to every elder entitled on today's date who
    has none yet; returns how many were issued. Idempotent (module docstring); only flushes."""
    day = local_date(now)
    month_first, _ = month_of(day)
    pack = (await load_rule_packs(session=session, first=day, last=day))[day]
    rule = pack.voucher
    if rule is None or Payer.VOUCHER not in pack.order:
        return 0
    expiry = await expires_at(session, month_first)
    amount = issue_amount_fen(rule, day)
    issued = 0
    candidates = await _candidates(session, day, month_first, rule.min_level or 0)
    for start in range(0, len(candidates), ISSUE_BATCH):
        batch = candidates[start : start + ISSUE_BATCH]
        facts = await load_elder_facts(session, batch, first=day, last=day)
        rows = []
        for elder_id in batch:
            ent = entitlements_on(facts[elder_id], day, pack)
            if ent.voucher_level is None:
                continue
            rows.append(
                {
                    "elder_id": elder_id,
                    "month_on": month_first,
                    "amount_fen": amount,
                    "level": ent.voucher_level,
                    "policy_ref": rule.ref,
                    "issued_at": now,
                    "expires_at": expiry,
                }
            )
        if rows:
            stmt = (
                pg_insert(VoucherIssue)
                .values(rows)
                .on_conflict_do_nothing(constraint="uq_voucher_issue_elder_month")
                .returning(VoucherIssue.id)
            )
            issued += len((await session.scalars(stmt)).all())
    log.info("billing.vouchers_issued", month=month_first.isoformat(), day=day.isoformat(), issued=issued)
    return issued


@dataclass(frozen=True, slots=True)
class VoucherUse:
    """One visit's consumption of the voucher (fen)."""

    visit_id: int
    day: dt.date
    service: str
    amount_fen: int
    voucher_fen: int


@dataclass(frozen=True, slots=True)
class VoucherAccount:
    elder_id: int
    month_on: dt.date
    issue: VoucherIssue | None
    uses: Sequence[VoucherUse]
    expires_at: dt.datetime
    expired: bool

    @property
    def issued_fen(self) -> int:
        return 0 if self.issue is None else self.issue.amount_fen

    @property
    def consumed_fen(self) -> int:
        return sum(u.voucher_fen for u in self.uses)

    @property
    def balance_fen(self) -> int:
        return self.issued_fen - self.consumed_fen


async def voucher_account(
    *, session: AsyncSession, actor: Principal, elder_id: int, month_on: dt.date, now: dt.datetime
) -> VoucherAccount:
    """The elder's voucher account for the month starting ``month_on`` (module docstring); 404
    ``elder.not_found`` for an elder that does not exist or is outside ``actor``'s scope."""
    elder = await get_or_404(session, Elder, elder_id, what="elder")
    if not await sees_elder(session, actor, elder):
        raise not_found("elder", elder_id)
    first, last = month_of(month_on)
    issue = await session.scalar(
        select(VoucherIssue).where(VoucherIssue.elder_id == elder_id, VoucherIssue.month_on == first)
    )
    _, month = await price_elder_visits(session=session, elder_id=elder_id, first=first, last=last)
    uses = [
        VoucherUse(v.line.key, v.line.day, v.line.service, v.line.amount_fen, share)
        for v in month.visits
        if (share := v.pricing.share_fen(Payer.VOUCHER)) > 0
    ]
    expiry = issue.expires_at if issue is not None else await expires_at(session, first)
    return VoucherAccount(elder_id, first, issue, uses, expiry, now >= expiry)
