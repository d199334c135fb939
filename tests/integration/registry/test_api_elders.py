"""Elders over HTTP: CRUD, sub-resources, scoping per role, ID masking and the audit trail."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import AuditLog
from core.identity.models import Role
from registry.assessment import ITEMS
from registry.idcard import mask_id_number
from registry.models import Elder
from tests.factories import HANCHUAN, TODAY, XIAONAN, Factory
from tests.support.registry import elder_body, new_id_number, problem_code

pytestmark = pytest.mark.integration


async def audit_rows(
    db: AsyncSession, entity: str, entity_id: object, action: str | None = None
) -> list[AuditLog]:
    stmt = select(AuditLog).where(AuditLog.entity == entity, AuditLog.entity_id == str(entity_id))
    if action is not None:
        stmt = stmt.where(AuditLog.action == action)
    return list((await db.scalars(stmt.order_by(AuditLog.id))).all())


# --- CRUD ---------------------------------------------------------------------------------------


async def test_admin_creates_reads_updates_and_erases_an_elder(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    admin = (await make.admin()).headers
    community = await make.community(XIAONAN)
    body = elder_body(community.id)
    created = await client.post("/api/v1/elders", json=body, headers=admin)
    assert created.status_code == 201, created.text
    elder = created.json()
    # Derived from the ID number and the community; stored normalised; masked in write responses.
    assert elder["gender"] == "M"
    # The birth date is 8 of the masked digits: only the age is shown with a masked number.
    assert elder["birth_on"] is None
    assert elder["age"] == 101
    assert elder["district_id"] == (await make.district(XIAONAN)).id
    assert (elder["lat"], elder["lon"]) == (community.lat, community.lon)
    assert elder["phone"] == "13800001234"
    assert elder["id_number"] == mask_id_number(body["id_number"])
    assert elder["id_number_masked"] is True
    assert [c["position"] for c in elder["contacts"]] == [1, 2]
    assert elder["categories"][0]["category"] == "subsistence"
    assert elder["status"] == "active"
    assert elder["level"] is None

    create_audit = await audit_rows(db, "elder", elder["id"], "create")
    assert len(create_audit) == 1
    assert create_audit[0].after is not None
    assert create_audit[0].after["id_number"] == "<redacted>"
    assert create_audit[0].after["contacts"][0]["name"] == "张三"

    patched = await client.patch(
        f"/api/v1/elders/{elder['id']}", json={"name": "改名老人", "has_dementia": True}, headers=admin
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "改名老人"
    assert patched.json()["has_dementia"] is True
    (update,) = await audit_rows(db, "elder", elder["id"], "update")
    assert update.before is not None
    assert update.after is not None
    assert (update.before["name"], update.after["name"]) == ("测试老人", "改名老人")

    found = await client.get(
        "/api/v1/elders", params={"name": "改名", "district_code": "420902"}, headers=admin
    )
    assert [e["id"] for e in found.json()["items"]] == [elder["id"]]

    # An elder with a login (or other history) cannot be erased.
    with_login = await make.elder()
    await make.account(Role.ELDER, elder=with_login)
    kept = await client.delete(f"/api/v1/elders/{with_login.id}", headers=admin)
    assert (kept.status_code, problem_code(kept)) == (409, "conflict.in_use")

    erased = await client.delete(f"/api/v1/elders/{elder['id']}", headers=admin)
    assert erased.status_code == 204
    assert (await client.get(f"/api/v1/elders/{elder['id']}", headers=admin)).status_code == 404
    assert len(await audit_rows(db, "elder", elder["id"], "delete")) == 1


async def test_id_number_and_phone_are_validated(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    admin = (await make.admin()).headers
    community = await make.community(XIAONAN)
    good = new_id_number()
    bad_check = good[:-1] + ("0" if good[-1] != "0" else "1")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"id_number": bad_check}, 422, "id_number.check_digit"),
        ({"id_number": "42090219250506"}, 422, "id_number.length"),
        ({"id_number": "420902192513061234"}, 422, "id_number.birth_date"),
        ({"id_number": good, "gender": "F"}, 422, "id_number.gender_mismatch"),
        ({"id_number": good, "birth_on": "1925-05-07"}, 422, "id_number.birth_mismatch"),
        ({"phone": "12345"}, 422, "phone.format"),
        ({"contacts": [{"name": "x", "relation": "son", "phone": "0712-1234567"}]}, 422, "phone.format"),
        ({"community_id": 2_000_000_000}, 422, "reference.unknown"),
        ({"categories": [{"category": "veteran", "valid_from": "2026-02-01", "valid_to": "2026-01-01"}]},
         422, "date_range.invalid"),
    ]  # fmt: skip
    for overrides, status, code in cases:
        r = await client.post("/api/v1/elders", json={**elder_body(community.id), **overrides}, headers=admin)
        assert (r.status_code, problem_code(r)) == (status, code), (overrides, r.text)
    # Nothing was stored by the refused requests.
    assert await db.scalar(select(func.count()).select_from(Elder).where(Elder.name == "测试老人")) == 0

    first = await client.post("/api/v1/elders", json=elder_body(community.id, id_number=good), headers=admin)
    assert first.status_code == 201
    again = await client.post(
        "/api/v1/elders", json=elder_body(community.id, id_number=good.lower()), headers=admin
    )
    assert (again.status_code, problem_code(again)) == (409, "elder.duplicate_id_number")


# --- Scoping ------------------------------------------------------------------------------------


async def test_civil_affairs_sees_and_edits_only_their_districts(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    civil = (await make.civil_affairs(XIAONAN)).headers
    xiaonan = (await make.district(XIAONAN)).id
    own = await make.elder(XIAONAN)
    other = await make.elder(HANCHUAN)

    listed = await client.get("/api/v1/elders", params={"limit": 200}, headers=civil)
    assert listed.status_code == 200
    page = listed.json()
    expected_total = await db.scalar(
        select(func.count()).select_from(Elder).where(Elder.district_id == xiaonan)
    )
    assert page["total"] == expected_total
    assert expected_total is not None
    assert expected_total > 0
    assert {e["district_id"] for e in page["items"]} == {xiaonan}
    # A filter cannot widen the scope.
    assert (await client.get("/api/v1/elders", params={"district_code": HANCHUAN}, headers=civil)).json()[
        "total"
    ] == 0

    # Out of district: indistinguishable from a missing record.
    for method, path, body in [
        ("GET", f"/api/v1/elders/{other.id}", None),
        ("PATCH", f"/api/v1/elders/{other.id}", {"name": "x"}),
        ("POST", f"/api/v1/elders/{other.id}/status", {"status": "moved", "on": "2026-11-01"}),
        ("GET", f"/api/v1/elders/{other.id}/assessments", None),
    ]:
        r = await client.request(method, path, json=body, headers=civil)
        assert (r.status_code, problem_code(r)) == (404, "elder.not_found"), (method, path)

    assert (
        await client.patch(f"/api/v1/elders/{own.id}", json={"address": "新地址1号"}, headers=civil)
    ).status_code == 200
    registered = await client.post("/api/v1/elders", json=elder_body(own.community_id), headers=civil)
    assert registered.status_code == 201
    assert registered.json()["district_id"] == xiaonan
    # Moving an elder out of the officer's districts, or registering one elsewhere, is refused.
    hanchuan_community = await make.community(HANCHUAN)
    moved = await client.patch(
        f"/api/v1/elders/{own.id}", json={"community_id": hanchuan_community.id}, headers=civil
    )
    assert (moved.status_code, problem_code(moved)) == (403, "scope.district")
    created = await client.post("/api/v1/elders", json=elder_body(hanchuan_community.id), headers=civil)
    assert (created.status_code, problem_code(created)) == (403, "scope.district")


async def test_family_and_elder_see_only_their_own(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    mother, father = await make.elder(XIAONAN, gender="F"), await make.elder(XIAONAN)
    stranger = await make.elder(HANCHUAN)
    family = (await make.account(Role.FAMILY, guardian=await make.guardian(mother, father))).headers
    elder = (await make.account(Role.ELDER, elder=father)).headers

    listed = (await client.get("/api/v1/elders", headers=family)).json()
    assert {e["id"] for e in listed["items"]} == {mother.id, father.id}
    assert listed["total"] == 2
    own_id = mother.id
    own = await client.get(f"/api/v1/elders/{own_id}", headers=family)
    assert own.status_code == 200
    assert own.json()["id_number_masked"] is True
    # Another elder is "not found" (404, not 403: existence does not leak).
    for path in (f"/api/v1/elders/{stranger.id}", f"/api/v1/elders/{stranger.id}/guardians",
                 f"/api/v1/elders/{stranger.id}/blocked-caregivers"):  # fmt: skip
        r = await client.get(path, headers=family)
        assert (r.status_code, problem_code(r)) == (404, "elder.not_found"), path
    # Families maintain their elders' emergency contacts, nobody else's.
    contacts = [{"name": "王五", "relation": "son", "phone": "13911112222"}]
    ok = await client.put(f"/api/v1/elders/{own_id}/contacts", json={"contacts": contacts}, headers=family)
    assert ok.status_code == 200
    assert ok.json() == [{"position": 1, **contacts[0]}]
    no = await client.put(
        f"/api/v1/elders/{stranger.id}/contacts", json={"contacts": contacts}, headers=family
    )
    assert no.status_code == 404
    # ... but not the master data (route rule).
    assert (
        await client.patch(f"/api/v1/elders/{own_id}", json={"name": "x"}, headers=family)
    ).status_code == 403

    mine = (await client.get("/api/v1/elders", headers=elder)).json()
    assert [e["id"] for e in mine["items"]] == [father.id]
    assert (await client.get(f"/api/v1/elders/{stranger.id}", headers=elder)).status_code == 404


async def test_call_centre_reads_every_elder_but_edits_none(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    operator = (await make.account(Role.OPERATOR)).headers
    other = await make.elder(HANCHUAN)
    total = await db.scalar(select(func.count()).select_from(Elder))
    listed = (await client.get("/api/v1/elders", params={"limit": 1}, headers=operator)).json()
    assert listed["total"] == total
    detail = await client.get(f"/api/v1/elders/{other.id}", headers=operator)
    assert detail.status_code == 200
    assert detail.json()["id_number"] == mask_id_number(other.id_number)
    assert await audit_rows(db, "elder", other.id, "read_unmasked") == []
    assert (
        await client.patch(f"/api/v1/elders/{other.id}", json={"name": "x"}, headers=operator)
    ).status_code == 403


# --- Masking and the audit of unmasked reads -----------------------------------------------------


async def test_unmasked_reads_are_audited(client: httpx.AsyncClient, db: AsyncSession, make: Factory) -> None:
    officer = await make.civil_affairs(XIAONAN)
    civil = officer.headers
    own = await make.elder(XIAONAN)
    listed = (await client.get("/api/v1/elders", params={"limit": 5}, headers=civil)).json()
    assert all(e["id_number_masked"] for e in listed["items"]), "lists are always masked"
    assert await audit_rows(db, "elder", own.id, "read_unmasked") == []

    detail = (await client.get(f"/api/v1/elders/{own.id}", headers=civil)).json()
    assert detail["id_number"] == own.id_number
    assert detail["id_number_masked"] is False
    assert detail["birth_on"] == own.birth_on.isoformat()
    (row,) = await audit_rows(db, "elder", own.id, "read_unmasked")
    assert row.actor_user_id == officer.user_id
    assert row.actor_role == "civil_affairs"
    assert row.after == {"fields": ["id_number"]}


# --- Sub-resources ------------------------------------------------------------------------------


async def test_categories_coverage_contacts_and_status(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    admin = (await make.admin()).headers
    community = await make.community(XIAONAN)
    elder = (await client.post("/api/v1/elders", json=elder_body(community.id), headers=admin)).json()
    base = f"/api/v1/elders/{elder['id']}"

    overlap = await client.post(
        f"{base}/categories", json={"category": "subsistence", "valid_from": "2026-06-01"}, headers=admin
    )
    assert (overlap.status_code, problem_code(overlap)) == (409, "elder_category.overlap")
    category_id = elder["categories"][0]["id"]
    closed = await client.patch(
        f"{base}/categories/{category_id}", json={"valid_to": "2026-05-31"}, headers=admin
    )
    assert closed.status_code == 200
    assert closed.json()["valid_to"] == "2026-05-31"
    added = await client.post(
        f"{base}/categories", json={"category": "subsistence", "valid_from": "2026-06-01"}, headers=admin
    )
    assert added.status_code == 201
    assert (await client.delete(f"{base}/categories/{added.json()['id']}", headers=admin)).status_code == 204
    assert (await client.delete(f"{base}/categories/{added.json()['id']}", headers=admin)).status_code == 404

    ltc = await client.post(
        f"{base}/ltc-coverages", json={"policy_no": "CQX-1", "valid_from": "2026-01-01"}, headers=admin
    )
    assert ltc.status_code == 201
    clash = await client.post(
        f"{base}/ltc-coverages",
        json={"policy_no": "CQX-2", "valid_from": "2025-01-01", "valid_to": "2026-01-01"},
        headers=admin,
    )
    assert (clash.status_code, problem_code(clash)) == (409, "ltc_coverage.overlap")
    ended = await client.patch(
        f"{base}/ltc-coverages/{ltc.json()['id']}", json={"valid_to": "2026-12-31"}, headers=admin
    )
    assert ended.json()["valid_to"] == "2026-12-31"
    coverage = f"{base}/ltc-coverages/{ltc.json()['id']}"
    assert (await client.delete(coverage, headers=admin)).status_code == 204
    assert (await client.delete(coverage, headers=admin)).status_code == 404
    assert (await client.get(base, headers=admin)).json()["ltc_coverages"] == []

    order = [
        {"name": "甲", "relation": "daughter", "phone": "13911110001"},
        {"name": "乙", "relation": "son", "phone": "13911110002"},
        {"name": "丙", "relation": "neighbour", "phone": "13911110003"},
    ]
    replaced = await client.put(f"{base}/contacts", json={"contacts": order[::-1]}, headers=admin)
    assert [c["name"] for c in replaced.json()] == ["丙", "乙", "甲"]
    read = (await client.get(base, headers=admin)).json()
    assert [c["name"] for c in read["contacts"]] == ["丙", "乙", "甲"]
    assert [c["position"] for c in read["contacts"]] == [1, 2, 3]
    too_many = await client.put(f"{base}/contacts", json={"contacts": order * 2}, headers=admin)
    assert too_many.status_code == 422

    future = await client.post(
        f"{base}/status",
        json={"status": "hospitalised", "on": str(TODAY + dt.timedelta(days=1))},
        headers=admin,
    )
    assert (future.status_code, problem_code(future)) == (422, "status.future_date")
    died = await client.post(f"{base}/status", json={"status": "deceased", "on": str(TODAY)}, headers=admin)
    assert died.json()["status"] == "deceased"
    assert died.json()["status_on"] == str(TODAY)
    revived = await client.post(f"{base}/status", json={"status": "active", "on": str(TODAY)}, headers=admin)
    assert (revived.status_code, problem_code(revived)) == (409, "elder.deceased")
    (status_audit,) = await audit_rows(db, "elder", elder["id"], "status_change")
    assert status_audit.before == {"status": "active", "status_on": None}
    assert status_audit.after == {"status": "deceased", "status_on": str(TODAY)}


async def test_a_patch_changes_only_the_fields_it_sends(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    """A field left out of a PATCH keeps its value; ``null`` is a value (it clears a nullable field)."""
    admin = (await make.admin()).headers
    elder = await make.elder(XIAONAN, phone="13800001234", categories=["subsistence"])
    base = f"/api/v1/elders/{elder.id}"
    moved = await client.patch(base, json={"address": "新地址2号"}, headers=admin)
    assert moved.status_code == 200, moved.text
    assert (moved.json()["address"], moved.json()["phone"]) == ("新地址2号", "13800001234")
    cleared = (await client.patch(base, json={"phone": None}, headers=admin)).json()
    assert (cleared["address"], cleared["phone"]) == ("新地址2号", None)

    category = f"{base}/categories/{elder.categories[0].id}"
    closed = (await client.patch(category, json={"valid_to": "2026-06-30"}, headers=admin)).json()
    assert (closed["category"], closed["valid_from"], closed["valid_to"]) == (
        "subsistence",
        "2026-01-01",
        "2026-06-30",
    )
    reopened = (await client.patch(category, json={"valid_to": None}, headers=admin)).json()
    assert (reopened["valid_from"], reopened["valid_to"]) == ("2026-01-01", None)


async def test_list_filters_match_the_database(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    admin = (await make.admin()).headers
    hanchuan = (await make.district(HANCHUAN)).id
    # Something for every filter to find, and more than two pages of three.
    await make.elder(HANCHUAN, living_situation="empty_nest")
    await make.elder(HANCHUAN, status="deceased")
    await make.elder(XIAONAN, has_dementia=True)
    await make.elder(XIAONAN, living_situation="with_family")
    for level in (2, 4):
        await make.assessment(await make.elder(XIAONAN), level=level)
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"district_code": HANCHUAN}, Elder.district_id == hanchuan),
        ({"living_situation": "alone"}, Elder.living_situation == "alone"),
        ({"has_dementia": "true"}, Elder.has_dementia.is_(True)),
        ({"status": "deceased"}, Elder.status == "deceased"),
        ({"district_code": HANCHUAN, "living_situation": "empty_nest"},
         (Elder.district_id == hanchuan) & (Elder.living_situation == "empty_nest")),
    ]  # fmt: skip
    for params, condition in cases:
        page = (await client.get("/api/v1/elders", params={**params, "limit": 200}, headers=admin)).json()
        assert page["total"] == await db.scalar(select(func.count()).select_from(Elder).where(condition)), (
            params
        )
        assert page["total"] > 0, params
    # Pagination walks the same ordered set without gaps.
    first = (await client.get("/api/v1/elders", params={"limit": 3, "offset": 0}, headers=admin)).json()
    second = (await client.get("/api/v1/elders", params={"limit": 3, "offset": 3}, headers=admin)).json()
    ids = [e["id"] for e in first["items"] + second["items"]]
    assert ids == sorted(ids)
    assert len(set(ids)) == 6
    # Level: every elder listed has that current level.
    for level in (2, 4):
        page = (
            await client.get("/api/v1/elders", params={"level": level, "limit": 50}, headers=admin)
        ).json()
        assert page["total"] > 0
        assert {e["level"] for e in page["items"]} == {level}


# --- Assessments --------------------------------------------------------------------------------


def items_totalling(total: int) -> dict[str, int]:
    """Item scores adding up to ``total`` (filled from the first item on)."""
    out = {}
    left = total
    for item in ITEMS:
        out[item.key] = min(item.max_score, left)
        left -= out[item.key]
    assert left == 0
    return out


async def test_assessment_levels_are_computed(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    civil = (await make.civil_affairs(XIAONAN)).headers
    own = await make.elder(XIAONAN, has_dementia=False)
    base = f"/api/v1/elders/{own.id}/assessments"
    body: dict[str, Any] = {
        "items": items_totalling(65),
        "assessor": "评估员甲",
        "assessed_on": str(TODAY),
        "has_dementia_dx": True,
    }
    r = await client.post(base, json=body, headers=civil)
    assert r.status_code == 201, r.text
    a = r.json()
    assert (a["total"], a["preliminary_level"], a["final_level"]) == (65, 2, 3)
    assert a["valid_until"] == str(dt.date(TODAY.year + 1, TODAY.month, TODAY.day) - dt.timedelta(days=1))
    assert a["level_name_zh"] == "重度失能"
    elder_after = (await client.get(f"/api/v1/elders/{own.id}", headers=civil)).json()
    assert elder_after["level"] == 3
    assert elder_after["has_dementia"] is True  # the diagnosis found by the assessor marks the elder
    listed = (await client.get(base, headers=civil)).json()
    assert listed["items"][0]["id"] == a["id"]
    assert (await client.get(f"/api/v1/assessments/{a['id']}", headers=civil)).json()["total"] == 65
    assert len(await audit_rows(db, "assessment", a["id"], "create")) == 1

    out_of_range = {**body, "items": {**body["items"], "stairs": 4}}
    r = await client.post(base, json=out_of_range, headers=civil)
    assert (r.status_code, problem_code(r)) == (422, "validation.invalid")
    assert r.json()["errors"][0]["key"] == "items.stairs"
    r = await client.post(
        base, json={**body, "assessed_on": str(TODAY + dt.timedelta(days=1))}, headers=civil
    )
    assert (r.status_code, problem_code(r)) == (422, "assessment.future_date")

    # Another elder's family does not see it.
    family = await make.account(Role.FAMILY, guardian=await make.guardian(await make.elder(XIAONAN)))
    assert (await client.get(f"/api/v1/assessments/{a['id']}", headers=family.headers)).status_code == 404


async def test_a_request_missing_three_items_gets_one_problem_naming_all_three(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    civil = (await make.civil_affairs(XIAONAN)).headers
    own = await make.elder(XIAONAN)
    gone = ("eating", "stairs", "social")
    items = {k: v for k, v in items_totalling(70).items() if k not in gone}
    body = {"items": items, "assessor": "评估员甲", "assessed_on": str(TODAY)}
    r = await client.post(f"/api/v1/elders/{own.id}/assessments", json=body, headers=civil)
    assert (r.status_code, problem_code(r)) == (422, "assessment.item_missing")
    problem = r.json()
    assert problem["missing"] == list(gone)
    assert problem["item"] == "eating"
    assert all(key in problem["detail"] for key in gone)
    assert await audit_rows(db, "assessment", own.id) == []


async def test_openapi_types_each_of_the_26_items_with_its_range(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/api/schema/openapi.json")).json()
    components = schema["components"]["schemas"]
    create = components["AssessmentCreate"]["properties"]["items"]
    read = components["AssessmentRead"]["properties"]["items"]
    assert create["allOf"] == [read] == [{"$ref": "#/components/schemas/ItemScores"}]
    assert "all are required" in create["description"]
    items = components["ItemScores"]
    assert items["type"] == "object"
    assert list(items["properties"]) == [i.key for i in ITEMS]
    for item in ITEMS:
        prop = items["properties"][item.key]
        assert (prop["type"], prop["minimum"], prop["maximum"]) == ("integer", 0, item.max_score)
    assert items["properties"]["stairs"]["maximum"] == 3
    assert items["properties"]["aggression"]["maximum"] == 1


# --- Blocked caregivers -------------------------------------------------------------------------


async def test_family_blocks_and_unblocks_a_caregiver(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    own = await make.elder(XIAONAN)
    stranger = await make.elder(HANCHUAN)
    family = (await make.account(Role.FAMILY, guardian=await make.guardian(own))).headers
    someone = await make.caregiver(await make.provider(XIAONAN))
    own_id, caregiver_id = own.id, someone.id
    base = f"/api/v1/elders/{own_id}/blocked-caregivers"

    r = await client.post(base, json={"caregiver_id": caregiver_id, "reason": "迟到多次"}, headers=family)
    assert r.status_code == 201
    assert r.json()["caregiver_id"] == caregiver_id
    assert [b["caregiver_id"] for b in (await client.get(base, headers=family)).json()] == [caregiver_id]
    again = await client.post(base, json={"caregiver_id": caregiver_id}, headers=family)
    assert (again.status_code, problem_code(again)) == (409, "conflict.duplicate")
    unknown = await client.post(base, json={"caregiver_id": 999_999_999}, headers=family)
    assert (unknown.status_code, problem_code(unknown)) == (422, "reference.unknown")
    other = await client.post(
        f"/api/v1/elders/{stranger.id}/blocked-caregivers",
        json={"caregiver_id": caregiver_id},
        headers=family,
    )
    assert other.status_code == 404
    # Caregivers never learn who blocked them (route rule).
    caregiver = (await make.account(Role.CAREGIVER, caregiver=someone)).headers
    assert (await client.get(base, headers=caregiver)).status_code == 403

    assert (await client.delete(f"{base}/{caregiver_id}", headers=family)).status_code == 204
    assert (await client.get(base, headers=family)).json() == []
    assert (await client.delete(f"{base}/{caregiver_id}", headers=family)).status_code == 404
    actions = [a.action for a in await audit_rows(db, "elder_blocked_caregiver", f"{own_id}/{caregiver_id}")]
    assert actions == ["create", "delete"]
