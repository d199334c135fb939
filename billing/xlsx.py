"""Tables to spreadsheet files: XLSX (openpyxl) and CSV, for every billing export.

The API: describe a table as typed columns and rows of plain values, get bytes back.

    from billing.xlsx import Column, ColumnKind as K, Table, csv_bytes, xlsx_bytes

    table = Table(
        title="发放名册", title_en="Roster",
        columns=(
            Column("姓名", "Name"),                                    # TEXT: str
            Column("出生日期", "Birth date", K.DATE),                  # datetime.date
            Column("补发月数", "Back-pay months", K.INTEGER, total=True),
            Column("应发金额(元)", "Amount (yuan)", K.FEN, total=True),  # int fen, shown in yuan
        ),
        rows=[("张三", date(1940, 3, 10), 0, 5000), ...],
    )
    xlsx_bytes([table], notes=[("月份", "2026-12")], generated_at=now)   # one sheet per table
    csv_bytes(table)                                                    # one table

Column kinds and their cells (``None`` is an empty cell in every kind):

* ``TEXT`` — ``str``; written as text even when it starts with ``=`` (never a formula); in CSV a
  value starting with ``= + - @`` or a tab is prefixed with ``'`` (formula injection, OWASP).
* ``INTEGER`` — ``int`` (ids, counts), number format ``0``.
* ``FEN`` — ``int`` fen, written as yuan with exactly two decimals computed with ``Decimal``
  (``5001`` → ``50.01``; no float ever holds money), number format ``#,##0.00``; ``-`` for negatives
  as usual.
* ``DECIMAL`` — a ``Decimal`` quantity with two decimals (hours of a service), number format
  ``0.00``; written as it is (the caller quantizes it), never through a float.
* ``DATE`` — ``datetime.date``, ``yyyy-mm-dd``.
* ``DATETIME`` — an aware ``datetime.datetime``, shown in Asia/Shanghai, ``yyyy-mm-dd hh:mm:ss``.

A wrong type in a cell is a :class:`TypeError` naming the row and column, before anything is written.

What every file gets: the header row in Chinese (``lang="zh"``, the default) or English
(``lang="en"``), bold on a tinted fill, frozen (XLSX: the pane below row 1, with an autofilter over
the data); column widths from the longest value (CJK characters count double) unless a column gives
``width``; a totals row (合计 / Total) when any column has ``total=True``, summing that column's
integers exactly (fen in fen, then shown in yuan), so the file's totals are the sums of its rows.
``notes`` (label, value pairs: the month, the policy applied, when generated…) go to a last sheet
(说明 / About) in XLSX; CSV is the one table, UTF-8 with a byte-order mark so that Excel opens Chinese
text, CRLF line ends.

Output is deterministic: the same tables, notes and ``generated_at`` give byte-identical files (the
workbook's dates are ``generated_at``, the archive's entries carry a fixed timestamp), so a file's
hash can stand for its content.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import unicodedata
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Literal

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

from core.clock import SHANGHAI

Lang = Literal["zh", "en"]
Cell = str | int | Decimal | dt.date | None

XLSX_MEDIA_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA_TYPE: Final = "text/csv"  # served with "; charset=utf-8" (the encoding it is written in)

_CENT: Final = Decimal("0.01")
_ZIP_TIME: Final = (1980, 1, 1, 0, 0, 0)  # the earliest a zip entry can carry: "no particular time"
_SHEET_FORBIDDEN: Final = frozenset("[]:*?/\\")
_CSV_RISKY: Final = ("=", "+", "-", "@", "\t", "\r")
_TOTAL_LABEL: Final = {"zh": "合计", "en": "Total"}
_NOTES_TITLE: Final = {"zh": "说明", "en": "About"}
_HEADER_FILL: Final = PatternFill(fill_type="solid", start_color="FFD9E1F2", end_color="FFD9E1F2")
_MIN_WIDTH: Final = 6.0
_MAX_WIDTH: Final = 60.0


class ColumnKind(enum.StrEnum):
    TEXT = "text"
    INTEGER = "integer"
    FEN = "fen"
    DECIMAL = "decimal"
    DATE = "date"
    DATETIME = "datetime"


_NUMBER_FORMAT: Final = {
    ColumnKind.TEXT: "@",
    ColumnKind.INTEGER: "0",
    ColumnKind.FEN: "#,##0.00",
    ColumnKind.DECIMAL: "0.00",
    ColumnKind.DATE: "yyyy-mm-dd",
    ColumnKind.DATETIME: "yyyy-mm-dd hh:mm:ss",
}


@dataclass(frozen=True, slots=True)
class Column:
    """A column: its header in Chinese and English, the kind of its cells, whether the totals row
    sums it (``INTEGER`` and ``FEN`` only) and a fixed width in characters (else measured)."""

    header: str
    header_en: str
    kind: ColumnKind = ColumnKind.TEXT
    total: bool = False
    width: float | None = None

    def __post_init__(self) -> None:
        if self.total and self.kind not in (ColumnKind.INTEGER, ColumnKind.FEN):
            raise ValueError(f"column {self.header!r}: only integer and fen columns have totals")

    def title(self, lang: Lang) -> str:
        return self.header if lang == "zh" else self.header_en


@dataclass(frozen=True, slots=True)
class Table:
    """One sheet: a title (the sheet's name, ≤ 31 characters), its columns and its rows."""

    title: str
    title_en: str
    columns: tuple[Column, ...]
    rows: Sequence[Sequence[Cell]] = field(default=())

    def __post_init__(self) -> None:
        for name in (self.title, self.title_en):
            if not 0 < len(name) <= 31 or _SHEET_FORBIDDEN.intersection(name):
                raise ValueError(f"sheet title {name!r}: 1-31 characters, none of []:*?/\\")
        if not self.columns:
            raise ValueError(f"table {self.title!r} has no columns")
        for i, row in enumerate(self.rows, start=1):
            if len(row) != len(self.columns):
                raise ValueError(f"{self.title} row {i}: {len(row)} cells for {len(self.columns)} columns")
            for col, value in zip(self.columns, row, strict=True):
                _check(col, value, f"{self.title} row {i}, column {col.header!r}")

    @property
    def has_totals(self) -> bool:
        return any(c.total for c in self.columns)

    def totals(self) -> list[int | None]:
        """The totals row's values: the exact integer sum of each summed column, else ``None``."""
        out: list[int | None] = []
        for i, col in enumerate(self.columns):
            out.append(sum(v for r in self.rows if isinstance(v := r[i], int)) if col.total else None)
        return out

    def label_column(self) -> int | None:
        """Where the totals row says 合计 / Total: the first column it does not sum (0-based)."""
        return next((i for i, c in enumerate(self.columns) if not c.total), None)

    def name(self, lang: Lang) -> str:
        return self.title if lang == "zh" else self.title_en


def _check(col: Column, value: Cell, where: str) -> None:
    if value is None:
        return
    kind = col.kind
    ok = {
        ColumnKind.TEXT: isinstance(value, str),
        ColumnKind.INTEGER: isinstance(value, int) and not isinstance(value, bool),
        ColumnKind.FEN: isinstance(value, int) and not isinstance(value, bool),
        ColumnKind.DECIMAL: isinstance(value, Decimal) and value.is_finite(),
        ColumnKind.DATE: isinstance(value, dt.date) and not isinstance(value, dt.datetime),
        ColumnKind.DATETIME: isinstance(value, dt.datetime) and value.tzinfo is not None,
    }[kind]
    if not ok:
        raise TypeError(f"{where}: {value!r} is not a {kind.value} cell")


def yuan(fen: int) -> Decimal:
    """Integer fen as yuan with exactly two decimals (exact: a division by 100 needs no rounding)."""
    return (Decimal(fen) / 100).quantize(_CENT)


def _local(at: dt.datetime) -> dt.datetime:
    """An aware instant as Asia/Shanghai wall-clock time, naive (spreadsheets have no time zones)."""
    return at.astimezone(SHANGHAI).replace(tzinfo=None)


def _xlsx_value(kind: ColumnKind, value: Cell) -> str | int | Decimal | dt.date | None:
    if value is None:
        return None
    if kind == ColumnKind.FEN:
        assert isinstance(value, int)
        return yuan(value)
    if kind == ColumnKind.DATETIME:
        assert isinstance(value, dt.datetime)
        return _local(value)
    return value


def _text(kind: ColumnKind, value: Cell) -> str:
    """A cell as text: what CSV writes and what column widths measure."""
    if value is None:
        return ""
    if kind == ColumnKind.FEN:
        assert isinstance(value, int)
        return str(yuan(value))
    if kind == ColumnKind.DATETIME:
        assert isinstance(value, dt.datetime)
        return _local(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def display_width(text: str) -> int:
    """Characters as a spreadsheet shows them: East Asian wide and full-width characters count 2."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _widths(table: Table, lang: Lang) -> list[float]:
    out = []
    for i, col in enumerate(table.columns):
        if col.width is not None:
            out.append(col.width)
            continue
        longest = max(
            [display_width(col.title(lang)), *(display_width(_text(col.kind, r[i])) for r in table.rows)]
        )
        out.append(min(_MAX_WIDTH, max(_MIN_WIDTH, longest + 2.0)))
    return out


def _fill_sheet(ws: Worksheet, table: Table, lang: Lang) -> None:
    ws.title = table.name(lang)
    bold = Font(bold=True)
    for j, col in enumerate(table.columns, start=1):
        cell = ws.cell(row=1, column=j, value=col.title(lang))
        cell.data_type = "s"
        cell.font = bold
        cell.fill = _HEADER_FILL
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for i, row in enumerate(table.rows, start=2):
        for j, (col, value) in enumerate(zip(table.columns, row, strict=True), start=1):
            cell = ws.cell(row=i, column=j, value=_xlsx_value(col.kind, value))
            if col.kind == ColumnKind.TEXT and value is not None:
                cell.data_type = "s"  # a name starting with "=" is text, never a formula
            cell.number_format = _NUMBER_FORMAT[col.kind]
    last = len(table.rows) + 1
    if table.has_totals:
        last += 1
        at = table.label_column()
        if at is not None:
            label = ws.cell(row=last, column=at + 1, value=_TOTAL_LABEL[lang])
            label.data_type = "s"
            label.font = bold
        for j, (col, total) in enumerate(zip(table.columns, table.totals(), strict=True), start=1):
            if total is None:
                continue
            cell = ws.cell(row=last, column=j, value=_xlsx_value(col.kind, total))
            cell.number_format = _NUMBER_FORMAT[col.kind]
            cell.font = bold
    ws.freeze_panes = "A2"
    end = get_column_letter(len(table.columns))
    ws.auto_filter.ref = f"A1:{end}{len(table.rows) + 1}"
    for j, width in enumerate(_widths(table, lang), start=1):
        ws.column_dimensions[get_column_letter(j)].width = width


def _notes_sheet(wb: Workbook, notes: Sequence[tuple[str, str]], lang: Lang) -> None:
    ws = wb.create_sheet(_NOTES_TITLE[lang])
    for i, (label, value) in enumerate(notes, start=1):
        for j, text in enumerate((label, value), start=1):
            cell = ws.cell(row=i, column=j, value=text)
            cell.data_type = "s"
            if j == 1:
                cell.font = Font(bold=True)
    for j, texts in enumerate(zip(*notes, strict=True), start=1):
        width = max(display_width(t) for t in texts) + 2.0
        ws.column_dimensions[get_column_letter(j)].width = min(_MAX_WIDTH * 2, max(_MIN_WIDTH, width))


def xlsx_bytes(
    tables: Sequence[Table],
    *,
    notes: Sequence[tuple[str, str]] = (),
    generated_at: dt.datetime | None = None,
    lang: Lang = "zh",
) -> bytes:
    """An XLSX workbook: one sheet per table in order, then the notes sheet if there are notes.
    ``generated_at`` (aware) dates the workbook; without it the file is dated 2000-01-01."""
    if not tables:
        raise ValueError("a workbook needs at least one table")
    names = [t.name(lang) for t in tables] + ([_NOTES_TITLE[lang]] if notes else [])
    if len(set(names)) != len(names):
        raise ValueError(f"sheet names repeat: {names}")
    wb = Workbook()
    first = wb.active
    assert isinstance(first, Worksheet)
    _fill_sheet(first, tables[0], lang)
    for table in tables[1:]:
        _fill_sheet(wb.create_sheet(), table, lang)
    if notes:
        _notes_sheet(wb, notes, lang)
    stamp = (generated_at or dt.datetime(2000, 1, 1, tzinfo=dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None)
    wb.properties.creator = "Eldercare"
    wb.properties.created = stamp
    wb.properties.modified = stamp
    raw = io.BytesIO()
    # ExcelWriter, not Workbook.save: save() stamps the workbook with the wall clock.
    ExcelWriter(wb, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, allowZip64=True)).save()
    return _fixed_zip_times(raw.getvalue())


def _fixed_zip_times(data: bytes) -> bytes:
    """The same archive with every entry dated :data:`_ZIP_TIME` (zipfile stamps the wall clock)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = info.external_attr
            dst.writestr(entry, src.read(info.filename))
    return out.getvalue()


def _csv_safe(kind: ColumnKind, value: Cell) -> str:
    text = _text(kind, value)
    if kind == ColumnKind.TEXT and text.startswith(_CSV_RISKY):
        return "'" + text
    return text


def csv_bytes(table: Table, *, lang: Lang = "zh") -> bytes:
    """The table as CSV: UTF-8 with a byte-order mark, CRLF line ends, the header row, the rows, and
    the totals row if any column has totals. Yuan as ``50.00``, dates ISO, instants local."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.title(lang) for c in table.columns])
    for row in table.rows:
        writer.writerow([_csv_safe(c.kind, v) for c, v in zip(table.columns, row, strict=True)])
    if table.has_totals:
        cells = [_text(c.kind, t) for c, t in zip(table.columns, table.totals(), strict=True)]
        at = table.label_column()
        if at is not None:
            cells[at] = _TOTAL_LABEL[lang]
        writer.writerow(cells)
    return ("\ufeff" + out.getvalue()).encode("utf-8")
