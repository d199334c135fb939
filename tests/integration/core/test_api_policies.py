"""The policy API: who reads and changes dated policy, what a value may be, from which day a change
applies, the audit trail, and that past days are never rewritten. (The NOTIFY and the concurrent
writers need committed transactions: ``test_api_policies_committed.py``.)

The app's clock is TEST_NOW, 2026-11-20 in Asia/Shanghai: "today" below.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import AuditLog
from core.identity.models import Role
from core.policy import PolicyValue
from tests.conftest import TEST_NOW
from tests.factories import Factory
from tests.support.registry import headers_for, problem_code

pytestmark = pytest.mark.integration

TODAY = dt.date(2026, 11, 20)
assert TEST_NOW.date() == TODAY  # 02:00 UTC is 10:00 in Shanghai: the same day
URL = "/api/v1/policies"
LTC3 = {"model": "per_visit", "rate_bp": 9000, "budget_fen": 100_000, "services": ["CARE", "BATH", "CLEAN"]}
READERS = {Role.ADMIN, Role.CIVIL_AFFAIRS, Role.SUPERVISOR}


def body(**over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": "subsidy.ltc",
        "scope": "3",
        "value": dict(LTC3),
        "valid_from": "2027-01-01",
        "source": "test decree",
    }
    out.update(over)
    return out


def in_effect(listing: httpx.Response, key: str, scope: str = "*") -> dict[str, Any]:
    assert listing.status_code == 200, listing.text
    found: list[dict[str, Any]] = [
        i for i in listing.json()["items"] if (i["key"], i["scope"]) == (key, scope)
    ]
    assert len(found) == 1, (key, scope)
    return found[0]


async def audit_of(db: AsyncSession, row_id: int) -> list[AuditLog]:
    stmt = (
        select(AuditLog)
        .where(AuditLog.entity == "policy_value", AuditLog.entity_id == str(row_id))
        .order_by(AuditLog.id)
    )
    return list((await db.scalars(stmt)).all())


async def test_each_role_reads_and_writes_as_its_rule_says(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    for role in Role:
        headers = await headers_for(db, f"demo_{role.value}")
        listing = await client.get(URL, params={"prefix": "subsidy."}, headers=headers)
        history = await client.get(f"{URL}/subsidy.ltc/history", headers=headers)
        # Each role adds a row of its own day, so that the allowed ones never collide.
        day = (TODAY + dt.timedelta(days=10 + list(Role).index(role))).isoformat()
        billing = await client.post(URL, json=body(valid_from=day), headers=headers)
        alarm = await client.post(
            URL,
            json=body(key="alarm.low_battery", scope="*", value={"pct": 12}, valid_from=day),
            headers=headers,
        )
        if role in READERS:
            assert listing.status_code == 200, (role, listing.text)
            assert history.status_code == 200, (role, history.text)
        else:
            assert (listing.status_code, problem_code(listing)) == (403, "auth.forbidden"), role
            assert history.status_code == 403, role
        if role in (Role.ADMIN, Role.CIVIL_AFFAIRS):
            assert billing.status_code == 201, (role, billing.text)
        else:
            assert (billing.status_code, problem_code(billing)) == (403, "auth.forbidden"), role
        if role is Role.ADMIN:
            assert alarm.status_code == 201, alarm.text
        elif role is Role.CIVIL_AFFAIRS:
            # Billing grants its officers subsidy.* and allowance.*, not the call centre's alarms.
            assert (alarm.status_code, problem_code(alarm)) == (403, "policy.key_forbidden")
        else:
            assert alarm.status_code == 403, role


async def test_an_officer_changes_only_billings_rows(client: httpx.AsyncClient, db: AsyncSession) -> None:
    admin = await headers_for(db, "demo_admin")
    officer = await headers_for(db, "demo_civil_affairs")
    alarm = await client.post(
        URL, json=body(key="alarm.low_battery", scope="*", value={"pct": 12}), headers=admin
    )
    allowance = await client.post(
        URL,
        json=body(
            key="allowance.old_age", scope="100+", value={"min_age": 100, "max_age": None, "fen": 40_000}
        ),
        headers=officer,
    )
    assert allowance.status_code == 201, allowance.text
    row_url = f"{URL}/rows/{alarm.json()['id']}"
    end = {"valid_to": "2027-06-30", "reason": "test"}
    assert problem_code(await client.patch(row_url, json=end, headers=officer)) == "policy.key_forbidden"
    assert problem_code(await client.delete(row_url, headers=officer)) == "policy.key_forbidden"
    own = f"{URL}/rows/{allowance.json()['id']}"
    assert (await client.patch(own, json=end, headers=officer)).status_code == 200
    assert (await client.delete(own, headers=officer)).status_code == 204


async def test_a_new_row_applies_from_its_date_and_not_the_day_before(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await headers_for(db, "demo_admin")
    before = in_effect(
        await client.get(URL, params={"prefix": "subsidy.ltc"}, headers=admin), "subsidy.ltc", "3"
    )
    assert before["value"]["budget_fen"] == 90_000  # the seeded row, in effect today
    assert (before["origin"], before["valid_from"]) == ("row", "2026-01-01")
    created = await client.post(URL, json=body(), headers=admin)
    assert created.status_code == 201, created.text
    row = created.json()
    assert (row["status"], row["value"], row["valid_from"]) == ("future", LTC3, "2027-01-01")

    day_before = await client.get(URL, params={"prefix": "subsidy.", "on": "2026-12-31"}, headers=admin)
    assert in_effect(day_before, "subsidy.ltc", "3")["value"]["budget_fen"] == 90_000
    on_the_day = await client.get(URL, params={"prefix": "subsidy.", "on": "2027-01-01"}, headers=admin)
    now_applied = in_effect(on_the_day, "subsidy.ltc", "3")
    assert (now_applied["value"], now_applied["row_id"], now_applied["source"]) == (
        LTC3,
        row["id"],
        "test decree",
    )
    # The other levels are untouched; the listing is of the day asked for.
    assert in_effect(on_the_day, "subsidy.ltc", "2")["value"]["budget_fen"] == 60_000
    assert on_the_day.json()["on"] == "2027-01-01"
    # Without ``on``: today.
    assert (await client.get(URL, params={"prefix": "subsidy.ltc"}, headers=admin)).json()[
        "on"
    ] == "2026-11-20"

    (created_audit,) = await audit_of(db, row["id"])
    assert created_audit.action == "create"
    assert created_audit.before is None
    assert created_audit.after is not None
    assert created_audit.after["value"] == LTC3
    assert created_audit.after["valid_from"] == "2027-01-01"
    assert created_audit.actor_role == "admin"


async def test_a_seeded_default_not_in_the_table_is_listed_as_such(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await headers_for(db, "demo_admin")
    seeded = await db.scalar(
        select(PolicyValue).where(PolicyValue.key == "alarm.low_battery", PolicyValue.scope == "*")
    )
    assert seeded is not None
    await db.delete(seeded)
    await db.commit()
    item = in_effect(await client.get(URL, params={"prefix": "alarm."}, headers=admin), "alarm.low_battery")
    assert (item["origin"], item["row_id"], item["value"], item["valid_from"]) == (
        "default",
        None,
        {"pct": 15},
        "2026-01-01",
    )
    assert item["source"]


BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    ("missing", {"rate_bp": 9000, "services": ["CARE"]}, "value.budget_fen"),
    ("extra", {**LTC3, "cap_fen": 5}, "value.cap_fen"),
    ("text for a number", {**LTC3, "rate_bp": "9000"}, "value.rate_bp"),
    ("fraction for an integer", {**LTC3, "budget_fen": 100.5}, "value.budget_fen"),
    ("negative", {**LTC3, "budget_fen": -1}, "value.budget_fen"),
    ("null where the default never is", {**LTC3, "rate_bp": None}, "value.rate_bp"),
    ("wrong item", {**LTC3, "services": ["CARE", 3]}, "value.services[1]"),
    ("boolean for a number", {**LTC3, "rate_bp": True}, "value.rate_bp"),
    ("beyond JSON's safe integers", {**LTC3, "budget_fen": 2**60}, "value.budget_fen"),
]


@pytest.mark.parametrize(("case", "value", "field"), BAD_VALUES, ids=[c[0] for c in BAD_VALUES])
async def test_a_value_unlike_the_seeded_default_is_refused_naming_the_field(
    client: httpx.AsyncClient, db: AsyncSession, case: str, value: dict[str, Any], field: str
) -> None:
    admin = await headers_for(db, "demo_admin")
    r = await client.post(URL, json=body(value=value), headers=admin)
    assert (r.status_code, problem_code(r)) == (422, "policy.value_invalid"), (case, r.text)
    assert r.json()["field"] == field
    assert field in [e["field"] for e in r.json()["errors"]]


async def test_other_bad_writes_get_their_codes(client: httpx.AsyncClient, db: AsyncSession) -> None:
    admin = await headers_for(db, "demo_admin")
    cases: list[tuple[dict[str, Any], int, str]] = [
        (body(key="subsidy.unknown"), 422, "policy.unknown_key"),
        (body(valid_from="2026-11-19"), 422, "policy.backdated"),
        (body(valid_to="2026-12-31"), 422, "date_range.invalid"),
        (body(scope="no spaces"), 422, "validation.invalid"),
        (body(source=""), 422, "validation.invalid"),
    ]
    for sent, status, code in cases:
        r = await client.post(URL, json=sent, headers=admin)
        assert (r.status_code, problem_code(r)) == (status, code), (sent, r.text)
    # A number beyond a double (infinity once read) is refused when the body is decoded.
    raw = '{"key": "alarm.low_battery", "value": {"pct": 1e999}, "valid_from": "2027-01-01", "source": "x"}'
    r = await client.post(URL, content=raw, headers={**admin, "content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert (
        await db.scalar(select(PolicyValue.id).where(PolicyValue.valid_from == dt.date(2027, 1, 1))) is None
    )
    assert await db.scalar(select(PolicyValue.id).where(PolicyValue.key == "subsidy.unknown")) is None


async def test_today_is_allowed_and_a_nullable_field_takes_null_or_a_number(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await headers_for(db, "demo_admin")
    # service.price_fen's min_minutes is null for MEAL and a number elsewhere; 60.0 is read as 60.
    meal = {"fen": 1300, "unit": "meal", "min_minutes": 20.0}
    r = await client.post(
        URL,
        json=body(key="service.price_fen", scope="MEAL", value=meal, valid_from="2026-11-20"),
        headers=admin,
    )
    assert r.status_code == 201, r.text
    assert (r.json()["value"]["min_minutes"], r.json()["status"]) == (20, "in_effect")
    listed = in_effect(
        await client.get(URL, params={"prefix": "service.price_fen"}, headers=admin),
        "service.price_fen",
        "MEAL",
    )
    assert listed["value"]["fen"] == 1300
    # A scope the defaults do not name (a new band), with the key's shape.
    band = {"min_age": 110, "max_age": None, "fen": 50_000}
    r = await client.post(URL, json=body(key="allowance.old_age", scope="110+", value=band), headers=admin)
    assert r.status_code == 201, r.text


async def test_the_same_key_scope_and_start_twice_is_a_conflict(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await headers_for(db, "demo_admin")
    assert (await client.post(URL, json=body(), headers=admin)).status_code == 201
    again = await client.post(URL, json=body(value={**LTC3, "budget_fen": 1}), headers=admin)
    assert (again.status_code, problem_code(again)) == (409, "policy.duplicate")
    rows = await db.scalars(
        select(PolicyValue).where(
            PolicyValue.key == "subsidy.ltc",
            PolicyValue.scope == "3",
            PolicyValue.valid_from == dt.date(2027, 1, 1),
        )
    )
    assert [r.value["budget_fen"] for r in rows] == [100_000]
    # The request after the refused one still works (the savepoint was rolled back, not the request).
    assert (await client.post(URL, json=body(valid_from="2027-02-01"), headers=admin)).status_code == 201


async def test_a_future_row_is_deleted_and_a_row_in_effect_never_is(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await headers_for(db, "demo_admin")
    row = (await client.post(URL, json=body(), headers=admin)).json()
    gone = await client.delete(f"{URL}/rows/{row['id']}", params={"reason": "typo"}, headers=admin)
    assert gone.status_code == 204, gone.text
    assert await db.get(PolicyValue, row["id"]) is None
    created, deleted = await audit_of(db, row["id"])
    assert (deleted.action, deleted.after) == ("delete", {"reason": "typo"})
    assert deleted.before is not None
    assert deleted.before["value"] == LTC3
    assert created.action == "create"
    listing = await client.get(URL, params={"prefix": "subsidy.ltc", "on": "2027-01-01"}, headers=admin)
    assert in_effect(listing, "subsidy.ltc", "3")["value"]["budget_fen"] == 90_000
    again = await client.delete(f"{URL}/rows/{row['id']}", headers=admin)
    assert (again.status_code, problem_code(again)) == (404, "policy.not_found")

    seeded = in_effect(
        await client.get(URL, params={"prefix": "subsidy.ltc"}, headers=admin), "subsidy.ltc", "3"
    )
    refused = await client.delete(f"{URL}/rows/{seeded['row_id']}", headers=admin)
    assert (refused.status_code, problem_code(refused)) == (409, "policy.in_effect")
    # A row starting today is in effect too.
    today = (await client.post(URL, json=body(valid_from="2026-11-20"), headers=admin)).json()
    refused = await client.delete(f"{URL}/rows/{today['id']}", headers=admin)
    assert (refused.status_code, problem_code(refused)) == (409, "policy.in_effect")


async def test_a_row_in_effect_is_only_ever_ended_from_today_on(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    admin = await headers_for(db, "demo_admin")
    seeded = in_effect(
        await client.get(URL, params={"prefix": "subsidy.ltc"}, headers=admin), "subsidy.ltc", "3"
    )
    row_url = f"{URL}/rows/{seeded['row_id']}"
    past = await client.patch(row_url, json={"valid_to": "2026-11-19", "reason": "x"}, headers=admin)
    assert (past.status_code, problem_code(past)) == (422, "policy.valid_to_past")
    ended = await client.patch(
        row_url, json={"valid_to": "2026-12-31", "reason": "budget year ends"}, headers=admin
    )
    assert ended.status_code == 200, ended.text
    assert (ended.json()["valid_to"], ended.json()["status"], ended.json()["value"]) == (
        "2026-12-31",
        "in_effect",
        seeded["value"],
    )
    (update,) = await audit_of(db, seeded["row_id"])
    assert update.action == "update"
    assert update.before is not None
    assert update.after is not None
    assert (update.before["valid_to"], update.after["valid_to"]) == (None, "2026-12-31")
    assert update.after["reason"] == "budget year ends"
    # After its end, with no later row, the seeded default applies again.
    later = in_effect(
        await client.get(URL, params={"prefix": "subsidy.ltc", "on": "2027-01-01"}, headers=admin),
        "subsidy.ltc",
        "3",
    )
    assert (later["origin"], later["row_id"]) == ("default", None)
    # Re-opened (the end is still in the future, so no past day changes).
    reopened = await client.patch(row_url, json={"valid_to": None, "reason": "extended"}, headers=admin)
    assert (reopened.status_code, reopened.json()["valid_to"]) == (200, None)

    # A row that ended before today is history: never changed.
    old = PolicyValue(
        key="subsidy.ltc",
        scope="3",
        value=LTC3,
        valid_from=dt.date(2026, 3, 1),
        valid_to=dt.date(2026, 6, 30),
        source="old",
    )
    db.add(old)
    await db.commit()
    refused = await client.patch(
        f"{URL}/rows/{old.id}", json={"valid_to": "2027-01-31", "reason": "x"}, headers=admin
    )
    assert (refused.status_code, problem_code(refused)) == (409, "policy.ended")
    assert problem_code(await client.delete(f"{URL}/rows/{old.id}", headers=admin)) == "policy.in_effect"
    # A value is never edited: the body takes only valid_to and a reason.
    sneaky = await client.patch(row_url, json={"valid_to": None, "reason": "x", "value": LTC3}, headers=admin)
    assert (sneaky.status_code, problem_code(sneaky)) == (422, "validation.invalid")
    missing = await client.patch(
        f"{URL}/rows/999999999", json={"valid_to": None, "reason": "x"}, headers=admin
    )
    assert (missing.status_code, problem_code(missing)) == (404, "policy.not_found")


async def test_history_lists_every_row_oldest_first_with_its_status(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await headers_for(db, "demo_admin")
    supervisor = await headers_for(db, "demo_supervisor")
    for start, budget in (("2027-07-01", 110_000), ("2027-01-01", 100_000)):
        r = await client.post(
            URL, json=body(valid_from=start, value={**LTC3, "budget_fen": budget}), headers=admin
        )
        assert r.status_code == 201, r.text
    db.add(
        PolicyValue(key="subsidy.ltc", scope="3", value=LTC3, valid_from=dt.date(2026, 3, 1), source="old")
    )
    await db.commit()
    r = await client.get(f"{URL}/subsidy.ltc/history", params={"scope": "3"}, headers=supervisor)
    assert r.status_code == 200, r.text
    got = [(i["valid_from"], i["status"]) for i in r.json()["items"]]
    assert got == [
        ("2026-01-01", "superseded"),
        ("2026-03-01", "in_effect"),
        ("2027-01-01", "future"),
        ("2027-07-01", "future"),
    ]
    every_scope = (await client.get(f"{URL}/subsidy.ltc/history", headers=supervisor)).json()["items"]
    assert {i["scope"] for i in every_scope} == {"2", "3", "4"}
    assert [i["valid_from"] for i in every_scope] == sorted(i["valid_from"] for i in every_scope)
    one = await client.get(f"{URL}/rows/{r.json()['items'][1]['id']}", headers=supervisor)
    assert (one.status_code, one.json()["status"]) == (200, "in_effect")
    unknown = await client.get(f"{URL}/nothing.here/history", headers=supervisor)
    assert (unknown.status_code, problem_code(unknown)) == (404, "policy.unknown_key")
