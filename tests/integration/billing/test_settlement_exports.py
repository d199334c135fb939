"""Settlement's downloads (``GET /api/v1/billing/settlement/periods/{id}/statements/{kind}/{subject}/
export``) of a small October closed through the real close: the XLSX opened with openpyxl and the CSV
with the csv module, checked cell by cell against the lines the API returns — headers, the frozen
header row, number formats, yuan from fen, the totals row — and reconciled to the fen with the
statements and the ledger (the close's transfers per provider and per district, and the net after an
officer rejects a line at review); scoped as the statement read; the same bytes every time; audited."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import openpyxl
import pytest
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.ledger_models import AccountKind, LedgerAccount, LedgerTransfer, TransferKind
from billing.settlement import close_period, ensure_period, reopen_period
from billing.settlement_exports import StatementExport, statement_export
from billing.settlement_models import StatementKind
from billing.xlsx import XLSX_MEDIA_TYPE
from core.audit import AuditLog
from core.errors import NotFound
from core.identity.authz import Principal
from core.identity.models import Role
from dispatch.models import Service
from registry.idcard import mask_id_number
from registry.models import Elder
from tests.conftest import Client
from tests.factories import HANCHUAN, Factory
from tests.support import billing as sb
from tests.support.registry import problem_code

pytestmark = pytest.mark.integration

BASE = "/api/v1/billing/settlement"
PARTS = ("ltc", "voucher", "local", "copay")
LINE_HEADERS = [
    "序号", "服务记录号", "结算类型", "区县", "老人编号", "老人姓名(脱敏)", "身份证号(脱敏)", "服务项目",
    "服务日期", "计费单位", "数量", "单价(元)", "服务金额(元)", "结算金额(元)", "长护险(元)",
    "养老服务消费补贴(元)", "政府购买居家养老服务(元)", "个人自付(元)", "结算结果", "拒付原因编号",
    "拒付原因", "审核决定", "审核意见", "审核后结算(元)", "风险提示",
]  # fmt: skip
LINE_FORMATS = [
    "0", "0", "@", "@", "0", "@", "@", "@", "yyyy-mm-dd", "@", "0.00", "#,##0.00", "#,##0.00",
    "#,##0.00", "#,##0.00", "#,##0.00", "#,##0.00", "#,##0.00", "@", "0", "@", "@", "@", "#,##0.00", "@",
]  # fmt: skip
GROUP_HEADERS = [
    "序号", "机构编号", "机构名称", "明细条数", "通过", "拒付", "服务金额(元)", "结算金额(元)", "长护险(元)",
    "养老服务消费补贴(元)", "政府购买居家养老服务(元)", "个人自付(元)", "审核驳回条数", "审核后结算(元)",
    "拒付1-服务未核验", "拒付2-计费单位与服务记录不符", "拒付3-服务不在补贴范围", "拒付4-无服务协议或合同",
    "拒付5-补贴额度已用完", "拒付6-服务当日不符合补贴条件", "拒付7-重复结算", "拒付8-核验异常未处理",
]  # fmt: skip


def yuan(fen: int) -> Decimal:
    return Decimal(fen) / 100


def dec(value: Any) -> Decimal:
    """An amount cell as openpyxl reads it back (a float holding two decimals) as an exact Decimal."""
    return Decimal(str(value)).quantize(Decimal("0.01"))


def rows_of(ws: Any) -> list[list[Any]]:
    assert isinstance(ws, Worksheet)
    return [[c.value for c in row] for row in ws.iter_rows()]


def workbook(r: httpx.Response) -> Workbook:
    return openpyxl.load_workbook(io.BytesIO(r.content))


@dataclass
class October:
    """Two providers: P in Xiaonan with lines in Xiaonan and Hanchuan (passed, rejected for units, not
    verified, not covered with the co-pay standing, an hourly service billed for 1.5 h), Q in Xiaonan."""

    p: sb.World
    q: sb.World
    hanchuan: sb.World  # Hanchuan's officer and a provider of its own (no lines)
    period_id: int
    xiaonan_id: int
    hanchuan_id: int
    elders: dict[str, Elder]
    visits: dict[str, int]


async def october(db: AsyncSession, make: Factory, client: Client) -> October:
    p = await sb.world(make)
    q = await sb.world(make)
    hanchuan = await sb.world(make, HANCHUAN)
    elders = {
        "insured": await sb.elder(make, p, level=3, ltc=True, name="欧阳小华"),
        "voucher": await sb.elder(make, p, level=2, name="李四"),
        "subsistence": await sb.elder(make, p, categories=("subsistence",), name="=王五"),
        "hanchuan": await sb.elder(make, p, district=HANCHUAN, categories=("destitute",), name="赵六"),
    }
    elders["q"] = await sb.elder(make, q, categories=("subsistence",), name="钱七")
    e = elders
    visits = {
        # CARE 1.5 h = 9000 fen: LTC 90 % = 8100, the voucher 50 % of 900 = 450, co-pay 450.
        "care": await sb.visit(
            db, p, e["insured"], service="CARE", day=dt.date(2026, 10, 2), duration_s=5400
        ),
        "short": await sb.visit(
            db, p, e["insured"], service="CLEAN", day=dt.date(2026, 10, 3), on_site_s=1800
        ),
        "not_covered": await sb.visit(db, p, e["voucher"], service="VISIT", day=dt.date(2026, 10, 8)),
        "meal": await sb.visit(db, p, e["voucher"], service="MEAL", day=dt.date(2026, 10, 9)),
        "pending": await sb.visit(
            db, p, e["subsistence"], service="CLEAN", day=dt.date(2026, 10, 4), verification="pending"
        ),
        "clean": await sb.visit(db, p, e["subsistence"], service="CLEAN", day=dt.date(2026, 10, 5)),
        "hanchuan": await sb.visit(db, p, e["hanchuan"], service="CARE", day=dt.date(2026, 10, 6)),
        "q_meal": await sb.visit(db, q, e["q"], service="MEAL", day=dt.date(2026, 10, 5)),
    }
    period = await ensure_period(session=db, month=sb.OCTOBER)
    await db.commit()
    r = await client.post(f"{BASE}/periods/{period.id}/close", headers=p.admin.headers)
    assert r.status_code == 200, r.text
    return October(
        p=p,
        q=q,
        hanchuan=hanchuan,
        period_id=period.id,
        xiaonan_id=e["insured"].district_id,
        hanchuan_id=e["hanchuan"].district_id,
        elders=elders,
        visits={k: v.id for k, v in visits.items()},
    )


async def download(
    client: httpx.AsyncClient, o: October, kind: str, subject: int, headers: dict[str, str], **params: str
) -> httpx.Response:
    r = await client.get(
        f"{BASE}/periods/{o.period_id}/statements/{kind}/{subject}/export", params=params, headers=headers
    )
    assert r.status_code == 200, r.text
    return r


async def api_lines(client: httpx.AsyncClient, o: October, headers: dict[str, str], **params: Any) -> Any:
    r = await client.get(
        f"{BASE}/periods/{o.period_id}/lines", params={"limit": 200, **params}, headers=headers
    )
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def statement(client: httpx.AsyncClient, o: October, kind: str, subject: int) -> Any:
    r = await client.get(
        f"{BASE}/periods/{o.period_id}/statements/{kind}/{subject}", headers=o.p.admin.headers
    )
    assert r.status_code == 200, r.text
    return r.json()["document"]


def _into(account: Any) -> Any:
    """A transfer's amount as it moves ``account``: + credited, − debited."""
    return func.sum(
        case(
            (LedgerTransfer.credit_account_id == account, LedgerTransfer.amount_fen),
            else_=-LedgerTransfer.amount_fen,
        )
    )


