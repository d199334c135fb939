"""The live feed end to end: committed alarm events reach ``GET /api/v1/callcentre/stream`` of real
``eldercare serve`` processes (each with its own LISTEN connection), scoped to each console's
districts, replayed in order after a reconnect, and never skipped when two transactions commit their
events out of id order.

Everything here commits, on a database of its own (:mod:`tests.support.live`); each test makes its
own elders and alarms, so no test depends on another's rows. Two servers are started once for the
module; the feed object itself is also driven directly where a test needs a short hold time or a
console that does not read.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from callcentre.contract import AlarmCandidate, raise_alarm
from callcentre.feed import AlarmFeed, FeedEvent
from callcentre.timeline import EventKind, record
from core.identity.models import Role
from tests.factories import HANCHUAN, XIAONAN, Factory
from tests.support.live import (
    LIVE_DSN,
    Served,
    cookie_of,
    drop_live_database,
    live_database,
    live_headers,
    sse,
    utc,
)

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine() -> AsyncIterator[AsyncEngine]:
    url = await live_database()
    eng = create_async_engine(url, pool_size=2, max_overflow=2)
    yield eng
    await eng.dispose()
    await drop_live_database()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def servers(engine: AsyncEngine) -> AsyncIterator[tuple[Served, Served]]:
    """Two API processes on the one database, each serving its own consoles."""
    one, two = Served.start(), Served.start()
    try:
        await asyncio.gather(one.until_healthy(), two.until_healthy())
        yield one, two
    finally:
        one.stop()
        two.stop()


@dataclass
class World:
    xiaonan_elder: int
    hanchuan_elder: int
    operator: dict[str, str]  # Xiaonan only
    supervisor: dict[str, str]  # no districts: city-wide
    civil_affairs: dict[str, str]  # Xiaonan
    family: dict[str, str]


@pytest_asyncio.fixture(loop_scope="session")
async def world(engine: AsyncEngine) -> World:
    """Elders in two districts and the accounts that watch them, committed."""
    async with async_sessionmaker(engine, expire_on_commit=False)() as db:
        make = Factory(db)
        xiaonan = await make.elder(XIAONAN, name="萧南老人")
        hanchuan = await make.elder(HANCHUAN, name="汉川老人")
        accounts = {
            role: await make.account(role, districts=districts)
            for role, districts in (
                (Role.OPERATOR, (XIAONAN,)),
                (Role.SUPERVISOR, ()),
                (Role.CIVIL_AFFAIRS, (XIAONAN,)),
                (Role.FAMILY, ()),
            )
        }
        headers = {role: await live_headers(db, a.user) for role, a in accounts.items()}
        await db.commit()
    return World(
        xiaonan.id,
        hanchuan.id,
        headers[Role.OPERATOR],
        headers[Role.SUPERVISOR],
        headers[Role.CIVIL_AFFAIRS],
        headers[Role.FAMILY],
    )


@pytest_asyncio.fixture(loop_scope="session")
async def pg(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(LIVE_DSN)
    yield conn
    await conn.close()


async def sos(conn: asyncpg.Connection, elder_id: int, alarm_type: str = "SOS") -> int:
    """Raise an elder-level alarm (committed unless ``conn`` is in a transaction); its id."""
    written = await raise_alarm(conn, AlarmCandidate(alarm_type, "CRITICAL", None, elder_id, utc()))
    return written.alarm_id


async def event_ids(conn: asyncpg.Connection, alarm_id: int) -> list[int]:
    return [
        r["id"]
        for r in await conn.fetch("SELECT id FROM alarm_event WHERE alarm_id = $1 ORDER BY id", alarm_id)
    ]


# --- Over HTTP, on served processes ----------------------------------------------------------------


async def test_a_new_alarm_reaches_the_console_with_what_it_shows(
    servers: tuple[Served, Served], world: World, pg: asyncpg.Connection
) -> None:
    one, _ = servers
    async with sse(one.base, world.operator) as console:
        assert console.status == 200
        alarm_id = await sos(pg, world.xiaonan_elder)
        message = await console.next_event()
    assert message.event == "raised"
    data = message.data
    assert (data["alarm_id"], data["type"], data["severity"], data["count"]) == (
        alarm_id,
        "SOS",
        "CRITICAL",
        1,
    )
    assert data["elder_name"] == "萧南老人"
    assert data["district"] == "孝南区"
    assert (data["acknowledged"], data["cleared"]) == (False, False)
    assert message.id == str(data["event_id"])  # in order: the cursor is the event's own id


async def test_each_console_sees_its_own_districts_only(
    servers: tuple[Served, Served], world: World, pg: asyncpg.Connection
) -> None:
    one, _ = servers
    async with (
        sse(one.base, world.operator) as operator,
        sse(one.base, world.supervisor) as supervisor,
        sse(one.base, cookie_of(world.civil_affairs)) as officer,  # the web page's cookie works too
    ):
        elsewhere = await sos(pg, world.hanchuan_elder)
        here = await sos(pg, world.xiaonan_elder)
        assert [(await supervisor.next_event()).data["alarm_id"] for _ in range(2)] == [elsewhere, here]
        assert (await operator.next_event()).data["alarm_id"] == here
        assert (await officer.next_event()).data["alarm_id"] == here
        await operator.no_event(0.5)


async def test_roles_that_do_not_watch_alarms_are_refused(
    servers: tuple[Served, Served], world: World
) -> None:
    one, _ = servers
    async with httpx.AsyncClient(base_url=one.base) as http:
        family = await http.get("/api/v1/callcentre/stream", headers=world.family)
        anonymous = await http.get("/api/v1/callcentre/stream")
        garbage = await http.get(
            "/api/v1/callcentre/stream", headers={**world.operator, "Last-Event-ID": "not-a-number"}
        )
    assert (family.status_code, family.json()["code"]) == (403, "auth.forbidden")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "auth.required")
    assert (garbage.status_code, garbage.json()["code"]) == (422, "validation.invalid")


async def test_a_reconnecting_console_is_replayed_what_it_missed_in_order(
    servers: tuple[Served, Served], world: World, pg: asyncpg.Connection
) -> None:
    one, _ = servers
    async with sse(one.base, world.operator) as console:
        alarm_id = await sos(pg, world.xiaonan_elder)
        first = await console.next_event()
    cursor = first.id
    assert cursor is not None
    # Disconnected: three more events (one of another district, which this console never gets).
    for n in (1, 2):
        await record(pg, alarm_id, EventKind.COMMENT, data={"text": f"note {n}"})
    other = await sos(pg, world.hanchuan_elder)
    await record(pg, alarm_id, EventKind.COMMENT, data={"text": "note 3"})
    async with sse(one.base, world.operator, last_event_id=cursor) as console:
        replayed = [await console.next_event() for _ in range(3)]
        await record(pg, alarm_id, EventKind.COMMENT, data={"text": "live again"})
        live = await console.next_event()
    assert [m.data["data"]["text"] for m in replayed] == ["note 1", "note 2", "note 3"]
    assert [m.event_id for m in replayed] == sorted(m.event_id for m in replayed)
    assert other not in {m.data["alarm_id"] for m in replayed}
    assert live.data["data"]["text"] == "live again"
    # The page's own start: ?after= on a first connection replays the same way.
    async with sse(one.base, world.operator, after=first.event_id) as console:
        again = [await console.next_event() for _ in range(4)]
    assert [m.data["data"]["text"] for m in again] == ["note 1", "note 2", "note 3", "live again"]


async def test_an_event_committed_after_a_higher_one_is_not_skipped_by_the_cursor(
    servers: tuple[Served, Served], world: World, pg: asyncpg.Connection
) -> None:
    """Two transactions interleave: T1 takes event id a, T2 takes b > a and commits first. The console
    gets b at once, but its cursor must stay below a; it disconnects before T1 commits, reconnects
    with that cursor, and gets a, then b again (in id order; the data's event_id tells it b is known)."""
    one, _ = servers
    alarm_id = await sos(pg, world.xiaonan_elder)
    t1 = await asyncpg.connect(LIVE_DSN)
    t2 = await asyncpg.connect(LIVE_DSN)
    try:
        async with sse(one.base, world.operator) as console:
            tx1 = t1.transaction()
            await tx1.start()
            a = await record(t1, alarm_id, EventKind.COMMENT, data={"text": "T1"})
            async with t2.transaction():
                b = await record(t2, alarm_id, EventKind.COMMENT, data={"text": "T2"})
            assert a < b
            early = await console.next_event()
            assert early.event_id == b
            assert early.id is not None
            assert int(early.id) < a  # the cursor does not pass the id still in flight
        await tx1.commit()
        async with sse(one.base, world.operator, last_event_id=early.id) as console:
            got = [await console.next_event() for _ in range(2)]
        assert [m.event_id for m in got] == [a, b]
        assert got[-1].id is not None
        assert int(got[-1].id) >= b
    finally:
        await t1.close()
        await t2.close()


async def test_two_api_processes_each_serve_their_own_consoles(
    servers: tuple[Served, Served], world: World, pg: asyncpg.Connection
) -> None:
    one, two = servers
    async with sse(one.base, world.supervisor) as left, sse(two.base, world.operator) as right:
        alarm_id = await sos(pg, world.xiaonan_elder)
        got_left, got_right = await asyncio.gather(left.next_event(), right.next_event())
    assert got_left.data["alarm_id"] == got_right.data["alarm_id"] == alarm_id
    assert got_left.event_id == got_right.event_id


# --- The feed object: hold times and slow consoles -------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def feed(engine: AsyncEngine) -> AsyncIterator[AlarmFeed]:
    f = AlarmFeed(LIVE_DSN, hold_s=0.3, queue_size=3)
    await f.start()
    yield f
    await f.stop()


async def _take(queue: asyncio.Queue[tuple[FeedEvent, int]], n: int) -> list[tuple[FeedEvent, int]]:
    return [await asyncio.wait_for(queue.get(), 10) for _ in range(n)]


async def test_a_gap_left_by_a_long_transaction_is_given_up_and_its_late_event_still_delivered(
    feed: AlarmFeed, world: World, pg: asyncpg.Connection
) -> None:
    sub = feed.subscribe(None)
    alarm_id = await sos(pg, world.xiaonan_elder)
    await _take(sub.queue, 1)  # raised
    long_tx = await asyncpg.connect(LIVE_DSN)
    try:
        tx = long_tx.transaction()
        await tx.start()
        a = await record(long_tx, alarm_id, EventKind.COMMENT, data={"text": "slow"})
        b = await record(pg, alarm_id, EventKind.COMMENT, data={"text": "fast"})
        [(event_b, cursor_b)] = await _take(sub.queue, 1)
        assert (event_b.id, cursor_b) == (b, a - 1)
        # After the hold, a is given up: the cursor passes it (a rolled-back id would never come).
        for _ in range(50):
            if feed.cursor >= b:
                break
            await asyncio.sleep(0.05)
        assert feed.cursor >= b
        await tx.commit()  # ... but it was only slow
        [(event_a, cursor_a)] = await _take(sub.queue, 1)
        assert event_a.id == a
        assert cursor_a >= b
        assert a in feed.late_ids()  # and every replay adds it, for consoles away when it came
    finally:
        feed.unsubscribe(sub)
        await long_tx.close()


async def test_a_console_that_does_not_read_is_dropped_and_does_not_hold_up_the_others(
    feed: AlarmFeed, world: World, pg: asyncpg.Connection
) -> None:
    slow, fast = feed.subscribe(None), feed.subscribe(None)
    alarm_id = await sos(pg, world.xiaonan_elder)
    received = [e.id for e, _ in await _take(fast.queue, 1)]
    for n in range(6):
        await record(pg, alarm_id, EventKind.COMMENT, data={"n": n})
        received.extend(e.id for e, _ in await _take(fast.queue, 1))
    assert received == await event_ids(pg, alarm_id)
    assert slow.overflowed  # its queue (3) filled up: its stream ends, the browser replays
    assert slow.queue.qsize() == 3
    feed.unsubscribe(slow)
    feed.unsubscribe(fast)


async def test_a_server_with_open_consoles_stops_on_sigterm(engine: AsyncEngine, world: World) -> None:
    """An open stream never ends by itself: the server cancels it after its graceful-shutdown limit
    instead of waiting for every console for ever (the console reconnects elsewhere and replays)."""
    served = Served.start()
    try:
        await served.until_healthy()
        async with sse(served.base, world.operator) as console:
            assert console.status == 200
            started = time.monotonic()
            os.killpg(served.proc.pid, signal.SIGTERM)
            code = await asyncio.to_thread(served.proc.wait, 60)
        assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
        assert time.monotonic() - started < 30
    finally:
        served.stop()
