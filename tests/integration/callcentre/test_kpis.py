"""The service-level figures on planted alarms, computed here by hand: shares within 60 s and 180 s
against the ``alarm.ack_sla`` targets, median and 90th percentile (``percentile_cont``: linear
between ranks) of the time to acknowledge and to clear, the false-alarm share, and the breakdowns by
operator, type and district; each reader's scope."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import SHANGHAI
from core.identity.models import Role
from tests.factories import HANCHUAN, XIAONAN, Factory
from tests.support.callcentre import plant

pytestmark = pytest.mark.integration

API = "/api/v1/callcentre/kpis"
DAY = "2026-10-01"  # a day no other test plants alarms on
T0 = dt.datetime(2026, 10, 1, 10, 0, tzinfo=SHANGHAI)


def s(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
async def planted(db: AsyncSession, make: Factory) -> dict[str, Any]:
    """Six alarms received from 10:00 local on ``DAY``:

    ====  ======  ========  ==========  ======  =====  =================
    #     type    district  ack by      ack s   clr s  outcome
    ====  ======  ========  ==========  ======  =====  =================
    1     SOS     Xiaonan   op1         30      300    false_alarm
    2     FALL    Xiaonan   op1         60      600    real_emergency
    3     SOS     Hanchuan  op2         120     900    resolved_on_phone
    4     SMOKE   Hanchuan  op2         200     —      —
    5     TAMPER  Xiaonan   —           —       —      — (still open: missed)
    6     LOW_B.  Xiaonan   —           —       30     technical (cleared by the platform)
    ====  ======  ========  ==========  ======  =====  =================
    """
    near, far = await make.elder(XIAONAN), await make.elder(HANCHUAN)
    op1 = await make.account(Role.OPERATOR, districts=(XIAONAN,))
    op2 = await make.account(Role.OPERATOR, districts=(HANCHUAN,))

    async def alarm(
        elder_id: int,
        kind: str,
        offset: float,
        ack: tuple[int, float] | None,
        clear: float | None,
        outcome: str | None,
    ) -> int:
        history: dict[str, Any] = {}
        if ack is not None:
            history |= {"acknowledged_by": ack[0], "acknowledged_at": s(offset + ack[1])}
        if clear is not None:
            history |= {"cleared_at": s(offset + clear), "outcome": outcome}
            history["cleared_by"] = ack[0] if ack else None
        return await plant(db, elder_id=elder_id, type=kind, at=s(offset), **history)

    await alarm(near.id, "SOS", 0, (op1.user_id, 30), 300, "false_alarm")
    await alarm(near.id, "FALL", 10, (op1.user_id, 60), 600, "real_emergency")
    await alarm(far.id, "SOS", 20, (op2.user_id, 120), 900, "resolved_on_phone")
    await alarm(far.id, "SMOKE", 30, (op2.user_id, 200), None, None)
    await alarm(near.id, "TAMPER", 40, None, None, None)
    await alarm(near.id, "LOW_BATTERY", 50, None, 30, "technical")
    return {"op1": op1, "op2": op2, "near": near.district_id, "far": far.district_id}


def shares(figures: dict[str, Any]) -> tuple[Any, ...]:
    return (
        figures["alarms"],
        (
            figures["ack_within_60s"]["met"],
            figures["ack_within_60s"]["counted"],
            figures["ack_within_60s"]["share_bp"],
        ),
        (
            figures["ack_within_180s"]["met"],
            figures["ack_within_180s"]["counted"],
            figures["ack_within_180s"]["share_bp"],
        ),
    )


async def test_figures_by_hand(client: httpx.AsyncClient, make: Factory, planted: dict[str, Any]) -> None:
    admin = await make.admin()
    r = await client.get(f"{API}?from={DAY}&to={DAY}", headers=admin.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["start"], body["end"], body["scope"]) == (
        "2026-09-30T16:00:00Z",
        "2026-10-01T16:00:00Z",
        "all",
    )
    overall = body["overall"]
    # Counted for 60 s: the 4 acknowledged + #5 (open far beyond 60 s); #6 cleared itself after 30 s.
    assert shares(overall) == (6, (2, 5, 4000), (3, 5, 6000))
    assert (overall["acknowledged"], overall["cleared"]) == (4, 4)
    assert overall["ack_within_60s"]["target_bp"] == 9750
    assert overall["ack_within_60s"]["meets_target"] is False
    assert overall["ack_within_180s"]["target_bp"] == 9900
    # ack [30, 60, 120, 200]: median (60 + 120) / 2; p90 at rank 2.7: 120 + 0.7 × 80.
    assert (overall["ack_median_s"], overall["ack_p90_s"]) == (90.0, 176.0)
    # clear [30, 300, 600, 900]: median 450; p90 600 + 0.7 × 300.
    assert (overall["clear_median_s"], overall["clear_p90_s"]) == (450.0, 810.0)
    # One false alarm among the four cleared with an outcome.
    assert (overall["false_alarms"], overall["false_alarm_share_bp"]) == (1, 2500)

    by_operator = {o["operator_id"]: o for o in body["by_operator"]}
    op1, op2 = planted["op1"].user_id, planted["op2"].user_id
    assert set(by_operator) == {op1, op2, None}
    assert shares(by_operator[op1]["figures"]) == (2, (2, 2, 10000), (2, 2, 10000))
    assert (by_operator[op1]["figures"]["ack_median_s"], by_operator[op1]["figures"]["ack_p90_s"]) == (
        45.0,
        57.0,
    )
    assert by_operator[op1]["operator_name"] == planted["op1"].user.display_name
    assert shares(by_operator[op2]["figures"]) == (2, (0, 2, 0), (1, 2, 5000))
    assert shares(by_operator[None]["figures"]) == (2, (0, 1, 0), (0, 1, 0))

    by_type = {t["type"]: t["figures"] for t in body["by_type"]}
    assert set(by_type) == {"SOS", "FALL", "SMOKE", "TAMPER", "LOW_BATTERY"}
    assert shares(by_type["SOS"]) == (2, (1, 2, 5000), (2, 2, 10000))
    assert (by_type["SOS"]["ack_median_s"], by_type["SOS"]["false_alarm_share_bp"]) == (75.0, 5000)

    by_district = {d["district_id"]: d for d in body["by_district"]}
    assert set(by_district) == {planted["near"], planted["far"]}
    assert shares(by_district[planted["near"]]["figures"]) == (4, (2, 3, 6667), (2, 3, 6667))
    assert by_district[planted["near"]]["district_name"] == "孝南区"
    assert shares(by_district[planted["far"]]["figures"]) == (2, (0, 2, 0), (1, 2, 5000))


async def test_each_reader_sees_their_figures(
    client: httpx.AsyncClient, make: Factory, planted: dict[str, Any]
) -> None:
    query = f"?from={DAY}&to={DAY}"
    civil = await make.civil_affairs(XIAONAN)
    assert (await client.get(API + query, headers=civil.headers)).json()["overall"]["alarms"] == 4
    supervisor = await make.account(Role.SUPERVISOR, districts=(HANCHUAN,))
    assert (await client.get(API + query, headers=supervisor.headers)).json()["overall"]["alarms"] == 2
    mine = (await client.get(API + query, headers=planted["op1"].headers)).json()
    assert (mine["scope"], mine["overall"]["alarms"]) == ("own", 2)
    assert [o["operator_id"] for o in mine["by_operator"]] == [planted["op1"].user_id]
    empty = (await client.get(f"{API}?from=2026-09-01&to=2026-09-30", headers=civil.headers)).json()
    assert (empty["overall"]["alarms"], empty["overall"]["ack_median_s"], empty["by_type"]) == (0, None, [])
    assert empty["overall"]["ack_within_60s"] == {
        "met": 0,
        "counted": 0,
        "share_bp": None,
        "target_bp": 9750,
        "meets_target": None,
    }
    family = await make.account(Role.FAMILY)
    assert (await client.get(API + query, headers=family.headers)).status_code == 403


async def test_periods(client: httpx.AsyncClient, make: Factory, planted: dict[str, Any]) -> None:
    admin = await make.admin()
    # Instants: only #1 and #2 were received in [10:00, 10:00:15) local.
    r = await client.get(
        f"{API}?from=2026-10-01T10:00:00%2B08:00&to=2026-10-01T02:00:15Z", headers=admin.headers
    )
    assert r.json()["overall"]["alarms"] == 2
    for query, problem in [
        ("from=2026-10-02&to=2026-10-01", "kpis.range_invalid"),
        ("from=2024-01-01&to=2026-10-01", "kpis.range_too_long"),
        ("from=2026-10-01T10:00:00", "time.timezone_required"),
        ("from=yesterday", "validation.invalid"),
        ("from=1800-01-01", "validation.invalid"),
    ]:
        r = await client.get(f"{API}?{query}", headers=admin.headers)
        assert (r.status_code, r.json()["code"]) == (422, problem), (query, r.text)
    today = (await client.get(API, headers=admin.headers)).json()  # default: today's midnight to now
    assert (today["start"], today["end"]) == ("2026-11-19T16:00:00Z", "2026-11-20T02:00:00Z")
