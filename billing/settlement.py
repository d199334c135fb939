"""Monthly settlement: the periods' use cases — open, close, reopen, decide lines, review districts,
approve, pay, lock — and their reads. The states and who may move them are in
:mod:`billing.settlement_states`; the close's set-based work in :mod:`billing.settlement_close` and
:mod:`billing.statements`; the money in :mod:`billing.ledger`.

Every transition is one conditional update of the period's row (``UPDATE … WHERE id = :id AND state IN
(…)``), so two officers racing make one transition and the other is refused with a problem code; a
close first locks the row, so a second close waits and then answers the statements the first wrote
(byte-identical: the same hashes). Deciding a line and reviewing a district share-lock the period, so
they never interleave with a transition.

Scope (DOMAIN §9): civil-affairs officers see and decide the lines of their districts, and read those
districts' statements and the statements of providers with lines there; a provider's admin reads its
own statements and lines; admins everything. Periods themselves are listed to all three.

Services flush; the request or job commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog
from sqlalchemy import ColumnElement, and_, exists, false, func, or_, select, text, true, update
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from billing import ledger
from billing.ledger_models import AccountKind, LedgerAccount, TransferKind
from billing.settlement_close import CloseStats, PeriodRef, close_lines
from billing.settlement_models import (
    Decision,
    LineOutcome,
    PeriodState,
    SettlementDistrictReview,
    SettlementLine,
    SettlementLineDecision,
    SettlementPeriod,
    SettlementPeriodEvent,
    SettlementStatement,
    StatementKind,
)
from billing.settlement_policy import PAYERS, load_cutoff
from billing.settlement_states import CLOSED_STATES, DECIDING, TRANSITIONS, Action, may, refusal
from billing.statements import BuiltStatement, build_statements, statement_as_of
from core import audit
from core.crud import MAX_BIGINT, MAX_INT, Paged, Window, in_key_range, page_of, total_of
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.identity.authz import Principal
from core.identity.models import Role
from registry.models import Elder
from registry.scope import by_district

log = structlog.get_logger(__name__)

_L2 = aliased(SettlementLine)

ENTITY: Final = "settlement_period"
SYSTEM: Final = "system"
READERS: Final = frozenset({Role.ADMIN, Role.CIVIL_AFFAIRS, Role.PROVIDER_ADMIN})


class SettlementConflict(Conflict):
    code = "settlement.period_state"
    title = "Not allowed in the period's state"


# --- Periods ----------------------------------------------------------------------------------------


def first_of(month: dt.date) -> dt.date:
    return month.replace(day=1)


def next_month(month: dt.date) -> dt.date:
    return (first_of(month) + dt.timedelta(days=32)).replace(day=1)


def previous_month(month: dt.date) -> dt.date:
    return (first_of(month) - dt.timedelta(days=1)).replace(day=1)


async def ensure_period(*, session: AsyncSession, month: dt.date) -> SettlementPeriod:
    """The period of ``month`` (its first day), opened with the cut-off of policy
    ``settlement.cutoff`` if it does not exist (concurrent openers get the one row)."""
    month = first_of(month)
    cutoff = await load_cutoff(session, month)
    await session.execute(
        pg_insert(SettlementPeriod)
        .values(month=month, state=PeriodState.OPEN.value, cutoff_at=cutoff)
        .on_conflict_do_nothing(index_elements=["month"])
    )
    period = await session.scalar(
        select(SettlementPeriod)
        .where(SettlementPeriod.month == month)
        .execution_options(populate_existing=True)
    )
    assert period is not None
    return period


async def get_period(*, session: AsyncSession, period_id: int, lock: str | None = None) -> SettlementPeriod:
    if not in_key_range(period_id, limit=MAX_INT):
        raise NotFound(f"No settlement period with id {period_id}.", code="settlement_period.not_found")
    stmt = select(SettlementPeriod).where(SettlementPeriod.id == period_id)
    if lock == "update":
        stmt = stmt.with_for_update()
    elif lock == "share":
        stmt = stmt.with_for_update(read=True)
    period = await session.scalar(stmt.execution_options(populate_existing=True))
    if period is None:
        raise NotFound(f"No settlement period with id {period_id}.", code="settlement_period.not_found")
    return period


def _actor_role(actor: Principal | None) -> str:
    return actor.role.value if actor else SYSTEM


def _require(actor: Principal | None, action: Action) -> None:
    if actor is not None and not may(actor.role, action):
        raise Forbidden(f"Your role may not {action.value} a settlement period.", code="auth.forbidden")


def _refuse(period: SettlementPeriod, action: Action) -> None:
    code = refusal(PeriodState(period.state), action)
    if code is not None:
        raise SettlementConflict(
            f"Cannot {action.value} the period of {period.month:%Y-%m}: it is {period.state}.",
            code=code,
            state=period.state,
        )


async def _move(
    session: AsyncSession,
    period: SettlementPeriod,
    action: Action,
    *,
    actor: Principal | None,
    now: dt.datetime,
    note: str = "",
    sources: Sequence[PeriodState] | None = None,
    target: PeriodState,
    **values: Any,
) -> SettlementPeriod:
    """Move ``period`` by a conditional update from one of ``sources`` to ``target``; a period whose
    state changed meanwhile is refused with the problem code of its state."""
    allowed = [s.value for s in (sources or TRANSITIONS[action].sources)]
    moved = await session.scalar(
        update(SettlementPeriod)
        .where(SettlementPeriod.id == period.id, SettlementPeriod.state.in_(allowed))
        .values(state=target.value, **values)
        .returning(SettlementPeriod.id)
    )
    before = period.state
    fresh = await get_period(session=session, period_id=period.id)
    if moved is None:
        _refuse(fresh, action)
        raise SettlementConflict(  # pragma: no cover - refusal() names every state not allowed
            f"Cannot {action.value} the period: it is {fresh.state}.", state=fresh.state
        )
    session.add(
        SettlementPeriodEvent(
            period_id=period.id,
            action=action.value,
            from_state=before,
            to_state=target.value,
            by_user_id=actor.user_id if actor else None,
            by_role=_actor_role(actor),
            at=now,
            note=note[:200],
        )
    )
    audit.record(
        session,
        actor=actor,
        action=action.value,
        entity=ENTITY,
        entity_id=period.id,
        before={"state": before},
        after={
            "state": target.value,
            "note": note,
            **{k: v for k, v in values.items() if k != "close_revision"},
        },
        system_role=None if actor else SYSTEM,
    )
    await session.flush()
    return fresh


@dataclass(frozen=True, slots=True)
class CloseResult:
    period: SettlementPeriod
    statements: list[SettlementStatement]
    # False when the period was closed already: nothing was done, the statements are those it has.
    closed_now: bool
    stats: CloseStats | None = None


async def _latest_statements(session: AsyncSession, period_id: int) -> list[SettlementStatement]:
    return list(
        await session.scalars(
            select(SettlementStatement)
            .ext(distinct_on(SettlementStatement.kind, SettlementStatement.subject_id))
            .where(SettlementStatement.period_id == period_id)
            .order_by(
                SettlementStatement.kind, SettlementStatement.subject_id, SettlementStatement.version.desc()
            )
        )
    )


async def close_period(
    *, session: AsyncSession, actor: Principal | None, period_id: int, now: dt.datetime
) -> CloseResult:
    """Close the period (``actor`` None: the scheduled close at the cut-off). A period closed already
    is not closed again: the answer is its statements as they are (the same bytes, the same hashes)."""
    _require(actor, Action.CLOSE)
    period = await get_period(session=session, period_id=period_id, lock="update")
    if PeriodState(period.state) in CLOSED_STATES:
        return CloseResult(period, await _latest_statements(session, period.id), closed_now=False)
    if now < period.cutoff_at:
        raise SettlementConflict(
            f"The period of {period.month:%Y-%m} closes at its cut-off, {period.cutoff_at.isoformat()}.",
            code="settlement.before_cutoff",
            cutoff_at=period.cutoff_at.isoformat(),
        )
    prev = await session.scalar(
        select(SettlementPeriod).where(SettlementPeriod.month == previous_month(period.month))
    )
    if prev is not None and prev.state == PeriodState.OPEN.value:
        raise SettlementConflict(
            f"Close the period of {prev.month:%Y-%m} first.",
            code="settlement.previous_open",
            period_id=prev.id,
        )
    revision = period.close_revision + 1
    period = await _move(
        session,
        period,
        Action.CLOSE,
        actor=actor,
        now=now,
        target=PeriodState.CLOSED,
        close_revision=revision,
        closed_at=now,
    )
    stats = await close_lines(
        session,
        period=PeriodRef(period.id, period.month, period.cutoff_at, prev.cutoff_at if prev else None),
        revision=revision,
        now=now,
        user_id=actor.user_id if actor else None,
    )
    built: list[BuiltStatement] = await build_statements(
        session, period_id=period.id, month=period.month, now=now, single_revision=revision == 1
    )
    await ensure_period(session=session, month=next_month(period.month))
    log.info(
        "settlement.period_closed",
        period_id=period.id,
        revision=revision,
        lines=stats.lines,
        statements=len(built),
        written=sum(b.written for b in built),
    )
    return CloseResult(period, await _latest_statements(session, period.id), closed_now=True, stats=stats)


async def reopen_period(
    *, session: AsyncSession, actor: Principal, period_id: int, reason: str, now: dt.datetime
) -> SettlementPeriod:
    """Reopen a closed (or reviewed) period: its lines and transfers stay; the next close writes only
    correcting entries. Refused while a later period is closed."""
    _require(actor, Action.REOPEN)
    period = await get_period(session=session, period_id=period_id, lock="update")
    _refuse(period, Action.REOPEN)
    later = await session.scalar(
        select(SettlementPeriod.id).where(
            SettlementPeriod.month > period.month, SettlementPeriod.state != PeriodState.OPEN.value
        )
    )
    if later is not None:
        raise SettlementConflict(
            "A later period is closed: correct this one through adjustments there.",
            code="settlement.later_closed",
            period_id=later,
        )
    await session.execute(
        text("DELETE FROM settlement_district_review WHERE period_id = :p"), {"p": period.id}
    )
    return await _move(
        session,
        period,
        Action.REOPEN,
        actor=actor,
        now=now,
        note=reason,
        target=PeriodState.OPEN,
        reviewed_at=None,
    )


async def approve_period(
    *, session: AsyncSession, actor: Principal, period_id: int, now: dt.datetime
) -> SettlementPeriod:
    _require(actor, Action.APPROVE)
    period = await get_period(session=session, period_id=period_id)
    _refuse(period, Action.APPROVE)
    return await _move(
        session, period, Action.APPROVE, actor=actor, now=now, target=PeriodState.APPROVED, approved_at=now
    )


async def lock_period(
    *, session: AsyncSession, actor: Principal, period_id: int, now: dt.datetime
) -> SettlementPeriod:
    _require(actor, Action.LOCK)
    period = await get_period(session=session, period_id=period_id)
    _refuse(period, Action.LOCK)
    return await _move(
        session, period, Action.LOCK, actor=actor, now=now, target=PeriodState.LOCKED, locked_at=now
    )


async def pay_period(
    *, session: AsyncSession, actor: Principal, period_id: int, payment_reference: str, now: dt.datetime
) -> SettlementPeriod:
    """Record the payment of an approved period (its reference) and post it: for each provider and
    payer, what the period's live share transfers owe it moves from the provider's receivable to the
    payer's bank account, in one batch. (Co-pays are collected by the providers from the elders.)"""
    _require(actor, Action.PAY)
    period = await get_period(session=session, period_id=period_id, lock="update")
    _refuse(period, Action.PAY)
    owed = (
        await session.execute(
            text(
                f"""
                SELECT a.id AS account_id, t.part,
                       sum(CASE WHEN t.credit_account_id = a.id THEN t.amount_fen
                                ELSE -t.amount_fen END) AS owed
                  FROM ledger_transfer t
                  JOIN ledger_account a ON a.id IN (t.credit_account_id, t.debit_account_id)
                                       AND a.kind = '{AccountKind.PROVIDER_RECEIVABLE.value}'
                 WHERE t.period_id = :p AND t.part = ANY(:payers)
                   AND t.kind IN ('{TransferKind.SHARE.value}', '{TransferKind.CORRECTION.value}',
                                  '{TransferKind.REVERSAL.value}')
                 GROUP BY a.id, t.part HAVING sum(CASE WHEN t.credit_account_id = a.id
                                                  THEN t.amount_fen ELSE -t.amount_fen END) > 0
                 ORDER BY a.id, t.part
                """  # noqa: S608 - constants only
            ),
            {"p": period.id, "payers": list(PAYERS)},
        )
    ).all()
    if owed:
        banks = await ledger.open_accounts(
            session,
            [
                ledger.AccountSpec(ledger.bank_code(p), AccountKind.BANK, payer=p, name=f"{p} bank")
                for p in PAYERS
            ],
        )
        await ledger.post_batch(
            session,
            key=f"pay:{period.id}",
            kind=TransferKind.PAYMENT.value,
            transfers=[
                ledger.TransferIn(
                    key=f"pay:{period.id}:{r.account_id}:{r.part}",
                    debit_account_id=int(r.account_id),
                    credit_account_id=banks[ledger.bank_code(r.part)],
                    amount_fen=int(r.owed),
                    kind=TransferKind.PAYMENT,
                    part=r.part,
                    period_id=period.id,
                    memo=payment_reference[:200],
                )
                for r in owed
            ],
            now=now,
            user_id=actor.user_id,
            period_id=period.id,
            memo=payment_reference[:200],
        )
    return await _move(
        session,
        period,
        Action.PAY,
        actor=actor,
        now=now,
        target=PeriodState.PAID,
        paid_at=now,
        payment_reference=payment_reference,
        note=payment_reference,
    )


