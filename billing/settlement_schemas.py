"""Wire types of settlement and the ledger (``XIn`` in, ``XRead`` out). Amounts in integer fen;
months ``YYYY-MM``; instants ISO 8601 with a time zone (UTC); reasons by number with their code and
zh-CN/English labels; signals by code."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, Literal

import msgspec

from billing import ledger
from billing.adjudication import REASON_LABELS, Reason
from billing.ledger_models import LedgerCheck, LedgerTransfer
from billing.settlement import LineView, PeriodDetail
from billing.settlement_models import SettlementPeriod, SettlementPeriodEvent, SettlementStatement
from billing.signals import signal_codes
from core.crud import Paged
from core.types import FEN_MAX, NO_NUL, Id32, Input

Month = Annotated[str, msgspec.Meta(pattern=r"^(19|2[0-2])\d\d-(0[1-9]|1[0-2])$", description="YYYY-MM")]
Reason200 = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
PaymentRef = Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=NO_NUL)]
Key = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:/-]+$", description="Idempotency key"),
]
Memo = Annotated[str, msgspec.Meta(max_length=200, pattern=NO_NUL)]
PositiveFen = Annotated[int, msgspec.Meta(ge=1, le=FEN_MAX, description="Amount in fen (1/100 yuan)")]
AccountCode = Annotated[str, msgspec.Meta(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9._:-]+$")]


class PeriodCreate(Input):
    """Open the period of a month (its cut-off from policy ``settlement.cutoff``); an existing one is
    answered as it is."""

    month: Month


class ReopenIn(Input):
    reason: Reason200


class PayIn(Input):
    payment_reference: PaymentRef


class DecisionIn(Input):
    """An officer's decision on a passed line, with the reason (kept, and shown to the provider)."""

    decision: Literal["approved", "rejected"]
    reason: Reason200


class TransferSpec(Input):
    key: Key
    debit_account_id: Id32
    credit_account_id: Id32
    amount_fen: PositiveFen
    memo: Memo = ""


class BatchIn(Input):
    """Transfers posted as one (all or none), each under its own idempotency key, the batch under
    ``key``. Posting the same again answers what was posted; the same keys with other fields are
    refused (409 ``ledger.idempotency_conflict``)."""

    key: Key
    transfers: Annotated[list[TransferSpec], msgspec.Meta(min_length=1, max_length=ledger.MAX_BATCH)]
    memo: Memo = ""


class ReverseIn(Input):
    key: Key
    memo: Memo = ""


class AccountCreate(Input):
    """A manual account for corrections (``manual:<code>``)."""

    code: AccountCode
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=80, pattern=NO_NUL)]


class PeriodRead(msgspec.Struct):
    """A settlement period. ``state``: open, closed, reviewed, approved, paid or locked."""

    id: int
    month: str
    state: str
    cutoff_at: dt.datetime
    close_revision: int
    closed_at: dt.datetime | None
    reviewed_at: dt.datetime | None
    approved_at: dt.datetime | None
    paid_at: dt.datetime | None
    payment_reference: str | None
    locked_at: dt.datetime | None


class PeriodPage(msgspec.Struct):
    items: list[PeriodRead]
    total: int
    limit: int
    offset: int
    has_more: bool


class EventRead(msgspec.Struct):
    action: str
    from_state: str
    to_state: str
    by_user_id: int | None
    by_role: str
    at: dt.datetime
    note: str


class PeriodDetailRead(msgspec.Struct):
    """A period with its transitions and, over the lines in your scope, how many, how many passed and
    the payable amount."""

    period: PeriodRead
    events: list[EventRead]
    reviewed_district_ids: list[int]
    lines: int
    passed: int
    payable_fen: int


class StatementSummary(msgspec.Struct):
    kind: str
    subject_id: int
    version: int
    sha256: str
    line_count: int
    amount_fen: int
    public_fen: int
    copay_fen: int
    created_at: dt.datetime


class StatementRead(msgspec.Struct):
    """A statement as closed: ``body`` is the canonical JSON whose SHA-256 is ``sha256`` (the same
    bytes whenever the period is closed again), ``document`` the same parsed."""

    summary: StatementSummary
    body: str
    document: dict[str, Any]


class CloseRead(msgspec.Struct):
    """The period after the close and its statements. ``closed_now`` false: it was closed already and
    nothing changed (the statements are the same bytes)."""

    period: PeriodRead
    closed_now: bool
    statements: list[StatementSummary]


class DecisionRead(msgspec.Struct):
    decision: str
    reason: str
    by_user_id: int | None
    by_role: str
    at: dt.datetime


class LineRead(msgspec.Struct):
    """A visit line as adjudicated at the close (revision ``revision`` of the period's closes).
    ``reason``: the rejection's number (``reason_code``, ``reason_zh``, ``reason_en``); ``payable``: its
    co-pay and shares are posted; ``signals``: review signals' codes."""

    id: int
    period_id: int
    revision: int
    visit_id: int
    kind: str
    service_on: dt.date
    service_code: str
    elder_id: int
    district_id: int
    provider_id: int
    caregiver_id: int
    duration_s: int
    unit_price_fen: int
    amount_fen: int
    outcome: str
    reason: int | None
    reason_code: str | None
    reason_zh: str | None
    reason_en: str | None
    payable: bool
    ltc_fen: int
    voucher_fen: int
    local_fen: int
    copay_fen: int
    signals: list[str]
    decision: DecisionRead | None


class LinePage(msgspec.Struct):
    items: list[LineRead]
    total: int
    limit: int
    offset: int
    has_more: bool


