"""The outbox dispatcher against the real PostgreSQL and real HTTP receivers on loopback: rows are
committed (the dispatcher works across transactions and processes, so these tests cannot run inside
a rolled-back one) in the migrated test database, and the outbox is emptied before and after each
test.

What is shown: a receiver that fails, then is down, then recovers gets every row, and acts once per
row; a permanent failure goes dead at once; retries stop at the policy's last attempt; a dispatcher
cancelled or SIGKILLed mid-batch loses nothing (its rows come back when their lease runs out, with the
same idempotency key); two dispatchers never send one row twice within a lease; a stale lease holder
cannot overwrite a newer attempt; NOTIFY wakes the loop long before its poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from core.notify.channel import ChannelRegistry
from core.notify.dispatcher import Dispatcher, DispatcherConfig
from core.notify.runner import build_channels, http_client
from core.outbox import enqueue
from core.settings import PROJECT_ROOT, Settings
from tests.support.http_receiver import Answer, Receiver

pytestmark = pytest.mark.integration

SECRET = "whsec-dispatcher-test"
LEASE_S = 60.0
SETTINGS = Settings(notify_webhook_secret=SECRET, notify_timeout_s=5.0)


class MovableClock:
    """The dispatcher's ``now``: starts at the wall clock, moves only when told."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def dsn(migrated_db: str) -> str:
    return migrated_db.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    await p.execute("DELETE FROM notification_outbox")
    yield p
    await p.execute("DELETE FROM notification_outbox")
    await p.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver(SECRET).start()
    yield r
    await r.stop()


@pytest.fixture
async def channels() -> AsyncIterator[ChannelRegistry]:
    # The channels sign with the wall clock (the receiver checks the timestamp against its own).
    async with http_client(SETTINGS) as client:
        yield build_channels(SETTINGS, client)


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


def _dispatcher(pool: asyncpg.Pool, channels: ChannelRegistry, clock: Any, **config: Any) -> Dispatcher:
    return Dispatcher(
        pool,
        channels,
        config=DispatcherConfig(lease_s=LEASE_S, **config),
        clock=clock,
        jitter=lambda: 0.5,
    )


async def _enqueue(pool: asyncpg.Pool, url: str, n: int, *, prefix: str = "t") -> list[str]:
    """``n`` webhook rows for ``url``, committed; returns their keys."""
    keys = [f"{prefix}:{i}" for i in range(n)]
    async with pool.acquire() as conn, conn.transaction():
        for i, key in enumerate(keys):
            await enqueue(
                conn,
                channel="webhook",
                recipient=url,
                kind="alarm.escalated",
                payload={"alarm_id": i, "elder_name": "王秀英"},
                idempotency_key=key,
                ref=f"alarm:{i}",
            )
    return keys


async def _rows(pool: asyncpg.Pool) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch(
        "SELECT idempotency_key, status, attempts, next_attempt_at, last_error, sent_at"
        " FROM notification_outbox"
    )
    return {r["idempotency_key"]: r for r in rows}


async def test_a_receiver_that_fails_then_is_down_then_recovers_gets_everything_once(
    pool: asyncpg.Pool, receiver: Receiver, channels: ChannelRegistry, clock: MovableClock
) -> None:
    keys = await _enqueue(pool, receiver.url(), 10)
    dispatcher = _dispatcher(pool, channels, clock)

    receiver.script += [Answer(500, {"error": "db down"})] * 10
    first = await dispatcher.run_once()
    assert sorted(d.status for _, d in first) == ["pending"] * 10
    rows = await _rows(pool)
    assert {(r["status"], r["attempts"]) for r in rows.values()} == {("pending", 1)}
    assert all(r["last_error"].startswith("HTTP 500") for r in rows.values())
    # jitter 0.5 of the first back-off (10 s): 7.5 s
    assert {r["next_attempt_at"] for r in rows.values()} == {clock.now + dt.timedelta(seconds=7.5)}
    assert await dispatcher.run_once() == []  # nothing is due before its back-off

    await receiver.stop()  # now the port refuses connections
    clock.advance(7.5)
    second = await dispatcher.run_once()
    assert [d.status for _, d in second] == ["pending"] * 10
    assert {r["attempts"] for r in (await _rows(pool)).values()} == {2}

    await receiver.start()  # the same port again
    clock.advance(15)  # the second back-off: 20 s with jitter 0.5
    assert await dispatcher.drain() == 10

    rows = await _rows(pool)
    assert {(r["status"], r["attempts"], r["last_error"]) for r in rows.values()} == {("sent", 3, None)}
    assert all(r["sent_at"] == clock.now for r in rows.values())
    assert sorted(receiver.effects) == sorted(keys)  # none lost, each acted on once
    assert receiver.counts() == dict.fromkeys(keys, 2)  # the 500 and the success; refused ones never arrived
    assert {e["data"]["elder_name"] for e in receiver.effects.values()} == {"王秀英"}