# --- Lines ------------------------------------------------------------------------------------------


def _current_line_clause() -> ColumnElement[bool]:
    """``settlement_line`` rows that are the latest revision of their visit's line in their period."""
    later = (
        select(func.max(_L2.revision))
        .where(_L2.period_id == SettlementLine.period_id, _L2.visit_id == SettlementLine.visit_id)
        .correlate(SettlementLine)
        .scalar_subquery()
    )
    return SettlementLine.revision == later


def line_clause(actor: Principal, line: Any = SettlementLine) -> ColumnElement[bool]:
    """Lines ``actor`` may read (module docstring); ``line``: ``SettlementLine`` or an alias of it."""
    if actor.role == Role.ADMIN:
        return true()
    if actor.role == Role.CIVIL_AFFAIRS or by_district(actor):
        if not actor.district_ids:
            return false()
        return line.district_id.in_(sorted(actor.district_ids))  # type: ignore[no-any-return]
    if actor.role == Role.PROVIDER_ADMIN and actor.provider_id is not None:
        return line.provider_id == actor.provider_id  # type: ignore[no-any-return]
    return false()


@dataclass(frozen=True, slots=True)
class LineView:
    line: SettlementLine
    decision: SettlementLineDecision | None


async def list_lines(
    session: AsyncSession,
    *,
    actor: Principal,
    period_id: int,
    window: Window,
    provider_id: int | None = None,
    district_id: int | None = None,
    outcome: str | None = None,
    reason: int | None = None,
    signal: int | None = None,
    undecided: bool | None = None,
) -> Paged[LineView]:
    """The period's current lines in ``actor``'s scope, by provider then visit."""
    await get_period(session=session, period_id=period_id)
    stmt: Any = (
        select(SettlementLine, SettlementLineDecision)
        .outerjoin(SettlementLineDecision, SettlementLineDecision.line_id == SettlementLine.id)
        .where(SettlementLine.period_id == period_id, _current_line_clause(), line_clause(actor))
        .order_by(SettlementLine.provider_id, SettlementLine.visit_id)
    )
    if provider_id is not None:
        stmt = stmt.where(SettlementLine.provider_id == provider_id)
    if district_id is not None:
        stmt = stmt.where(SettlementLine.district_id == district_id)
    if outcome is not None:
        stmt = stmt.where(SettlementLine.outcome == outcome)
    if reason is not None:
        stmt = stmt.where(SettlementLine.reason == reason)
    if signal is not None:
        stmt = stmt.where(SettlementLine.signals.op("&")(signal) != 0)
    if undecided is not None:
        decided = SettlementLineDecision.line_id.is_not(None)
        stmt = stmt.where(
            and_(SettlementLine.outcome == LineOutcome.PASSED.value, ~decided) if undecided else decided
        )
    rows = (await session.execute(stmt.limit(window.limit + 1).offset(window.offset))).all()
    total = await total_of(session, stmt, window, len(rows))
    items = [LineView(r[0], r[1]) for r in rows[: window.limit]]
    return Paged(items=items, total=total, limit=window.limit, offset=window.offset)


