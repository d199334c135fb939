"""The operators' API, ``/api/v1/callcentre``: an alarm worked from the queue to cleared, every refused
move with its problem code, and the timeline and audit rows each change leaves."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import AuditLog
from core.identity.models import Role
from tests.conftest import TEST_NOW
from tests.factories import HANCHUAN, XIAONAN, Factory
from tests.support.callcentre import alarm_row, events, plant

pytestmark = pytest.mark.integration

API = "/api/v1/callcentre"
CONTACTS = [("张三", "son", "13900000001"), ("李四", "daughter", "13900000002")]


def code(r: httpx.Response) -> tuple[int, str | None]:
    return r.status_code, r.json().get("code") if r.headers.get("content-type", "").endswith("json") else None


async def test_an_alarm_from_the_queue_to_cleared(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(XIAONAN, name="王老人", contacts=CONTACTS)
    operator = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    received = TEST_NOW - dt.timedelta(seconds=42)
    alarm_id = await plant(db, elder_id=elder.id, type="SOS", at=received)

    page = (await client.get(f"{API}/alarms", headers=operator.headers)).json()
    mine = [i for i in page["items"] if i["id"] == alarm_id]
    assert len(mine) == 1
    assert (mine[0]["elder_name"], mine[0]["severity"], mine[0]["presented_at"]) == (
        "王老人",
        "CRITICAL",
        None,
    )

    r = await client.post(f"{API}/alarms/presented", json={"alarm_ids": [alarm_id]}, headers=operator.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"alarm_ids": [alarm_id]}
    again = await client.post(
        f"{API}/alarms/presented", json={"alarm_ids": [alarm_id]}, headers=operator.headers
    )
    assert again.json() == {"alarm_ids": []}  # presented once: the first console that showed it

    claimed = (await client.post(f"{API}/alarms/{alarm_id}/claim", headers=operator.headers)).json()
    assert (claimed["assignee_id"], claimed["acknowledged"], claimed["active"]) == (
        operator.user_id,
        False,
        True,
    )
    acked = await client.post(f"{API}/alarms/{alarm_id}/ack", headers=operator.headers)
    assert acked.status_code == 200, acked.text
    assert acked.json()["acknowledged_at"] == TEST_NOW.isoformat().replace("+00:00", "Z")

    called = await client.post(
        f"{API}/alarms/{alarm_id}/actions",
        json={"action": "call_elder", "result": "no_answer"},
        headers=operator.headers,
    )
    assert called.status_code == 200, called.text
    contact = await client.post(
        f"{API}/alarms/{alarm_id}/actions",
        json={"action": "call_contact", "result": "reached", "contact_position": 2, "note": "女儿马上过去"},
        headers=operator.headers,
    )
    assert contact.status_code == 200, contact.text
    noted = await client.post(
        f"{API}/alarms/{alarm_id}/comments", json={"text": "老人误按"}, headers=operator.headers
    )
    assert noted.status_code == 200, noted.text
    cleared = await client.post(
        f"{API}/alarms/{alarm_id}/clear",
        json={"outcome": "false_alarm", "note": "误按"},
        headers=operator.headers,
    )
    assert cleared.status_code == 200, cleared.text
    body = cleared.json()
    assert (body["active"], body["outcome"], body["cleared_by"]) == (False, "false_alarm", operator.user_id)

    row = await alarm_row(db, alarm_id)
    assert (row["presented_at"], row["acknowledged_at"], row["cleared_at"]) == (TEST_NOW, TEST_NOW, TEST_NOW)
    assert (row["acknowledged_by"], row["assignee_id"], row["assigned_at"]) == (
        operator.user_id,
        operator.user_id,
        TEST_NOW,
    )
    timeline = (await client.get(f"{API}/alarms/{alarm_id}/timeline", headers=operator.headers)).json()
    kinds = [e["kind"] for e in timeline]
    assert kinds == [
        "raised",
        "presented",
        "claimed",
        "acknowledged",
        "action",
        "action",
        "comment",
        "cleared",
    ]
    worked = timeline[1:]
    assert {(e["actor_id"], e["at"]) for e in worked} == {(operator.user_id, "2026-11-20T02:00:00Z")}
    assert timeline[3]["data"]["seconds"] == 42.0
    assert timeline[4]["data"] == {"action": "call_elder", "result": "no_answer", "note": ""}
    assert timeline[5]["data"] == {
        "action": "call_contact",
        "result": "reached",
        "note": "女儿马上过去",
        "contact_position": 2,
        "contact_name": "李四",
        "contact_relation": "daughter",
    }
    assert timeline[6]["data"] == {"text": "老人误按"}
    assert timeline[7]["data"] == {"outcome": "false_alarm", "note": "误按"}
    assert timeline[7]["actor_name"] == operator.user.display_name

    audited = (
        await db.scalars(
            select(AuditLog.action)
            .where(AuditLog.entity == "alarm", AuditLog.entity_id == str(alarm_id))
            .order_by(AuditLog.id)
        )
    ).all()
    assert audited == [
        "present",
        "claim",
        "acknowledge",
        "record_action",
        "record_action",
        "comment",
        "clear",
    ]


async def test_acting_on_an_unanswered_alarm_answers_it(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(XIAONAN)
    operator = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    alarm_id = await plant(db, elder_id=elder.id, type="FALL")
    r = await client.post(
        f"{API}/alarms/{alarm_id}/clear", json={"outcome": "technical"}, headers=operator.headers
    )
    assert r.status_code == 200, r.text
    kinds = [(e["kind"], json.loads(e["data"]).get("with")) for e in await events(db, alarm_id)]
    assert kinds == [("raised", None), ("claimed", "clear"), ("acknowledged", "clear"), ("cleared", None)]


async def test_refused_moves(client: httpx.AsyncClient, db: AsyncSession, make: Factory) -> None:
    elder = await make.elder(XIAONAN, contacts=CONTACTS[:1])
    first = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    second = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    supervisor = await make.account(Role.SUPERVISOR, districts=(XIAONAN,))
    far_operator = await make.account(Role.OPERATOR, districts=(HANCHUAN,))
    alarm_id = await plant(db, elder_id=elder.id, type="SOS")
    url = f"{API}/alarms/{alarm_id}"

    assert (await client.post(f"{url}/claim", headers=first.headers)).status_code == 200
    assert code(await client.post(f"{url}/claim", headers=second.headers)) == (409, "alarm.already_claimed")
    assert code(await client.post(f"{url}/ack", headers=second.headers)) == (409, "alarm.already_claimed")
    assert code(await client.post(f"{url}/claim", headers=supervisor.headers)) == (
        409,
        "alarm.already_claimed",
    )
    # Only supervisors and admins assign, and only to staff who work the district.
    assert code(
        await client.post(f"{url}/assign", json={"user_id": second.user_id}, headers=first.headers)
    ) == (
        403,
        "auth.forbidden",
    )
    civil = await make.civil_affairs(XIAONAN)
    for user_id in (far_operator.user_id, civil.user_id, 10**12):
        r = await client.post(f"{url}/assign", json={"user_id": user_id}, headers=supervisor.headers)
        assert code(r) == (422, "alarm.assignee_invalid"), (user_id, r.text)
    moved = await client.post(f"{url}/assign", json={"user_id": second.user_id}, headers=supervisor.headers)
    assert moved.status_code == 200, moved.text
    assert moved.json()["assignee_id"] == second.user_id
    assert code(await client.post(f"{url}/ack", headers=first.headers)) == (409, "alarm.already_claimed")
    # Actions and their results.
    bad_actions = [
        ({"action": "call_elder", "result": "dispatched"}, "alarm.action_invalid"),
        ({"action": "call_contact", "result": "reached"}, "alarm.action_invalid"),
        ({"action": "call_contact", "result": "reached", "contact_position": 2}, "alarm.contact_unknown"),
        ({"action": "fly_there", "result": "reached"}, "validation.invalid"),
    ]
    for body, problem in bad_actions:
        r = await client.post(f"{url}/actions", json=body, headers=second.headers)
        assert code(r) == (422, problem), (body, r.text)
    assert code(await client.post(f"{url}/comments", json={"text": "   "}, headers=second.headers)) == (
        422,
        "validation.invalid",
    )
    assert code(await client.post(f"{url}/reopen", json={"reason": "再看看"}, headers=second.headers)) == (
        409,
        "alarm.not_cleared",
    )
    assert (await client.post(f"{url}/ack", headers=second.headers)).status_code == 200
    assert code(await client.post(f"{url}/ack", headers=second.headers)) == (
        409,
        "alarm.already_acknowledged",
    )
    assert (
        await client.post(f"{url}/clear", json={"outcome": "test"}, headers=second.headers)
    ).status_code == 200
    # Cleared: clearing twice, acknowledging, claiming, acting are refused; comments are not.
    assert code(await client.post(f"{url}/clear", json={"outcome": "test"}, headers=second.headers)) == (
        409,
        "alarm.already_cleared",
    )
    assert code(await client.post(f"{url}/ack", headers=second.headers)) == (409, "alarm.not_active")
    assert code(await client.post(f"{url}/claim", headers=second.headers)) == (409, "alarm.not_active")
    r = await client.post(
        f"{url}/actions", json={"action": "call_elder", "result": "reached"}, headers=second.headers
    )
    assert code(r) == (409, "alarm.not_active")
    assert code(
        await client.post(f"{url}/assign", json={"user_id": first.user_id}, headers=supervisor.headers)
    ) == (
        409,
        "alarm.not_active",
    )
    assert (
        await client.post(f"{url}/comments", json={"text": "回访确认"}, headers=second.headers)
    ).status_code == 200
    assert (
        code(await client.post(f"{url}/clear", json={"outcome": "nonsense"}, headers=second.headers))[0]
        == 422
    )


async def test_reopen_brings_an_alarm_back_unless_a_newer_one_is_active(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(XIAONAN)
    operator = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    alarm_id = await plant(db, elder_id=elder.id, type="SOS")
    url = f"{API}/alarms/{alarm_id}"
    await client.post(f"{url}/clear", json={"outcome": "false_alarm"}, headers=operator.headers)
    r = await client.post(f"{url}/reopen", json={"reason": "家属来电说确实摔倒"}, headers=operator.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["active"], body["outcome"], body["cleared_at"], body["acknowledged"]) == (
        True,
        None,
        None,
        True,
    )
    reopened = json.loads((await events(db, alarm_id))[-1]["data"])
    assert reopened["reason"] == "家属来电说确实摔倒"
    assert reopened["previous_outcome"] == "false_alarm"
    # Cleared again, and a new SOS of the same elder raised: reopening the old one would make two.
    await client.post(f"{url}/clear", json={"outcome": "real_emergency"}, headers=operator.headers)
    await plant(db, elder_id=elder.id, type="SOS")
    r = await client.post(f"{url}/reopen", json={"reason": "again"}, headers=operator.headers)
    assert code(r) == (409, "alarm.superseded")


async def test_unknown_alarms_and_bad_input(client: httpx.AsyncClient, make: Factory) -> None:
    operator = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    for method, path, body in [
        ("GET", "/alarms/0", None),
        ("GET", f"/alarms/{2**63}", None),
        ("GET", "/alarms/999999999/timeline", None),
        ("POST", "/alarms/999999999/claim", None),
        ("POST", "/alarms/999999999/ack", None),
        ("POST", "/alarms/999999999/clear", {"outcome": "test"}),
        ("POST", "/alarms/999999999/comments", {"text": "x"}),
        ("POST", "/alarms/999999999/actions", {"action": "call_elder", "result": "reached"}),
        (
            "POST",
            "/alarms/999999999/actions",
            {"action": "call_contact", "result": "busy", "contact_position": 1},
        ),
        ("POST", "/alarms/999999999/reopen", {"reason": "x"}),
    ]:
        r = await client.request(method, API + path, json=body, headers=operator.headers)
        assert code(r) == (404, "alarm.not_found"), (method, path, r.text)
    for query in (
        "status=closed",
        "limit=0",
        "limit=201",
        "after=!!",
        "after=bm9wZQ",
        "type=BOOM",
        "district_id=x",
    ):
        r = await client.get(f"{API}/alarms?{query}", headers=operator.headers)
        assert r.status_code == 422, (query, r.text)
    r = await client.post(f"{API}/alarms/presented", json={"alarm_ids": []}, headers=operator.headers)
    assert r.status_code == 422
