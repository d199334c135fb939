"""The allowance roster's downloads (``GET /api/v1/billing/allowances/export``): the XLSX opened with
openpyxl and the CSV with the csv module, checked cell by cell against the roster the API returns —
headers, the frozen header row, number formats, yuan from fen, the additions and stoppages sheets,
the notes, totals reconciling to the fen — in the caller's scope, audited."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from decimal import Decimal
from typing import Any

import httpx
import openpyxl
import pytest
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.xlsx import XLSX_MEDIA_TYPE
from core.audit import AuditLog
from registry.idcard import mask_id_number
from registry.models import Elder
from tests.factories import HANCHUAN, XIAONAN, Factory
from tests.support.registry import problem_code

pytestmark = pytest.mark.integration

URL = "/api/v1/billing/allowances"
LONG_AGO = dt.datetime(2025, 1, 1, 2, tzinfo=dt.UTC)
HEADERS = [
    "序号", "区县", "老人编号", "姓名", "身份证号(脱敏)", "出生日期", "档次", "上月档次", "变动", "原因",
    "事由日期", "月标准(元)", "补发月数", "补发金额(元)", "应发金额(元)",
]  # fmt: skip
FORMATS = [
    "0",
    "@",
    "0",
    "@",
    "@",
    "yyyy-mm-dd",
    "@",
    "@",
    "@",
    "@",
    "yyyy-mm-dd",
    "#,##0.00",
    "0",
    "#,##0.00",
    "#,##0.00",
]


def naive(day: str) -> dt.datetime:
    """A date cell as openpyxl reads it back (spreadsheets have no time zones)."""
    return dt.datetime.fromisoformat(day)


async def elders(make: Factory) -> dict[str, Elder]:
    """Four elders whose November lines differ: continued, added late with back-pay, stopped, and one
    in another district; with a name that looks like a formula."""
    return {
        "keeps": await make.elder(XIAONAN, name="=张三", birth_on=dt.date(1940, 3, 10), created_at=LONG_AGO),
        "late": await make.elder(
            XIAONAN,
            name="李四",
            birth_on=dt.date(1936, 4, 2),
            created_at=dt.datetime(2026, 10, 15, 4, tzinfo=dt.UTC),
        ),
        "died": await make.elder(
            XIAONAN,
            name="王五",
            birth_on=dt.date(1925, 11, 1),
            created_at=LONG_AGO,
            status="deceased",
            status_on=dt.date(2026, 10, 3),
        ),
        "elsewhere": await make.elder(
            HANCHUAN, name="赵六", birth_on=dt.date(1944, 1, 1), created_at=LONG_AGO
        ),
    }


async def generated(client: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    r = await client.post(URL, json={"month": "2026-11", "kind": "old_age"}, headers=headers)
    assert r.status_code == 200, r.text
    r = await client.get(URL, params={"month": "2026-11", "kind": "old_age", "limit": 200}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] <= 200, "one page holds the roster"
    return body


async def download(client: httpx.AsyncClient, headers: dict[str, str], **params: str) -> httpx.Response:
    r = await client.get(
        f"{URL}/export", params={"month": "2026-11", "kind": "old_age", **params}, headers=headers
    )
    assert r.status_code == 200, r.text
    return r


def rows_of(ws: Worksheet) -> list[list[Any]]:
    return [[c.value for c in row] for row in ws.iter_rows()]


async def test_xlsx_roster_cell_by_cell(client: httpx.AsyncClient, make: Factory, db: AsyncSession) -> None:
    admin = await make.admin()
    who = await elders(make)
    roster = await generated(client, admin.headers)
    r = await download(client, admin.headers)
    assert r.headers["content-type"] == XLSX_MEDIA_TYPE
    assert r.headers["content-disposition"].startswith(
        'attachment; filename="allowance_old_age_2026-11.xlsx"'
    )
    assert "filename*=UTF-8''" in r.headers["content-disposition"]

    wb = openpyxl.load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["发放名册", "新增明细", "停发明细", "说明"]
    ws = wb["发放名册"]
    assert isinstance(ws, Worksheet)
    assert ws.freeze_panes == "A2"
    rows = rows_of(ws)
    assert rows[0] == HEADERS
    assert all(ws.cell(1, j).font.b for j in range(1, len(HEADERS) + 1))
    assert [ws.cell(2, j).number_format for j in range(1, len(HEADERS) + 1)] == FORMATS
    assert len(rows) == 1 + roster["total"] + 1  # header, a row per line, totals

    # Each line as the API returns it, in the same order.
    for n, (row, line) in enumerate(zip(rows[1:-1], roster["items"], strict=True), start=1):
        assert row[0] == n
        assert row[1:4] == [line["district_name"], line["elder_id"], line["elder_name"]]
        assert row[4] == line["id_number_masked"]
        assert row[5] == naive(line["birth_on"])
        assert Decimal(str(row[11])) == Decimal(line["monthly_fen"]) / 100
        assert row[12] == line["backpay_months"]
        assert Decimal(str(row[13])) == Decimal(line["backpay_fen"]) / 100
        assert Decimal(str(row[14])) == Decimal(line["amount_fen"]) / 100

    by_id = {row[2]: row for row in rows[1:-1]}
    keeps = by_id[who["keeps"].id]
    assert keeps[3] == "=张三"
    assert ws.cell(rows.index(keeps) + 1, 4).data_type == "s"
    assert keeps[4] == mask_id_number(who["keeps"].id_number)
    assert keeps[6:11] == ["80-89岁", "80-89岁", "续发", "正常发放", None]
    assert keeps[11:] == [50, 0, 0, 50]
    late = by_id[who["late"].id]
    # 90 on 2 April: back-pay November 2025-April 2026 at 50 yuan, May-October at 100.
    assert late[6:11] == ["90-99岁", None, "新增", "逾期登记,补发", None]
    assert late[11:] == [100, 12, 900, 1000]
    died = by_id[who["died"].id]
    assert died[6:11] == ["100+岁", "100+岁", "停发", "死亡(次月停发)", naive("2026-10-03")]
    assert died[11:] == [0, 0, 0, 0]

    # The totals row is the sum of the rows and the roster's total, to the fen.
    totals = rows[-1]
    assert totals[0] == "合计"
    assert totals[1:11] == [None] * 10
    t = roster["totals"]
    assert Decimal(str(totals[14])) == Decimal(t["total_fen"]) / 100
    assert Decimal(str(totals[11])) == Decimal(t["monthly_fen"]) / 100
    assert Decimal(str(totals[13])) == Decimal(t["backpay_fen"]) / 100
    assert totals[12] == t["backpay_months"]
    assert sum(Decimal(str(row[14])) for row in rows[1:-1]) == Decimal(t["total_fen"]) / 100
    assert ws.cell(len(rows), 15).number_format == "#,##0.00"

    # The additions and stoppages sheets hold exactly those lines.
    added = rows_of(wb["新增明细"])
    assert {row[2] for row in added[1:-1]} == {
        x["elder_id"] for x in roster["items"] if x["change"] == "added"
    }
    assert who["late"].id in {row[2] for row in added[1:-1]}
    assert wb["新增明细"].freeze_panes == "A2"
    stopped = rows_of(wb["停发明细"])
    assert {row[2] for row in stopped[1:-1]} == {
        x["elder_id"] for x in roster["items"] if x["change"] == "stopped"
    }
    assert stopped[-1][14] == 0

    notes = dict(rows_of(wb["说明"]))
    assert (notes["月份"], notes["状态"], notes["依据数据日"], notes["范围"]) == (
        "2026-11",
        "未关账",
        "2026-10-31",
        "全市",
    )
    assert notes["应发合计(分)"] == str(t["total_fen"])
    assert notes["校验码"] == roster["checksum"]

    entry = await db.scalar(
        select(AuditLog).where(AuditLog.entity == "allowance_roster", AuditLog.action == "export")
    )
    assert entry is not None
    assert entry.actor_user_id == admin.user_id
    assert entry.after == {
        "format": "xlsx",
        "lang": "zh",
        "lines": roster["total"],
        "total_fen": t["total_fen"],
        "sha256": hashlib.sha256(r.content).hexdigest(),
    }
    # The same roster downloads as the same bytes.
    assert (await download(client, admin.headers)).content == r.content


async def test_csv_roster_reconciles_and_opens_in_excel(client: httpx.AsyncClient, make: Factory) -> None:
    admin = await make.admin()
    who = await elders(make)
    roster = await generated(client, admin.headers)
    r = await download(client, admin.headers, format="csv")
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == HEADERS
    assert len(rows) == roster["total"] + 2
    by_id = {int(row[2]): row for row in rows[1:-1]}
    assert by_id[who["keeps"].id][3] == "'=张三"  # no formula when Excel opens it
    assert by_id[who["late"].id][5:] == [
        "1936-04-02",
        "90-99岁",
        "",
        "新增",
        "逾期登记,补发",
        "",
        "100.00",
        "12",
        "900.00",
        "1000.00",
    ]
    assert by_id[who["died"].id][10:] == ["2026-10-03", "0.00", "0", "0.00", "0.00"]
    t = roster["totals"]
    assert rows[-1][0] == "合计"
    assert rows[-1][11:] == [
        f"{Decimal(t['monthly_fen']) / 100:.2f}",
        str(t["backpay_months"]),
        f"{Decimal(t['backpay_fen']) / 100:.2f}",
        f"{Decimal(t['total_fen']) / 100:.2f}",
    ]
    assert sum(Decimal(row[14]) for row in rows[1:-1]) == Decimal(t["total_fen"]) / 100


async def test_an_officer_downloads_their_districts(client: httpx.AsyncClient, make: Factory) -> None:
    officer = await make.civil_affairs(XIAONAN)
    who = await elders(make)
    roster = await generated(client, officer.headers)
    r = await download(client, officer.headers, lang="en")
    wb = openpyxl.load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["Roster", "Additions", "Stoppages", "About"]
    rows = rows_of(wb["Roster"])
    assert rows[0][:4] == ["No.", "District", "Elder ID", "Name"]
    ids = {row[2] for row in rows[1:-1]}
    assert who["keeps"].id in ids
    assert who["elsewhere"].id not in ids
    assert ids == {x["elder_id"] for x in roster["items"]}
    assert rows[-1][0] == "Total"
    assert Decimal(str(rows[-1][14])) == Decimal(roster["totals"]["total_fen"]) / 100
    notes = dict(rows_of(wb["About"]))
    assert notes["Scope"] == f"District ids {(await make.district(XIAONAN)).id}"
    assert notes["State"] == "open"
    late = next(row for row in rows[1:-1] if row[2] == who["late"].id)
    assert late[6:10] == ["90-99", None, "Added", "Registered late, back-paid"]


async def test_export_of_a_month_not_generated_is_not_found(client: httpx.AsyncClient, make: Factory) -> None:
    admin = await make.admin()
    r = await client.get(
        f"{URL}/export", params={"month": "2026-07", "kind": "disability"}, headers=admin.headers
    )
    assert (r.status_code, problem_code(r)) == (404, "allowance.roster_not_found")
    r = await client.get(
        f"{URL}/export",
        params={"month": "2026-11", "kind": "old_age", "format": "pdf"},
        headers=admin.headers,
    )
    assert r.status_code == 422