async def decide_line(
    session: AsyncSession,
    *,
    actor: Principal,
    line_id: int,
    decision: Decision,
    reason: str,
    now: dt.datetime,
) -> LineView:
    """An officer approves or rejects a passed line of a closed period (once; the line's current
    revision). Rejecting reverses its transfers in the ledger, in one batch."""
    if actor.role not in (Role.ADMIN, Role.CIVIL_AFFAIRS):
        raise Forbidden("Lines are decided by civil-affairs officers and admins.", code="auth.forbidden")
    line = (
        await session.scalar(select(SettlementLine).where(SettlementLine.id == line_id, line_clause(actor)))
        if in_key_range(line_id, limit=MAX_BIGINT)
        else None
    )
    if line is None:
        raise NotFound(f"No settlement line with id {line_id}.", code="settlement_line.not_found")
    period = await get_period(session=session, period_id=line.period_id, lock="share")
    if period.state == PeriodState.LOCKED.value:
        raise SettlementConflict("The period is locked.", code="settlement.period_locked", state=period.state)
    if PeriodState(period.state) not in DECIDING:
        raise SettlementConflict(
            f"Lines are decided while the period is closed; it is {period.state}.",
            code="settlement.period_state",
            state=period.state,
        )
    newest = await session.scalar(
        select(func.max(SettlementLine.revision)).where(
            SettlementLine.period_id == line.period_id, SettlementLine.visit_id == line.visit_id
        )
    )
    if newest != line.revision:
        raise Conflict("A re-close wrote a newer revision of this line.", code="settlement.line_superseded")
    if line.outcome != LineOutcome.PASSED.value:
        raise Conflict(
            "Only passed lines are decided at review; this one was rejected at the close.",
            code="settlement.line_not_passed",
            reason=line.reason,
        )
    if not reason.strip():
        raise Invalid("A decision needs a reason.", code="settlement.reason_required", field="reason")
    inserted = await session.scalar(
        pg_insert(SettlementLineDecision)
        .values(
            line_id=line.id,
            period_id=line.period_id,
            decision=decision.value,
            reason=reason,
            by_user_id=actor.user_id,
            by_role=actor.role.value,
            at=now,
        )
        .on_conflict_do_nothing(index_elements=["line_id"])
        .returning(SettlementLineDecision.line_id)
    )
    if inserted is None:
        raise Conflict("This line has a decision already.", code="settlement.line_decided")
    if decision == Decision.REJECTED and line.payable:
        await _take_back(session, line=line, now=now, user_id=actor.user_id, memo=reason)
    audit.record(
        session,
        actor=actor,
        action=f"line_{decision.value}",
        entity="settlement_line",
        entity_id=line.id,
        after={"decision": decision.value, "reason": reason, "visit_id": line.visit_id},
    )
    await session.flush()
    found = await session.get(SettlementLineDecision, line.id)
    return LineView(line, found)