class BalanceRead(msgspec.Struct):
    """An account's totals (``as_of``: as they stood then; null: now). ``net_fen`` = credits − debits."""

    account_id: int
    code: str
    kind: str
    payer: str | None
    district_id: int | None
    provider_id: int | None
    elder_id: int | None
    debits_posted: int
    credits_posted: int
    net_fen: int
    as_of: dt.datetime | None


class BalancePage(msgspec.Struct):
    items: list[BalanceRead]
    total: int
    limit: int
    offset: int
    has_more: bool


class TransferRead(msgspec.Struct):
    id: int
    key: str
    batch_id: int
    debit_account_id: int
    credit_account_id: int
    amount_fen: int
    kind: str
    part: str | None
    period_id: int | None
    line_id: int | None
    reverses_id: int | None
    posted_at: dt.datetime
    memo: str


class BatchRead(msgspec.Struct):
    """A posted batch; ``replayed``: its key had been posted before with the same transfers, which
    are answered (nothing new was posted)."""

    batch_id: int
    key: str
    replayed: bool
    transfers: list[TransferRead]


class LedgerCheckRead(msgspec.Struct):
    """A run of the ledger check: ``ok`` when debits equal credits everywhere and every paid line links
    to exactly one verified visit; otherwise ``findings`` names what is wrong (it never repairs)."""

    id: int
    ran_at: dt.datetime
    ok: bool
    debits_fen: int
    credits_fen: int
    transfers: int
    problems: int
    findings: dict[str, Any]


# --- Converters ---------------------------------------------------------------------------------------


def period_read(p: SettlementPeriod) -> PeriodRead:
    return PeriodRead(
        id=p.id,
        month=p.month.strftime("%Y-%m"),
        state=p.state,
        cutoff_at=p.cutoff_at,
        close_revision=p.close_revision,
        closed_at=p.closed_at,
        reviewed_at=p.reviewed_at,
        approved_at=p.approved_at,
        paid_at=p.paid_at,
        payment_reference=p.payment_reference,
        locked_at=p.locked_at,
    )


def period_page(p: Paged[SettlementPeriod]) -> PeriodPage:
    return PeriodPage([period_read(x) for x in p.items], p.total, p.limit, p.offset, p.has_more)


def event_read(e: SettlementPeriodEvent) -> EventRead:
    return EventRead(e.action, e.from_state, e.to_state, e.by_user_id, e.by_role, e.at, e.note)


def period_detail_read(d: PeriodDetail) -> PeriodDetailRead:
    return PeriodDetailRead(
        period=period_read(d.period),
        events=[event_read(e) for e in d.events],
        reviewed_district_ids=d.reviewed_district_ids,
        lines=d.lines,
        passed=d.passed,
        payable_fen=d.payable_fen,
    )


def statement_summary(s: SettlementStatement) -> StatementSummary:
    return StatementSummary(
        kind=s.kind,
        subject_id=s.subject_id,
        version=s.version,
        sha256=s.sha256,
        line_count=s.line_count,
        amount_fen=s.amount_fen,
        public_fen=s.public_fen,
        copay_fen=s.copay_fen,
        created_at=s.created_at,
    )


def statement_read(s: SettlementStatement) -> StatementRead:
    return StatementRead(statement_summary(s), s.body, json.loads(s.body))


def line_read(v: LineView) -> LineRead:
    line, d = v.line, v.decision
    reason = Reason(line.reason) if line.reason is not None else None
    labels = REASON_LABELS[reason] if reason is not None else None
    return LineRead(
        id=line.id,
        period_id=line.period_id,
        revision=line.revision,
        visit_id=line.visit_id,
        kind=line.kind,
        service_on=line.service_on,
        service_code=line.service_code,
        elder_id=line.elder_id,
        district_id=line.district_id,
        provider_id=line.provider_id,
        caregiver_id=line.caregiver_id,
        duration_s=line.duration_s,
        unit_price_fen=line.unit_price_fen,
        amount_fen=line.amount_fen,
        outcome=line.outcome,
        reason=line.reason,
        reason_code=reason.code if reason is not None else None,
        reason_zh=labels[0] if labels else None,
        reason_en=labels[1] if labels else None,
        payable=line.payable,
        ltc_fen=line.ltc_fen,
        voucher_fen=line.voucher_fen,
        local_fen=line.local_fen,
        copay_fen=line.copay_fen,
        signals=signal_codes(line.signals),
        decision=None if d is None else DecisionRead(d.decision, d.reason, d.by_user_id, d.by_role, d.at),
    )


def line_page(p: Paged[LineView]) -> LinePage:
    return LinePage([line_read(x) for x in p.items], p.total, p.limit, p.offset, p.has_more)


def balance_read(b: ledger.Balance, as_of: dt.datetime | None) -> BalanceRead:
    a = b.account
    return BalanceRead(
        account_id=a.id,
        code=a.code,
        kind=a.kind,
        payer=a.payer,
        district_id=a.district_id,
        provider_id=a.provider_id,
        elder_id=a.elder_id,
        debits_posted=b.debits_posted,
        credits_posted=b.credits_posted,
        net_fen=b.net_fen,
        as_of=as_of,
    )


def balance_page(p: Paged[ledger.Balance], as_of: dt.datetime | None) -> BalancePage:
    return BalancePage([balance_read(b, as_of) for b in p.items], p.total, p.limit, p.offset, p.has_more)


def transfer_read(t: LedgerTransfer) -> TransferRead:
    return TransferRead(**ledger.transfer_row(t))


def batch_read(p: ledger.Posted) -> BatchRead:
    return BatchRead(p.batch.id, p.batch.idempotency_key, p.replayed, [transfer_read(t) for t in p.transfers])


def check_read(c: LedgerCheck) -> LedgerCheckRead:
    return LedgerCheckRead(
        c.id, c.ran_at, c.ok, c.debits_fen, c.credits_fen, c.transfers, c.problems, c.findings
    )
