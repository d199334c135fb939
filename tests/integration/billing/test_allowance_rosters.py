"""Allowance rosters end to end: generated through the API from the elders' records, read back with
each line's reason, additions and stoppages month over month, back-pay for a late registration, the
policy of a month's first day, open and closed months, the audit trail, the monthly job, the trigger
that freezes a closed month, and who sees what (civil affairs: their districts; admins: the city).

The test clock is 2026-11-20: November is the open month. The elders each test makes are registered
(``created_at``) when the test says; the demo's were created by the seed on the real day, after the
test clock, so they are on no roster here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from billing import allowance_jobs
from billing import allowance_service as service
from billing.allowance_models import AllowanceLine, AllowanceRoster
from billing.allowances import AllowanceKind, parse_month
from core.audit import AuditLog
from core.identity.models import Role
from core.policy import PolicyValue
from registry.models import Elder
from tests.conftest import TEST_NOW
from tests.factories import HANCHUAN, XIAONAN, Factory
from tests.support.registry import problem_code

pytestmark = pytest.mark.integration

URL = "/api/v1/billing/allowances"
LONG_AGO = dt.datetime(2025, 1, 1, 2, tzinfo=dt.UTC)
DEC_1 = dt.datetime(2026, 11, 30, 17, 0, tzinfo=dt.UTC)  # 01:00 on 1 December in Shanghai


def registered(day: dt.date) -> dt.datetime:
    """Noon in Shanghai on ``day``: an elder's ``created_at`` registered that day."""
    return dt.datetime(day.year, day.month, day.day, 4, tzinfo=dt.UTC)


async def old(make: Factory, birth_on: dt.date, district: str = XIAONAN, **columns: Any) -> Elder:
    columns.setdefault("created_at", LONG_AGO)
    return await make.elder(district, birth_on=birth_on, **columns)