async def _take_back(
    session: AsyncSession, *, line: SettlementLine, now: dt.datetime, user_id: int | None, memo: str
) -> None:
    """Correcting entries for a line rejected at review: each of its posted parts goes back from the
    provider's receivable to the payer's fund (or the elder's co-pay), in one batch named after the
    line (idempotent: a retry posts nothing twice)."""
    parts = {p: int(getattr(line, f"{p}_fen")) for p in (*PAYERS, "copay")}
    specs = [ledger.AccountSpec(ledger.provider_code(line.provider_id), AccountKind.PROVIDER_RECEIVABLE)]
    specs += [
        ledger.AccountSpec(ledger.payer_fund_code(p, line.district_id), AccountKind.PAYER_FUND)
        for p in PAYERS
        if parts[p]
    ]
    if parts["copay"]:
        specs.append(ledger.AccountSpec(ledger.copay_code(line.elder_id), AccountKind.ELDER_COPAY))
    ids = await ledger.open_accounts(session, specs)
    provider = ids[ledger.provider_code(line.provider_id)]
    transfers = [
        ledger.TransferIn(
            key=f"review:{line.id}:{p}",
            debit_account_id=provider,
            credit_account_id=ids[
                ledger.copay_code(line.elder_id)
                if p == "copay"
                else ledger.payer_fund_code(p, line.district_id)
            ],
            amount_fen=amount,
            kind=TransferKind.CORRECTION,
            part=p,
            period_id=line.period_id,
            line_id=line.id,
            memo=memo[:200],
        )
        for p, amount in parts.items()
        if amount > 0
    ]
    if transfers:
        await ledger.post_batch(
            session,
            key=f"review:{line.id}",
            kind="review",
            transfers=transfers,
            now=now,
            user_id=user_id,
            period_id=line.period_id,
            memo=memo[:200],
        )