async def close_postings_to_provider(db: AsyncSession, period_id: int, provider_id: int) -> dict[str, int]:
    """Per part, what the close's transfers (shares and co-pays) credited the provider's receivable."""
    rows = await db.execute(
        select(LedgerTransfer.part, func.sum(LedgerTransfer.amount_fen))
        .join(LedgerAccount, LedgerAccount.id == LedgerTransfer.credit_account_id)
        .where(
            LedgerAccount.code == f"provider_receivable:{provider_id}",
            LedgerTransfer.period_id == period_id,
            LedgerTransfer.kind.in_([TransferKind.SHARE.value, TransferKind.COPAY.value]),
        )
        .group_by(LedgerTransfer.part)
    )
    return {str(part): int(total) for part, total in rows.all()}


async def provider_net(db: AsyncSession, period_id: int, provider_id: int) -> int:
    """What the provider's receivable holds from the period: the close's postings less the parts taken
    back at review (payments excluded)."""
    account = select(LedgerAccount.id).where(LedgerAccount.code == f"provider_receivable:{provider_id}")
    acc = (await db.scalar(account)) or 0
    total = await db.scalar(
        select(_into(acc)).where(
            LedgerTransfer.period_id == period_id,
            LedgerTransfer.kind != TransferKind.PAYMENT.value,
            (LedgerTransfer.credit_account_id == acc) | (LedgerTransfer.debit_account_id == acc),
        )
    )
    return int(total or 0)