async def generate(
    client: httpx.AsyncClient, headers: dict[str, str], month: str, kind: str = "old_age"
) -> Any:
    r = await client.post(URL, json={"month": month, "kind": kind}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def roster(
    client: httpx.AsyncClient, headers: dict[str, str], month: str, kind: str = "old_age", **params: Any
) -> Any:
    r = await client.get(URL, params={"month": month, "kind": kind, "limit": 200, **params}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def mine(body: Any, elders: Iterable[Elder]) -> dict[int, dict[str, Any]]:
    ids = {e.id for e in elders}
    return {x["elder_id"]: x for x in body["items"] if x["elder_id"] in ids}


async def test_november_roster_with_additions_changes_stoppages_and_back_pay(
    client: httpx.AsyncClient, make: Factory, db: AsyncSession
) -> None:
    admin = await make.admin()
    keeps = await old(make, dt.date(1940, 3, 10))  # 86: paid as before
    turns_80 = await old(make, dt.date(1946, 10, 5))  # 80 in October: paid from November
    turns_90 = await old(make, dt.date(1936, 10, 1))  # 90 in October: the next band from November
    died = await old(make, dt.date(1930, 1, 1), status="deceased", status_on=dt.date(2026, 10, 9))
    late = await old(make, dt.date(1941, 1, 1), created_at=registered(dt.date(2026, 10, 15)))
    young = await old(make, dt.date(1960, 1, 1))
    ours = (keeps, turns_80, turns_90, died, late, young)

    october = await generate(client, admin.headers, "2026-10")
    assert (october["state"], october["generations"], october["facts_on"]) == ("closed", 1, "2026-09-30")
    oct_lines = mine(await roster(client, admin.headers, "2026-10"), ours)
    assert {i: (x["change"], x["band"]) for i, x in oct_lines.items()} == {
        keeps.id: ("continued", "80-89"),
        turns_90.id: ("continued", "80-89"),
        died.id: ("continued", "90-99"),
    }

    november = await generate(client, admin.headers, "2026-11")
    assert (november["state"], november["closed_at"], november["lines_changed"]) == ("open", None, True)
    assert "allowance.old_age[80-89]@2026-01-01" in november["policy_refs"]
    assert "allowance.backpay[*]@2026-01-01" in november["policy_refs"]
    body = await roster(client, admin.headers, "2026-11")
    lines = mine(body, ours)
    got = {i: (x["change"], x["reason"], x["band"], x["amount_fen"]) for i, x in lines.items()}
    assert got == {
        keeps.id: ("continued", "continued", "80-89", 5000),
        turns_80.id: ("added", "turned_age", "80-89", 5000),
        turns_90.id: ("changed", "band_changed", "90-99", 10_000),
        died.id: ("stopped", "deceased", "90-99", 0),
        late.id: ("added", "late_registration", "80-89", 5000 + 12 * 5000),
    }
    assert lines[died.id]["event_on"] == "2026-10-09"
    assert lines[turns_90.id]["previous_band"] == "80-89"
    assert (lines[late.id]["backpay_months"], lines[late.id]["backpay_fen"]) == (12, 60_000)
    assert lines[late.id]["backpay_refs"][0] == "2025-11:allowance.old_age[80-89]@2026-01-01"
    assert lines[keeps.id]["elder_name"] == "测试老人"
    assert lines[keeps.id]["id_number_masked"].count("*") == 9
    assert lines[keeps.id]["birth_on"] == "1940-03-10"

    # The totals are the sums of the lines, and the stored roster's.
    t = body["totals"]
    assert t["total_fen"] == sum(x["amount_fen"] for x in body["items"]) == november["totals"]["total_fen"]
    assert t["total_fen"] == t["monthly_fen"] + t["backpay_fen"]
    assert (t["lines"], t["stopped"]) == (body["total"], sum(x["change"] == "stopped" for x in body["items"]))
    stored = await db.scalar(select(AllowanceRoster).where(AllowanceRoster.month == dt.date(2026, 11, 1)))
    assert stored is not None
    assert (stored.total_fen, stored.lines, stored.checksum) == (t["total_fen"], t["lines"], body["checksum"])

    # The additions (新增) and stoppages (停发) lists.
    added = await roster(client, admin.headers, "2026-11", change="added")
    assert {turns_80.id, late.id} <= {x["elder_id"] for x in added["items"]}
    assert {x["change"] for x in added["items"]} == {"added"}
    stopped = await roster(client, admin.headers, "2026-11", change="stopped")
    assert died.id in {x["elder_id"] for x in stopped["items"]}
    assert {x["change"] for x in stopped["items"]} == {"stopped"}
    assert added["totals"] == t  # the totals are the roster's, whatever the filter


async def test_the_disability_roster_needs_a_paid_level_and_a_low_income_category(
    client: httpx.AsyncClient, make: Factory
) -> None:
    admin = await make.admin()
    assessed = await old(make, dt.date(1950, 2, 2), categories=["subsistence"])
    await make.assessment(assessed, level=3, assessed_on=dt.date(2026, 6, 10))
    veteran = await old(make, dt.date(1950, 2, 2), categories=["veteran"])
    await make.assessment(veteran, level=4, assessed_on=dt.date(2026, 6, 10))
    mild = await old(make, dt.date(1950, 2, 2), categories=["low_income"])
    await make.assessment(mild, level=1, assessed_on=dt.date(2026, 6, 10))
    fresh = await old(make, dt.date(1950, 2, 2), categories=["destitute"])
    await make.assessment(fresh, level=4, assessed_on=dt.date(2026, 11, 2))  # pays from December

    await generate(client, admin.headers, "2026-11", "disability")
    lines = mine(
        await roster(client, admin.headers, "2026-11", "disability"), (assessed, veteran, mild, fresh)
    )
    assert {i: (x["change"], x["band"], x["amount_fen"]) for i, x in lines.items()} == {
        assessed.id: ("continued", "3", 20_000),
    }
    assert lines[assessed.id]["policy_ref"] == "allowance.disability[3]@2026-01-01"


async def test_regenerating_an_open_month_gives_the_same_lines_and_is_audited(
    client: httpx.AsyncClient, make: Factory, db: AsyncSession
) -> None:
    officer = await make.civil_affairs(XIAONAN)
    a = await old(make, dt.date(1940, 3, 10))
    b = await old(make, dt.date(1938, 6, 1))
    first = await generate(client, officer.headers, "2026-11")
    again = await generate(client, officer.headers, "2026-11")
    assert (again["checksum"], again["generations"], again["lines_changed"]) == (first["checksum"], 2, False)

    # A death recorded late (it happened in October): the open month is recomputed with a stop.
    r = await client.post(
        f"/api/v1/elders/{b.id}/status",
        json={"status": "deceased", "on": "2026-10-20"},
        headers=officer.headers,
    )
    assert r.status_code == 200, r.text
    third = await generate(client, officer.headers, "2026-11")
    assert third["lines_changed"] is True
    assert third["checksum"] != first["checksum"]
    lines = mine(await roster(client, officer.headers, "2026-11"), (a, b))
    assert lines[a.id]["change"] == "continued"
    # October (no stored roster: as the rules give it) paid them, alive on 30 September: stopped now.
    assert (lines[b.id]["change"], lines[b.id]["reason"], lines[b.id]["event_on"]) == (
        "stopped",
        "deceased",
        "2026-10-20",
    )

    rows = (
        await db.scalars(
            select(AuditLog)
            .where(
                AuditLog.entity == "allowance_roster",
                AuditLog.entity_id == str(await _roster_id(db, "2026-11")),
            )
            .order_by(AuditLog.id)
        )
    ).all()
    assert [r.action for r in rows] == ["generate", "regenerate", "regenerate"]
    assert {r.actor_user_id for r in rows} == {officer.user_id}
    assert rows[1].before is not None
    assert rows[1].before["checksum"] == rows[1].after["checksum"] == first["checksum"]  # type: ignore[index]
    assert rows[2].after["checksum"] == third["checksum"]  # type: ignore[index]


async def _roster_id(db: AsyncSession, month: str, kind: str = "old_age") -> int:
    found = await db.scalar(
        select(AllowanceRoster.id).where(
            AllowanceRoster.month == parse_month(month), AllowanceRoster.kind == kind
        )
    )
    assert found is not None
    return found


async def test_a_stop_follows_what_the_stored_month_before_paid(
    client: httpx.AsyncClient, make: Factory
) -> None:
    """October was paid (stored, closed); the death, recorded since, predates it: November stops it
    with its date, rather than dropping the elder silently."""
    admin = await make.admin()
    elder = await old(make, dt.date(1935, 5, 5))
    await generate(client, admin.headers, "2026-10")
    r = await client.post(
        f"/api/v1/elders/{elder.id}/status",
        json={"status": "deceased", "on": "2026-08-02"},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    await generate(client, admin.headers, "2026-11")
    line = mine(await roster(client, admin.headers, "2026-11"), [elder])[elder.id]
    assert (line["change"], line["reason"], line["event_on"]) == ("stopped", "deceased", "2026-08-02")
    # October's stored roster is unchanged: it still shows what was paid.
    october = mine(await roster(client, admin.headers, "2026-10"), [elder])[elder.id]
    assert (october["change"], october["amount_fen"]) == ("continued", 10_000)


async def test_months_that_cannot_be_generated(client: httpx.AsyncClient, make: Factory) -> None:
    admin = await make.admin()
    await generate(client, admin.headers, "2026-09")
    r = await client.post(URL, json={"month": "2026-09", "kind": "old_age"}, headers=admin.headers)
    assert (r.status_code, problem_code(r)) == (409, "allowance.roster_closed")
    r = await client.post(URL, json={"month": "2026-12", "kind": "old_age"}, headers=admin.headers)
    assert (r.status_code, problem_code(r)) == (422, "allowance.month_not_started")
    r = await client.post(URL, json={"month": "2025-12", "kind": "disability"}, headers=admin.headers)
    assert (r.status_code, problem_code(r)) == (422, "allowance.month_before_start")
    for bad in ("2026-13", "2026-1", "0000-01", "abc"):
        r = await client.post(URL, json={"month": bad, "kind": "old_age"}, headers=admin.headers)
        assert (r.status_code, problem_code(r)) == (422, "validation.invalid"), bad
        r = await client.get(URL, params={"month": bad, "kind": "old_age"}, headers=admin.headers)
        assert (r.status_code, problem_code(r)) == (422, "validation.invalid"), bad
    r = await client.post(URL, json={"month": "2026-11", "kind": "pension"}, headers=admin.headers)
    assert r.status_code == 422
    r = await client.get(URL, params={"month": "2026-08", "kind": "old_age"}, headers=admin.headers)
    assert (r.status_code, problem_code(r)) == (404, "allowance.roster_not_found")


async def test_civil_affairs_see_their_districts_and_admins_the_city(
    client: httpx.AsyncClient, make: Factory
) -> None:
    xiaonan = await old(make, dt.date(1940, 3, 10), XIAONAN)
    hanchuan = await old(make, dt.date(1930, 3, 10), HANCHUAN)
    admin = await make.admin()
    officer = await make.civil_affairs(XIAONAN)
    await generate(client, officer.headers, "2026-11")  # an officer generates the city's roster

    city = await roster(client, admin.headers, "2026-11")
    assert set(mine(city, (xiaonan, hanchuan))) == {xiaonan.id, hanchuan.id}
    own = await roster(client, officer.headers, "2026-11")
    xiaonan_district = (await make.district(XIAONAN)).id
    assert {x["district_id"] for x in own["items"]} == {xiaonan_district}
    assert set(mine(own, (xiaonan, hanchuan))) == {xiaonan.id}
    # Their totals are those of their lines, not the city's.
    assert own["totals"]["total_fen"] == sum(x["amount_fen"] for x in own["items"])
    assert city["totals"]["total_fen"] == own["totals"]["total_fen"] + sum(
        x["amount_fen"] for x in city["items"] if x["district_id"] != xiaonan_district
    )
    # Asking for another district's lines gives none.
    hanchuan_district = (await make.district(HANCHUAN)).id
    other = await roster(client, officer.headers, "2026-11", district_id=hanchuan_district)
    assert (other["items"], other["total"]) == ([], 0)
    # An officer of a district with no line sees none.
    dawu = await make.civil_affairs("420922")
    none = await roster(client, dawu.headers, "2026-11")
    assert {x["district_id"] for x in none["items"]} <= {(await make.district("420922")).id}
    assert mine(none, (xiaonan, hanchuan)) == {}
    assert none["totals"]["total_fen"] == sum(x["amount_fen"] for x in none["items"])


@pytest.mark.parametrize(
    "role", [Role.OPERATOR, Role.SUPERVISOR, Role.PROVIDER_ADMIN, Role.CAREGIVER, Role.FAMILY, Role.ELDER]
)
async def test_other_roles_are_refused(client: httpx.AsyncClient, make: Factory, role: Role) -> None:
    account = await make.account(
        role, districts=(XIAONAN,) if role in (Role.OPERATOR, Role.SUPERVISOR) else ()
    )
    params = {"month": "2026-11", "kind": "old_age"}
    for r in (
        await client.get(URL, params=params, headers=account.headers),
        await client.post(URL, json=params, headers=account.headers),
        await client.get(f"{URL}/export", params=params, headers=account.headers),
    ):
        assert (r.status_code, problem_code(r)) == (403, "auth.forbidden")
    r = await client.get(URL, params=params)
    assert r.status_code == 401


async def test_paging(client: httpx.AsyncClient, make: Factory) -> None:
    admin = await make.admin()
    for year in (1931, 1932, 1933, 1934, 1935):
        await old(make, dt.date(year, 1, 1))
    await generate(client, admin.headers, "2026-11")
    everything = await roster(client, admin.headers, "2026-11")
    r = await client.get(
        URL, params={"month": "2026-11", "kind": "old_age", "limit": 2, "offset": 1}, headers=admin.headers
    )
    page = r.json()
    assert [x["elder_id"] for x in page["items"]] == [x["elder_id"] for x in everything["items"][1:3]]
    assert (page["total"], page["limit"], page["offset"], page["has_more"]) == (
        everything["total"],
        2,
        1,
        True,
    )
    assert page["totals"] == everything["totals"]


async def test_a_policy_change_applies_from_its_date_and_the_job_closes_and_generates(
    client: httpx.AsyncClient, make: Factory, db: AsyncSession
) -> None:
    admin = await make.admin()
    elder = await old(make, dt.date(1940, 3, 10))
    r = await client.post(
        "/api/v1/policies",
        json={
            "key": "allowance.old_age",
            "scope": "80-89",
            "value": {"min_age": 80, "max_age": 89, "fen": 6000},
            "valid_from": "2026-12-01",
            "source": "test: 80-89 raised to 60 yuan",
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    await generate(client, admin.headers, "2026-11")
    assert mine(await roster(client, admin.headers, "2026-11"), [elder])[elder.id]["amount_fen"] == 5000

    # On 1 December (01:00 Shanghai) the job closes November and generates December, once.
    assert await allowance_jobs.monthly_rosters(db, DEC_1) == (1, 2)
    assert await allowance_jobs.monthly_rosters(db, DEC_1 + dt.timedelta(hours=1)) == (0, 0)
    nov = await db.scalar(
        select(AllowanceRoster).where(AllowanceRoster.id == await _roster_id(db, "2026-11"))
    )
    assert nov is not None
    assert (nov.state, nov.closed_at) == ("closed", DEC_1)
    dec_id = await _roster_id(db, "2026-12")
    line = await db.scalar(
        select(AllowanceLine).where(AllowanceLine.roster_id == dec_id, AllowanceLine.elder_id == elder.id)
    )
    assert line is not None
    assert (line.change, line.amount_fen, line.policy_ref) == (
        "continued",
        6000,
        "allowance.old_age[80-89]@2026-12-01",
    )
    dec = await db.scalar(select(AllowanceRoster).where(AllowanceRoster.id == dec_id))
    assert dec is not None
    assert (dec.generated_by_user_id, dec.generations) == (None, 1)
    jobs = (
        await db.scalars(
            select(AuditLog.action).where(
                AuditLog.entity == "allowance_roster", AuditLog.actor_role == "system"
            )
        )
    ).all()
    assert sorted(jobs) == ["close", "generate", "generate"]
    # November is over: never recomputed.
    with pytest.raises(service.RosterClosed):
        await service.generate_roster(
            session=db, kind=AllowanceKind.OLD_AGE, month=dt.date(2026, 11, 1), actor=None, now=DEC_1
        )


async def test_a_closed_month_cannot_be_changed_even_in_sql(
    client: httpx.AsyncClient, make: Factory, db: AsyncSession
) -> None:
    admin = await make.admin()
    await old(make, dt.date(1940, 3, 10))
    await generate(client, admin.headers, "2026-10")
    roster_id = await _roster_id(db, "2026-10")
    for sql in (
        "UPDATE allowance_line SET monthly_fen = monthly_fen + 1, amount_fen = amount_fen + 1"
        " WHERE roster_id = :r",
        "DELETE FROM allowance_line WHERE roster_id = :r",
        "UPDATE allowance_roster SET total_fen = 0, monthly_fen = 0, backpay_fen = 0 WHERE id = :r",
        "UPDATE allowance_roster SET state = 'open', closed_at = NULL WHERE id = :r",
        "DELETE FROM allowance_roster WHERE id = :r",
    ):
        with pytest.raises(DBAPIError, match="is closed"):
            async with db.begin_nested():
                await db.execute(text(sql), {"r": roster_id})


async def test_an_elder_on_a_roster_keeps_their_record(client: httpx.AsyncClient, make: Factory) -> None:
    admin = await make.admin()
    elder = await old(make, dt.date(1940, 3, 10))
    await generate(client, admin.headers, "2026-11")
    r = await client.delete(f"/api/v1/elders/{elder.id}", headers=admin.headers)
    assert (r.status_code, problem_code(r)) == (409, "conflict.in_use")


async def test_policy_rows_the_roster_reads_are_the_dated_ones(db: AsyncSession, make: Factory) -> None:
    """The service reads the policy valid on each month's first day: a row starting mid-month applies
    from the next month (here written straight to the table, as an officer's change of 15 October)."""
    db.add(
        PolicyValue(
            key="allowance.old_age",
            scope="90-99",
            value={"min_age": 90, "max_age": 99, "fen": 12_000},
            valid_from=dt.date(2026, 10, 15),
            source="test",
        )
    )
    await db.flush()
    policies = await service.load_policies(db, dt.date(2026, 11, 1))
    assert {b.scope: b.fen for b in policies[dt.date(2026, 11, 1)].bands}["90-99"] == 12_000
    assert {b.scope: b.fen for b in policies[dt.date(2026, 10, 1)].bands}["90-99"] == 10_000
    assert len(policies) == 13  # November and the 12 months of the back-pay window
    assert TEST_NOW.date() == dt.date(2026, 11, 20)


async def test_a_policy_row_the_rules_cannot_apply_is_a_conflict_naming_it(
    client: httpx.AsyncClient, make: Factory, db: AsyncSession
) -> None:
    """The policy API checks a value's shape; a disability scope must also be a level."""
    admin = await make.admin()
    db.add(
        PolicyValue(
            key="allowance.disability",
            scope="severe",
            value={"fen": 20_000, "categories": ["subsistence"]},
            valid_from=dt.date(2026, 11, 1),
            source="test: a scope that is not a level",
        )
    )
    await db.flush()
    r = await client.post(URL, json={"month": "2026-11", "kind": "disability"}, headers=admin.headers)
    assert (r.status_code, problem_code(r)) == (409, "allowance.policy_invalid")
    assert "allowance.disability[severe]@2026-11-01" in r.json()["detail"]
    # October's policy had no such row.
    assert (
        await client.post(URL, json={"month": "2026-10", "kind": "disability"}, headers=admin.headers)
    ).status_code == 200
