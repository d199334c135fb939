"""Billing's downloadable files, built with the table writer :mod:`billing.xlsx`: the allowance roster
(发放名册, with its additions 新增明细 and stoppages 停发明细). The provider statement and the district
summary are built the same way in :mod:`billing.settlement_exports`.

An export reads exactly what the API shows the caller (the same scope, the same lines), and its totals
row is the sum of its rows in fen, so the file reconciles with the roster's totals in that scope to
the fen. Every export is audited (``export``: format, lines, total, the file's SHA-256).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from billing import allowance_service as service
from billing.allowance_models import AllowanceRoster
from billing.allowance_service import LineView
from billing.allowances import AllowanceKind, Change, Reason, RosterTotals, month_label
from billing.xlsx import (
    CSV_MEDIA_TYPE,
    XLSX_MEDIA_TYPE,
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

Format = Literal["xlsx", "csv"]
K = ColumnKind

# --- Words (zh-CN, English) ---------------------------------------------------------------------------

KIND_NAMES: Final[dict[AllowanceKind, tuple[str, str]]] = {
    AllowanceKind.OLD_AGE: ("高龄津贴", "Old-age allowance"),
    AllowanceKind.DISABILITY: ("经济困难失能老年人护理补贴", "Disability care allowance"),
}
CHANGE_NAMES: Final[dict[Change, tuple[str, str]]] = {
    Change.ADDED: ("新增", "Added"),
    Change.CHANGED: ("变更", "Changed"),
    Change.CONTINUED: ("续发", "Continued"),
    Change.STOPPED: ("停发", "Stopped"),
}
REASON_NAMES: Final[dict[Reason, tuple[str, str]]] = {
    Reason.CONTINUED: ("正常发放", "Paid as before"),
    Reason.TURNED_AGE: ("达到年龄(生日次月起)", "Reached the age (from the month after the birthday)"),
    Reason.REGISTERED: ("新登记", "Newly registered"),
    Reason.LATE_REGISTRATION: ("逾期登记,补发", "Registered late, back-paid"),
    Reason.ASSESSED: ("经评估符合条件", "Assessed at a paid level"),
    Reason.CATEGORY_GRANTED: ("取得困难认定", "Low-income category granted"),
    Reason.RESUMED: ("恢复发放", "Resumed"),
    Reason.BAND_CHANGED: ("年龄档次调整", "Next age band"),
    Reason.LEVEL_CHANGED: ("失能等级调整", "Disability level changed"),
    Reason.DECEASED: ("死亡(次月停发)", "Deceased (stopped the month after)"),
    Reason.MOVED: ("迁出(次月停发)", "Moved out (stopped the month after)"),
    Reason.ASSESSMENT_EXPIRED: ("评估已过期", "Assessment expired"),
    Reason.LEVEL_NOT_PAID: ("失能等级不在补贴范围", "Level no longer paid"),
    Reason.CATEGORY_ENDED: ("困难认定已终止", "Low-income category ended"),
    Reason.NO_LONGER_ELIGIBLE: ("不再符合条件", "No longer eligible"),
}
_STATE_NAMES: Final = {"open": ("未关账", "open"), "closed": ("已关账", "closed")}


def _say(pair: tuple[str, str], lang: Lang) -> str:
    return pair[0] if lang == "zh" else pair[1]


def band_name(kind: AllowanceKind, band: str | None, lang: Lang) -> str | None:
    """An age band as ``80-89岁`` / ``80-89``, a level as ``3级`` / ``Level 3``."""
    if band is None:
        return None
    if kind == AllowanceKind.OLD_AGE:
        return f"{band}岁" if lang == "zh" else band
    return f"{band}级" if lang == "zh" else f"Level {band}"


# --- The allowance roster -----------------------------------------------------------------------------

ROSTER_COLUMNS: Final = (
    Column("序号", "No.", K.INTEGER),
    Column("区县", "District"),
    Column("老人编号", "Elder ID", K.INTEGER),
    Column("姓名", "Name"),
    Column("身份证号(脱敏)", "ID number (masked)"),
    Column("出生日期", "Birth date", K.DATE),
    Column("档次", "Band / level"),
    Column("上月档次", "Previous band / level"),
    Column("变动", "Change"),
    Column("原因", "Reason"),
    Column("事由日期", "Event date", K.DATE),
    Column("月标准(元)", "Monthly (yuan)", K.FEN, total=True),
    Column("补发月数", "Back-pay months", K.INTEGER, total=True),
    Column("补发金额(元)", "Back-pay (yuan)", K.FEN, total=True),
    Column("应发金额(元)", "Amount (yuan)", K.FEN, total=True),
)


def roster_rows(
    kind: AllowanceKind, lines: Sequence[LineView], lang: Lang
) -> list[tuple[int | str | dt.date | None, ...]]:
    """The rows of :data:`ROSTER_COLUMNS` for these lines, numbered from 1."""
    rows: list[tuple[int | str | dt.date | None, ...]] = []
    for n, v in enumerate(lines, start=1):
        x = v.line
        rows.append(
            (
                n,
                v.district_name,
                x.elder_id,
                v.elder_name,
                v.id_number_masked,
                v.birth_on,
                band_name(kind, x.band, lang),
                band_name(kind, x.previous_band, lang),
                _say(CHANGE_NAMES[Change(x.change)], lang),
                _say(REASON_NAMES[Reason(x.reason)], lang),
                x.event_on,
                x.monthly_fen,
                x.backpay_months,
                x.backpay_fen,
                x.amount_fen,
            )
        )
    return rows


def lines_totals(lines: Sequence[LineView]) -> RosterTotals:
    """Counts and fen sums of these lines (as :func:`billing.allowances.totals` of the rules' lines)."""
    by = [v.line.change for v in lines]
    monthly = sum(v.line.monthly_fen for v in lines)
    backpay = sum(v.line.backpay_fen for v in lines)
    return RosterTotals(
        lines=len(lines),
        paid=sum(1 for c in by if c != Change.STOPPED.value),
        added=by.count(Change.ADDED.value),
        changed=by.count(Change.CHANGED.value),
        continued=by.count(Change.CONTINUED.value),
        stopped=by.count(Change.STOPPED.value),
        backpay_months=sum(v.line.backpay_months for v in lines),
        monthly_fen=monthly,
        backpay_fen=backpay,
        total_fen=monthly + backpay,
    )


@dataclass(frozen=True, slots=True)
class ExportFile:
    """A file to download: its name (ASCII) and display name (may be Chinese), media type, bytes,
    and what it sums (``lines``, ``total_fen``) for the caller to check."""

    filename: str
    display_name: str
    media_type: str
    content: bytes
    lines: int
    total_fen: int

    def content_disposition(self) -> str:
        """``attachment`` with the ASCII name and the display name (RFC 6266 / 5987)."""
        quoted = urllib.parse.quote(self.display_name, safe="")
        return f"attachment; filename=\"{self.filename}\"; filename*=UTF-8''{quoted}"


def _notes(
    kind: AllowanceKind, roster: AllowanceRoster, totals: RosterTotals, actor: Principal, lang: Lang
) -> list[tuple[str, str]]:
    zh = lang == "zh"
    scope = "全市" if zh else "City-wide"
    if actor.role != Role.ADMIN:
        scope = ("区县编号 " if zh else "District ids ") + ", ".join(
            str(d) for d in sorted(actor.district_ids)
        )
    pairs = [
        ("津贴" if zh else "Allowance", _say(KIND_NAMES[kind], lang)),
        ("月份" if zh else "Month", month_label(roster.month)),
        ("状态" if zh else "State", _say(_STATE_NAMES[roster.state], lang)),
        ("依据数据日" if zh else "Facts as of", roster.facts_on.isoformat()),
        ("生成时间" if zh else "Generated at (UTC)", roster.generated_at.astimezone(dt.UTC).isoformat()),
        ("范围" if zh else "Scope", scope),
        ("人数(发放/新增/变更/停发)" if zh else "Lines (paid/added/changed/stopped)",
         f"{totals.paid}/{totals.added}/{totals.changed}/{totals.stopped}"),
        ("应发合计(分)" if zh else "Total (fen)", str(totals.total_fen)),
        ("校验码" if zh else "Roster checksum", roster.checksum),
    ]  # fmt: skip
    pairs += [("政策依据" if zh else "Policy applied", ref) for ref in roster.policy_refs]
    return pairs


async def allowance_roster_export(
    *,
    session: AsyncSession,
    actor: Principal,
    kind: AllowanceKind,
    month: dt.date,
    fmt: Format,
    lang: Lang = "zh",
) -> ExportFile:
    """The stored roster of ``month`` as the lines ``actor`` sees: XLSX with the roster, the
    additions and the stoppages (one sheet each) and a notes sheet, or CSV with the roster alone.
    404 ``allowance.roster_not_found`` if it has not been generated."""
    roster = await service.stored_roster(session, kind, month)
    lines = await service.all_lines(session=session, actor=actor, roster=roster)
    # The totals of the very lines written (one read: a regeneration committing meanwhile cannot
    # make the notes disagree with the rows).
    totals = lines_totals(lines)
    roster_table = Table("发放名册", "Roster", ROSTER_COLUMNS, roster_rows(kind, lines, lang))
    label = month_label(roster.month)
    title = _say(KIND_NAMES[kind], lang)
    if fmt == "xlsx":
        added = [v for v in lines if v.line.change == Change.ADDED.value]
        stopped = [v for v in lines if v.line.change == Change.STOPPED.value]
        content = xlsx_bytes(
            [
                roster_table,
                Table("新增明细", "Additions", ROSTER_COLUMNS, roster_rows(kind, added, lang)),
                Table("停发明细", "Stoppages", ROSTER_COLUMNS, roster_rows(kind, stopped, lang)),
            ],
            notes=_notes(kind, roster, totals, actor, lang),
            generated_at=roster.generated_at,
            lang=lang,
        )
        media_type = XLSX_MEDIA_TYPE
    else:
        content = csv_bytes(roster_table, lang=lang)
        media_type = CSV_MEDIA_TYPE
    suffix = "发放名册" if lang == "zh" else "roster"
    export = ExportFile(
        filename=f"allowance_{kind.value}_{label}.{fmt}",
        display_name=f"{title}{suffix}_{label}.{fmt}" if lang == "zh" else f"{title} {suffix} {label}.{fmt}",
        media_type=media_type,
        content=content,
        lines=len(lines),
        total_fen=totals.total_fen,
    )
    audit.record(
        session,
        actor=actor,
        action="export",
        entity=service.ENTITY,
        entity_id=roster.id,
        after={
            "format": fmt,
            "lang": lang,
            "lines": export.lines,
            "total_fen": export.total_fen,
            "sha256": hashlib.sha256(content).hexdigest(),
        },
    )
    return export