async def review_district(
    *, session: AsyncSession, actor: Principal, period_id: int, district_id: int, now: dt.datetime
) -> SettlementPeriod:
    """Mark a district's lines of the period reviewed (every passed line decided); the last district
    with lines moves the period to reviewed."""
    _require(actor, Action.REVIEW)
    if not in_key_range(district_id, limit=MAX_INT) or (
        actor.role != Role.ADMIN and district_id not in actor.district_ids
    ):
        raise NotFound(f"No district {district_id} in your scope.", code="district.not_found")
    period = await get_period(session=session, period_id=period_id, lock="share")
    _refuse(period, Action.REVIEW)
    undecided = await session.scalar(
        select(func.count())
        .select_from(SettlementLine)
        .outerjoin(SettlementLineDecision, SettlementLineDecision.line_id == SettlementLine.id)
        .where(
            SettlementLine.period_id == period_id,
            SettlementLine.district_id == district_id,
            SettlementLine.outcome == LineOutcome.PASSED.value,
            SettlementLineDecision.line_id.is_(None),
            _current_line_clause(),
        )
    )
    if undecided:
        raise Conflict(
            f"{undecided} passed lines of the district have no decision yet.",
            code="settlement.lines_undecided",
            undecided=int(undecided),
        )
    await session.execute(
        pg_insert(SettlementDistrictReview)
        .values(
            period_id=period_id,
            district_id=district_id,
            by_user_id=actor.user_id,
            by_role=actor.role.value,
            at=now,
        )
        .on_conflict_do_nothing()
    )
    audit.record(
        session,
        actor=actor,
        action="review",
        entity=ENTITY,
        entity_id=period_id,
        after={"district_id": district_id},
    )
    await session.flush()
    pending = await session.scalar(
        select(func.count(func.distinct(SettlementLine.district_id))).where(
            SettlementLine.period_id == period_id,
            ~exists().where(
                SettlementDistrictReview.period_id == period_id,
                SettlementDistrictReview.district_id == SettlementLine.district_id,
            ),
        )
    )
    if pending:
        return period
    # Every district reviewed: the period is (a concurrent last reviewer makes the same move once).
    moved = await session.scalar(
        update(SettlementPeriod)
        .where(SettlementPeriod.id == period_id, SettlementPeriod.state == PeriodState.CLOSED.value)
        .values(state=PeriodState.REVIEWED.value, reviewed_at=now)
        .returning(SettlementPeriod.id)
    )
    if moved is not None:
        session.add(
            SettlementPeriodEvent(
                period_id=period_id,
                action=Action.REVIEW.value,
                from_state=PeriodState.CLOSED.value,
                to_state=PeriodState.REVIEWED.value,
                by_user_id=actor.user_id,
                by_role=actor.role.value,
                at=now,
                note=f"district {district_id} last reviewed",
            )
        )
        await session.flush()
    return await get_period(session=session, period_id=period_id)


