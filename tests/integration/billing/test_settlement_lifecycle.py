"""A settlement period through its whole life over the API — open → closed → (lines decided,
districts reviewed) → reviewed → approved → paid → locked — and every change refused on the way, with
its problem code; closing again answers byte-identical statements; the ledger follows every step."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.ledger_models import LedgerAccount, LedgerTransfer
from billing.settlement import ensure_period
from billing.settlement_models import SettlementLine, SettlementPeriod
from core.identity.models import Role
from tests.conftest import Client
from tests.factories import HANCHUAN, Factory
from tests.support import billing as sb
from tests.support.registry import problem_code

pytestmark = pytest.mark.integration

BASE = "/api/v1/billing/settlement"


async def _setup(db: AsyncSession, make: Factory) -> tuple[sb.World, int, list[int]]:
    w = await sb.world(make)
    # Subsistence (低保): 90 % of every service within 400 yuan a month.
    e = await sb.elder(make, w, categories=("subsistence",))
    visits = [
        await sb.visit(db, w, e, service="CLEAN", day=dt.date(2026, 10, 3)),  # 4000 fen
        await sb.visit(db, w, e, service="MEAL", day=dt.date(2026, 10, 4)),  # 1200 fen
        await sb.visit(db, w, e, service="VISIT", day=dt.date(2026, 10, 5)),  # 3000 fen
    ]
    period = await ensure_period(session=db, month=sb.OCTOBER)
    await db.commit()
    return w, period.id, [v.id for v in visits]


async def test_the_whole_life_of_a_period_and_every_refusal(
    db: AsyncSession, make: Factory, client: Client
) -> None:
    w, pid, visit_ids = await _setup(db, make)
    admin, officer, prov = w.admin.headers, w.officer.headers, w.provider_admin.headers

    # Providers read, but do not close; officers close.
    r = await client.post(f"{BASE}/periods/{pid}/close", headers=prov)
    assert r.status_code == 403, r.text
    r = await client.post(f"{BASE}/periods/{pid}/close", headers=officer)
    assert r.status_code == 200, r.text
    closed = r.json()
    assert closed["closed_now"] is True
    assert closed["period"]["state"] == "closed"
    mine = [s for s in closed["statements"] if s["kind"] == "provider" and s["subject_id"] == w.provider.id]
    assert len(mine) == 1
    # Closing again: nothing new, the same bytes.
    again = (await client.post(f"{BASE}/periods/{pid}/close", headers=admin)).json()
    assert again["closed_now"] is False
    assert [
        s for s in again["statements"] if s["subject_id"] == w.provider.id and s["kind"] == "provider"
    ] == mine
    body = (
        await client.get(f"{BASE}/periods/{pid}/statements/provider/{w.provider.id}", headers=prov)
    ).json()
    assert hashlib.sha256(body["body"].encode()).hexdigest() == mine[0]["sha256"]
    doc = json.loads(body["body"])
    # 90 % of 4000, 1200 and 3000 (within the 40,000 fen budget); co-pays the rest.
    assert doc["local_fen"] == 3600 + 1080 + 2700
    assert doc["copay_fen"] == 400 + 120 + 300
    assert doc["amount_fen"] == 8200

    lines = (
        await client.get(
            f"{BASE}/periods/{pid}/lines", headers=officer, params={"provider_id": w.provider.id}
        )
    ).json()
    assert sorted(x["visit_id"] for x in lines["items"]) == sorted(visit_ids)
    assert all(x["outcome"] == "passed" for x in lines["items"])
    by_visit = {x["visit_id"]: x for x in lines["items"]}

    # Review: the provider may not decide; a reason is required; then approve two, reject one.
    first, second, third = (by_visit[v]["id"] for v in visit_ids)
    r = await client.post(
        f"{BASE}/lines/{first}/decision", headers=prov, json={"decision": "approved", "reason": "ok"}
    )
    assert r.status_code == 403
    # Not before every line is decided.
    district = by_visit[visit_ids[0]]["district_id"]
    r = await client.post(f"{BASE}/periods/{pid}/districts/{district}/review", headers=officer)
    assert (r.status_code, problem_code(r)) == (409, "settlement.lines_undecided")
    for line_id in (first, second):
        r = await client.post(
            f"{BASE}/lines/{line_id}/decision",
            headers=officer,
            json={"decision": "approved", "reason": "核对无误"},
        )
        assert r.status_code == 200, r.text
    r = await client.post(
        f"{BASE}/lines/{third}/decision",
        headers=officer,
        json={"decision": "rejected", "reason": "回访未接通"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["decision"]["decision"] == "rejected"
    r = await client.post(
        f"{BASE}/lines/{third}/decision", headers=officer, json={"decision": "approved", "reason": "again"}
    )
    assert (r.status_code, problem_code(r)) == (409, "settlement.line_decided")
    # The rejected line's postings are taken back: the provider is owed the other two lines only.
    receivable = await db.scalar(
        select(LedgerAccount).where(LedgerAccount.code == f"provider_receivable:{w.provider.id}")
    )
    assert receivable is not None
    await db.refresh(receivable)
    assert receivable.credits_posted - receivable.debits_posted == 4000 + 1200

    # Approving before review is refused; officers do not approve.
    r = await client.post(f"{BASE}/periods/{pid}/approve", headers=admin)
    assert (r.status_code, problem_code(r)) == (409, "settlement.period_state")
    r = await client.post(f"{BASE}/periods/{pid}/districts/{district}/review", headers=officer)
    assert r.status_code == 200, r.text
    # The demo data has no visits: this district was the only one with lines, so the period is reviewed.
    assert r.json()["state"] == "reviewed"
    r = await client.post(f"{BASE}/periods/{pid}/approve", headers=officer)
    assert r.status_code == 403
    r = await client.post(f"{BASE}/periods/{pid}/pay", headers=admin, json={"payment_reference": "BANK-1"})
    assert (r.status_code, problem_code(r)) == (409, "settlement.period_state")
    r = await client.post(f"{BASE}/periods/{pid}/approve", headers=admin)
    assert r.json()["state"] == "approved"
    r = await client.post(f"{BASE}/periods/{pid}/reopen", headers=admin, json={"reason": "too late"})
    assert (r.status_code, problem_code(r)) == (409, "settlement.period_state")
    r = await client.post(f"{BASE}/periods/{pid}/lock", headers=admin)
    assert (r.status_code, problem_code(r)) == (409, "settlement.period_state")
    r = await client.post(
        f"{BASE}/periods/{pid}/pay", headers=admin, json={"payment_reference": "BANK-2026-10-001"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["payment_reference"]) == ("paid", "BANK-2026-10-001")
    # Paying moved the public shares of the approved lines out to the payer's bank.
    await db.refresh(receivable)
    assert receivable.credits_posted - receivable.debits_posted == 400 + 120  # their co-pays remain owed
    r = await client.post(f"{BASE}/periods/{pid}/lock", headers=admin)
    assert r.json()["state"] == "locked"

    # Locked: nothing changes, for any role.
    for path, who, payload in (
        (f"{BASE}/periods/{pid}/reopen", admin, {"reason": "no"}),
        (f"{BASE}/periods/{pid}/approve", admin, None),
        (f"{BASE}/periods/{pid}/lock", admin, None),
        (f"{BASE}/periods/{pid}/pay", admin, {"payment_reference": "X"}),
        (f"{BASE}/periods/{pid}/districts/{district}/review", officer, None),
        (f"{BASE}/lines/{first}/decision", officer, {"decision": "rejected", "reason": "late"}),
    ):
        r = await client.post(path, headers=who, json=payload)
        assert (r.status_code, problem_code(r)) == (409, "settlement.period_locked"), (path, r.text)
    # Closing a locked period changes nothing either and answers the same statements.
    r = await client.post(f"{BASE}/periods/{pid}/close", headers=admin)
    assert r.json()["closed_now"] is False
    # Nor can SQL change it: the triggers refuse.
    with pytest.raises(DBAPIError, match="locked"):
        async with db.begin_nested():
            await db.execute(
                text("UPDATE settlement_period SET payment_reference = 'x' WHERE id = :p"), {"p": pid}
            )
    events = (await client.get(f"{BASE}/periods/{pid}", headers=admin)).json()["events"]
    assert [e["action"] for e in events] == ["close", "review", "approve", "pay", "lock"]


async def test_close_is_refused_before_the_cutoff_and_while_the_previous_month_is_open(
    db: AsyncSession, make: Factory, client: Client
) -> None:
    w = await sb.world(make)
    october = await ensure_period(session=db, month=sb.OCTOBER)
    november = await ensure_period(session=db, month=sb.NOVEMBER)
    december = await ensure_period(session=db, month=dt.date(2026, 12, 1))
    await db.commit()
    # TEST_NOW is 20 November: November's cut-off (5 December) has not come.
    r = await client.post(f"{BASE}/periods/{november.id}/close", headers=w.admin.headers)
    assert (r.status_code, problem_code(r)) == (409, "settlement.before_cutoff")
    assert october.state == "open"
    r = await client.post(f"{BASE}/periods/{december.id}/close", headers=w.admin.headers)
    assert r.status_code == 409
    # A period is opened once per month, whoever asks.
    r = await client.post(f"{BASE}/periods", headers=w.admin.headers, json={"month": "2026-10"})
    assert r.json()["id"] == october.id
    r = await client.post(f"{BASE}/periods", headers=w.officer.headers, json={"month": "2026-09"})
    assert r.status_code == 403
    # September is not closed... and it does not exist, so October may close; once September exists
    # and is open, October may not.
    september = await ensure_period(session=db, month=dt.date(2026, 9, 1))
    await db.commit()
    r = await client.post(f"{BASE}/periods/{october.id}/close", headers=w.admin.headers)
    assert (r.status_code, problem_code(r)) == (409, "settlement.previous_open")
    r = await client.post(f"{BASE}/periods/{september.id}/close", headers=w.admin.headers)
    assert r.status_code == 200
    r = await client.post(f"{BASE}/periods/{october.id}/close", headers=w.admin.headers)
    assert r.status_code == 200
    # Reopening September is refused now that October is closed.
    r = await client.post(
        f"{BASE}/periods/{september.id}/reopen", headers=w.admin.headers, json={"reason": "fix"}
    )
    assert (r.status_code, problem_code(r)) == (409, "settlement.later_closed")


async def test_lines_and_statements_are_scoped(db: AsyncSession, make: Factory, client: Client) -> None:
    w, pid, _ = await _setup(db, make)
    other = await sb.world(make, HANCHUAN)
    e2 = await sb.elder(make, other, district=HANCHUAN, categories=("destitute",))
    await sb.visit(db, other, e2, service="CARE", day=dt.date(2026, 10, 6))
    await db.commit()
    r = await client.post(f"{BASE}/periods/{pid}/close", headers=w.admin.headers)
    assert r.status_code == 200
    # The Hanchuan officer sees Hanchuan's lines and statements only.
    lines = (await client.get(f"{BASE}/periods/{pid}/lines", headers=other.officer.headers)).json()
    assert {x["provider_id"] for x in lines["items"]} == {other.provider.id}
    r = await client.get(
        f"{BASE}/periods/{pid}/statements/provider/{w.provider.id}", headers=other.officer.headers
    )
    assert (r.status_code, problem_code(r)) == (404, "settlement_statement.not_found")
    kinds = (await client.get(f"{BASE}/periods/{pid}/statements", headers=other.officer.headers)).json()
    assert {(s["kind"], s["subject_id"]) for s in kinds} == {
        ("provider", other.provider.id),
        ("district", lines["items"][0]["district_id"]),
    }
    # A provider's admin: its own statement and lines only.
    prov = (await client.get(f"{BASE}/periods/{pid}/statements", headers=w.provider_admin.headers)).json()
    assert [(s["kind"], s["subject_id"]) for s in prov] == [("provider", w.provider.id)]
    lines = (await client.get(f"{BASE}/periods/{pid}/lines", headers=w.provider_admin.headers)).json()
    assert {x["provider_id"] for x in lines["items"]} == {w.provider.id}
    # An officer cannot decide another district's line (it is not found for them).
    r = await client.post(
        f"{BASE}/lines/{lines['items'][0]['id']}/decision",
        headers=other.officer.headers,
        json={"decision": "approved", "reason": "x"},
    )
    assert (r.status_code, problem_code(r)) == (404, "settlement_line.not_found")
    # Other roles are refused at the door.
    family = await make.account(Role.FAMILY)
    r = await client.get(f"{BASE}/periods/{pid}/lines", headers=family.headers)
    assert r.status_code == 403
    # The ledger: a provider sees its receivable, an officer its district's funds and elders' co-pays.
    accounts = (await client.get("/api/v1/billing/ledger/accounts", headers=w.provider_admin.headers)).json()
    assert [a["code"] for a in accounts["items"]] == [f"provider_receivable:{w.provider.id}"]
    accounts = (await client.get("/api/v1/billing/ledger/accounts", headers=other.officer.headers)).json()
    assert {a["kind"] for a in accounts["items"]} <= {"payer_fund", "elder_copay"}
    assert all(a["district_id"] in (None, e2.district_id) for a in accounts["items"])
    lines_total = await db.scalar(
        select(func.sum(SettlementLine.amount_fen)).where(
            SettlementLine.period_id == pid, SettlementLine.payable
        )
    )
    posted = await db.scalar(
        select(func.sum(LedgerTransfer.amount_fen)).where(LedgerTransfer.period_id == pid)
    )
    assert lines_total == posted
    assert (await db.get(SettlementPeriod, pid)) is not None
