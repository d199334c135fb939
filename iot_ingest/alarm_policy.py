"""The alarm policy the ingest applies, by local day: read through the one reader, kept current.

The rules apply the policy valid on the local (Asia/Shanghai) date of a message's own time, so a late
message from yesterday is judged by yesterday's thresholds. :class:`PolicyByDay` holds the built
:class:`~iot_ingest.rules.AlarmThresholds` of a few days: a message of the current day is answered by
two comparisons (no query, no time-zone conversion), another day by a dict lookup; a day not held yet
is loaded once (the router awaits :meth:`PolicyByDay.ensure` before routing the message).

A long-running ingest must see a policy change without a restart. :class:`PolicyWatch` (a task of the
consumer) reloads the current day:

- when the policy API writes a policy row: it sends ``pg_notify('policy_changed', key)`` in the same
  transaction, and the watch ``LISTEN``\\s on that channel (keys outside ``alarm.`` are ignored);
- when the local date changes (so the new day's rows are in place before its first message);
- every ``refresh_s`` seconds, a safety net for a NOTIFY lost with a dropped connection (a reconnect
  reloads too).

A reload swaps in a fresh set holding only the current day; other days are loaded again on demand.
A policy that cannot be built (a malformed row) is logged and the policy in hand is kept.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any, Final

import asyncpg
import structlog

from callcentre.seed import POLICY_DEFAULTS
from core.clock import SHANGHAI, local_date, utc_now
from core.policy import POLICY_CHANGED, PolicyMissing, load_policy_conn
from iot_ingest.normalise import Message
from iot_ingest.rules import POLICY_PREFIXES, AlarmThresholds, thresholds_from

log = structlog.get_logger("iot_ingest.policy")

_INVALID = (PolicyMissing, TypeError, ValueError)  # a policy that cannot be built into thresholds
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


async def load_thresholds(conn: asyncpg.Connection, day: dt.date) -> AlarmThresholds:
    """The alarm policy valid on ``day``: ``alarm.*`` rows, else :mod:`callcentre.seed`'s defaults."""
    snapshot = await load_policy_conn(conn, day=day, prefixes=POLICY_PREFIXES, defaults=POLICY_DEFAULTS)
    return thresholds_from(snapshot)


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants at which the local ``day`` starts and the next one starts."""
    start = dt.datetime.combine(day, dt.time(0), SHANGHAI)
    return start.astimezone(dt.UTC), (start + dt.timedelta(days=1)).astimezone(dt.UTC)


class PolicyByDay:
    """Alarm thresholds by local day, for the router (one event loop, no locking needed).

    ``generation`` counts the swaps (:meth:`replace`), so a load that raced a reload is redone
    rather than storing a policy older than the reload's."""

    MAX_DAYS: Final = 8  # late or early data spans a few days at most; the oldest goes first

    def __init__(self) -> None:
        self._days: dict[dt.date, AlarmThresholds] = {}
        self.today: dt.date | None = None
        self.generation = 0
        self.loads = 0  # days loaded, by a reload or on demand
        # The day last asked for (usually the current one): its bounds in UTC and its thresholds.
        self._hot_day: dt.date | None = None
        self._lo = self._hi = dt.datetime.min.replace(tzinfo=dt.UTC)
        self._hot: AlarmThresholds | None = None

    def held(self) -> dict[dt.date, AlarmThresholds]:
        return dict(self._days)

    def at(self, at: dt.datetime) -> AlarmThresholds:
        """The thresholds for an instant whose day is held (see :meth:`missing`)."""
        if self._lo <= at < self._hi:
            assert self._hot is not None
            return self._hot
        day = local_date(at)
        th = self._days[day]
        self._set_hot(day, th)
        return th

    def _set_hot(self, day: dt.date | None, th: AlarmThresholds | None) -> None:
        self._hot_day, self._hot = day, th
        if day is None:
            self._lo = self._hi = dt.datetime.min.replace(tzinfo=dt.UTC)
        else:
            self._lo, self._hi = day_bounds(day)

    def missing(self, message: Message) -> set[dt.date] | None:
        """The local days of the message's readings and events whose policy is not held (None if
        all are: the usual case, answered by comparisons alone)."""
        lo, hi, days = self._lo, self._hi, None
        for r in message.readings:
            if not lo <= r.at < hi and (day := local_date(r.at)) not in self._days:
                days = (days or set()) | {day}
        for e in message.events:
            if not lo <= e.at < hi and (day := local_date(e.at)) not in self._days:
                days = (days or set()) | {day}
        return days

    def put(self, day: dt.date, th: AlarmThresholds) -> None:
        self._days[day] = th
        self.loads += 1
        if day == self._hot_day:
            self._hot = th

    def make_room(self, n: int) -> None:
        """Forget the oldest days (never the current one) so that ``n`` more fit in :data:`MAX_DAYS`
        (a single message spanning more days than that still gets all of them)."""
        for day in [d for d in self._days if d != self.today][: max(len(self._days) + n - self.MAX_DAYS, 0)]:
            del self._days[day]
            if day == self._hot_day:
                self._set_hot(None, None)

    def replace(self, today: dt.date, th: AlarmThresholds) -> None:
        """Hold only ``today``'s policy (a reload): other days are loaded again when needed."""
        self._days = {today: th}
        self.today = today
        self._set_hot(today, th)
        self.generation += 1
        self.loads += 1

    async def ensure(self, conn: asyncpg.Connection, days: set[dt.date]) -> None:
        """Load the policy of ``days``. A policy that cannot be built is logged, and the day is judged
        by the current day's policy meanwhile (the next reload tries again). If a reload swaps the
        set meanwhile, the caller's :meth:`missing` finds what is still to load. Database errors
        propagate."""
        generation = self.generation
        self.make_room(len(days))
        for day in sorted(days):
            try:
                th = await load_thresholds(conn, day)
            except _INVALID as e:
                log.error("ingest.policy_invalid", day=day.isoformat(), error=repr(e)[:300])
                fallback = self._days.get(self.today) if self.today is not None else None
                if fallback is None:
                    raise
                th = fallback
            if generation != self.generation:
                return  # loaded before a reload's swap: possibly older than it
            self.put(day, th)