async def close_postings_of_district(db: AsyncSession, period_id: int, district_id: int) -> dict[str, int]:
    """Per part, what the close moved out of the district's payer funds and its elders' co-pay accounts."""
    rows = await db.execute(
        select(LedgerTransfer.part, func.sum(LedgerTransfer.amount_fen))
        .join(LedgerAccount, LedgerAccount.id == LedgerTransfer.debit_account_id)
        .outerjoin(Elder, Elder.id == LedgerAccount.elder_id)
        .where(
            LedgerTransfer.period_id == period_id,
            LedgerTransfer.kind.in_([TransferKind.SHARE.value, TransferKind.COPAY.value]),
            (
                and_(
                    LedgerAccount.kind == AccountKind.PAYER_FUND.value,
                    LedgerAccount.district_id == district_id,
                )
                | and_(LedgerAccount.kind == AccountKind.ELDER_COPAY.value, Elder.district_id == district_id)
            ),
        )
        .group_by(LedgerTransfer.part)
    )
    return {str(part): int(total) for part, total in rows.all()}


# --- The provider statement ----------------------------------------------------------------------------


async def test_provider_statement_xlsx_cell_by_cell_and_reconciled_with_the_ledger(
    db: AsyncSession, make: Factory, client: Client
) -> None:
    o = await october(db, make, client)
    pid = o.p.provider.id
    r = await download(client, o, "provider", pid, o.p.admin.headers)
    assert r.headers["content-type"] == XLSX_MEDIA_TYPE
    assert r.headers["content-disposition"].startswith(
        f"attachment; filename=\"settlement_2026-10_provider_{pid}.xlsx\"; filename*=UTF-8''"
    )
    wb = workbook(r)
    assert wb.sheetnames == ["结算明细", "按区县", "按支付方", "拒付原因", "说明"]
    for name in wb.sheetnames[:-1]:
        assert wb[name].freeze_panes == "A2", name
    ws = wb["结算明细"]
    assert isinstance(ws, Worksheet)
    rows = rows_of(ws)
    assert rows[0] == LINE_HEADERS
    assert all(ws.cell(1, j).font.b for j in range(1, len(LINE_HEADERS) + 1))
    assert [ws.cell(2, j).number_format for j in range(1, len(LINE_HEADERS) + 1)] == LINE_FORMATS

    # Every line the API shows, once, by service day; each cell from the line as the API has it.
    lines = await api_lines(client, o, o.p.admin.headers, provider_id=pid)
    assert len(rows) == 1 + len(lines) + 1
    assert [row[0] for row in rows[1:-1]] == list(range(1, len(lines) + 1))
    by_visit = {x["visit_id"]: x for x in lines}
    assert {row[1] for row in rows[1:-1]} == set(by_visit)
    days = [row[8] for row in rows[1:-1]]
    assert days == sorted(days)
    for row in rows[1:-1]:
        x = by_visit[row[1]]
        assert row[4] == x["elder_id"]
        assert row[8] == dt.datetime.fromisoformat(x["service_on"])
        assert dec(row[11]) == yuan(x["unit_price_fen"])
        assert dec(row[12]) == yuan(x["amount_fen"])
        assert dec(row[13]) == (yuan(x["amount_fen"]) if x["payable"] else 0)
        assert [dec(v) for v in row[14:18]] == [yuan(x[f"{p}_fen"]) for p in PARTS]
        assert row[19] == x["reason"]
        assert row[21] == ("待审核" if x["outcome"] == "passed" else None)
        assert dec(row[23]) == dec(row[13])  # nothing rejected at review yet

    v = {k: next(row for row in rows[1:-1] if row[1] == vid) for k, vid in o.visits.items() if k != "q_meal"}
    insured = o.elders["insured"]
    assert v["care"][2:11] == [
        "正常", "孝南区", insured.id, "欧**华", mask_id_number(insured.id_number), "基础照护",
        dt.datetime(2026, 10, 2), "小时", 1.5,  # noqa: DTZ001 - a date cell reads back naive
    ]  # fmt: skip
    assert [dec(c) for c in v["care"][11:18]] == [
        Decimal("60.00"), Decimal("90.00"), Decimal("90.00"), Decimal("81.00"), Decimal("4.50"), 0,
        Decimal("4.50"),
    ]  # fmt: skip
    assert v["care"][18:23] == ["通过", None, None, "待审核", None]
    assert v["short"][18:22] == ["拒付", 2, "计费单位与服务记录不符", None]
    assert dec(v["short"][13]) == 0
    assert v["not_covered"][18:21] == ["补贴拒付(自付照收)", 3, "服务不在补贴范围"]
    assert [dec(c) for c in v["not_covered"][12:18]] == [30, 30, 0, 0, 0, 30]
    assert v["meal"][9:11] == ["餐", 1]
    assert v["pending"][18:21] == ["拒付", 1, "服务未核验"]
    assert v["clean"][5] == "=*五"  # written as text, never a formula
    assert ws.cell(rows.index(v["clean"]) + 1, 6).data_type == "s"
    assert v["hanchuan"][3] == "汉川市"

    # The totals row sums the rows in fen, equals the statement as closed and the close's transfers.
    doc = await statement(client, o, "provider", pid)
    totals = rows[-1]
    assert totals[0] == "合计"
    assert totals[1:12] == [None] * 11
    assert dec(totals[13]) == yuan(doc["amount_fen"])
    assert [dec(t) for t in totals[14:18]] == [yuan(doc[f"{p}_fen"]) for p in PARTS]
    assert dec(totals[12]) == yuan(sum(x["amount_fen"] for x in lines))
    assert sum(dec(row[13]) for row in rows[1:-1]) == dec(totals[13])
    posted = await close_postings_to_provider(db, o.period_id, pid)
    assert {p: int(dec(t) * 100) for p, t in zip(PARTS, totals[14:18], strict=True) if dec(t)} == posted
    assert ws.cell(len(rows), 14).number_format == "#,##0.00"
    assert ws.cell(len(rows), 14).font.b

    # Per district: the provider's Xiaonan and Hanchuan lines, summing to the same totals.
    districts = rows_of(wb["按区县"])
    assert districts[0][:3] == ["序号", "区县编号", "区县名称"]
    assert [(d[1], d[2]) for d in districts[1:-1]] == sorted(
        [(o.xiaonan_id, "孝南区"), (o.hanchuan_id, "汉川市")]
    )
    assert districts[-1][0] == "合计"
    assert districts[-1][3:6] == [doc["lines"], doc["passed"], doc["lines"] - doc["passed"]]
    assert [dec(t) for t in districts[-1][7:12]] == [dec(totals[13]), *(dec(t) for t in totals[14:18])]
    assert districts[-1][14:] == [doc["rejected"][str(n)] for n in range(1, 9)]
    payers = rows_of(wb["按支付方"])
    assert payers[0] == ["支付方", "结算金额(元)", "审核后结算(元)"]
    assert [p[0] for p in payers[1:]] == [
        "长护险",
        "养老服务消费补贴",
        "政府购买居家养老服务",
        "个人自付",
        "合计",
    ]
    assert [dec(p[1]) for p in payers[1:-1]] == [yuan(doc[f"{p}_fen"]) for p in PARTS]
    assert dec(payers[-1][1]) == yuan(doc["amount_fen"])
    reasons = rows_of(wb["拒付原因"])
    assert [(x[0], x[1], x[3]) for x in reasons[1:-1]] == [
        (n, code, doc["rejected"][str(n)])
        for n, code in enumerate(
            ["no_verified_visit", "units_mismatch", "not_covered", "not_contracted", "cap_reached",
             "not_eligible", "duplicate", "unresolved_exception"], start=1,
        )
    ]  # fmt: skip
    assert reasons[-1][3] == sum(doc["rejected"].values())

    notes = dict(rows_of(wb["说明"]))
    summaries = (
        await client.get(f"{BASE}/periods/{o.period_id}/statements", headers=o.p.admin.headers)
    ).json()
    mine = next(s for s in summaries if s["kind"] == "provider" and s["subject_id"] == pid)
    assert (notes["结算单"], notes["结算月份"], notes["期间状态"], notes["范围"]) == (
        "机构结算明细", "2026-10", "已关账", "全部",
    )  # fmt: skip
    assert notes["结算单校验码(SHA-256)"] == mine["sha256"]
    assert notes["结算单版本"] == str(mine["version"])
    assert notes["结算单结算金额(分)"] == notes["结算金额合计(分)"] == str(doc["amount_fen"])

    # The same period downloads as the same bytes; each download is audited with the file's digest.
    again = await download(client, o, "provider", pid, o.p.admin.headers, lang="zh-CN")
    assert again.content == r.content
    entries = (
        await db.scalars(
            select(AuditLog).where(AuditLog.entity == "settlement_statement", AuditLog.action == "export")
        )
    ).all()
    assert len(entries) == 2
    assert entries[0].actor_user_id == o.p.admin.user_id
    assert entries[0].after is not None
    assert entries[0].after["sha256"] == hashlib.sha256(r.content).hexdigest()
    assert (entries[0].after["lines"], entries[0].after["settled_fen"]) == (len(lines), doc["amount_fen"])


