"""The alarm queue: open alarms by severity (CRITICAL first) then age, keyset pages that neither skip
nor repeat, the filters (district, type, severity, status), the cleared view newest first, and the
plan PostgreSQL runs for it (an index scan, no sort, no count)."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from callcentre.console import QueueStatus, queue_statement
from core.identity.models import Role
from tests.conftest import TEST_NOW
from tests.factories import Factory
from tests.support.callcentre import plant, raw

pytestmark = pytest.mark.integration

API = "/api/v1/callcentre"
YUNMENG, ANLU = "420923", "420982"  # districts no other test of this package uses
T0 = TEST_NOW - dt.timedelta(hours=2)


def flat(pages: list[list[str]]) -> list[str]:
    return [name for page in pages for name in page]


def ago(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


async def test_order_paging_and_filters(client: httpx.AsyncClient, db: AsyncSession, make: Factory) -> None:
    a, b = await make.elder(YUNMENG, name="甲"), await make.elder(YUNMENG, name="乙")
    far = await make.elder(ANLU, name="丙")
    operator = await make.account(Role.OPERATOR, districts=(YUNMENG, ANLU))
    planted = {
        "a_water": await plant(db, elder_id=a.id, type="WATER_LEAK", severity="MAJOR", at=ago(1)),
        "b_sos": await plant(db, elder_id=b.id, type="SOS", at=ago(5)),
        "a_battery": await plant(db, elder_id=a.id, type="LOW_BATTERY", severity="WARNING", at=ago(0)),
        "a_sos": await plant(db, elder_id=a.id, type="SOS", at=ago(3)),
        "far_fall": await plant(db, elder_id=far.id, type="FALL", at=ago(4)),
        "b_tamper": await plant(db, elder_id=b.id, type="TAMPER", severity="MINOR", at=ago(2)),
        "b_water": await plant(db, elder_id=b.id, type="WATER_LEAK", severity="MAJOR", at=ago(1)),
    }
    name = {v: k for k, v in planted.items()}
    expected = ["a_sos", "far_fall", "b_sos", "a_water", "b_water", "b_tamper", "a_battery"]
    # a_water and b_water were received at the same instant: the id breaks the tie, so the order is total.
    expected[3:5] = sorted(["a_water", "b_water"], key=lambda k: planted[k])

    async def pages(query: str, limit: int) -> list[list[str]]:
        out: list[list[str]] = []
        after = ""
        while True:
            r = await client.get(f"{API}/alarms?limit={limit}{query}{after}", headers=operator.headers)
            assert r.status_code == 200, r.text
            body = r.json()
            out.append([name[i["id"]] for i in body["items"]])
            assert body["has_more"] == (body["next"] is not None)
            if not body["has_more"]:
                return out
            after = f"&after={body['next']}"

    assert await pages("", 50) == [expected]
    assert await pages("", 2) == [expected[0:2], expected[2:4], expected[4:6], expected[6:]]
    assert await pages("", 7) == [expected]
    district_b = f"&district_id={a.district_id}"
    assert flat(await pages(district_b, 3)) == [k for k in expected if k != "far_fall"]
    assert await pages("&type=SOS&type=FALL", 50) == [["a_sos", "far_fall", "b_sos"]]
    majors = flat(await pages("&severity=MAJOR&severity=WARNING", 1))
    assert majors == [k for k in expected if k in ("a_water", "b_water", "a_battery")]

    # Status views: worked alarms move between them.
    await client.post(f"{API}/alarms/{planted['a_sos']}/ack", headers=operator.headers)
    await client.post(f"{API}/alarms/{planted['b_sos']}/claim", headers=operator.headers)
    await client.post(
        f"{API}/alarms/{planted['b_tamper']}/clear", json={"outcome": "technical"}, headers=operator.headers
    )
    assert await pages("&status=acknowledged", 50) == [["a_sos"]]
    assert await pages("&status=mine", 50) == [["a_sos", "b_sos"]]
    unacked = [k for k in expected if k not in ("a_sos", "b_tamper")]
    assert await pages("&status=unacknowledged", 50) == [unacked]
    assert await pages("&status=unassigned", 50) == [[k for k in unacked if k != "b_sos"]]
    assert await pages("&status=open", 50) == [[k for k in expected if k != "b_tamper"]]
    assert await pages("&status=cleared", 50) == [["b_tamper"]]
    item = (await client.get(f"{API}/alarms?status=mine", headers=operator.headers)).json()["items"][0]
    assert (item["elder_name"], item["assignee_id"], item["assignee_name"]) == (
        "甲",
        operator.user_id,
        operator.user.display_name,
    )

    # A cursor belongs to its view.
    first = (await client.get(f"{API}/alarms?limit=1", headers=operator.headers)).json()
    r = await client.get(f"{API}/alarms?status=cleared&after={first['next']}", headers=operator.headers)
    assert (r.status_code, r.json()["code"]) == (422, "alarm.cursor_invalid")


async def test_cleared_view_is_newest_first_and_pages(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    elder = await make.elder(YUNMENG)
    operator = await make.account(Role.OPERATOR, districts=(YUNMENG,))
    ids = [
        await plant(
            db,
            elder_id=elder.id,
            type=t,
            severity="MINOR",
            at=ago(i),
            cleared_at=ago(10 + i),
            outcome="technical",
        )
        for i, t in enumerate(["TAMPER", "DOOR_OPEN_NIGHT", "LOW_BATTERY"])
    ]
    seen: list[int] = []
    after = ""
    while True:
        body = (
            await client.get(f"{API}/alarms?status=cleared&limit=1{after}", headers=operator.headers)
        ).json()
        seen += [i["id"] for i in body["items"]]
        if not body["has_more"]:
            break
        after = f"&after={body['next']}"
    assert seen == ids[::-1]


async def test_the_queue_is_one_index_scan(db: AsyncSession) -> None:
    """What PostgreSQL plans for the city-wide first page and a district's next page: the queue's
    partial indexes in queue order, no sort step, no count."""
    conn = await raw(db)
    await conn.execute("SET LOCAL enable_seqscan = off")  # a near-empty table would be read whole otherwise
    for districts, after in [(None, None), ([1], [1, T0, 1])]:
        sql, args = queue_statement(
            QueueStatus.OPEN, districts=districts, types=None, ranks=None, me=1, after=after, limit=50
        )
        plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
        text = plan if isinstance(plan, str) else json.dumps(plan)
        assert "ix_alarm_queue" in text, text
        assert '"Sort"' not in text, text
        assert "count(" not in sql.lower()
