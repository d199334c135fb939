"""The call centre's pages over the real app (in the test's rolled-back transaction): the queue, an
alarm's page with its one-click actions, acknowledge and clear with an outcome, the supervisor's
figures; district scoping on every page (another district's alarm is a 404 page), the roles that
may not open them (403 page, or the sign-in page when signed out), CSRF on every form, both languages.

The live part (the queue updating itself over the feed) needs committed rows and a browser:
``tests/browser/test_console_journey.py``.
"""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.identity.models import Role
from tests.conftest import TEST_NOW
from tests.factories import HANCHUAN, XIAONAN, Account, Factory
from tests.support.callcentre import alarm_row, events, plant

pytestmark = pytest.mark.integration

HTML = {"Accept": "text/html,application/xhtml+xml"}


def page(who: Account) -> dict[str, str]:
    return {**who.headers, **HTML}


async def csrf(client: httpx.AsyncClient) -> str:
    await client.get("/login")
    token = client.cookies.get("ec_csrf")
    assert token
    return token


async def post(
    client: httpx.AsyncClient,
    who: Account,
    path: str,
    form: dict[str, str] | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    data = {"_csrf_token": await csrf(client), **(form or {})}
    return await client.post(
        path, data=data, headers={**page(who), **(headers or {})}, follow_redirects=False
    )


async def test_the_queue_lists_open_alarms_most_severe_first_and_marks_them_presented(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(XIAONAN, name="队列老人")
    leak = await plant(db, elder_id=elder.id, type="WATER_LEAK")
    sos = await plant(db, elder_id=elder.id, type="SOS")
    operator = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    r = await client.get("/operator/queue", headers=page(operator))
    assert r.status_code == 200, r.text
    ids = [int(i) for i in re.findall(r'data-alarm-id="(\d+)"', r.text)]
    assert ids.index(sos) < ids.index(leak)  # CRITICAL before MAJOR
    assert "紧急呼叫" in r.text
    assert "队列老人" in r.text
    assert re.search(r'data-cursor="\d+"', r.text)
    assert "快捷键" in r.text
    assert "<kbd>A</kbd>" in r.text
    for alarm_id in (sos, leak):
        assert (await alarm_row(db, alarm_id))["presented_at"] == TEST_NOW
        assert [e["kind"] for e in await events(db, alarm_id)][-1] == "presented"
    # The rows alone, as the page reloads them on each event.
    rows = await client.get("/operator/queue/rows?severity=CRITICAL", headers=page(operator))
    assert rows.status_code == 200
    assert f'data-alarm-id="{sos}"' in rows.text
    assert f'data-alarm-id="{leak}"' not in rows.text


async def test_a_civil_affairs_officer_reads_the_queue_without_acting_or_presenting(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(XIAONAN)
    alarm_id = await plant(db, elder_id=elder.id, type="SOS")
    officer = await make.civil_affairs(XIAONAN)
    r = await client.get("/operator/queue", headers=page(officer))
    assert r.status_code == 200
    assert f'data-alarm-id="{alarm_id}"' in r.text
    assert 'class="ack"' not in r.text
    assert (await alarm_row(db, alarm_id))["presented_at"] is None
    detail = await client.get(f"/operator/alarms/{alarm_id}", headers=page(officer))
    assert detail.status_code == 200
    assert 'id="clear-form"' not in detail.text
    ack = await post(client, officer, f"/operator/alarms/{alarm_id}/ack")
    assert ack.status_code == 403


async def test_another_districts_alarm_is_a_404_page_and_absent_from_the_queue(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(XIAONAN)
    alarm_id = await plant(db, elder_id=elder.id, type="SOS")
    far = await make.account(Role.OPERATOR, districts=(HANCHUAN,))
    r = await client.get(f"/operator/alarms/{alarm_id}", headers=page(far))
    assert r.status_code == 404
    assert "您所辖区县内没有这条告警" in r.text
    assert 'data-problem="alarm.not_found"' in r.text
    queue = await client.get("/operator/queue", headers=page(far))
    assert f'data-alarm-id="{alarm_id}"' not in queue.text
    ack = await post(client, far, f"/operator/alarms/{alarm_id}/ack")
    assert ack.status_code == 404
    assert (await alarm_row(db, alarm_id))["acknowledged_at"] is None
    # An API client (no text/html) gets the problem JSON instead.
    api = await client.get(f"/operator/alarms/{alarm_id}", headers=far.headers)
    assert (api.status_code, api.json()["code"]) == (404, "alarm.not_found")


async def test_other_roles_get_a_403_page_and_the_signed_out_the_sign_in_page(
    client: httpx.AsyncClient, make: Factory
) -> None:
    for role in (Role.FAMILY, Role.CAREGIVER, Role.ELDER, Role.PROVIDER_ADMIN):
        who = await make.account(role)
        for path in ("/operator/queue", "/operator/alarms/1", "/supervisor"):
            r = await client.get(path, headers=page(who))
            assert r.status_code == 403, (role, path)
            assert "您的角色无权访问此页面" in r.text
    anonymous = await client.get("/operator/queue", headers=HTML, follow_redirects=False)
    assert (anonymous.status_code, anonymous.headers["location"]) in ((302, "/login"), (303, "/login"))


async def test_the_alarm_page_shows_the_context_and_its_one_click_actions(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(
        XIAONAN,
        name="王秀英",
        phone="13800000001",
        medical_notes="高血压",
        contacts=[("王小明", "儿子", "13900000002"), ("李芳", "女儿", "13900000003")],
    )
    alarm_id = await plant(db, elder_id=elder.id, type="FALL")
    operator = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    r = await client.get(f"/operator/alarms/{alarm_id}", headers=page(operator))
    assert r.status_code == 200, r.text
    text = r.text
    assert "王秀英" in text
    assert "高血压" in text
    assert elder.id_number not in text  # masked for operators
    assert elder.id_number[:6] + "********" in text
    assert 'href="tel:13900000002"' in text
    for position in (1, 2):
        assert f'data-action="call_contact" data-result="reached" data-position="{position}"' in text
    assert 'data-action="call_elder" data-result="no_answer"' in text
    assert 'data-action="call_120" data-result="dispatched"' in text
    assert 'id="clear-form"' in text
    assert "最近 24 小时生命体征" in text
    assert (await alarm_row(db, alarm_id))["presented_at"] == TEST_NOW


async def test_acknowledge_call_the_elder_and_clear_through_the_forms(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(XIAONAN, phone="13800000009")
    alarm_id = await plant(db, elder_id=elder.id, type="SOS")
    operator = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    base = f"/operator/alarms/{alarm_id}"

    without = await client.post(f"{base}/ack", headers=page(operator), follow_redirects=False)
    assert without.status_code == 403  # no CSRF token: refused before anything happens
    assert (await alarm_row(db, alarm_id))["acknowledged_at"] is None

    ack = await post(client, operator, f"{base}/ack")
    assert (ack.status_code, ack.headers["location"]) == (303, f"{base}?done=acknowledged")
    called = await post(client, operator, f"{base}/actions", {"action": "call_elder", "result": "reached"})
    assert called.status_code == 303
    cleared = await post(client, operator, f"{base}/clear", {"outcome": "false_alarm", "note": "误按"})
    assert cleared.status_code == 303

    row = await alarm_row(db, alarm_id)
    assert (row["acknowledged_by"], row["cleared_by"], row["outcome"]) == (
        operator.user_id,
        operator.user_id,
        "false_alarm",
    )
    after = await client.get(f"{base}?done=cleared", headers=page(operator))
    assert "已保存" in after.text
    assert "已致电老人" in after.text
    assert "已接通" in after.text
    assert "误按" in after.text
    assert "重新打开告警" in after.text  # cleared: the reopen form replaces the clear form

    again = await post(client, operator, f"{base}/clear", {"outcome": "test"})
    assert again.status_code == 409
    assert "该告警已解除" in again.text
    bad = await post(client, operator, f"{base}/actions", {"action": "call_elder", "result": "arrived"})
    assert bad.status_code == 422


async def test_acknowledging_from_the_queue_with_htmx_asks_the_queue_to_refresh(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(XIAONAN)
    alarm_id = await plant(db, elder_id=elder.id, type="SOS")
    operator = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    r = await post(client, operator, f"/operator/alarms/{alarm_id}/ack", headers={"HX-Request": "true"})
    assert (r.status_code, r.headers["hx-trigger"]) == (204, "queue-changed")
    twice = await post(client, operator, f"/operator/alarms/{alarm_id}/ack", headers={"HX-Request": "true"})
    assert twice.status_code == 409
    assert 'data-problem="alarm.already_acknowledged"' in twice.text  # a message, not a page


async def test_the_pages_speak_english_on_request(client: httpx.AsyncClient, make: Factory) -> None:
    operator = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    r = await client.get("/operator/queue?lang=en", headers=page(operator))
    assert 'lang="en"' in r.text
    assert "Alarm queue" in r.text
    assert "Keyboard shortcuts" in r.text
    assert "告警队列" not in r.text
    remembered = await client.get("/supervisor", headers=page(operator))
    assert "Service levels" in remembered.text  # the ?lang= choice is kept in a cookie


async def test_the_supervisor_page_counts_the_shifts_alarms(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(XIAONAN)
    operator = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    supervisor = await make.account(Role.SUPERVISOR, districts=(XIAONAN,))
    quick = await plant(db, elder_id=elder.id, type="SOS")
    await post(client, operator, f"/operator/alarms/{quick}/ack")
    await post(client, operator, f"/operator/alarms/{quick}/clear", {"outcome": "false_alarm"})
    r = await client.get("/supervisor", headers=page(supervisor))
    assert r.status_code == 200, r.text
    overall = r.text[r.text.index('id="overall"') :]
    assert re.search(r'data-figure="alarms"><dt>[^<]+</dt><dd>1</dd>', overall)
    assert re.search(r'data-figure="within_60s"><dt>[^<]+</dt><dd>100.0 %</dd>', overall)
    assert "达到目标 97.5%" in overall
    assert 'id="kpi-chart"' in r.text
    assert "按坐席员" in r.text
    bad = await client.get("/supervisor?from=yesterday", headers=page(supervisor))
    assert bad.status_code == 422
    mine = await client.get("/supervisor", headers=page(operator))
    assert "由您确认的告警" in mine.text


async def test_a_reset_password_comes_first_on_the_role_pages_too(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    operator = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    operator.user.password_change_required = True
    await db.flush()
    r = await client.get("/operator/queue", headers=page(operator), follow_redirects=False)
    assert (r.status_code, r.headers["location"]) in ((302, "/password"), (303, "/password"))