async def test_a_line_rejected_at_review_is_left_out_after_review_as_in_the_ledger(
    db: AsyncSession, make: Factory, client: Client
) -> None:
    o = await october(db, make, client)
    pid = o.p.provider.id
    before = rows_of(workbook(await download(client, o, "provider", pid, o.p.admin.headers))["结算明细"])
    assert int(dec(before[-1][23]) * 100) == await provider_net(db, o.period_id, pid)
    line = next(
        x
        for x in await api_lines(client, o, o.p.admin.headers, provider_id=pid)
        if x["visit_id"] == o.visits["care"]
    )
    r = await client.post(
        f"{BASE}/lines/{line['id']}/decision",
        headers=o.p.officer.headers,
        json={"decision": "rejected", "reason": "回访未接通"},
    )
    assert r.status_code == 200, r.text
    after = rows_of(workbook(await download(client, o, "provider", pid, o.p.admin.headers))["结算明细"])
    row = next(x for x in after[1:-1] if x[1] == o.visits["care"])
    assert row[21:24] == ["驳回", "回访未接通", 0]
    # The statement as closed does not change; what is still owed is the ledger's net, to the fen.
    assert after[-1][12:18] == before[-1][12:18]
    assert dec(after[-1][23]) == dec(before[-1][23]) - Decimal("90.00")
    assert int(dec(after[-1][23]) * 100) == await provider_net(db, o.period_id, pid)
    # As of before the close there was no statement; as of now it is the latest one.
    r = await client.get(
        f"{BASE}/periods/{o.period_id}/statements/provider/{pid}/export",
        params={"as_of": "2026-11-01T00:00:00+08:00"},
        headers=o.p.admin.headers,
    )
    assert (r.status_code, problem_code(r)) == (404, "settlement_statement.not_found")


