"""The escalation survives its scheduler being killed (issue #11): the real ``eldercare scheduler``
process, SIGKILLed between two steps, in the middle of one (blocked inside its transaction), and at
random moments, and restarted each time: afterwards every step of the chain has run, in order, and
none twice — one ``escalated`` event and one set of outbox rows per step.

The scheduler runs on the real clock here, so the chain under test is a policy row with steps a few
seconds apart. It has a database of its own (migrated and seeded with the reference data), so the
scheduler's other jobs never touch the data the rest of the suite shares.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from callcentre.contract import AlarmCandidate, raise_alarm
from core.clock import local_date
from core.identity.models import Role
from core.settings import PROJECT_ROOT, Settings
from demo.postgres import asyncpg_dsn
from tests.conftest import TEST_DB_URL
from tests.factories import Factory

pytestmark = pytest.mark.integration

_BASE = make_url(TEST_DB_URL).database or "eldercare_test"
DB_URL = make_url(TEST_DB_URL).set(database=f"{_BASE}_esc").render_as_string(hide_password=False)
DSN = Settings(database_url=DB_URL).asyncpg_dsn
WAIT_S = 3  # between two steps: the runner passes every 2 s
CHAIN = {
    "steps": [
        {"action": "notify_operators", "wait_s": 0},
        {"action": "notify_supervisors", "wait_s": WAIT_S},
        {"action": "notify_oncall", "wait_s": WAIT_S},
        {"action": "webhook", "wait_s": WAIT_S},
    ],
    "rounds": 2,
    "requeue_after_s": 0,
    "staff_channel": "sms",
}
EXPECTED = [(r, s) for r in (1, 2) for s in range(4)]
DEADLINE_S = 240.0  # a busy machine starts the scheduler slowly, several times


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "ELDERCARE_DATABASE_URL": DB_URL,
        "ELDERCARE_SECRET_KEY": "escalation-crash-" + "k" * 40,
        "ELDERCARE_LOG_LEVEL": "INFO",
        "ELDERCARE_LOG_JSON": "1",
    }


def _eldercare(*args: str) -> None:
    subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "api.cli", *args],
        cwd=PROJECT_ROOT,
        env=_env(),
        check=True,
        capture_output=True,
        timeout=600,
    )


async def _drop() -> None:
    admin = await asyncpg.connect(asyncpg_dsn(DB_URL, database="postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{make_url(DB_URL).database}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def crash_db() -> Iterator[str]:
    asyncio.run(_drop())
    _eldercare("migrate")
    _eldercare("seed")
    yield DB_URL
    asyncio.run(_drop())


class Scheduler:
    """``eldercare scheduler`` as a child process in its own process group, its log in a file."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "scheduler"],
                cwd=PROJECT_ROOT,
                env=_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no drain, no rollback by the process itself, whatever it was doing."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