# --- Reads --------------------------------------------------------------------------------------------


async def list_periods(*, session: AsyncSession, actor: Principal, window: Window) -> Paged[SettlementPeriod]:
    if actor.role not in READERS:
        raise Forbidden("Settlement is read by officers, admins and providers.", code="auth.forbidden")
    stmt: Any = select(SettlementPeriod).order_by(SettlementPeriod.month.desc())
    return await page_of(session, stmt, window)


@dataclass(frozen=True, slots=True)
class PeriodDetail:
    period: SettlementPeriod
    events: list[SettlementPeriodEvent]
    reviewed_district_ids: list[int]
    lines: int
    passed: int
    payable_fen: int


async def period_detail(*, session: AsyncSession, actor: Principal, period_id: int) -> PeriodDetail:
    period = await get_period(session=session, period_id=period_id)
    events = list(
        await session.scalars(
            select(SettlementPeriodEvent)
            .where(SettlementPeriodEvent.period_id == period_id)
            .order_by(SettlementPeriodEvent.id)
        )
    )
    reviewed = list(
        await session.scalars(
            select(SettlementDistrictReview.district_id)
            .where(SettlementDistrictReview.period_id == period_id)
            .order_by(SettlementDistrictReview.district_id)
        )
    )
    row = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(SettlementLine.outcome == LineOutcome.PASSED.value),
                func.coalesce(func.sum(SettlementLine.amount_fen).filter(SettlementLine.payable), 0),
            ).where(SettlementLine.period_id == period_id, _current_line_clause(), line_clause(actor))
        )
    ).one()
    return PeriodDetail(period, events, reviewed, int(row[0]), int(row[1]), int(row[2]))