async def test_provider_statement_csv_and_english(db: AsyncSession, make: Factory, client: Client) -> None:
    o = await october(db, make, client)
    pid = o.p.provider.id
    r = await download(client, o, "provider", pid, o.p.admin.headers, format="csv")
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.content.startswith(b"\xef\xbb\xbf")
    assert r.content.endswith(b"\r\n")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == LINE_HEADERS
    care = next(row for row in rows[1:-1] if row[1] == str(o.visits["care"]))
    assert care[8:18] == [
        "2026-10-02",
        "小时",
        "1.50",
        "60.00",
        "90.00",
        "90.00",
        "81.00",
        "4.50",
        "0.00",
        "4.50",
    ]
    clean = next(row for row in rows[1:-1] if row[1] == str(o.visits["clean"]))
    assert clean[5] == "'=*五"  # no formula when Excel opens it
    doc = await statement(client, o, "provider", pid)
    assert rows[-1][0] == "合计"
    assert rows[-1][13:18] == [f"{yuan(doc[k]):.2f}" for k in ("amount_fen", *(f"{p}_fen" for p in PARTS))]
    assert sum(Decimal(row[13]) for row in rows[1:-1]) == yuan(doc["amount_fen"])
    assert (await download(client, o, "provider", pid, o.p.admin.headers, format="csv")).content == r.content

    en = workbook(await download(client, o, "provider", pid, o.p.admin.headers, lang="en"))
    assert en.sheetnames == ["Lines", "By district", "By payer", "Rejections", "About"]
    lines = rows_of(en["Lines"])
    assert lines[0][:6] == ["No.", "Visit ID", "Line kind", "District", "Elder ID", "Elder (masked)"]
    assert lines[-1][0] == "Total"
    care_en = next(row for row in lines[1:-1] if row[1] == o.visits["care"])
    assert care_en[2:4] == ["Regular", "Xiaonan District"]
    care_service = await db.get(Service, "CARE")
    assert care_service is not None
    assert (care_en[7], care_en[9], care_en[18], care_en[21]) == (
        care_service.name_en, "hour", "Passed", "Not yet decided",
    )  # fmt: skip
    assert dict(rows_of(en["About"]))["Scope"] == "Everything"


