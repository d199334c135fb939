"""The operator's journey in a real browser, end to end (issue #11):

a simulated SOS button publishes over MQTT to the real Mosquitto → the real ingest consumer writes the
alarm → the served app's feed pushes it to the operator's open queue page, which shows it without a
reload, with the sound and visual cue of a new critical alarm (a second press, a repeat, gets no cue)
→ the operator opens it from the keyboard, acknowledges it, records "called the elder: reached" and
clears it with an outcome → the supervisor's page counts it. Every page is checked with axe-core and
photographed (zh-CN, and the supervisor's page in English) into ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from core.identity.models import Role
from core.settings import Settings
from iot_ingest.consumer import IngestConfig, IngestConsumer
from iot_ingest.wire import INGEST_CLIENT_ID_PREFIX
from simulators import devices as sim
from tests.browser.conftest import axe_violations, screenshot
from tests.factories import XIAONAN, Factory
from tests.support.live import LIVE_DB_URL, Served, drop_live_database, live_database, live_headers

pytestmark = pytest.mark.integration

PASSWORD = "Journey-password-2026"
MQTT_URL = Settings.from_env().mqtt_url
MQTT_HOST, MQTT_PORT, MQTT_USER, MQTT_PASSWORD = sim.mqtt_target(MQTT_URL)


@dataclass
class Stage:
    base: str
    operator: str
    supervisor: str
    elder_name: str
    device_uid: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine() -> AsyncIterator[AsyncEngine]:
    url = await live_database()
    eng = create_async_engine(url, pool_size=2, max_overflow=2)
    yield eng
    await eng.dispose()
    await drop_live_database()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stage(engine: AsyncEngine) -> AsyncIterator[Stage]:
    """The served app, the ingest, an elder with an SOS button, an operator and a supervisor of the
    elder's district who sign in with passwords (through the browser)."""
    tag = uuid.uuid4().hex[:6]
    async with async_sessionmaker(engine, expire_on_commit=False)() as db:
        make = Factory(db)
        elder = await make.elder(
            XIAONAN, name="张桂兰", phone="13800001111", contacts=[("张伟", "儿子", "13900002222")]
        )
        operator = await make.account(
            Role.OPERATOR, districts=(XIAONAN,), password=PASSWORD, username=f"op_{tag}"
        )
        await make.account(Role.SUPERVISOR, districts=(XIAONAN,), password=PASSWORD, username=f"sup_{tag}")
        admin = await make.admin()
        admin_headers = await live_headers(db, admin.user)
        await db.commit()
    del operator
    served = Served.start()
    ingest = IngestConsumer(
        Settings(database_url=LIVE_DB_URL, mqtt_url=MQTT_URL),
        replace(
            IngestConfig(),
            client_id=f"{INGEST_CLIENT_ID_PREFIX}-journey-{tag}",
            subscription=f"$share/journey{tag}/eldercare/v1/#",
            session_expiry_s=60,
            batch_max_ms=20,
            cache_refresh_s=0.5,
        ),
    )
    try:
        await served.until_healthy()
        uid = f"journey{tag}sos"
        async with httpx.AsyncClient(base_url=served.base, headers=admin_headers) as http:
            r = await http.post(
                "/api/v1/devices",
                json={
                    "uid": uid,
                    "kind": "sos_button",
                    "model": "SOS-1",
                    "serial": f"SN-{uid}",
                    "elder_id": elder.id,
                },
            )
            assert r.status_code == 201, r.text
        await ingest.start()
        await asyncio.wait_for(ingest.connected.wait(), 15)
        await asyncio.sleep(1.0)  # subscription granted, the new device in the ingest's cache
        yield Stage(served.base, f"op_{tag}", f"sup_{tag}", "张桂兰", uid)
    finally:
        await ingest.stop(end_session=True)
        served.stop()