async def statement_subjects(
    *, session: AsyncSession, actor: Principal, period_id: int, kind: StatementKind | None
) -> list[SettlementStatement]:
    """The latest statements of the period that ``actor`` may read."""
    await get_period(session=session, period_id=period_id)
    stmts = await _latest_statements(session, period_id)
    visible = await _visible_subjects(session=session, actor=actor, period_id=period_id)
    return [s for s in stmts if (kind is None or s.kind == kind.value) and visible(s.kind, s.subject_id)]


async def _visible_subjects(*, session: AsyncSession, actor: Principal, period_id: int) -> Any:
    if actor.role == Role.ADMIN:
        return lambda kind, subject: True
    if actor.role == Role.PROVIDER_ADMIN:
        return lambda kind, subject: kind == StatementKind.PROVIDER.value and subject == actor.provider_id
    if actor.role == Role.CIVIL_AFFAIRS:
        districts = set(actor.district_ids)
        providers = set(
            await session.scalars(
                select(SettlementLine.provider_id)
                .distinct()
                .where(
                    SettlementLine.period_id == period_id, SettlementLine.district_id.in_(sorted(districts))
                )
            )
        )
        return lambda kind, subject: (
            subject in districts if kind == StatementKind.DISTRICT.value else subject in providers
        )
    return lambda kind, subject: False


