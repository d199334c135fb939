"""Pieces for tests that need committed data and real servers: the live feed's and the browser's.

* :func:`live_database`: a database of its own (``<test db>_live``), recreated, migrated and seeded
  with the reference data (no demo data set): rows a test commits there stay out of the rolled-back
  tests' way.
* :class:`Served`: a real ``eldercare serve`` process on a free port over that database, as
  production runs it (its own pool, its own feed listener), stopped with SIGTERM.
* :class:`SseClient`: reads a ``text/event-stream`` over real HTTP, message by message.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utc_now
from core.identity.models import AppUser
from core.settings import PROJECT_ROOT
from demo.net import free_port
from tests.conftest import TEST_DB_URL, alembic_config, recreate_database
from tests.factories import open_session

_BASE = make_url(TEST_DB_URL).database or "eldercare_test"
LIVE_DB_URL = (
    make_url(TEST_DB_URL)
    .set(drivername="postgresql+asyncpg", database=f"{_BASE}_live")
    .render_as_string(hide_password=False)
)
LIVE_DSN = LIVE_DB_URL.replace("postgresql+asyncpg://", "postgresql://", 1)
SECRET_KEY = "live-test-secret-" + "s" * 40
START_S = 300.0  # a server importing the app on a busy machine


async def live_database() -> str:
    """Recreate, migrate and seed the live tests' database; returns its SQLAlchemy URL."""
    from alembic import command

    from api.bootstrap import domain_seeds
    from core.db import make_engine, make_sessionmaker
    from core.seed import seed_reference
    from core.settings import Settings

    await recreate_database(LIVE_DB_URL)
    await asyncio.to_thread(command.upgrade, alembic_config(LIVE_DB_URL), "heads")
    engine = make_engine(Settings(database_url=LIVE_DB_URL), pool_size=1, max_overflow=0)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            await seed_reference(session, today=utc_now().date(), domains=domain_seeds())
    finally:
        await engine.dispose()
    return LIVE_DB_URL


async def drop_live_database() -> None:
    base, _, name = LIVE_DSN.rpartition("/")
    conn = await asyncpg.connect(base + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def live_headers(db: AsyncSession, user: AppUser, *, ttl_s: int = 4 * 3600) -> dict[str, str]:
    """Bearer headers through a session row opened now (the served app runs on the real clock)."""
    return await open_session(db, user.id, now=utc_now(), ttl_s=ttl_s)


def cookie_of(headers: Mapping[str, str]) -> dict[str, str]:
    """A ``Cookie`` header with the web session cookie carrying the token of bearer ``headers``."""
    return {"Cookie": "ec_session=" + headers["Authorization"].removeprefix("Bearer ")}


@dataclass
class Served:
    """``eldercare serve`` on a free port over the live database."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, *extra: str, env: Mapping[str, str] | None = None) -> Served:
        port = free_port()
        log_path = f"/tmp/eldercare-served-{port}.log"  # noqa: S108 - a test's own server log
        environment = {
            **os.environ,
            "ELDERCARE_DATABASE_URL": LIVE_DB_URL,
            "ELDERCARE_SECRET_KEY": SECRET_KEY,
            "ELDERCARE_HOST": "127.0.0.1",
            "ELDERCARE_PORT": str(port),
            "ELDERCARE_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(  # noqa: S603 - our own CLI
                [sys.executable, "-m", "api.cli", "serve", *extra],
                cwd=PROJECT_ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(proc, port, log_path)

    async def until_healthy(self) -> None:
        deadline = time.monotonic() + START_S
        async with httpx.AsyncClient(timeout=10) as http:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, f"the server exited with {self.proc.returncode}"
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.base + "/health")).status_code == 200:
                        return
                await asyncio.sleep(0.3)
        raise AssertionError(f"{self.base} did not answer /health within {START_S} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@dataclass
class Message:
    """One server-sent message: its fields as sent (``data`` decoded from JSON when there is one)."""

    id: str | None = None
    event: str | None = None
    data: Any = None
    comments: list[str] = field(default_factory=list)

    @property
    def event_id(self) -> int:
        """The alarm_event id the data carries (the SSE ``id:`` is the cursor, see callcentre.feed)."""
        return int(self.data["event_id"])


class SseClient:
    """One open stream: :meth:`next_event` returns the next message that has an ``event:`` (skipping
    heartbeats and other comments, whose ids still move :attr:`last_id`)."""

    def __init__(self, http: httpx.AsyncClient, url: str, headers: Mapping[str, str], **kw: Any) -> None:
        self._http = http
        self._url = url
        self._headers = dict(headers)
        self._kw = kw
        self._queue: asyncio.Queue[Message | BaseException] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.status: int | None = None
        self.last_id: str | None = None
        self._opened = asyncio.Event()

    async def __aenter__(self) -> SseClient:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self._opened.wait(), 30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await self._task

    async def _read(self) -> None:
        try:
            async with self._http.stream(
                "GET", self._url, headers=self._headers, timeout=httpx.Timeout(30, read=None), **self._kw
            ) as response:
                self.status = response.status_code
                self._opened.set()
                if response.status_code != 200:
                    await response.aread()
                    return
                message = Message()
                async for line in response.aiter_lines():
                    if line == "":
                        if message.id is not None:
                            self.last_id = message.id
                        self._queue.put_nowait(message)
                        message = Message()
                        continue
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "":
                        message.comments.append(value)
                    elif name == "id":
                        message.id = value
                    elif name == "event":
                        message.event = value
                    elif name == "data":
                        message.data = json.loads(value)
        except BaseException as exc:
            self._opened.set()
            self._queue.put_nowait(exc)
            raise

    async def next_message(self, timeout: float = 10.0) -> Message:  # noqa: ASYNC109 - a test's bound
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    async def next_event(self, timeout: float = 10.0) -> Message:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            message = await self.next_message(max(0.01, deadline - time.monotonic()))
            if message.event is not None:
                return message

    async def no_event(self, within: float) -> None:
        """No event arrives within ``within`` seconds (heartbeats may)."""
        with contextlib.suppress(TimeoutError):
            message = await self.next_event(within)
            raise AssertionError(f"unexpected event {message}")


@contextlib.asynccontextmanager
async def sse(
    base: str, headers: Mapping[str, str], *, last_event_id: str | None = None, after: int | None = None
) -> AsyncIterator[SseClient]:
    """A stream of ``GET /api/v1/callcentre/stream`` on a served app."""
    extra = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    params = {"after": str(after)} if after is not None else None
    async with (
        httpx.AsyncClient(base_url=base) as http,
        SseClient(http, "/api/v1/callcentre/stream", {**headers, **extra}, params=params) as client,
    ):
        yield client


def utc(seconds_ago: float = 0.0) -> dt.datetime:
    return utc_now() - dt.timedelta(seconds=seconds_ago)
