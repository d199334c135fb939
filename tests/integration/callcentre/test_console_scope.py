"""District scoping on every call-centre endpoint (DOMAIN §9): an operator or supervisor of another
district gets 404 ``alarm.not_found`` (the alarm's existence is not revealed), a civil-affairs officer
of the district reads but acts on nothing, the service-side and family roles get 403; city-wide
operators and admins reach every alarm."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.identity.models import Role
from tests.factories import HANCHUAN, XIAONAN, Account, Factory
from tests.support.callcentre import alarm_row, plant

pytestmark = pytest.mark.integration

API = "/api/v1/callcentre"
READS = [("GET", "/alarms/{id}", None), ("GET", "/alarms/{id}/timeline", None)]
WRITES = [
    ("POST", "/alarms/{id}/claim", None),
    ("POST", "/alarms/{id}/ack", None),
    ("POST", "/alarms/{id}/comments", {"text": "看一下"}),
    ("POST", "/alarms/{id}/actions", {"action": "call_elder", "result": "reached"}),
    ("POST", "/alarms/{id}/clear", {"outcome": "test"}),
    ("POST", "/alarms/{id}/reopen", {"reason": "x"}),
]
ASSIGN = ("POST", "/alarms/{id}/assign", {"user_id": 0})


async def call(
    client: httpx.AsyncClient, who: Account, method: str, path: str, body: object, alarm_id: int
) -> httpx.Response:
    return await client.request(method, API + path.format(id=alarm_id), json=body, headers=who.headers)


def code(r: httpx.Response) -> tuple[int, str | None]:
    return r.status_code, r.json().get("code")


async def test_staff_of_another_district_find_nothing(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(XIAONAN)
    alarm_id = await plant(db, elder_id=elder.id, type="SOS")
    far_operator = await make.account(Role.OPERATOR, districts=(HANCHUAN,))
    far_supervisor = await make.account(Role.SUPERVISOR, districts=(HANCHUAN,))
    far_civil = await make.civil_affairs(HANCHUAN)
    near = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    for who in (far_operator, far_supervisor):
        assign = (*ASSIGN[:2], {"user_id": near.user_id})
        for method, path, body in [*READS, *WRITES, assign]:
            if path.endswith("assign") and who is far_operator:
                continue  # operators do not assign at all (403, below)
            r = await call(client, who, method, path, body, alarm_id)
            assert code(r) == (404, "alarm.not_found"), (method, path, r.text)
    for method, path, body in READS:
        assert code(await call(client, far_civil, method, path, body, alarm_id)) == (404, "alarm.not_found")
    # Not in their queue, not presented by their console.
    for who in (far_operator, far_supervisor, far_civil):
        items = (await client.get(f"{API}/alarms", headers=who.headers)).json()["items"]
        assert alarm_id not in [i["id"] for i in items]
        asked = await client.get(f"{API}/alarms?district_id={elder.district_id}", headers=who.headers)
        assert asked.json()["items"] == []
    r = await client.post(
        f"{API}/alarms/presented", json={"alarm_ids": [alarm_id]}, headers=far_operator.headers
    )
    assert r.json() == {"alarm_ids": []}
    row = await alarm_row(db, alarm_id)
    assert (row["presented_at"], row["assignee_id"], row["acknowledged_at"]) == (None, None, None)


async def test_civil_affairs_read_and_never_act(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(XIAONAN)
    alarm_id = await plant(db, elder_id=elder.id, type="FALL")
    civil = await make.civil_affairs(XIAONAN)
    for method, path, body in READS:
        r = await call(client, civil, method, path, body, alarm_id)
        assert r.status_code == 200, (path, r.text)
    items = (await client.get(f"{API}/alarms", headers=civil.headers)).json()["items"]
    assert alarm_id in [i["id"] for i in items]
    assert (await client.get(f"{API}/kpis", headers=civil.headers)).status_code == 200
    for method, path, body in [*WRITES, ASSIGN, ("POST", "/alarms/presented", {"alarm_ids": [alarm_id]})]:
        assert code(await call(client, civil, method, path, body, alarm_id)) == (403, "auth.forbidden"), path
    row = await alarm_row(db, alarm_id)
    assert (row["presented_at"], row["assignee_id"], row["acknowledged_at"]) == (None, None, None)


@pytest.mark.parametrize("role", [Role.FAMILY, Role.CAREGIVER, Role.ELDER, Role.PROVIDER_ADMIN])
async def test_other_roles_are_refused_everything(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory, role: Role
) -> None:
    elder = await make.elder(XIAONAN)
    alarm_id = await plant(db, elder_id=elder.id, type="SOS")
    guardian = await make.guardian(elder) if role == Role.FAMILY else None
    who = await make.account(role, guardian=guardian, elder=elder if role == Role.ELDER else None)
    everything = [
        *READS,
        *WRITES,
        ASSIGN,
        ("GET", "/alarms", None),
        ("GET", "/kpis", None),
        ("POST", "/alarms/presented", {"alarm_ids": [alarm_id]}),
    ]
    for method, path, body in everything:
        assert code(await call(client, who, method, path, body, alarm_id)) == (403, "auth.forbidden"), path


async def test_city_wide_staff_and_admins_reach_every_district(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    near, far = await make.elder(XIAONAN), await make.elder(HANCHUAN)
    ids = [await plant(db, elder_id=e.id, type="SOS") for e in (near, far)]
    for who in (await make.account(Role.OPERATOR), await make.admin()):
        listed = [
            i["id"]
            for i in (await client.get(f"{API}/alarms?limit=200", headers=who.headers)).json()["items"]
        ]
        assert set(ids) <= set(listed)
        for alarm_id in ids:
            assert (await client.get(f"{API}/alarms/{alarm_id}", headers=who.headers)).status_code == 200
    supervisor = await make.account(Role.SUPERVISOR)
    target = await make.account(Role.OPERATOR, districts=(HANCHUAN,))
    r = await client.post(
        f"{API}/alarms/{ids[1]}/assign", json={"user_id": target.user_id}, headers=supervisor.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["assignee_id"] == target.user_id