async def test_a_permanent_failure_goes_dead_at_once(
    pool: asyncpg.Pool, receiver: Receiver, channels: ChannelRegistry, clock: MovableClock
) -> None:
    (key,) = await _enqueue(pool, receiver.url("/gone"), 1)
    receiver.script.append(Answer(410, {"error": "hook deleted"}))
    dispatcher = _dispatcher(pool, channels, clock)
    [(_, decision)] = await dispatcher.run_once()
    assert decision.status == "dead"
    row = (await _rows(pool))[key]
    assert (row["status"], row["attempts"], row["sent_at"]) == ("dead", 1, None)
    assert row["last_error"] == 'HTTP 410: {"error": "hook deleted"}'
    clock.advance(86_400)
    assert await dispatcher.run_once() == []
    assert len(receiver.deliveries) == 1


async def test_retries_stop_at_the_policys_last_attempt(
    pool: asyncpg.Pool, receiver: Receiver, channels: ChannelRegistry, clock: MovableClock
) -> None:
    (key,) = await _enqueue(pool, receiver.url(), 1)
    receiver.default = Answer(503)
    dispatcher = _dispatcher(pool, channels, clock)
    for _ in range(12):  # notify.retry's seeded default: 12 attempts
        assert len(await dispatcher.run_once()) == 1
        clock.advance(3600)
    row = (await _rows(pool))[key]
    assert (row["status"], row["attempts"]) == ("dead", 12)
    assert row["last_error"].startswith("gave up after 12 attempts: HTTP 503")
    assert len(receiver.deliveries) == 12
    assert await dispatcher.run_once() == []


async def test_a_dispatcher_cancelled_mid_batch_loses_nothing(
    pool: asyncpg.Pool, receiver: Receiver, channels: ChannelRegistry, clock: MovableClock
) -> None:
    keys = await _enqueue(pool, receiver.url(), 6)
    receiver.delay_s = 30  # the receiver acts at once but answers late
    first = _dispatcher(pool, channels, clock)
    batch = asyncio.create_task(first.run_once())
    await receiver.wait_for(6)
    batch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await batch
    rows = await _rows(pool)
    assert {(r["status"], r["attempts"]) for r in rows.values()} == {("pending", 1)}
    assert {r["next_attempt_at"] for r in rows.values()} == {clock.now + dt.timedelta(seconds=LEASE_S)}

    receiver.delay_s = 0
    second = _dispatcher(pool, channels, clock)
    assert await second.run_once() == []  # leased: nobody else sends them meanwhile
    clock.advance(LEASE_S)
    assert await second.drain() == 6
    assert {r["status"] for r in (await _rows(pool)).values()} == {"sent"}
    assert receiver.counts() == dict.fromkeys(keys, 2)  # delivered again, under the same key
    assert sorted(receiver.effects) == sorted(keys)  # and acted on once


@pytest.fixture
async def notify_process() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    procs: list[asyncio.subprocess.Process] = []
    yield procs
    for p in procs:
        if p.returncode is None:
            p.kill()
            await asyncio.wait_for(p.wait(), 10)


async def test_a_dispatcher_process_killed_mid_batch_loses_nothing(
    pool: asyncpg.Pool,
    receiver: Receiver,
    channels: ChannelRegistry,
    migrated_db: str,
    notify_process: list[asyncio.subprocess.Process],
) -> None:
    keys = await _enqueue(pool, receiver.url(), 20)
    receiver.delay_s = 60  # acted on, never answered before the kill
    env = {
        **os.environ,
        "ELDERCARE_DATABASE_URL": migrated_db,
        "ELDERCARE_NOTIFY_WEBHOOK_SECRET": SECRET,
        "ELDERCARE_NOTIFY_TIMEOUT_S": "30",
        "ELDERCARE_NOTIFY_LEASE_S": str(LEASE_S),
        "ELDERCARE_NOTIFY_CONCURRENCY": "16",
        "ELDERCARE_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli",
        "notify",
        cwd=PROJECT_ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    notify_process.append(proc)
    await receiver.wait_for(16, timeout_s=60)  # one full round in flight
    proc.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(proc.wait(), 10) == -signal.SIGKILL

    rows = await _rows(pool)
    in_flight = {k for k, r in rows.items() if r["attempts"] == 1}
    assert len(in_flight) == 16
    assert all(rows[k]["status"] == "pending" for k in keys)
    assert set(receiver.effects) == in_flight

    receiver.delay_s = 0
    after_lease = MovableClock()
    after_lease.advance(LEASE_S + 1)
    assert await _dispatcher(pool, channels, after_lease).drain() == 20
    assert {r["status"] for r in (await _rows(pool)).values()} == {"sent"}
    assert sorted(receiver.effects) == sorted(keys)
    counts = receiver.counts()
    assert {k: counts[k] for k in in_flight} == dict.fromkeys(in_flight, 2)
    assert {k: counts[k] for k in set(keys) - in_flight} == dict.fromkeys(set(keys) - in_flight, 1)


async def test_two_dispatchers_at_once_never_send_a_row_twice(
    dsn: str, pool: asyncpg.Pool, receiver: Receiver, channels: ChannelRegistry
) -> None:
    keys = await _enqueue(pool, receiver.url(), 40)
    receiver.delay_s = 0.05
    other_pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    try:
        async with http_client(SETTINGS) as other_client:
            a = _dispatcher(pool, channels, dt_now, batch_size=5)
            b = _dispatcher(other_pool, build_channels(SETTINGS, other_client), dt_now, batch_size=5)
            handled = await asyncio.gather(a.drain(), b.drain())
    finally:
        await other_pool.close()
    assert sum(handled) == 40
    assert receiver.counts() == dict.fromkeys(keys, 1)
    assert {r["status"] for r in (await _rows(pool)).values()} == {"sent"}


def dt_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def test_a_leased_row_is_left_alone_and_a_stale_holder_cannot_overwrite_a_newer_attempt(
    pool: asyncpg.Pool, receiver: Receiver, channels: ChannelRegistry, clock: MovableClock
) -> None:
    (key,) = await _enqueue(pool, receiver.url(), 1)
    first, second = _dispatcher(pool, channels, clock), _dispatcher(pool, channels, clock)
    [stale] = await first.claim(10)
    assert await second.claim(10) == []  # within the lease
    clock.advance(LEASE_S)
    [fresh] = await second.claim(10)  # the lease ran out: the first holder is presumed dead
    assert (stale.attempt, fresh.attempt) == (1, 2)

    receiver.script.append(Answer(500))
    assert (await first.deliver(stale)).status == "pending"  # decided, but not recorded: not its lease
    row = (await _rows(pool))[key]
    assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 2, None)
    assert (await second.deliver(fresh)).status == "sent"
    row = (await _rows(pool))[key]
    assert (row["status"], row["attempts"]) == ("sent", 2)