# --- The district summary ------------------------------------------------------------------------------


async def test_district_summary_is_the_sum_of_its_providers_and_the_ledger(
    db: AsyncSession, make: Factory, client: Client
) -> None:
    o = await october(db, make, client)
    r = await download(client, o, "district", o.xiaonan_id, o.p.officer.headers)
    assert r.headers["content-disposition"].startswith(
        f'attachment; filename="settlement_2026-10_district_{o.xiaonan_id}.xlsx"'
    )
    wb = workbook(r)
    assert wb.sheetnames == ["按机构", "按支付方", "拒付原因", "说明"]
    ws = wb["按机构"]
    assert isinstance(ws, Worksheet)
    assert ws.freeze_panes == "A2"
    rows = rows_of(ws)
    assert rows[0] == GROUP_HEADERS
    assert [ws.cell(2, j).number_format for j in range(1, len(GROUP_HEADERS) + 1)] == (
        ["0", "0", "@", "0", "0", "0"] + ["#,##0.00"] * 6 + ["0", "#,##0.00"] + ["0"] * 8
    )
    assert [(x[1], x[2]) for x in rows[1:-1]] == sorted(
        [(o.p.provider.id, o.p.provider.name), (o.q.provider.id, o.q.provider.name)]
    )
    # Each provider's row is its Xiaonan lines, as the lines API has them.
    for row in rows[1:-1]:
        lines = await api_lines(client, o, o.p.admin.headers, provider_id=row[1], district_id=o.xiaonan_id)
        payable = [x for x in lines if x["payable"]]
        assert row[3:6] == [
            len(lines),
            sum(x["outcome"] == "passed" for x in lines),
            sum(x["outcome"] == "rejected" for x in lines),
        ]
        assert dec(row[7]) == yuan(sum(x["amount_fen"] for x in payable))
        assert [dec(c) for c in row[8:12]] == [yuan(sum(x[f"{p}_fen"] for x in payable)) for p in PARTS]
        assert row[14:] == [sum(x["reason"] == n for x in lines) for n in range(1, 9)]
    # The totals row is the sum of the providers', equals the district's statement and the ledger.
    totals = rows[-1]
    assert totals[0] == "合计"
    for j in (3, 4, 5, 12, *range(14, 22)):
        assert totals[j] == sum(row[j] for row in rows[1:-1])
    for j in range(6, 12):
        assert dec(totals[j]) == sum(dec(row[j]) for row in rows[1:-1])
    doc = await statement(client, o, "district", o.xiaonan_id)
    assert (totals[3], totals[4]) == (doc["lines"], doc["passed"])
    assert dec(totals[7]) == yuan(doc["amount_fen"])
    assert [dec(t) for t in totals[8:12]] == [yuan(doc[f"{p}_fen"]) for p in PARTS]
    assert totals[14:] == [doc["rejected"][str(n)] for n in range(1, 9)]
    posted = await close_postings_of_district(db, o.period_id, o.xiaonan_id)
    assert {p: int(dec(t) * 100) for p, t in zip(PARTS, totals[8:12], strict=True) if dec(t)} == posted
    # ... and the sum of the providers' own statements' Xiaonan rows.
    own = Decimal(0)
    for provider in (o.p.provider.id, o.q.provider.id):
        by_district = rows_of(
            workbook(await download(client, o, "provider", provider, o.p.admin.headers))["按区县"]
        )
        own += sum(dec(x[7]) for x in by_district[1:-1] if x[1] == o.xiaonan_id)
    assert own == dec(totals[7])

    payers = rows_of(wb["按支付方"])
    assert [dec(p[1]) for p in payers[1:-1]] == [dec(t) for t in totals[8:12]]
    assert dec(payers[-1][1]) == dec(totals[7])
    notes = dict(rows_of(wb["说明"]))
    assert notes["结算单"] == "区县结算汇总"
    assert notes["区县"] == f"孝南区 ({o.xiaonan_id})"
    assert notes["范围"] == f"区县编号 {o.xiaonan_id}"

    csv_rows = list(
        csv.reader(io.StringIO((await download(client, o, "district", o.xiaonan_id, o.p.officer.headers,
                                               format="csv")).content.decode("utf-8-sig")))
    )  # fmt: skip
    assert csv_rows[0] == GROUP_HEADERS
    assert [int(x[1]) for x in csv_rows[1:-1]] == [x[1] for x in rows[1:-1]]
    assert csv_rows[-1][7] == f"{yuan(doc['amount_fen']):.2f}"
    again = await download(client, o, "district", o.xiaonan_id, o.p.officer.headers)
    assert again.content == r.content


