"""The dispatcher: delivers the outbox at least once, with retries and back-off, never holding a row
lock while it waits on a receiver.

One round:

1. **Claim** (one statement, its own transaction): up to ``batch_size`` rows that are ``pending`` and
   due (``next_attempt_at <= now``), oldest first, ``FOR UPDATE SKIP LOCKED``; each claimed row gets
   ``attempts + 1`` and a **lease**, ``next_attempt_at = now + lease_s``. The row lock lasts only as
   long as that statement; the lease is what keeps other dispatchers off the row while it is being
   delivered, so two dispatchers never send one row within a lease.
2. **Deliver** outside any transaction, through the row's channel (a timeout shorter than the lease).
3. **Mark**: ``sent`` (with ``sent_at``); or back to ``pending`` with the next attempt's time
   (:mod:`core.notify.retry`); or ``dead`` after a permanent failure or the last attempt, with
   ``last_error``. A failure is recorded only by the lease holder (``attempts`` is the fencing token);
   a success is recorded whoever reports it.

If the process dies between delivering and marking, nothing marks the row: its lease runs out and it
is claimed and delivered again, with the same idempotency key (at least once; an idempotent receiver
acts once). ``attempts`` counts claims, so a row whose last allowed attempt never reported back is
marked ``dead`` when it comes round again instead of being tried beyond ``max_attempts``.

The loop (:meth:`Dispatcher.run`) keeps up to ``concurrency`` deliveries in flight, so one slow
receiver does not hold up the rest; it wakes on ``NOTIFY outbox`` (every insert, migration 0019) and on
``NOTIFY policy_changed``, and otherwise polls every ``poll_s`` seconds or when the next retry is due,
whichever is sooner — a lost notification or a dead listener costs at most one poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import structlog

from core.clock import Clock, local_date, utc_now
from core.notify.channel import ChannelRegistry, DeliveryResult, Message
from core.notify.retry import (
    NOTIFY_POLICY_DEFAULTS,
    POLICY_PREFIX,
    Decision,
    decide,
    retry_policy,
)
from core.outbox import OUTBOX_CHANNEL
from core.policy import POLICY_CHANGED, PolicySnapshot, load_policy_conn

log = structlog.get_logger(__name__)

CLAIM_SQL: Final = """
WITH due AS (
    SELECT id FROM notification_outbox
     WHERE status = 'pending' AND next_attempt_at <= $1
     ORDER BY next_attempt_at, id
     LIMIT $2
       FOR UPDATE SKIP LOCKED)
UPDATE notification_outbox o
   SET attempts = o.attempts + 1, next_attempt_at = $1 + make_interval(secs => $3)
  FROM due
 WHERE o.id = due.id
