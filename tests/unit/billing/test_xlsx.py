"""The table writer (billing.xlsx): files opened again with openpyxl (XLSX) and the csv module, and
checked cell by cell: headers, the frozen header row, number formats, yuan from fen exactly, totals,
widths, the notes sheet, text that looks like a formula, the byte-order mark, determinism."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from decimal import Decimal

import openpyxl
import pytest
from openpyxl.worksheet.worksheet import Worksheet

from billing.xlsx import Column, ColumnKind, Table, csv_bytes, display_width, xlsx_bytes, yuan

pytestmark = pytest.mark.unit

K = ColumnKind
AT = dt.datetime(2026, 12, 1, 2, 30, tzinfo=dt.UTC)  # 10:30 in Shanghai


def naive(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """What openpyxl reads back for a date or time cell: a naive datetime (local wall-clock time)."""
    return dt.datetime(year, month, day, hour, minute)  # noqa: DTZ001 - spreadsheets have no time zones


COLUMNS = (
    Column("序号", "No.", K.INTEGER),
    Column("姓名", "Name"),
    Column("出生日期", "Birth date", K.DATE),
    Column("生成时间", "Generated", K.DATETIME),
    Column("补发月数", "Back-pay months", K.INTEGER, total=True),
    Column("应发金额(元)", "Amount (yuan)", K.FEN, total=True),
)
ROWS = [
    (1, "张三", dt.date(1940, 3, 10), AT, 0, 5000),
    (2, '=HYPERLINK("x")', dt.date(1936, 4, 2), AT, 12, 130_001),
    (3, None, None, None, 3, 1),
    (4, "李四", dt.date(1926, 12, 1), AT, 0, 33),
]
TABLE = Table("发放名册", "Roster", COLUMNS, ROWS)


def sheet(data: bytes, index: int = 0) -> Worksheet:
    ws = openpyxl.load_workbook(io.BytesIO(data)).worksheets[index]
    assert isinstance(ws, Worksheet)
    return ws


def test_yuan_is_exact_with_two_decimals() -> None:
    assert [str(yuan(f)) for f in (0, 1, 10, 5000, 130_001, -250, 123_456_789)] == [
        "0.00", "0.01", "0.10", "50.00", "1300.01", "-2.50", "1234567.89",
    ]  # fmt: skip


def test_xlsx_headers_frozen_pane_filter_and_formats() -> None:
    ws = sheet(xlsx_bytes([TABLE], generated_at=AT))
    assert ws.title == "发放名册"
    assert [c.value for c in ws[1]] == ["序号", "姓名", "出生日期", "生成时间", "补发月数", "应发金额(元)"]
    assert all(c.font.b for c in ws[1])
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:F5"
    assert [ws.cell(2, j).number_format for j in range(1, 7)] == [
        "0", "@", "yyyy-mm-dd", "yyyy-mm-dd hh:mm:ss", "0", "#,##0.00",
    ]  # fmt: skip


def test_xlsx_values_cell_by_cell() -> None:
    ws = sheet(xlsx_bytes([TABLE]))
    assert [c.value for c in ws[2]] == [
        1,
        "张三",
        naive(1940, 3, 10),
        naive(2026, 12, 1, 10, 30),
        0,
        50,
    ]
    # Text that looks like a formula stays text.
    assert (ws["B3"].value, ws["B3"].data_type) == ('=HYPERLINK("x")', "s")
    assert ws["F3"].value == 1300.01
    assert Decimal(str(ws["F3"].value)) == Decimal("1300.01")
    assert [c.value for c in ws[4]] == [3, None, None, None, 3, 0.01]
    assert ws["F5"].value == 0.33


def test_xlsx_totals_row_sums_the_rows_exactly() -> None:
    ws = sheet(xlsx_bytes([TABLE]))
    total = [c.value for c in ws[6]]
    assert total == ["合计", None, None, None, 15, 1350.35]
    assert Decimal(str(ws["F6"].value)) == yuan(5000 + 130_001 + 1 + 33)
    assert ws["F6"].number_format == "#,##0.00"
    assert ws["F6"].font.b
    assert ws.max_row == 6


def test_xlsx_widths_fit_the_longest_value_with_wide_characters_counted_double() -> None:
    ws = sheet(xlsx_bytes([TABLE]))
    assert display_width("应发金额(元)") == 12
    assert ws.column_dimensions["F"].width == 14  # the header, 12 + 2
    assert ws.column_dimensions["B"].width == len('=HYPERLINK("x")') + 2
    assert ws.column_dimensions["D"].width == len("2026-12-01 10:30:00") + 2
    fixed = Table("t", "t", (Column("a", "a", width=30),), [("x",)])
    assert sheet(xlsx_bytes([fixed])).column_dimensions["A"].width == 30


def test_xlsx_in_english_with_several_sheets_and_notes() -> None:
    other = Table("新增明细", "Additions", COLUMNS[:2], [(1, "张三")])
    data = xlsx_bytes(
        [TABLE, other], notes=[("Month", "2026-12"), ("Policy", "allowance.old_age")], lang="en"
    )
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["Roster", "Additions", "About"]
    assert [c.value for c in wb["Roster"][1]][:2] == ["No.", "Name"]
    assert wb["Roster"]["A6"].value == "Total"
    assert wb["Additions"].max_row == 2  # no totals row: no column is summed
    assert [[c.value for c in r] for r in wb["About"].iter_rows()] == [
        ["Month", "2026-12"],
        ["Policy", "allowance.old_age"],
    ]


def test_xlsx_is_deterministic() -> None:
    first = xlsx_bytes([TABLE], generated_at=AT)
    assert xlsx_bytes([TABLE], generated_at=AT) == first
    assert xlsx_bytes([TABLE], generated_at=AT + dt.timedelta(seconds=1)) != first
    with zipfile.ZipFile(io.BytesIO(first)) as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    props = openpyxl.load_workbook(io.BytesIO(first)).properties
    assert props.created == props.modified == naive(2026, 12, 1, 2, 30)


def test_csv_has_a_bom_crlf_yuan_and_totals() -> None:
    data = csv_bytes(TABLE)
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    assert text.endswith("\r\n")
    assert "\r\n" in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["序号", "姓名", "出生日期", "生成时间", "补发月数", "应发金额(元)"]
    assert rows[1] == ["1", "张三", "1940-03-10", "2026-12-01 10:30:00", "0", "50.00"]
    assert rows[2][1] == '\'=HYPERLINK("x")'  # formula injection neutralised
    assert rows[3] == ["3", "", "", "", "3", "0.01"]
    assert rows[5] == ["合计", "", "", "", "15", "1350.35"]
    assert len(rows) == 6
    assert next(iter(csv.reader(io.StringIO(csv_bytes(TABLE, lang="en").decode("utf-8-sig")))))[1] == "Name"


def test_decimal_quantities_keep_their_digits_in_xlsx_and_csv() -> None:
    table = Table(
        "t", "t", (Column("数量", "Quantity", K.DECIMAL),), [(Decimal("1.50"),), (Decimal("0.75"),)]
    )
    ws = sheet(xlsx_bytes([table]))
    assert [ws["A2"].value, ws["A3"].value] == [1.5, 0.75]
    assert ws["A2"].number_format == "0.00"
    assert ws.max_row == 3  # a quantity is not summed: no totals row
    rows = list(csv.reader(io.StringIO(csv_bytes(table).decode("utf-8-sig"))))
    assert rows == [["数量"], ["1.50"], ["0.75"]]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (Column("金额", "Amount", K.FEN), 50.0),
        (Column("金额", "Amount", K.FEN), True),
        (Column("金额", "Amount", K.FEN), Decimal("50.00")),
        (Column("日期", "Day", K.DATE), dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
        (Column("时间", "At", K.DATETIME), dt.datetime(2026, 1, 1)),  # noqa: DTZ001 - naive on purpose
        (Column("姓名", "Name"), 12),
        (Column("数量", "Quantity", K.DECIMAL), 1.5),
        (Column("数量", "Quantity", K.DECIMAL), Decimal("NaN")),
    ],
)
def test_a_wrongly_typed_cell_is_refused_before_writing(column: Column, value: object) -> None:
    with pytest.raises(TypeError, match="row 1"):
        Table("t", "t", (column,), [(value,)])  # type: ignore[list-item]


def test_bad_tables_are_refused() -> None:
    with pytest.raises(ValueError, match="only integer and fen"):
        Column("姓名", "Name", total=True)
    with pytest.raises(ValueError, match="only integer and fen"):
        Column("数量", "Quantity", K.DECIMAL, total=True)
    with pytest.raises(ValueError, match="2 cells for 1 columns"):
        Table("t", "t", (Column("a", "a"),), [("x", "y")])
    with pytest.raises(ValueError, match="sheet title"):
        Table("a/b", "t", (Column("a", "a"),))
    with pytest.raises(ValueError, match="repeat"):
        xlsx_bytes([TABLE, TABLE])