async def read_statement(
    session: AsyncSession,
    *,
    actor: Principal,
    period_id: int,
    kind: StatementKind,
    subject_id: int,
    as_of: dt.datetime | None,
) -> SettlementStatement:
    """A statement (as it stood at ``as_of``, or the latest), if ``actor`` may read it; else 404."""
    await get_period(session=session, period_id=period_id)
    visible = await _visible_subjects(session=session, actor=actor, period_id=period_id)
    found = (
        await statement_as_of(session, period_id=period_id, kind=kind, subject_id=subject_id, as_of=as_of)
        if in_key_range(subject_id, limit=MAX_INT) and visible(kind.value, subject_id)
        else None
    )
    if found is None:
        raise NotFound(
            f"No {kind.value} statement {subject_id} for period {period_id}.",
            code="settlement_statement.not_found",
        )
    return found


# --- Ledger reads -------------------------------------------------------------------------------------


def account_clause(actor: Principal) -> ColumnElement[bool]:
    """Ledger accounts ``actor`` may read: admins all; a civil-affairs officer the payer funds of their
    districts and the co-pay accounts of their districts' elders; a provider's admin its receivable."""
    if actor.role == Role.ADMIN:
        return true()
    if actor.role == Role.CIVIL_AFFAIRS:
        if not actor.district_ids:
            return false()
        districts = sorted(actor.district_ids)
        return or_(
            and_(
                LedgerAccount.kind == AccountKind.PAYER_FUND.value, LedgerAccount.district_id.in_(districts)
            ),
            and_(
                LedgerAccount.kind == AccountKind.ELDER_COPAY.value,
                LedgerAccount.elder_id.in_(select(Elder.id).where(Elder.district_id.in_(districts))),
            ),
        )
    if actor.role == Role.PROVIDER_ADMIN and actor.provider_id is not None:
        return and_(
            LedgerAccount.kind == AccountKind.PROVIDER_RECEIVABLE.value,
            LedgerAccount.provider_id == actor.provider_id,
        )
    return false()


async def list_balances(
    session: AsyncSession,
    *,
    actor: Principal,
    window: Window,
    as_of: dt.datetime | None,
    kind: str | None = None,
    provider_id: int | None = None,
    district_id: int | None = None,
    elder_id: int | None = None,
) -> Paged[ledger.Balance]:
    stmt: Any = select(LedgerAccount).where(account_clause(actor)).order_by(LedgerAccount.id)
    if kind is not None:
        stmt = stmt.where(LedgerAccount.kind == kind)
    if provider_id is not None:
        stmt = stmt.where(LedgerAccount.provider_id == provider_id)
    if district_id is not None:
        stmt = stmt.where(LedgerAccount.district_id == district_id)
    if elder_id is not None:
        stmt = stmt.where(LedgerAccount.elder_id == elder_id)
    page = await page_of(session, stmt, window)
    balances = await ledger.balances_as_of(session, page.items, as_of)
    return Paged(items=balances, total=page.total, limit=page.limit, offset=page.offset)


async def account_balance(
    *, session: AsyncSession, actor: Principal, account_id: int, as_of: dt.datetime | None
) -> ledger.Balance:
    account = (
        await session.scalar(
            select(LedgerAccount).where(LedgerAccount.id == account_id, account_clause(actor))
        )
        if in_key_range(account_id, limit=MAX_INT)
        else None
    )
    if account is None:
        raise NotFound(f"No ledger account with id {account_id}.", code="ledger_account.not_found")
    return (await ledger.balances_as_of(session, [account], as_of))[0]
