"""``/api/v1/callcentre/welfare`` through the real app: who reads the plan (operators, supervisors and
civil-affairs officers in their districts, admins everywhere; others 403; out of district 404), who
sets and clears an override (the district's civil-affairs officers and admins, audited), and that
the override beats the rules from today."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callcentre import welfare_service as service
from core.audit import AuditLog
from core.identity.models import Role
from tests.conftest import TEST_NOW
from tests.factories import HANCHUAN, TODAY, XIAONAN, Factory
from tests.support.registry import problem_code

pytestmark = pytest.mark.integration

PLAN = "/api/v1/callcentre/welfare/plan"


def override(elder_id: int) -> str:
    return f"/api/v1/callcentre/welfare/overrides/{elder_id}"


async def test_each_role_reads_the_plan_of_its_districts_only(
    client: httpx.AsyncClient, make: Factory
) -> None:
    elder = await make.elder(XIAONAN, living_situation="alone")  # 101 years old: high
    xiaonan = (await make.district(XIAONAN)).id
    hanchuan = (await make.district(HANCHUAN)).id
    allowed = {
        "admin": await make.admin(),
        "ca_xiaonan": await make.civil_affairs(XIAONAN),
        "operator_xiaonan": await make.account(Role.OPERATOR, districts=[XIAONAN]),
        "operator_citywide": await make.account(Role.OPERATOR),
        "supervisor_xiaonan": await make.account(Role.SUPERVISOR, districts=[XIAONAN]),
    }
    for who, acc in allowed.items():
        r = await client.get(f"{PLAN}/{elder.id}", headers=acc.headers)
        assert r.status_code == 200, (who, r.text)
        body = r.json()
        assert (body["elder_id"], body["tier"], body["source"]) == (elder.id, "high", "rules")
        assert (body["next_due_on"], body["last_visit_on"], body["latest_visit"]) == (
            TODAY.isoformat(),
            None,
            None,
        )

    outside = {
        "ca_hanchuan": await make.civil_affairs(HANCHUAN),
        "operator_hanchuan": await make.account(Role.OPERATOR, districts=[HANCHUAN]),
    }
    for who, acc in outside.items():
        r = await client.get(f"{PLAN}/{elder.id}", headers=acc.headers)
        assert r.status_code == 404, who
        assert problem_code(r) == "welfare.elder_not_found"
        page = (await client.get(PLAN, params={"limit": 200}, headers=acc.headers)).json()
        assert page["items"], who  # the demo's Hanchuan elders in the programme
        assert {i["district_id"] for i in page["items"]} == {hanchuan}, who
        filtered = await client.get(PLAN, params={"district_id": xiaonan}, headers=acc.headers)
        assert filtered.json()["items"] == [], who

    for role in (Role.FAMILY, Role.CAREGIVER, Role.PROVIDER_ADMIN, Role.ELDER):
        acc = await make.account(role)
        assert (await client.get(PLAN, headers=acc.headers)).status_code == 403, role
        assert (await client.get(f"{PLAN}/{elder.id}", headers=acc.headers)).status_code == 403, role

    ca = allowed["ca_xiaonan"]
    page = (await client.get(PLAN, params={"limit": 200}, headers=ca.headers)).json()
    assert {i["district_id"] for i in page["items"]} == {xiaonan}
    assert all(i["tier"] != "none" for i in page["items"])


async def test_the_plan_pages_by_elder_id_and_filters_by_tier(
    client: httpx.AsyncClient, make: Factory
) -> None:
    admin = await make.admin()
    first = (await client.get(PLAN, params={"limit": 3}, headers=admin.headers)).json()
    assert len(first["items"]) == 3
    assert first["has_more"] is True
    assert first["next_after"] == first["items"][-1]["elder_id"]
    second = (
        await client.get(PLAN, params={"limit": 3, "after": first["next_after"]}, headers=admin.headers)
    ).json()
    ids = [i["elder_id"] for i in first["items"] + second["items"]]
    assert ids == sorted(set(ids))
    low = (await client.get(PLAN, params={"tier": "low", "limit": 20}, headers=admin.headers)).json()
    assert low["items"]
    assert {i["tier"] for i in low["items"]} == {"low"}
    bad = await client.get(PLAN, params={"tier": "urgent"}, headers=admin.headers)
    assert bad.status_code == 422


async def test_an_officer_overrides_the_tier_and_clears_it_audited(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(XIAONAN, living_situation="with_family")  # not in the programme
    ca = await make.civil_affairs(XIAONAN)
    r = await client.put(
        override(elder.id),
        json={"tier": "high", "reason": "daughter moved away; 社区反映"},
        headers=ca.headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["tier"], body["source"], body["next_due_on"]) == ("high", "override", TODAY.isoformat())
    assert body["override"] == {"tier": "high", "valid_from": TODAY.isoformat(), "valid_to": None}
    # The job now visits the elder.
    placed = await service.place_due_visits(session=db, now=TEST_NOW, elder_ids=[elder.id])
    assert len(placed) == 1
    seen = (await client.get(f"{PLAN}/{elder.id}", headers=ca.headers)).json()
    assert seen["open_order"] is True
    assert seen["latest_visit"]["order_id"] == placed[0]
    assert seen["latest_visit"]["reason"] == "cadence"

    # Lowered the same day: the first override is replaced.
    r = await client.put(
        override(elder.id), json={"tier": "low", "reason": "re-assessed"}, headers=ca.headers
    )
    assert (r.json()["tier"], r.json()["source"]) == ("low", "override")
    r = await client.post(f"{override(elder.id)}/clear", headers=ca.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["tier"], r.json()["source"], r.json()["override"]) == ("none", "rules", None)
    again = await client.post(f"{override(elder.id)}/clear", headers=ca.headers)
    assert again.status_code == 409
    assert problem_code(again) == "welfare.no_override"

    actions = [
        a.action
        for a in await db.scalars(
            select(AuditLog)
            .where(AuditLog.entity == "welfare_override", AuditLog.actor_user_id == ca.user_id)
            .order_by(AuditLog.id)
        )
    ]  # fmt: skip
    assert actions == ["create", "delete", "create", "delete"]


async def test_who_may_override(client: httpx.AsyncClient, make: Factory) -> None:
    elder = await make.elder(XIAONAN)
    body = {"tier": "medium", "reason": "checked by phone"}
    admin = await make.admin()
    assert (await client.put(override(elder.id), json=body, headers=admin.headers)).status_code == 200
    for acc in (
        await make.account(Role.OPERATOR, districts=[XIAONAN]),
        await make.account(Role.SUPERVISOR),
        await make.account(Role.FAMILY),
    ):
        assert (await client.put(override(elder.id), json=body, headers=acc.headers)).status_code == 403
        assert (await client.post(f"{override(elder.id)}/clear", headers=acc.headers)).status_code == 403
    hanchuan = await make.civil_affairs(HANCHUAN)
    r = await client.put(override(elder.id), json=body, headers=hanchuan.headers)
    assert r.status_code == 404
    assert problem_code(r) == "welfare.elder_not_found"
    assert (
        await client.put(override(elder.id), json={"tier": "max", "reason": "x"}, headers=admin.headers)
    ).status_code in (400, 422)
    assert (
        await client.put(override(elder.id), json={"tier": "low", "reason": ""}, headers=admin.headers)
    ).status_code in (400, 422)
    assert (await client.put(override(2**62), json=body, headers=admin.headers)).status_code == 404
