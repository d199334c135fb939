"""Statements of a closed period: one per provider and one per district, each a canonical JSON
document (sorted keys, no spaces, UTF-8) with its SHA-256.

A statement sums the period's current lines (the latest revision of each visit's line): how many,
passed and rejected by reason, the payable amount split by payer and co-pay, the adjustments, the
signals; a provider's lists its districts, a district's its providers; and ``lines_sha256``, the
digest of every line's canonical text in visit order, so the statement's hash changes with any line.
Nothing in it depends on when or how often it was built: closing again (or re-closing after a reopen
that changed nothing) gives the same bytes and the same hash, and no new version is written.
Versions are kept: :func:`statement_as_of` reads a statement as it stood at an instant.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from billing.adjudication import Reason
from billing.settlement_models import SettlementStatement, StatementKind
from billing.settlement_policy import PAYERS
from billing.signals import Signal

# One line's canonical text in the digest (columns of ``settlement_line``).
LINE_TEXT: Final = (
    "concat_ws('|', l.visit_id, l.kind, l.service_on, l.service_code, l.provider_id, l.district_id, "
    "l.amount_fen, l.outcome, coalesce(l.reason, 0), l.ltc_fen, l.voucher_fen, l.local_fen, l.copay_fen, "
    "l.signals) || E'\\n'"
)

# The period's current lines: the latest revision of each visit's line.
CURRENT_LINES: Final = """
SELECT DISTINCT ON (l.visit_id) l.* FROM settlement_line l WHERE l.period_id = :period
 ORDER BY l.visit_id, l.revision DESC
"""


def canonical(document: Mapping[str, Any]) -> str:
    """The one serialisation of a statement: sorted keys, no spaces, UTF-8 characters as they are."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def _current_sql(single_revision: bool) -> str:
    if single_revision:
        return "SELECT l.* FROM settlement_line l WHERE l.period_id = :period"
    return CURRENT_LINES


def _aggregate_sql(current: str, key: str, other: str) -> str:
    """Per ``key`` (provider_id or district_id): counts, sums, signals, and the lines' digest; and
    per (key, other) the breakdown."""
    rejected = ", ".join(f"count(*) FILTER (WHERE l.reason = {int(r)}) AS r{int(r)}" for r in Reason)
    signals = ", ".join(f"count(*) FILTER (WHERE l.signals & {int(s)} <> 0) AS s{int(s)}" for s in Signal)
    sums = ", ".join(f"sum(l.{p}_fen) FILTER (WHERE l.payable) AS {p}" for p in (*PAYERS, "copay"))
    return f"""
    SELECT l.{key} AS subject, count(*) AS lines, count(*) FILTER (WHERE l.outcome = 'passed') AS passed,
           count(*) FILTER (WHERE l.payable) AS payable_lines,
           coalesce(sum(l.amount_fen) FILTER (WHERE l.payable), 0) AS amount,
           {sums}, {rejected}, {signals},
           count(*) FILTER (WHERE l.kind = 'adjustment') AS adj_lines,
           bool_or(l.signals & {int(Signal.BILLING_JUMP)} <> 0) AS jump,
           coalesce(sum(l.amount_fen) FILTER (WHERE l.kind = 'adjustment' AND l.payable), 0) AS adj_amount,
           encode(sha256(convert_to(string_agg({LINE_TEXT}, '' ORDER BY l.visit_id), 'UTF8')), 'hex')
             AS digest
      FROM ({current}) l GROUP BY l.{key}
    """  # noqa: S608 - constants only


def _breakdown_sql(current: str, key: str, other: str) -> str:
    sums = ", ".join(
        f"coalesce(sum(l.{p}_fen) FILTER (WHERE l.payable), 0) AS {p}" for p in (*PAYERS, "copay")
    )
    return f"""
    SELECT l.{key} AS subject, l.{other} AS other, count(*) AS lines, {sums}
      FROM ({current}) l GROUP BY l.{key}, l.{other} ORDER BY 1, 2
    """  # noqa: S608 - constants only