# --- Scope ---------------------------------------------------------------------------------------------


async def test_exports_are_scoped_as_the_statement_read(
    db: AsyncSession, make: Factory, client: Client
) -> None:
    o = await october(db, make, client)
    p, q, x = o.p.provider.id, o.q.provider.id, o.xiaonan_id

    async def status(kind: str, subject: int, who: dict[str, str], **params: str) -> tuple[int, str | None]:
        r = await client.get(
            f"{BASE}/periods/{o.period_id}/statements/{kind}/{subject}/export", params=params, headers=who
        )
        return r.status_code, (problem_code(r) if r.status_code >= 400 and r.status_code != 403 else None)

    not_found = (404, "settlement_statement.not_found")
    # Another district's officer: not Xiaonan's summary, not a provider without lines in Hanchuan.
    assert await status("district", x, o.hanchuan.officer.headers) == not_found
    assert await status("provider", q, o.hanchuan.officer.headers) == not_found
    # ... but P works in Hanchuan too: its statement, with the Hanchuan lines only.
    r = await download(client, o, "provider", p, o.hanchuan.officer.headers)
    rows = rows_of(workbook(r)["结算明细"])
    assert [row[1] for row in rows[1:-1]] == [o.visits["hanchuan"]]
    assert dict(rows_of(workbook(r)["说明"]))["范围"] == f"区县编号 {o.hanchuan_id}"
    # The provider's admin: its own statement only (no ID numbers: DOMAIN §9), never a district's.
    assert await status("provider", q, o.p.provider_admin.headers) == not_found
    assert await status("district", x, o.p.provider_admin.headers) == not_found
    own = rows_of(workbook(await download(client, o, "provider", p, o.p.provider_admin.headers))["结算明细"])
    assert len(own) == 2 + 7
    assert all(row[6] is None for row in own[1:-1])
    assert await status("provider", p, o.q.provider_admin.headers) == not_found
    # Other roles are refused at the door; unknown kinds, subjects and periods are not found.
    family = await make.account(Role.FAMILY)
    assert (await status("provider", p, family.headers))[0] == 403
    caregiver = await make.account(Role.CAREGIVER)
    assert (await status("provider", p, caregiver.headers))[0] == 403
    assert await status("elder", p, o.p.admin.headers) == not_found
    assert await status("provider", 2**31, o.p.admin.headers) == not_found
    r = await client.get(f"{BASE}/periods/999999/statements/provider/{p}/export", headers=o.p.admin.headers)
    assert (r.status_code, problem_code(r)) == (404, "settlement_period.not_found")
    assert (await status("provider", p, o.p.admin.headers, format="pdf"))[0] == 422
    assert (await status("provider", p, o.p.admin.headers, lang="fr"))[0] == 422
    assert (await status("provider", p, o.p.admin.headers, as_of="2026-11-20T00:00:00"))[0] == 422


# --- As of, across a reopen ----------------------------------------------------------------------------