class PolicyWatch:
    """Keeps :class:`PolicyByDay`'s current day fresh (see the module docstring for when)."""

    def __init__(
        self,
        policy: PolicyByDay,
        dsn: str,
        *,
        refresh_s: float = 60.0,
        retry_s: float = 1.0,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.policy, self.dsn = policy, dsn
        self.refresh_s, self.retry_s, self.clock = refresh_s, retry_s, clock
        self.reloads: dict[str, int] = {"connect": 0, "notify": 0, "day": 0, "interval": 0}
        self.listening = asyncio.Event()  # set once LISTEN is in place (tests wait on it)
        self._changed = asyncio.Event()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(POLICY_PREFIXES):
            self._changed.set()

    async def reload(self, conn: asyncpg.Connection, reason: str) -> bool:
        today = local_date(self.clock())
        try:
            th = await load_thresholds(conn, today)
        except _INVALID as e:
            log.error("ingest.policy_invalid", day=today.isoformat(), reason=reason, error=repr(e)[:300])
            return False
        self.policy.replace(today, th)
        self.reloads[reason] += 1
        log.info("ingest.policy_loaded", day=today.isoformat(), reason=reason)
        return True

    async def run(self, stopping: asyncio.Event) -> None:
        conn: asyncpg.Connection | None = None
        while not stopping.is_set():
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self.dsn)
                    await conn.add_listener(POLICY_CHANGED, self._on_notify)
                    self.listening.set()
                    await self.reload(conn, "connect")  # a NOTIFY may have been missed meanwhile
                now = self.clock()
                today = local_date(now)
                to_midnight = (day_bounds(today)[1] - now).total_seconds()
                await _first_of(self._changed, stopping, timeout=min(self.refresh_s, to_midnight + 0.001))
                if stopping.is_set():
                    break
                if self._changed.is_set():
                    self._changed.clear()
                    await self.reload(conn, "notify")
                elif local_date(self.clock()) != today:
                    await self.reload(conn, "day")
                else:
                    await self.reload(conn, "interval")
            except Exception as e:
                if isinstance(e, _DB_ERRORS):
                    log.warning("ingest.policy_watch_failed", error=repr(e)[:200])
                else:
                    log.exception("ingest.policy_watch_failed")
                self.listening.clear()
                if conn is not None:
                    conn.terminate()
                conn = None
                await _first_of(stopping, timeout=self.retry_s)
        if conn is not None:
            await conn.close()


async def _first_of(*events: asyncio.Event, timeout: float) -> None:  # noqa: ASYNC109 - a plain deadline
    """Wait until one of ``events`` is set, or ``timeout`` seconds."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=max(timeout, 0.001), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