async def pg(crash_db: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(DSN)
    yield conn
    await conn.close()


async def _setup(pg: asyncpg.Connection) -> tuple[int, int]:
    """Committed: the fast chain for SOS and an on-call list valid today, an elder with one emergency
    contact, a city-wide supervisor with a phone. Returns (elder id, supervisor id)."""
    today = local_date(dt.datetime.now(dt.UTC))
    for key, scope, value in (
        ("callcentre.escalation", "SOS", CHAIN),
        (
            "callcentre.oncall",
            "*",
            {"contacts": ["sms:13800000001"], "webhook": "http://127.0.0.1:9/incident"},
        ),
    ):
        await pg.execute(
            "INSERT INTO policy_value (key, scope, value, valid_from, source)"
            " VALUES ($1, $2, $3::jsonb, $4, 'test')",
            key,
            scope,
            json.dumps(value),
            today,
        )
    engine = create_async_engine(DB_URL)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            make = Factory(session)
            elder = await make.elder(contacts=[("张一", "son", "13911112222")])
            supervisor = await make.account(Role.SUPERVISOR)
            supervisor.user.phone = "13700001111"
            await session.commit()
            return elder.id, supervisor.user_id
    finally:
        await engine.dispose()


async def _steps(pg: asyncpg.Connection, alarm_id: int) -> list[tuple[int, int]]:
    rows = await pg.fetch(
        "SELECT data::text AS data FROM alarm_event WHERE alarm_id = $1 AND kind = 'escalated' ORDER BY id",
        alarm_id,
    )
    return [(json.loads(r["data"])["round"], json.loads(r["data"])["step"]) for r in rows]


async def _until(pg: asyncpg.Connection, alarm_id: int, count: int, scheduler: Scheduler) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while len(await _steps(pg, alarm_id)) < count:
        assert scheduler.proc is not None
        assert scheduler.proc.poll() is None, (
            f"the scheduler exited: {scheduler.log_path.read_text()[-3000:]}"
        )
        assert time.monotonic() < deadline, f"step {count} never ran: {await _steps(pg, alarm_id)}"
        await asyncio.sleep(0.1)


async def _running(pg: asyncpg.Connection, scheduler: Scheduler) -> None:
    """Until the (re)started scheduler's runner has beaten: it has imported everything and runs."""
    since = dt.datetime.now(dt.UTC)
    deadline = time.monotonic() + DEADLINE_S
    while (
        await pg.fetchval("SELECT beat_at FROM escalation_heartbeat WHERE job = 'runner'") or since
    ) <= since:
        assert scheduler.proc is not None
        assert scheduler.proc.poll() is None, (
            f"the scheduler exited: {scheduler.log_path.read_text()[-3000:]}"
        )
        assert time.monotonic() < deadline, "the scheduler never ran its runner"
        await asyncio.sleep(0.1)


async def _blocked_on_outbox(pg: asyncpg.Connection) -> int:
    """The backend (pid) of the runner waiting, inside its step's transaction, to write an outbox row."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        pid = await pg.fetchval(
            "SELECT pid FROM pg_locks"
            " WHERE NOT granted AND relation = 'notification_outbox'::regclass LIMIT 1"
        )
        if pid is not None:
            return int(pid)
        assert time.monotonic() < deadline, "the runner never reached the outbox"
        await asyncio.sleep(0.05)


async def test_the_scheduler_killed_between_and_inside_steps_loses_none_and_runs_none_twice(
    pg: asyncpg.Connection, tmp_path: Path
) -> None:
    elder_id, _ = await _setup(pg)
    scheduler = Scheduler(tmp_path / "scheduler.log")
    scheduler.start()
    try:
        async with pg.transaction():  # as the ingest raises it
            write = await raise_alarm(
                pg, AlarmCandidate("SOS", "CRITICAL", None, elder_id, dt.datetime.now(dt.UTC))
            )
        alarm_id = write.alarm_id

        # Between two steps: killed once the first has run, kept down until the second is overdue.
        await _until(pg, alarm_id, 1, scheduler)
        scheduler.kill()
        await asyncio.sleep(WAIT_S + 1)
        assert await _steps(pg, alarm_id) == EXPECTED[:1]
        scheduler.start()
        await _until(pg, alarm_id, 2, scheduler)

        # Inside a step: the outbox held, the runner blocks mid-transaction (its position moved, its
        # event not yet written) and is killed there; its transaction never commits.
        locker = await asyncpg.connect(DSN)
        try:
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE notification_outbox IN EXCLUSIVE MODE")
            orphan = await _blocked_on_outbox(pg)
            scheduler.kill()
            await tx.rollback()
        finally:
            await locker.close()
        # The killed process's backend learns of it when it next writes to its socket, and rolls back.
        deadline = time.monotonic() + 60
        while await pg.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", orphan):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert await _steps(pg, alarm_id) == EXPECTED[:2]
        scheduler.start()
        await _until(pg, alarm_id, 3, scheduler)

        # At random moments once it is running its jobs again: whatever it was doing.
        rng = random.Random(11)
        for _ in range(2):
            await _running(pg, scheduler)
            await asyncio.sleep(rng.uniform(0, WAIT_S))
            scheduler.kill()
            scheduler.start()
        await _until(pg, alarm_id, len(EXPECTED), scheduler)
        await asyncio.sleep(WAIT_S + 2)  # time for a step too many, were there one
    finally:
        scheduler.stop()

    assert scheduler.starts == 5
    assert await _steps(pg, alarm_id) == EXPECTED
    position = await pg.fetchrow(
        "SELECT escalation_cycle, escalation_round, escalation_step, escalation_due_at"
        " FROM alarm WHERE id = $1",
        alarm_id,
    )
    assert position is not None
    assert tuple(position) == (0, 3, 0, None)  # exhausted, and it never requeues
    rows = await pg.fetch(
        "SELECT channel, recipient, kind, idempotency_key FROM notification_outbox"
        " WHERE ref = $1 ORDER BY id",
        f"alarm:{alarm_id}",
    )
    per_round = [
        ("sms", "13700001111", "alarm.escalated"),
        ("sms", "13800000001", "alarm.escalated"),
        ("webhook", "http://127.0.0.1:9/incident", "alarm.escalated"),
    ]
    assert [(r["channel"], r["recipient"], r["kind"]) for r in rows] == [
        ("sms", "13911112222", "alarm.family"),
        *per_round,
        *per_round,
    ]
    notified = await pg.fetchval(
        "SELECT count(*) FROM alarm_event WHERE alarm_id = $1 AND kind = 'notified'", alarm_id
    )
    assert notified == 1
    # No step ran before it was due.
    for row in await pg.fetch(
        "SELECT at, data::text AS data FROM alarm_event WHERE alarm_id = $1 AND kind = 'escalated'", alarm_id
    ):
        assert dt.datetime.fromisoformat(json.loads(row["data"])["due_at"]) <= row["at"]