async def sign_in(browser: Browser, stage: Stage, username: str) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(stage.base + "/login")
    await page.fill("input[name=login]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("form[action='/login'] button[type=submit]")
    await page.wait_for_url(stage.base + "/")
    return context, page


async def press_sos(stage: Stage, seq: int) -> None:
    message = sim.native_event(stage.device_uid, seq=seq, ts_ms=int(time.time() * 1000), type="sos")
    result = await asyncio.to_thread(
        sim.publish, [message], host=MQTT_HOST, port=MQTT_PORT, username=MQTT_USER, password=MQTT_PASSWORD
    )
    assert result.acked == 1, result


async def no_serious_violations(page: Page, what: str) -> None:
    violations = await axe_violations(page)
    assert violations == [], f"axe-core on {what}: {violations}"


async def test_an_sos_reaches_the_console_is_handled_and_counted(browser: Browser, stage: Stage) -> None:
    context, page = await sign_in(browser, stage, stage.operator)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    await page.goto(stage.base + "/operator/queue")
    await expect(page.locator("#feed-status")).to_have_attribute("data-state", "live", timeout=15_000)
    await expect(page.locator("#feed-status")).to_have_text("实时连接中")
    await no_serious_violations(page, "the empty queue")
    await page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    # The device's button: MQTT → ingest → alarm → feed → this page, without a reload.
    await press_sos(stage, seq=1)
    row = page.locator("#queue-rows tr[data-alarm-id]", has_text=stage.elder_name)
    await expect(row).to_have_count(1, timeout=15_000)
    assert await page.evaluate("window.__sameDocument") is True
    await expect(page.locator("#new-critical")).to_be_visible()
    await expect(page.locator("#new-critical-text")).to_have_text(f"紧急呼叫 · {stage.elder_name} · 孝南区")
    await expect(row).to_have_class(re.compile(r"\bnew-critical-row\b"))
    assert await page.evaluate("window.eldercareConsole.beeps") == 1
    alarm_id = await row.get_attribute("data-alarm-id")
    await screenshot(page, "console-queue.zh-CN.png")

    # A second press folds into the open alarm: the count moves, no new cue.
    await press_sos(stage, seq=2)
    await expect(row.locator("td").nth(5)).to_have_text("2", timeout=15_000)
    assert await page.evaluate("window.eldercareConsole.beeps") == 1
    await no_serious_violations(page, "the queue with an alarm")

    # From the keyboard: select it, open it; acknowledge with A.
    await page.keyboard.press("j")
    await expect(row).to_have_attribute("aria-selected", "true")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{stage.base}/operator/alarms/{alarm_id}")
    await expect(page.locator("h1")).to_contain_text("紧急呼叫")
    await page.keyboard.press("a")
    await page.wait_for_url(f"{stage.base}/operator/alarms/{alarm_id}?done=acknowledged")
    await expect(page.locator("#alarm-state")).to_contain_text("已确认")

    # One click records the call to the elder and its result.
    await page.click("button[data-action='call_elder'][data-result='reached']")
    await page.wait_for_url(f"{stage.base}/operator/alarms/{alarm_id}?done=action")
    await expect(page.locator("#timeline")).to_contain_text("已致电老人")
    await no_serious_violations(page, "the alarm's page")
    await screenshot(page, "console-alarm.zh-CN.png")

    # C goes to the outcome; clear it.
    await page.keyboard.press("c")
    await expect(page.locator("#outcome")).to_be_focused()
    await page.select_option("#outcome", "resolved_on_phone")
    await page.click("#clear-button")
    await page.wait_for_url(f"{stage.base}/operator/alarms/{alarm_id}?done=cleared")
    await expect(page.locator("#alarm-state")).to_contain_text("已电话处置")
    assert errors == []
    await context.close()

    # The supervisor's figures count it.
    context, page = await sign_in(browser, stage, stage.supervisor)
    await page.goto(stage.base + "/supervisor")
    overall = page.locator("#overall")
    await expect(overall.locator("[data-figure=alarms] dd").first).to_have_text("1")
    await expect(overall.locator("[data-figure=acknowledged] dd").first).to_have_text("1")
    await expect(overall.locator("[data-figure=cleared] dd").first).to_have_text("1")
    await expect(overall.locator("[data-figure=within_60s] dd").first).to_have_text("100.0 %")
    await expect(page.locator("#kpi-chart canvas")).to_have_count(1)
    await no_serious_violations(page, "the supervisor's page")
    await screenshot(page, "supervisor-figures.zh-CN.png")
    await page.goto(stage.base + "/supervisor?lang=en")
    await expect(page.locator("h1")).to_have_text("Service levels")
    await no_serious_violations(page, "the supervisor's page in English")
    await screenshot(page, "supervisor-figures.en.png")
    await page.goto(stage.base + "/operator/queue?status=cleared")
    await expect(page.locator("#queue-rows tr[data-alarm-id]", has_text=stage.elder_name)).to_have_count(1)
    await screenshot(page, "console-queue-cleared.en.png")
    await context.close()