async def test_a_last_attempt_that_never_reported_back_goes_dead_without_another_try(
    pool: asyncpg.Pool, receiver: Receiver, channels: ChannelRegistry, clock: MovableClock
) -> None:
    (key,) = await _enqueue(pool, receiver.url(), 1)
    await pool.execute(
        "UPDATE notification_outbox SET attempts = 12, next_attempt_at = $1 WHERE idempotency_key = $2",
        clock.now,
        key,
    )
    [(message, decision)] = await _dispatcher(pool, channels, clock).run_once()
    assert (message.attempt, decision.status) == (13, "dead")
    assert "never reported back" in (await _rows(pool))[key]["last_error"]
    assert receiver.deliveries == []


async def test_the_loop_wakes_on_notify_long_before_its_poll(
    dsn: str, pool: asyncpg.Pool, receiver: Receiver, channels: ChannelRegistry
) -> None:
    dispatcher = Dispatcher(
        pool,
        channels,
        config=DispatcherConfig(lease_s=LEASE_S, poll_s=60, drain_s=5),
        listen_dsn=dsn,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    try:
        await asyncio.sleep(0.5)  # the loop is listening, with nothing due: it waits for up to 60 s
        (key,) = await _enqueue(pool, receiver.url(), 1, prefix="woken")
        await receiver.wait_for(1, timeout_s=10)
        for _ in range(100):
            if (await _rows(pool))[key]["status"] == "sent":
                break
            await asyncio.sleep(0.05)
        assert (await _rows(pool))[key]["status"] == "sent"
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
    assert receiver.counts() == {key: 1}


async def test_the_retry_policy_is_read_from_dated_policy_rows(
    pool: asyncpg.Pool, receiver: Receiver, channels: ChannelRegistry, clock: MovableClock
) -> None:
    (key,) = await _enqueue(pool, receiver.url(), 1)
    await pool.execute(
        """INSERT INTO policy_value (key, scope, value, valid_from, source)
           VALUES ('notify.retry', 'webhook', '{"base_seconds": 100, "max_seconds": 200, "max_attempts": 2}',
                   '2026-01-01', 'test')"""
    )
    try:
        receiver.default = Answer(500)
        dispatcher = _dispatcher(pool, channels, clock)
        [(_, decision)] = await dispatcher.run_once()
        assert decision.next_attempt_at == clock.now + dt.timedelta(seconds=75)  # 100 s, jitter 0.5
        clock.advance(75)
        [(_, decision)] = await dispatcher.run_once()
        assert decision.status == "dead"
        assert (await _rows(pool))[key]["last_error"].startswith("gave up after 2 attempts")
    finally:
        await pool.execute("DELETE FROM policy_value WHERE key = 'notify.retry' AND source = 'test'")


def test_the_lease_must_outlast_an_attempt() -> None:
    from core.notify.runner import dispatcher_config

    with pytest.raises(ValueError, match="must exceed"):
        dispatcher_config(Settings(notify_timeout_s=60, notify_lease_s=30))
    assert dispatcher_config(Settings()).lease_s == 60


async def test_the_client_follows_no_redirect_and_no_proxy_from_the_environment() -> None:
    async with http_client(SETTINGS) as client:
        assert client.follow_redirects is False
        assert isinstance(client.timeout, httpx.Timeout)
        assert client.timeout.read == SETTINGS.notify_timeout_s
