"""HTTP edge of monthly settlement and the ledger: ``/api/v1/billing/settlement`` and
``/api/v1/billing/ledger``. Handlers parse, call one use case of :mod:`billing.settlement` or
:mod:`billing.ledger` (which apply the actor's scope) and serialise.

Who (each route's rule; records are scoped further in the use cases):

* civil-affairs officers (their districts' lines and statements) and admins run settlement: close,
  decide lines, review districts; admins also open, reopen, approve, pay and lock periods;
* a provider's admin reads its own statements and lines;
* statements download as XLSX or CSV (:mod:`billing.settlement_exports`) to whoever may read them;
* the ledger's balances (as of any instant) are read by admins, officers (their districts' payer funds
  and elders' co-pays) and providers (their receivable); only admins post transfers, reverse them,
  open manual accounts and run the check.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from litestar import Controller, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from billing import ledger, ledger_check, settlement, settlement_exports
from billing.adjudication import Reason
from billing.downloads import FileOperation, FormatQuery, file_response
from billing.ledger_models import TransferKind
from billing.settlement_models import Decision, StatementKind
from billing.settlement_schemas import (
    AccountCreate,
    BalancePage,
    BalanceRead,
    BatchIn,
    BatchRead,
    CloseRead,
    DecisionIn,
    LedgerCheckRead,
    LinePage,
    LineRead,
    PayIn,
    PeriodCreate,
    PeriodDetailRead,
    PeriodPage,
    PeriodRead,
    ReopenIn,
    ReverseIn,
    StatementRead,
    StatementSummary,
    balance_page,
    balance_read,
    batch_read,
    check_read,
    line_page,
    line_read,
    period_detail_read,
    period_page,
    period_read,
    statement_read,
    statement_summary,
)
from billing.signals import Signal
from billing.xlsx import XLSX_MEDIA_TYPE
from core.errors import Invalid, NotFound
from core.http import PAGINATION, CurrentPrincipal, Db, Now, PageWindow
from core.identity.authz import allow
from core.identity.models import Role
from core.types import Id32Query, check_day

R = Role
# Settlement is read by its officers, admins and the providers it pays (each in their scope).
READING = allow(R.ADMIN, R.CIVIL_AFFAIRS, R.PROVIDER_ADMIN)
# Officers of the districts and admins close periods, decide lines and review districts.
SETTLING = allow(R.ADMIN, R.CIVIL_AFFAIRS)
# Opening, reopening, approving, paying and locking a period, and posting to the ledger: admins.
ADMINISTERING = allow(R.ADMIN)

AsOf = Annotated[
    dt.datetime | None,
    QueryParameter(description="Read as it stood at this instant (ISO 8601 with offset); default: now"),
]
OutcomeQuery = Annotated[
    Literal["passed", "rejected"] | None, QueryParameter(description="passed or rejected")
]
ReasonQuery = Annotated[
    int | None, QueryParameter(ge=1, le=int(max(Reason)), description="Rejection reason 1-8")
]
SignalQuery = Annotated[
    Literal["caregiver_overload", "impossible_travel", "hospital_day", "billing_jump"] | None,
    QueryParameter(description="Lines flagged with this review signal"),
]
KindQuery = Annotated[
    Literal["provider", "district"] | None, QueryParameter(description="provider or district statements")
]
AccountKindQuery = Annotated[
    Literal["payer_fund", "provider_receivable", "elder_copay", "bank", "manual"] | None,
    QueryParameter(description="Account kind"),
]
ExportLangQuery = Annotated[
    Literal["zh-CN", "zh", "en"],
    QueryParameter(name="lang", description="Headers and words: zh-CN (default; also zh) or en"),
]
ElderQuery = Annotated[int | None, QueryParameter(ge=1, le=2**63 - 1, description="Id (bigint key)")]


def _as_of(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise Invalid("as_of needs a time zone offset.", field="as_of")
    return check_day(value, field="as_of")


def _statement_kind(kind: str) -> StatementKind:
    if kind not in (StatementKind.PROVIDER.value, StatementKind.DISTRICT.value):
        raise NotFound(f"No statement kind {kind[:20]!r}.", code="settlement_statement.not_found")
    return StatementKind(kind)


def _month(text: str) -> dt.date:
    return dt.date(int(text[:4]), int(text[5:7]), 1)


class SettlementController(Controller):
    path = "/api/v1/billing/settlement"
    tags = ["settlement"]  # noqa: RUF012
    dependencies = PAGINATION

    @get("/periods", opt=READING, summary="Settlement periods, newest month first")
    async def list_periods(self, db: Db, principal: CurrentPrincipal, window: PageWindow) -> PeriodPage:
        return period_page(await settlement.list_periods(session=db, actor=principal, window=window))

    @post("/periods", opt=ADMINISTERING, status_code=200, summary="Open a month's period (idempotent)")
    async def open_period(
        self, db: Db, principal: CurrentPrincipal, data: JSONBody[PeriodCreate]
    ) -> PeriodRead:
        return period_read(await settlement.ensure_period(session=db, month=_month(data.month)))

    @get(
        "/periods/{period_id:int}", opt=READING, summary="A period: state, transitions, totals in your scope"
    )
    async def get_period(
        self, db: Db, principal: CurrentPrincipal, period_id: FromPath[int]
    ) -> PeriodDetailRead:
        detail = await settlement.period_detail(session=db, actor=principal, period_id=period_id)
        return period_detail_read(detail)

    @post(
        "/periods/{period_id:int}/close",
        opt=SETTLING,
        status_code=200,
        summary="Close a period at or after its cut-off: adjudicate, price, post, write statements",
        description=(
            "Every visit line of the month (and adjustments of earlier months verified since the previous "
            "cut-off) is adjudicated, priced through the payer waterfall and posted to the ledger; a "
            "statement per provider and per district is written with its SHA-256. Closing a closed period "
            "again changes nothing and answers the same statements (`closed_now: false`)."
        ),
    )
    async def close(
        self, db: Db, principal: CurrentPrincipal, now: Now, period_id: FromPath[int]
    ) -> CloseRead:
        result = await settlement.close_period(session=db, actor=principal, period_id=period_id, now=now)
        visible = await settlement.statement_subjects(
            session=db, actor=principal, period_id=period_id, kind=None
        )
        return CloseRead(
            period_read(result.period), result.closed_now, [statement_summary(s) for s in visible]
        )

    @post(
        "/periods/{period_id:int}/reopen",
        opt=ADMINISTERING,
        status_code=200,
        summary="Reopen a closed or reviewed period (the next close only adds correcting entries)",
    )
    async def reopen(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        period_id: FromPath[int],
        data: JSONBody[ReopenIn],
    ) -> PeriodRead:
        period = await settlement.reopen_period(
            session=db, actor=principal, period_id=period_id, reason=data.reason, now=now
        )
        return period_read(period)

    @post(
        "/periods/{period_id:int}/districts/{district_id:int}/review",
        opt=SETTLING,
        status_code=200,
        summary="Mark a district's lines reviewed (every passed line decided)",
    )
    async def review(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        period_id: FromPath[int],
        district_id: FromPath[int],
    ) -> PeriodRead:
        period = await settlement.review_district(
            session=db, actor=principal, period_id=period_id, district_id=district_id, now=now
        )
        return period_read(period)

    @post(
        "/periods/{period_id:int}/approve",
        opt=ADMINISTERING,
        status_code=200,
        summary="Approve a reviewed period",
    )
    async def approve(
        self, db: Db, principal: CurrentPrincipal, now: Now, period_id: FromPath[int]
    ) -> PeriodRead:
        return period_read(
            await settlement.approve_period(session=db, actor=principal, period_id=period_id, now=now)
        )

    @post(
        "/periods/{period_id:int}/pay",
        opt=ADMINISTERING,
        status_code=200,
        summary="Record the payment of an approved period (its reference) and post it",
    )
    async def pay(
        self, db: Db, principal: CurrentPrincipal, now: Now, period_id: FromPath[int], data: JSONBody[PayIn]
    ) -> PeriodRead:
        period = await settlement.pay_period(
            session=db,
            actor=principal,
            period_id=period_id,
            payment_reference=data.payment_reference,
            now=now,
        )
        return period_read(period)

    @post(
        "/periods/{period_id:int}/lock",
        opt=ADMINISTERING,
        status_code=200,
        summary="Lock a paid period for good",
    )
    async def lock(
        self, db: Db, principal: CurrentPrincipal, now: Now, period_id: FromPath[int]
    ) -> PeriodRead:
        return period_read(
            await settlement.lock_period(session=db, actor=principal, period_id=period_id, now=now)
        )

    @get("/periods/{period_id:int}/statements", opt=READING, summary="The period's statements you may read")
    async def statements(
        self, db: Db, principal: CurrentPrincipal, period_id: FromPath[int], kind: KindQuery = None
    ) -> list[StatementSummary]:
        found = await settlement.statement_subjects(
            session=db, actor=principal, period_id=period_id, kind=StatementKind(kind) if kind else None
        )
        return [statement_summary(s) for s in found]

    @get(
        "/periods/{period_id:int}/statements/{kind:str}/{subject_id:int}",
        opt=READING,
        summary="A provider's or district's statement (as it stood at `as_of`)",
    )
    async def statement(
        self,
        db: Db,
        principal: CurrentPrincipal,
        period_id: FromPath[int],
        kind: FromPath[str],
        subject_id: FromPath[int],
        as_of: AsOf = None,
    ) -> StatementRead:
        found = await settlement.read_statement(
            session=db,
            actor=principal,
            period_id=period_id,
            kind=_statement_kind(kind),
            subject_id=subject_id,
            as_of=_as_of(as_of),
        )
        return statement_read(found)

    @get(
        "/periods/{period_id:int}/statements/{kind:str}/{subject_id:int}/export",
        opt=READING,
        media_type=XLSX_MEDIA_TYPE,
        operation_class=FileOperation,
        summary="Download a provider's statement or a district's summary as XLSX or CSV",
        description=(
            "`kind=provider`: every line of the provider's statement that you may read (an officer: "
            "those in their districts), with the masked elder, service, date, units, price, each "
            "payer's share and the co-pay, outcome and rejection reason, the review decision and the "
            "signals; then sheets per district, per payer and per rejection reason. `kind=district`: "
            "per provider (lines, passed, rejected by reason, each payer's total), per payer and per "
            "reason. Chinese headers (`lang=en`: English), a frozen header row, amounts in yuan with "
            "two decimals from integer fen, a totals row (合计) summing the rows, a notes sheet (说明: "
            "the statement's version and SHA-256, the scope). CSV: the first sheet alone, UTF-8 with "
            "a byte-order mark. `as_of`: as the statement stood then. Who may download what, and the "
            "404 `settlement_statement.not_found`, are the statement read's. The same statement and "
            "decisions download as the same bytes. Audited."
        ),
    )
    async def export_statement(
        self,
        db: Db,
        principal: CurrentPrincipal,
        period_id: FromPath[int],
        kind: FromPath[str],
        subject_id: FromPath[int],
        file_format: FormatQuery = "xlsx",
        lang: ExportLangQuery = "zh-CN",
        as_of: AsOf = None,
    ) -> Response[bytes]:
        exported = await settlement_exports.statement_export(
            session=db,
            actor=principal,
            period_id=period_id,
            kind=_statement_kind(kind),
            subject_id=subject_id,
            as_of=_as_of(as_of),
            fmt=file_format,
            lang="en" if lang == "en" else "zh",
        )
        return file_response(exported.file)

    @get(
        "/periods/{period_id:int}/lines",
        opt=READING,
        summary="The period's lines in your scope, with signals",
    )
    async def lines(
        self,
        db: Db,
        principal: CurrentPrincipal,
        window: PageWindow,
        period_id: FromPath[int],
        provider_id: Id32Query = None,
        district_id: Id32Query = None,
        outcome: OutcomeQuery = None,
        reason: ReasonQuery = None,
        signal: SignalQuery = None,
        undecided: FromQuery[bool | None] = None,
    ) -> LinePage:
        result = await settlement.list_lines(
            session=db,
            actor=principal,
            period_id=period_id,
            window=window,
            provider_id=provider_id,
            district_id=district_id,
            outcome=outcome,
            reason=reason,
            signal=int(Signal[signal.upper()]) if signal else None,
            undecided=undecided,
        )
        return line_page(result)

    @post(
        "/lines/{line_id:int}/decision",
        opt=SETTLING,
        status_code=200,
        summary="Approve or reject a passed line, with a reason (rejecting reverses its postings)",
    )
    async def decide(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        line_id: FromPath[int],
        data: JSONBody[DecisionIn],
    ) -> LineRead:
        view = await settlement.decide_line(
            session=db,
            actor=principal,
            line_id=line_id,
            decision=Decision(data.decision),
            reason=data.reason,
            now=now,
        )
        return line_read(view)


class LedgerController(Controller):
    path = "/api/v1/billing/ledger"
    tags = ["ledger"]  # noqa: RUF012
    dependencies = PAGINATION

    @get(
        "/accounts",
        opt=READING,
        summary="Ledger accounts in your scope with their balances (as of an instant)",
    )
    async def accounts(
        self,
        db: Db,
        principal: CurrentPrincipal,
        window: PageWindow,
        kind: AccountKindQuery = None,
        provider_id: Id32Query = None,
        district_id: Id32Query = None,
        elder_id: ElderQuery = None,
        as_of: AsOf = None,
    ) -> BalancePage:
        when = _as_of(as_of)
        result = await settlement.list_balances(
            session=db,
            actor=principal,
            window=window,
            as_of=when,
            kind=kind,
            provider_id=provider_id,
            district_id=district_id,
            elder_id=elder_id,
        )
        return balance_page(result, when)

    @get("/accounts/{account_id:int}", opt=READING, summary="One account's balance (as of an instant)")
    async def account(
        self, db: Db, principal: CurrentPrincipal, account_id: FromPath[int], as_of: AsOf = None
    ) -> BalanceRead:
        when = _as_of(as_of)
        balance = await settlement.account_balance(
            session=db, actor=principal, account_id=account_id, as_of=when
        )
        return balance_read(balance, when)

    @post(
        "/accounts", opt=ADMINISTERING, status_code=200, summary="Open a manual account (idempotent by code)"
    )
    async def open_account(
        self, db: Db, principal: CurrentPrincipal, data: JSONBody[AccountCreate]
    ) -> BalanceRead:
        return balance_read(await ledger.open_manual_account(db, code=data.code, name=data.name), None)

    @post(
        "/transfers",
        opt=ADMINISTERING,
        status_code=200,
        summary="Post transfers as one batch, each with an idempotency key",
        description=(
            "All or none. A key posted before with the same fields answers the transfers already posted "
            "(`replayed: true`); with other fields it is refused, 409 `ledger.idempotency_conflict`."
        ),
    )
    async def post_transfers(
        self, db: Db, principal: CurrentPrincipal, now: Now, data: JSONBody[BatchIn]
    ) -> BatchRead:
        posted = await ledger.post_batch(
            db,
            key=data.key,
            kind=TransferKind.MANUAL.value,
            transfers=[
                ledger.TransferIn(
                    key=t.key,
                    debit_account_id=t.debit_account_id,
                    credit_account_id=t.credit_account_id,
                    amount_fen=t.amount_fen,
                    memo=t.memo,
                )
                for t in data.transfers
            ],
            now=now,
            user_id=principal.user_id,
            memo=data.memo,
        )
        return batch_read(posted)

    @post(
        "/transfers/{transfer_id:int}/reverse",
        opt=ADMINISTERING,
        status_code=200,
        summary="Reverse a transfer (once; idempotent by key)",
    )
    async def reverse(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        transfer_id: FromPath[int],
        data: JSONBody[ReverseIn],
    ) -> BatchRead:
        posted = await ledger.reverse(
            db, transfer_id=transfer_id, key=data.key, now=now, user_id=principal.user_id, memo=data.memo
        )
        return batch_read(posted)

    @get("/checks", opt=ADMINISTERING, summary="The latest runs of the ledger check")
    async def checks(self, db: Db, principal: CurrentPrincipal, window: PageWindow) -> list[LedgerCheckRead]:
        return [check_read(c) for c in await ledger_check.latest(db, window=window)]

    @post(
        "/checks",
        opt=ADMINISTERING,
        status_code=200,
        summary="Run the ledger check now (it reports, never repairs)",
    )
    async def run_check(self, db: Db, principal: CurrentPrincipal, now: Now) -> LedgerCheckRead:
        return check_read(await ledger_check.run_check(db, now=now))


CONTROLLERS = (SettlementController, LedgerController)