async def test_a_reclosed_statement_exports_as_it_stood_and_as_it_is(db: AsyncSession, make: Factory) -> None:
    w = await sb.world(make)
    admin = Principal(user_id=w.admin.user_id, username="admin", role=Role.ADMIN)
    e = await sb.elder(make, w)  # entitled to nothing: the co-pay is the whole price
    meal = await sb.visit(db, w, e, service="MEAL", day=dt.date(2026, 10, 2))
    clean = await sb.visit(db, w, e, service="CLEAN", day=dt.date(2026, 10, 3))
    period = await ensure_period(session=db, month=sb.OCTOBER)
    closed_at = dt.datetime(2026, 11, 6, 2, tzinfo=dt.UTC)
    await close_period(session=db, actor=admin, period_id=period.id, now=closed_at)
    # The elder turns out to have been in a category (低保, 90 %) all along: reopen, re-close a day later.
    await sb.category(db, e.id, "subsistence", dt.date(2026, 1, 1), None)
    await reopen_period(session=db, actor=admin, period_id=period.id, reason="category", now=closed_at)
    await close_period(session=db, actor=admin, period_id=period.id, now=closed_at + dt.timedelta(days=1))

    async def export(as_of: dt.datetime | None) -> StatementExport:
        return await statement_export(
            session=db, actor=admin, period_id=period.id, kind=StatementKind.PROVIDER,
            subject_id=w.provider.id, as_of=as_of, fmt="xlsx",
        )  # fmt: skip

    then = await export(closed_at + dt.timedelta(hours=1))
    now = await export(None)
    assert (then.tally.parts["local"], then.tally.parts["copay"]) == (0, 1200 + 4000)
    assert (now.tally.parts["local"], now.tally.parts["copay"]) == (1080 + 3600, 120 + 400)
    assert then.tally.settled_fen == now.tally.settled_fen == 5200
    old_rows = rows_of(openpyxl.load_workbook(io.BytesIO(then.file.content))["结算明细"])
    new_rows = rows_of(openpyxl.load_workbook(io.BytesIO(now.file.content))["结算明细"])
    assert [r[1] for r in old_rows[1:-1]] == [r[1] for r in new_rows[1:-1]] == [meal.id, clean.id]
    assert [dec(r[16]) for r in new_rows[1:-1]] == [Decimal("10.80"), Decimal("36.00")]
    old_notes = dict(rows_of(openpyxl.load_workbook(io.BytesIO(then.file.content))["说明"]))
    new_notes = dict(rows_of(openpyxl.load_workbook(io.BytesIO(now.file.content))["说明"]))
    assert (old_notes["结算单版本"], new_notes["结算单版本"]) == ("1", "2")
    # The receivable's net from the period (the first close, its corrections, the re-close's postings)
    # is what the latest export says is owed.
    assert now.tally.after_review_fen == await provider_net(db, period.id, w.provider.id)
    # As it stood before the first close there was nothing.
    with pytest.raises(NotFound):
        await export(closed_at - dt.timedelta(seconds=1))


async def test_a_late_visit_is_exported_as_an_adjustment_of_the_next_period(
    db: AsyncSession, make: Factory
) -> None:
    w = await sb.world(make)
    admin = Principal(user_id=w.admin.user_id, username="admin", role=Role.ADMIN)
    e = await sb.elder(make, w, categories=("destitute",))  # 100 % within 600 yuan a month
    late = await sb.visit(db, w, e, service="CARE", day=dt.date(2026, 10, 3), verified_at=sb.LATE)
    october = await ensure_period(session=db, month=sb.OCTOBER)
    await close_period(
        session=db, actor=admin, period_id=october.id, now=dt.datetime(2026, 11, 6, tzinfo=dt.UTC)
    )
    november = await ensure_period(session=db, month=sb.NOVEMBER)
    await close_period(
        session=db, actor=admin, period_id=november.id, now=dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    )
    for period, expected in ((october, ["正常", "拒付", 1]), (november, ["跨期调整", "通过", None])):
        exported = await statement_export(
            session=db, actor=admin, period_id=period.id, kind=StatementKind.PROVIDER,
            subject_id=w.provider.id, as_of=None, fmt="csv",
        )  # fmt: skip
        rows = list(csv.reader(io.StringIO(exported.file.content.decode("utf-8-sig"))))
        assert len(rows) == 3  # header, the one line, totals
        row = rows[1]
        assert (row[1], row[8]) == (str(late.id), "2026-10-03")  # the visit's own day, in either period
        assert [row[2], row[18], int(row[19]) if row[19] else None] == expected
    # November pays it (6,000 fen from the local payer): its totals say so, to the fen.
    assert exported.tally.parts["local"] == exported.tally.settled_fen == 6000
    assert rows[-1][13] == "60.00"