RETURNING o.id, o.channel, o.recipient, o.kind, o.ref, o.payload::text, o.idempotency_key, o.created_at,
          o.attempts"""

MARK_SENT_SQL: Final = """UPDATE notification_outbox SET status = 'sent', sent_at = $2, last_error = NULL
 WHERE id = $1 AND status = 'pending'"""
MARK_RETRY_SQL: Final = """UPDATE notification_outbox SET next_attempt_at = $2, last_error = $3
 WHERE id = $1 AND status = 'pending' AND attempts = $4"""
MARK_DEAD_SQL: Final = """UPDATE notification_outbox SET status = 'dead', last_error = $2
 WHERE id = $1 AND status = 'pending' AND attempts = $3"""
NEXT_DUE_SQL: Final = "SELECT min(next_attempt_at) FROM notification_outbox WHERE status = 'pending'"

ERROR_CHARS: Final = 1000  # of last_error kept


@dataclass(frozen=True, slots=True)
class DispatcherConfig:
    """How one dispatcher works (the settings' ``notify_*``; seconds)."""

    batch_size: int = 20
    lease_s: float = 60.0
    concurrency: int = 16
    poll_s: float = 5.0
    policy_ttl_s: float = 60.0  # the retry policy is reread this often (and on NOTIFY policy_changed)
    drain_s: float = 15.0  # at shutdown, how long deliveries in flight may finish

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.concurrency < 1 or self.lease_s <= 0 or self.poll_s <= 0:
            raise ValueError("batch_size and concurrency >= 1; lease_s and poll_s > 0")


def _tag(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


class Dispatcher:
    """Delivers due outbox rows through ``channels``. ``clock`` gives every ``now`` (claims, leases,
    retries); ``jitter`` draws the back-off's random part in [0, 1)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        channels: ChannelRegistry,
        *,
        config: DispatcherConfig | None = None,
        clock: Clock = utc_now,
        jitter: Callable[[], float] = random.random,
        listen_dsn: str | None = None,
    ) -> None:
        self.pool, self.channels = pool, channels
        self.config = config or DispatcherConfig()
        self.clock, self.jitter = clock, jitter
        self.listen_dsn = listen_dsn
        self._policy: PolicySnapshot | None = None
        self._policy_read_at = 0.0
        self._wake = asyncio.Event()

    # --- one round ------------------------------------------------------------------------------

    async def claim(self, limit: int) -> list[Message]:
        """Lease up to ``limit`` due rows (committed before this returns)."""
        now = self.clock()
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(CLAIM_SQL, now, limit, self.config.lease_s)
        return [
            Message(
                id=r[0],
                channel=r[1],
                recipient=r[2],
                kind=r[3],
                ref=r[4],
                payload=json.loads(r[5]),
                idempotency_key=r[6],
                created_at=r[7],
                attempt=r[8],
            )
            for r in sorted(rows, key=lambda r: r[0])
        ]

    async def policy(self, now: dt.datetime) -> PolicySnapshot:
        """The ``notify.*`` policy of ``now``'s local day, reread every ``policy_ttl_s`` seconds."""
        day = local_date(now)
        fresh = time.monotonic() - self._policy_read_at < self.config.policy_ttl_s
        if self._policy is None or self._policy.day != day or not fresh:
            async with self.pool.acquire() as conn:
                self._policy = await load_policy_conn(
                    conn, day=day, prefixes=[POLICY_PREFIX], defaults=NOTIFY_POLICY_DEFAULTS
                )
            self._policy_read_at = time.monotonic()
        return self._policy

    def forget_policy(self) -> None:
        self._policy = None

    async def deliver(self, message: Message) -> Decision:
        """Send one claimed row and record the outcome; returns the decision taken."""
        policy = retry_policy(await self.policy(self.clock()), message.channel)
        if message.attempt > policy.max_attempts:
            result = DeliveryResult.permanent(
                f"attempt {message.attempt - 1} of {policy.max_attempts} never reported back "
                "(the dispatcher stopped while delivering); not tried again"
            )
        else:
            result = await self.channels.send(message)
        now = self.clock()
        decision = decide(result, attempt=message.attempt, policy=policy, now=now, jitter=self.jitter())
        await self._mark(message, decision, now=now)
        return decision

    async def _mark(self, message: Message, decision: Decision, *, now: dt.datetime) -> None:
        error = decision.error[:ERROR_CHARS] if decision.error else None
        async with self.pool.acquire() as conn:
            if decision.status == "sent":
                status = await conn.execute(MARK_SENT_SQL, message.id, now)
            elif decision.status == "pending":
                status = await conn.execute(
                    MARK_RETRY_SQL, message.id, decision.next_attempt_at, error, message.attempt
                )
            else:
                status = await conn.execute(MARK_DEAD_SQL, message.id, error, message.attempt)
        fields: dict[str, Any] = {
            "outbox_id": message.id,
            "channel": message.channel,
            "kind": message.kind,
            "attempt": message.attempt,
            "recorded": _tag(status) == 1,  # False: a newer lease holder (or a success) got there first
        }
        if decision.status == "sent":
            log.info("notify.sent", **fields)
        elif decision.status == "pending":
            log.warning("notify.retry", error=error, next_attempt_at=decision.next_attempt_at, **fields)
        else:
            log.error("notify.dead", error=error, **fields)

    async def run_once(self, limit: int | None = None) -> list[tuple[Message, Decision]]:
        """Claim one batch and deliver it, all at once; returns what happened to each row."""
        messages = await self.claim(limit or self.config.batch_size)
        decisions = await asyncio.gather(*(self.deliver(m) for m in messages))
        return list(zip(messages, decisions, strict=True))

    async def drain(self, *, max_rounds: int = 1000) -> int:
        """Run rounds until none claims anything; returns the rows handled (for tests and tools)."""
        handled = 0
        for _ in range(max_rounds):
            done = await self.run_once()
            if not done:
                break
            handled += len(done)
        return handled

    # --- the loop -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; then let deliveries in flight finish (up to ``drain_s``).
        A delivery cut short keeps its lease and is delivered again once it runs out."""
        inflight: set[asyncio.Task[None]] = set()
        listener: asyncpg.Connection | None = None
        log.info("notify.dispatcher_started", channels=self.channels.names(), lease_s=self.config.lease_s)
        try:
            while not stop.is_set():
                if listener is None or listener.is_closed():
                    listener = await self._listen()
                self._wake.clear()
                room = self.config.concurrency - len(inflight)
                claimed: list[Message] = []
                if room > 0:
                    try:
                        claimed = await self.claim(min(room, self.config.batch_size))
                    except Exception as exc:  # the database away: poll again, never stop the loop
                        log.warning("notify.claim_failed", error=f"{type(exc).__name__}: {exc}")
                for message in claimed:
                    task = asyncio.create_task(self._deliver_logged(message))
                    inflight.add(task)
                    task.add_done_callback(self._done(inflight))
                if claimed and len(claimed) == min(room, self.config.batch_size):
                    continue  # a full batch: more may be due at once
                await self._sleep(stop, room_left=room - len(claimed) > 0)
        finally:
            if inflight:
                _, pending = await asyncio.wait(set(inflight), timeout=self.config.drain_s)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            if listener is not None and not listener.is_closed():
                with contextlib.suppress(Exception):
                    await listener.close()
            log.info("notify.dispatcher_stopped")

    def _done(self, inflight: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            inflight.discard(task)
            self._wake.set()

        return done

    async def _deliver_logged(self, message: Message) -> None:
        try:
            await self.deliver(message)
        except Exception:  # the row keeps its lease and comes round again when it runs out
            log.exception("notify.deliver_failed", outbox_id=message.id, attempt=message.attempt)

    async def _sleep(self, stop: asyncio.Event, *, room_left: bool) -> None:
        """Until a NOTIFY, a delivery finishing, ``stop``, the next retry's time or the poll."""
        timeout = self.config.poll_s
        if room_left:
            with contextlib.suppress(Exception):  # unknown: the poll interval will do
                async with self.pool.acquire() as conn:
                    next_due = await conn.fetchval(NEXT_DUE_SQL)
                if next_due is not None:
                    timeout = min(timeout, max(0.0, (next_due - self.clock()).total_seconds()))
        if timeout <= 0:
            return
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _listen(self) -> asyncpg.Connection | None:
        """A connection LISTENing on the outbox and policy channels; ``None`` (poll only) if it fails."""
        if self.listen_dsn is None:
            return None
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(self.listen_dsn)
            await conn.add_listener(OUTBOX_CHANNEL, self._on_outbox)
            await conn.add_listener(POLICY_CHANGED, self._on_policy)
        except Exception as exc:  # poll only until the next round tries again
            log.warning("notify.listen_failed", error=f"{type(exc).__name__}: {exc}")
            if conn is not None:
                conn.terminate()
            return None
        return conn

    def _on_outbox(self, *_: object) -> None:
        self._wake.set()

    def _on_policy(self, _conn: object, _pid: object, _channel: object, key: object) -> None:
        if isinstance(key, str) and key.startswith(POLICY_PREFIX):
            self.forget_policy()
