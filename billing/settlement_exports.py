"""Settlement's downloads, built with the table writer :mod:`billing.xlsx` like the allowance roster
(:mod:`billing.exports`): a provider's statement (机构结算明细: every line) and a district's summary
(区县结算汇总: per provider, per payer, rejections by reason) of a closed period, as XLSX or CSV.

Who and when are the statement read's (:func:`billing.settlement.read_statement`): a statement the
caller may not read, or that did not exist at ``as_of``, is 404 ``settlement_statement.not_found``.
The lines are the statement's subject's current lines as they stood at ``as_of`` (each visit's latest
revision written by then, with the review decision taken by then), within the caller's scope: an
officer exporting the statement of a provider that also works in other districts gets that provider's
lines in their own districts (the notes sheet says so), as ``GET …/lines`` shows them.

Money stays in integer fen until the file: each amount cell is ``Decimal(fen) / 100`` (never a float)
and every totals row is the sum of its column's fen. The "settled" columns (结算金额 and each payer's
share) are the statement as closed: over the whole subject they equal the statement's amounts and the
close's ledger transfers for it. The "after review" column (审核后结算) leaves out the lines an officer
rejected at review, whose parts the ledger took back: it equals the ledger's net for the subject.

Elders appear with their internal id, a masked name (surname kept) and, for roles that are shown an ID
number at all (not a provider's admin: DOMAIN §9), the masked ID number — never the birth date.

Deterministic: the same period, subject, scope, ``as_of`` and decisions give the same bytes (the
workbook is dated with the statement version's ``created_at``; no clock is read). Every export is
audited (``export`` on ``settlement_statement``: format, lines, totals, the file's SHA-256).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from billing.adjudication import REASON_LABELS, Reason
from billing.exports import ExportFile, Format
from billing.quote_schemas import PAYER_NAMES
from billing.rules import Payer
from billing.settlement import get_period, line_clause, read_statement
from billing.settlement_models import (
    Decision,
    LineKind,
    LineOutcome,
    SettlementLine,
    SettlementLineDecision,
    SettlementPeriod,
    SettlementStatement,
    StatementKind,
)
from billing.settlement_policy import PAYERS
from billing.signals import SIGNAL_LABELS, Signal
from billing.xlsx import (
    CSV_MEDIA_TYPE,
    XLSX_MEDIA_TYPE,
    Cell,
    Column,
    ColumnKind,
    Lang,
    Table,
    csv_bytes,
    xlsx_bytes,
)
from core import audit
from core.identity.authz import Principal
from core.identity.models import Role
from dispatch.models import Service
from registry.idcard import mask_id_number
from registry.models import District, Elder, Provider
from registry.scope import sees_care_view_only

K = ColumnKind
ENTITY: Final = "settlement_statement"
PARTS: Final = (*PAYERS, "copay")  # each line's parts, in the order of the columns
_CENTI: Final = Decimal("0.01")

# --- Words (zh-CN, English) ---------------------------------------------------------------------------

PART_NAMES: Final[dict[str, tuple[str, str]]] = {
    **{p.value: PAYER_NAMES[p] for p in Payer},
    "copay": ("个人自付", "Co-pay"),
}
UNIT_NAMES: Final = {"hour": ("小时", "hour"), "visit": ("次", "visit"), "meal": ("餐", "meal")}
KIND_NAMES: Final = {
    LineKind.REGULAR.value: ("正常", "Regular"),
    LineKind.ADJUSTMENT.value: ("跨期调整", "Adjustment"),
}
DECISION_NAMES: Final = {
    Decision.APPROVED.value: ("同意", "Approved"),
    Decision.REJECTED.value: ("驳回", "Rejected"),
}
UNDECIDED: Final = ("待审核", "Not yet decided")  # a passed line no officer has decided (yet)
PERIOD_STATE_NAMES: Final = {
    "open": ("未关账", "open"),
    "closed": ("已关账", "closed"),
    "reviewed": ("已审核", "reviewed"),
    "approved": ("已批准", "approved"),
    "paid": ("已支付", "paid"),
    "locked": ("已锁定", "locked"),
}
SUBJECT_NAMES: Final = {
    StatementKind.PROVIDER: ("机构", "Provider"),
    StatementKind.DISTRICT: ("区县", "District"),
}
STATEMENT_NAMES: Final = {
    StatementKind.PROVIDER: ("机构结算明细", "Provider statement"),
    StatementKind.DISTRICT: ("区县结算汇总", "District summary"),
}


def _say(pair: tuple[str, str], lang: Lang) -> str:
    return pair[0] if lang == "zh" else pair[1]


def outcome_name(outcome: str, payable: bool, lang: Lang) -> str:
    """通过, 拒付 (nothing posted) or 补贴拒付 (the public payers' claim only: the co-pay stands)."""
    if outcome == LineOutcome.PASSED.value:
        return _say(("通过", "Passed"), lang)
    if payable:
        return _say(("补贴拒付(自付照收)", "Rejected for the payers (co-pay stands)"), lang)
    return _say(("拒付", "Rejected"), lang)


def signal_names(bits: int, lang: Lang) -> str | None:
    names = [_say(SIGNAL_LABELS[s], lang) for s in Signal if bits & s]
    return ("；" if lang == "zh" else "; ").join(names) or None


def mask_name(name: str) -> str:
    """A name with the surname kept and the rest hidden, as Chinese public lists print it: ``张*``,
    ``张*明``, ``欧**华`` (the last character shown from three characters on)."""
    s = name.strip()
    if len(s) <= 1:
        return "*" * len(s)
    if len(s) == 2:
        return s[0] + "*"
    return s[0] + "*" * (len(s) - 2) + s[-1]


def quantity(unit: str, duration_s: int) -> Decimal:
    """What a line bills: hours for a service priced by the hour (the ordered duration), else 1."""
    if unit == "hour":
        return (Decimal(duration_s) / 3600).quantize(_CENTI)
    return Decimal(1)


def _fen(title: str, title_en: str, *, total: bool = True) -> Column:
    return Column(f"{title}(元)", f"{title_en} (yuan)", K.FEN, total=total)


# --- Columns ------------------------------------------------------------------------------------------

PART_COLUMNS: Final = tuple(_fen(*PART_NAMES[p]) for p in PARTS)
LINE_COLUMNS: Final = (
    Column("序号", "No.", K.INTEGER),
    Column("服务记录号", "Visit ID", K.INTEGER),
    Column("结算类型", "Line kind"),
    Column("区县", "District"),
    Column("老人编号", "Elder ID", K.INTEGER),
    Column("老人姓名(脱敏)", "Elder (masked)"),
    Column("身份证号(脱敏)", "ID number (masked)"),
    Column("服务项目", "Service"),
    Column("服务日期", "Service date", K.DATE),
    Column("计费单位", "Unit"),
    Column("数量", "Quantity", K.DECIMAL),
    _fen("单价", "Unit price", total=False),
    _fen("服务金额", "Price"),
    _fen("结算金额", "Settled"),
    *PART_COLUMNS,
    Column("结算结果", "Outcome"),
    Column("拒付原因编号", "Reason no.", K.INTEGER),
    Column("拒付原因", "Reason"),
    Column("审核决定", "Review decision"),
    Column("审核意见", "Review note"),
    _fen("审核后结算", "After review"),
    Column("风险提示", "Review signals"),
)


def group_columns(kind: StatementKind) -> tuple[Column, ...]:
    """One row per provider (a district's summary) or per district (a provider's statement)."""
    who = ("机构", "Provider") if kind == StatementKind.PROVIDER else ("区县", "District")
    return (
        Column("序号", "No.", K.INTEGER),
        Column(f"{who[0]}编号", f"{who[1]} ID", K.INTEGER),
        Column(f"{who[0]}名称", who[1]),
        Column("明细条数", "Lines", K.INTEGER, total=True),
        Column("通过", "Passed", K.INTEGER, total=True),
        Column("拒付", "Rejected", K.INTEGER, total=True),
        _fen("服务金额", "Price"),
        _fen("结算金额", "Settled"),
        *PART_COLUMNS,
        Column("审核驳回条数", "Rejected at review", K.INTEGER, total=True),
        _fen("审核后结算", "After review"),
        *(
            Column(f"拒付{int(r)}-{REASON_LABELS[r][0]}", f"Rejected {int(r)}: {REASON_LABELS[r][1]}",
                   K.INTEGER, total=True)
            for r in Reason
        ),
    )  # fmt: skip


PAYER_COLUMNS: Final = (
    Column("支付方", "Payer"),
    _fen("结算金额", "Settled"),
    _fen("审核后结算", "After review"),
)
REASON_COLUMNS: Final = (
    Column("编号", "No.", K.INTEGER),
    Column("代码", "Code"),
    Column("拒付原因", "Reason"),
    Column("条数", "Lines", K.INTEGER, total=True),
    _fen("服务金额", "Price"),
)

# --- Reading ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """Counts and fen sums over a set of lines (one provider's or district's, or all of them).

    ``settled`` and ``parts`` are the payable lines' (the statement as closed); ``after_review`` and
    ``parts_after_review`` leave out the lines rejected at review (what the ledger still owes)."""

    lines: int = 0
    passed: int = 0
    price_fen: int = 0
    settled_fen: int = 0
    parts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PARTS, 0))
    rejected_at_review: int = 0
    after_review_fen: int = 0
    parts_after_review: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PARTS, 0))
    reasons: dict[Reason, int] = field(default_factory=lambda: dict.fromkeys(Reason, 0))
    reason_price_fen: dict[Reason, int] = field(default_factory=lambda: dict.fromkeys(Reason, 0))

    @property
    def rejected(self) -> int:
        return self.lines - self.passed

    def add_line(self, line: SettlementLine, decision: str | None) -> None:
        self.lines += 1
        self.price_fen += line.amount_fen
        if line.outcome == LineOutcome.PASSED.value:
            self.passed += 1
        if line.reason is not None:
            self.reasons[Reason(line.reason)] += 1
            self.reason_price_fen[Reason(line.reason)] += line.amount_fen
        taken_back = decision == Decision.REJECTED.value
        self.rejected_at_review += taken_back
        if not line.payable:
            return
        self.settled_fen += line.amount_fen
        for p in PARTS:
            self.parts[p] += int(getattr(line, f"{p}_fen"))
        if not taken_back:
            self.after_review_fen += line.amount_fen
            for p in PARTS:
                self.parts_after_review[p] += int(getattr(line, f"{p}_fen"))

    def add(self, other: Tally) -> None:
        """Add ``other``'s counts and sums to these (``other`` is left as it is)."""
        self.lines += other.lines
        self.passed += other.passed
        self.price_fen += other.price_fen
        self.settled_fen += other.settled_fen
        self.rejected_at_review += other.rejected_at_review
        self.after_review_fen += other.after_review_fen
        for p in PARTS:
            self.parts[p] += other.parts[p]
            self.parts_after_review[p] += other.parts_after_review[p]
        for r in Reason:
            self.reasons[r] += other.reasons[r]
            self.reason_price_fen[r] += other.reason_price_fen[r]


@dataclass(frozen=True, slots=True)
class LineView:
    """A line with what the export shows of it: its review decision (as of the read), the elder's
    name and ID number (raw: masked when written), the district's and the service's names."""

    line: SettlementLine
    decision: str | None
    decision_reason: str | None
    elder_name: str
    id_number: str
    district_name: str
    district_name_en: str
    service_name: str
    service_name_en: str
    unit: str


def _current_lines(period_id: int, kind: StatementKind, subject_id: int, as_of: dt.datetime | None) -> Any:
    """The subject's lines as they stood at ``as_of``: each of its visits' latest revision written by
    then (the subject's visits first, so the latest revision is taken over all of a visit's lines)."""
    subject = SettlementLine.provider_id if kind == StatementKind.PROVIDER else SettlementLine.district_id
    visits = select(SettlementLine.visit_id).where(
        SettlementLine.period_id == period_id, subject == subject_id
    )
    stmt = (
        select(SettlementLine)
        .ext(distinct_on(SettlementLine.visit_id))
        .where(SettlementLine.period_id == period_id, SettlementLine.visit_id.in_(visits))
        .order_by(SettlementLine.visit_id, SettlementLine.revision.desc())
    )
    if as_of is not None:
        stmt = stmt.where(SettlementLine.created_at <= as_of)
    current = aliased(SettlementLine, stmt.subquery("current_line"))
    mine = current.provider_id if kind == StatementKind.PROVIDER else current.district_id
    in_subject = mine == subject_id
    return current, in_subject


def _decision_join(current: Any, as_of: dt.datetime | None) -> Any:
    on = SettlementLineDecision.line_id == current.id
    if as_of is not None:
        on = and_(on, SettlementLineDecision.at <= as_of)
    return on


async def provider_lines(
    session: AsyncSession, *, actor: Principal, period_id: int, provider_id: int, as_of: dt.datetime | None
) -> list[LineView]:
    """The provider's lines of the period in ``actor``'s scope as of ``as_of``, by service day, visit."""
    current, in_subject = _current_lines(period_id, StatementKind.PROVIDER, provider_id, as_of)
    rows = await session.execute(
        select(
            current,
            SettlementLineDecision.decision,
            SettlementLineDecision.reason,
            Elder.name,
            Elder.id_number,
            District.name,
            District.name_en,
            Service.name,
            Service.name_en,
            Service.unit,
        )
        .outerjoin(SettlementLineDecision, _decision_join(current, as_of))
        .join(Elder, Elder.id == current.elder_id)
        .join(District, District.id == current.district_id)
        .join(Service, Service.code == current.service_code)
        .where(in_subject, line_clause(actor, current))
        .order_by(current.service_on, current.visit_id)
    )
    return [LineView(*r) for r in rows.all()]


async def district_tallies(
    session: AsyncSession, *, actor: Principal, period_id: int, district_id: int, as_of: dt.datetime | None
) -> dict[int, Tally]:
    """Per provider, the tally of the district's lines of the period in ``actor``'s scope as of
    ``as_of`` (one aggregate query: every number of the summary comes from the same read)."""
    current, in_subject = _current_lines(period_id, StatementKind.DISTRICT, district_id, as_of)
    decided = SettlementLineDecision.decision
    taken_back = decided == Decision.REJECTED.value
    kept = and_(current.payable, or_(decided.is_(None), ~taken_back))

    def total(expr: Any, where: Any) -> Any:
        return func.coalesce(func.sum(expr).filter(where), 0)

    columns: list[Any] = [
        current.provider_id,
        func.count(),
        func.count().filter(current.outcome == LineOutcome.PASSED.value),
        func.coalesce(func.sum(current.amount_fen), 0),
        total(current.amount_fen, current.payable),
        *(total(getattr(current, f"{p}_fen"), current.payable) for p in PARTS),
        func.count().filter(taken_back),
        total(current.amount_fen, kept),
        *(total(getattr(current, f"{p}_fen"), kept) for p in PARTS),
        *(func.count().filter(current.reason == int(r)) for r in Reason),
        *(total(current.amount_fen, current.reason == int(r)) for r in Reason),
    ]
    rows = await session.execute(
        select(*columns)
        .outerjoin(SettlementLineDecision, _decision_join(current, as_of))
        .where(in_subject, line_clause(actor, current))
        .group_by(current.provider_id)
        .order_by(current.provider_id)
    )
    out: dict[int, Tally] = {}
    n = len(PARTS)
    for row in rows.all():
        v = [int(x) for x in row]
        parts, after = v[5 : 5 + n], v[7 + n : 7 + 2 * n]
        counts, prices = v[7 + 2 * n : 7 + 2 * n + len(Reason)], v[7 + 2 * n + len(Reason) :]
        out[v[0]] = Tally(
            lines=v[1],
            passed=v[2],
            price_fen=v[3],
            settled_fen=v[4],
            parts=dict(zip(PARTS, parts, strict=True)),
            rejected_at_review=v[5 + n],
            after_review_fen=v[6 + n],
            parts_after_review=dict(zip(PARTS, after, strict=True)),
            reasons=dict(zip(Reason, counts, strict=True)),
            reason_price_fen=dict(zip(Reason, prices, strict=True)),
        )
    return out


# --- Tables -------------------------------------------------------------------------------------------


def line_rows(lines: Sequence[LineView], *, with_id_number: bool, lang: Lang) -> list[tuple[Cell, ...]]:
    """The rows of :data:`LINE_COLUMNS`, numbered from 1."""
    rows: list[tuple[Cell, ...]] = []
    for n, v in enumerate(lines, start=1):
        x = v.line
        reason = None if x.reason is None else Reason(x.reason)
        decision: str | None = None
        if v.decision is not None:
            decision = _say(DECISION_NAMES[v.decision], lang)
        elif x.outcome == LineOutcome.PASSED.value:
            decision = _say(UNDECIDED, lang)
        taken_back = v.decision == Decision.REJECTED.value
        settled = x.amount_fen if x.payable else 0
        rows.append(
            (
                n,
                x.visit_id,
                _say(KIND_NAMES[x.kind], lang),
                v.district_name if lang == "zh" else v.district_name_en,
                x.elder_id,
                mask_name(v.elder_name),
                mask_id_number(v.id_number) if with_id_number else None,
                v.service_name if lang == "zh" else v.service_name_en,
                x.service_on,
                _say(UNIT_NAMES.get(v.unit, (v.unit, v.unit)), lang),
                quantity(v.unit, x.duration_s),
                x.unit_price_fen,
                x.amount_fen,
                settled,
                *(int(getattr(x, f"{p}_fen")) for p in PARTS),
                outcome_name(x.outcome, x.payable, lang),
                None if reason is None else int(reason),
                None if reason is None else _say(REASON_LABELS[reason], lang),
                decision,
                v.decision_reason,
                0 if taken_back else settled,
                signal_names(x.signals, lang),
            )
        )
    return rows


def group_rows(tallies: Sequence[tuple[int, str, Tally]]) -> list[tuple[Cell, ...]]:
    """The rows of :func:`group_columns`: (id, name, tally) each, numbered from 1."""
    return [
        (
            n, subject, name, t.lines, t.passed, t.rejected, t.price_fen, t.settled_fen,
            *(t.parts[p] for p in PARTS), t.rejected_at_review, t.after_review_fen,
            *(t.reasons[r] for r in Reason),
        )
        for n, (subject, name, t) in enumerate(tallies, start=1)
    ]  # fmt: skip


def payer_rows(t: Tally, lang: Lang) -> list[tuple[Cell, ...]]:
    return [(_say(PART_NAMES[p], lang), t.parts[p], t.parts_after_review[p]) for p in PARTS]


def reason_rows(t: Tally, lang: Lang) -> list[tuple[Cell, ...]]:
    return [
        (int(r), r.code, _say(REASON_LABELS[r], lang), t.reasons[r], t.reason_price_fen[r]) for r in Reason
    ]


def summed(groups: Sequence[tuple[int, str, Tally]]) -> Tally:
    whole = Tally()
    for _, _, t in groups:
        whole.add(t)
    return whole


def summary_tables(kind: StatementKind, groups: Sequence[tuple[int, str, Tally]], lang: Lang) -> list[Table]:
    """The summary sheets of a ``kind`` statement: per district of a provider's (per provider of a
    district's), then per payer and per rejection reason over them all."""
    whole = summed(groups)
    by = ("按区县", "By district") if kind == StatementKind.PROVIDER else ("按机构", "By provider")
    other = StatementKind.DISTRICT if kind == StatementKind.PROVIDER else StatementKind.PROVIDER
    return [
        Table(*by, group_columns(other), group_rows(groups)),
        Table("按支付方", "By payer", PAYER_COLUMNS, payer_rows(whole, lang)),
        Table("拒付原因", "Rejections", REASON_COLUMNS, reason_rows(whole, lang)),
    ]


# --- The exports --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatementExport:
    """A statement's file and what it sums over the caller's scope, for the caller (and tests) to
    check: the tally of the whole file."""

    file: ExportFile
    tally: Tally


def _scope(actor: Principal, lang: Lang) -> str:
    zh = lang == "zh"
    if actor.role == Role.ADMIN:
        return "全部" if zh else "Everything"
    if actor.role == Role.PROVIDER_ADMIN:
        return ("本机构" if zh else "Own provider") + f" {actor.provider_id}"
    ids = ", ".join(str(d) for d in sorted(actor.district_ids))
    return ("区县编号 " if zh else "District ids ") + ids


def _notes(
    *,
    kind: StatementKind,
    period: SettlementPeriod,
    statement: SettlementStatement,
    subject: str,
    as_of: dt.datetime | None,
    actor: Principal,
    tally: Tally,
    lang: Lang,
) -> list[tuple[str, str]]:
    zh = lang == "zh"
    return [
        ("结算单" if zh else "Statement", _say(STATEMENT_NAMES[kind], lang)),
        ("结算月份" if zh else "Period", f"{period.month:%Y-%m}"),
        ("期间状态" if zh else "Period state", _say(PERIOD_STATE_NAMES[period.state], lang)),
        (_say(SUBJECT_NAMES[kind], lang), subject),
        ("结算单版本" if zh else "Statement version", str(statement.version)),
        ("结算单生成时间(UTC)" if zh else "Statement written at (UTC)",
         statement.created_at.astimezone(dt.UTC).isoformat()),
        ("结算单校验码(SHA-256)" if zh else "Statement SHA-256", statement.sha256),
        ("结算单结算金额(分)" if zh else "Statement settled (fen)", str(statement.amount_fen)),
        ("查询时点" if zh else "As of", as_of.astimezone(dt.UTC).isoformat() if as_of else
         ("最新" if zh else "latest")),
        ("范围" if zh else "Scope", _scope(actor, lang)),
        ("明细条数(通过/拒付)" if zh else "Lines (passed/rejected)",
         f"{tally.lines} ({tally.passed}/{tally.rejected})"),
        ("结算金额合计(分)" if zh else "Settled total (fen)", str(tally.settled_fen)),
        ("审核后结算合计(分)" if zh else "After review total (fen)", str(tally.after_review_fen)),
        ("金额单位" if zh else "Amounts", "元,由整数分精确换算,保留两位小数" if zh else
         "yuan, exactly from integer fen, two decimals"),
    ]  # fmt: skip


async def _names(
    session: AsyncSession, kind: StatementKind, ids: Sequence[int], lang: Lang
) -> dict[int, str]:
    if not ids:
        return {}
    if kind == StatementKind.PROVIDER:
        rows = await session.execute(select(Provider.id, Provider.name).where(Provider.id.in_(ids)))
        return {int(i): name for i, name in rows.all()}
    column = District.name if lang == "zh" else District.name_en
    rows = await session.execute(select(District.id, column).where(District.id.in_(ids)))
    return {int(i): name for i, name in rows.all()}


async def statement_export(
    *,
    session: AsyncSession,
    actor: Principal,
    period_id: int,
    kind: StatementKind,
    subject_id: int,
    as_of: dt.datetime | None,
    fmt: Format,
    lang: Lang = "zh",
) -> StatementExport:
    """A provider's statement (every line in ``actor``'s scope, plus the summary sheets) or a district's
    summary (per provider, per payer, per reason), as it stood at ``as_of`` (None: the latest). XLSX
    has every sheet and the notes (说明); CSV the first sheet alone (the lines, or the providers).
    404 ``settlement_statement.not_found`` as the statement read."""
    statement = await read_statement(
        session, actor=actor, period_id=period_id, kind=kind, subject_id=subject_id, as_of=as_of
    )
    period = await get_period(session=session, period_id=period_id)
    # Every sheet from one read of the lines (or one aggregate of them): a decision committed meanwhile
    # cannot make two sheets disagree.
    if kind == StatementKind.PROVIDER:
        lines = await provider_lines(
            session, actor=actor, period_id=period_id, provider_id=subject_id, as_of=as_of
        )
        per: dict[int, Tally] = {}
        names: dict[int, str] = {}
        for v in lines:
            per.setdefault(v.line.district_id, Tally()).add_line(v.line, v.decision)
            names[v.line.district_id] = v.district_name if lang == "zh" else v.district_name_en
        groups = [(d, names[d], per[d]) for d in sorted(per)]
        rows = line_rows(lines, with_id_number=not sees_care_view_only(actor), lang=lang)
        sheets = [Table("结算明细", "Lines", LINE_COLUMNS, rows), *summary_tables(kind, groups, lang)]
    else:
        per = await district_tallies(
            session, actor=actor, period_id=period_id, district_id=subject_id, as_of=as_of
        )
        names = await _names(session, StatementKind.PROVIDER, sorted(per), lang)
        groups = [(p, names.get(p, str(p)), per[p]) for p in sorted(per)]
        sheets = summary_tables(kind, groups, lang)
    tally = summed(groups)
    subject_name = (await _names(session, kind, [subject_id], lang)).get(subject_id, str(subject_id))
    month = f"{period.month:%Y-%m}"
    if fmt == "xlsx":
        notes = _notes(
            kind=kind,
            period=period,
            statement=statement,
            subject=f"{subject_name} ({subject_id})",
            as_of=as_of,
            actor=actor,
            tally=tally,
            lang=lang,
        )
        content = xlsx_bytes(sheets, notes=notes, generated_at=statement.created_at, lang=lang)
        media_type = XLSX_MEDIA_TYPE
    else:
        content = csv_bytes(sheets[0], lang=lang)
        media_type = CSV_MEDIA_TYPE
    title = _say(STATEMENT_NAMES[kind], lang)
    file = ExportFile(
        filename=f"settlement_{month}_{kind.value}_{subject_id}.{fmt}",
        display_name=(
            f"{subject_name}{title}_{month}.{fmt}"
            if lang == "zh"
            else f"{title} {subject_name} {month}.{fmt}"
        ),
        media_type=media_type,
        content=content,
        lines=tally.lines,
        total_fen=tally.settled_fen,
    )
    audit.record(
        session,
        actor=actor,
        action="export",
        entity=ENTITY,
        entity_id=statement.id,
        after={
            "kind": kind.value,
            "subject_id": subject_id,
            "format": fmt,
            "lang": lang,
            "as_of": as_of.isoformat() if as_of else None,
            "lines": tally.lines,
            "settled_fen": tally.settled_fen,
            "after_review_fen": tally.after_review_fen,
            "sha256": hashlib.sha256(content).hexdigest(),
        },
    )
    return StatementExport(file, tally)