def _document(
    kind: StatementKind, month: dt.date, subject: int, row: Any, breakdown: Sequence[Any], jump: bool
) -> dict[str, Any]:
    parts = {p: int(getattr(row, p) or 0) for p in (*PAYERS, "copay")}
    other = "districts" if kind == StatementKind.PROVIDER else "providers"
    other_id = "district_id" if kind == StatementKind.PROVIDER else "provider_id"
    return {
        "kind": kind.value,
        "period": month.strftime("%Y-%m"),
        f"{kind.value}_id": subject,
        "unit": "fen",
        "lines": int(row.lines),
        "passed": int(row.passed),
        "payable_lines": int(row.payable_lines),
        "rejected": {str(int(r)): int(getattr(row, f"r{int(r)}")) for r in Reason},
        "amount_fen": int(row.amount),
        **{f"{p}_fen": v for p, v in parts.items()},
        "public_fen": sum(parts[p] for p in PAYERS),
        "adjustments": {"lines": int(row.adj_lines), "amount_fen": int(row.adj_amount)},
        "signals": {s.code: int(getattr(row, f"s{int(s)}")) for s in Signal},
        "billing_jump": jump,
        other: [
            {
                other_id: int(b.other),
                "lines": int(b.lines),
                **{f"{p}_fen": int(getattr(b, p)) for p in (*PAYERS, "copay")},
            }
            for b in breakdown
        ],
        "lines_sha256": row.digest,
    }


@dataclass(frozen=True, slots=True)
class BuiltStatement:
    kind: StatementKind
    subject_id: int
    version: int
    sha256: str
    written: bool


async def build_statements(
    session: AsyncSession, *, period_id: int, month: dt.date, now: dt.datetime, single_revision: bool
) -> list[BuiltStatement]:
    """Write each provider's and district's statement of the period, a new version only where the
    content changed since the latest one."""
    current = _current_sql(single_revision)
    latest = {
        (s.kind, s.subject_id): s
        for s in await session.scalars(
            select(SettlementStatement)
            .ext(distinct_on(SettlementStatement.kind, SettlementStatement.subject_id))
            .where(SettlementStatement.period_id == period_id)
            .order_by(
                SettlementStatement.kind, SettlementStatement.subject_id, SettlementStatement.version.desc()
            )
        )
    }
    out: list[BuiltStatement] = []
    for kind, key, other in (
        (StatementKind.PROVIDER, "provider_id", "district_id"),
        (StatementKind.DISTRICT, "district_id", "provider_id"),
    ):
        rows = (await session.execute(text(_aggregate_sql(current, key, other)), {"period": period_id})).all()
        parts: dict[int, list[Any]] = {}
        for b in (
            await session.execute(text(_breakdown_sql(current, key, other)), {"period": period_id})
        ).all():
            parts.setdefault(int(b.subject), []).append(b)
        for row in sorted(rows, key=lambda r: int(r.subject)):
            subject = int(row.subject)
            jump = kind == StatementKind.PROVIDER and bool(row.jump)
            body = canonical(_document(kind, month, subject, row, parts.get(subject, []), jump))
            digest = sha256_hex(body)
            held = latest.get((kind.value, subject))
            if held is not None and held.sha256 == digest:
                out.append(BuiltStatement(kind, subject, held.version, digest, written=False))
                continue
            version = 1 if held is None else held.version + 1
            session.add(
                SettlementStatement(
                    period_id=period_id,
                    kind=kind.value,
                    subject_id=subject,
                    version=version,
                    line_count=int(row.lines),
                    amount_fen=int(row.amount),
                    public_fen=sum(int(getattr(row, p) or 0) for p in PAYERS),
                    copay_fen=int(row.copay or 0),
                    body=body,
                    sha256=digest,
                    created_at=now,
                )
            )
            out.append(BuiltStatement(kind, subject, version, digest, written=True))
    await session.flush()
    return out


async def statement_as_of(
    session: AsyncSession,
    *,
    period_id: int,
    kind: StatementKind,
    subject_id: int,
    as_of: dt.datetime | None,
) -> SettlementStatement | None:
    """The statement as it stood at ``as_of`` (None: the latest version)."""
    stmt = (
        select(SettlementStatement)
        .where(
            SettlementStatement.period_id == period_id,
            SettlementStatement.kind == kind.value,
            SettlementStatement.subject_id == subject_id,
        )
        .order_by(SettlementStatement.version.desc())
        .limit(1)
    )
    if as_of is not None:
        stmt = stmt.where(SettlementStatement.created_at <= as_of)
    return await session.scalar(stmt)


def checksum(statements: Sequence[tuple[str, int, str]]) -> str:
    """One digest over (kind, subject, sha256) of a period's statements, in order: the benchmark's
    checksum (identical on a second run over the same data)."""
    h = hashlib.sha256()
    for kind, subject, digest in sorted(statements):
        h.update(f"{kind}:{subject}:{digest}\n".encode())
    return h.hexdigest()
