"""The operators' live feed: each API process LISTENs once on ``alarm_event`` and fans the events out
in memory to its own consoles, each filtered to its districts (DOMAIN §9: city-wide when unscoped).

**One listener per process.** :class:`AlarmFeed` holds one asyncpg connection that LISTENs on
:data:`callcentre.timeline.EVENT_CHANNEL` (every ``alarm_event`` insert is NOTIFYed there, migration
0019) and a small pool for reads. A pump task takes the notifications in the order PostgreSQL
delivers them (commit order), reads each batch's console fields in one query (the alarm's type,
severity, count and state, the district's and the elder's names) and puts them on every matching
subscriber's queue. Several API processes each run their own feed: nothing is shared but the database.

**Slow consumers.** Each subscriber's queue is bounded (:data:`QUEUE_SIZE`). A console that does not
keep up is not waited for: its queue is marked overflowed, its stream ends, and the browser reconnects
with ``Last-Event-ID`` and is replayed what it missed (from the table, in order).

**The cursor, and ids that commit out of order.** An event's id (``bigserial``) is taken when its row
is inserted, not when the transaction commits: event 11 may commit, and reach the consoles, before
event 10. If a console's ``Last-Event-ID`` were simply the id of the last event it received, a
reconnect after 11 and before 10 committed would replay "ids above 11" and lose 10 for good.

What we chose: **deliver every event at once, and move the cursor only over settled ids.** The feed
keeps a *settled* mark (:class:`Settled`): the highest id ``S`` such that every id up to ``S`` has
either arrived or been given up. An id above a gap waits at most :data:`HOLD_S` for the ids below
it; a gap still open after that is given up (a rolled-back transaction leaves its ids unused for
ever, and nothing tells us which gaps are those). The ``id:`` of each SSE message is that settled
mark as it stood once the event was handled, so an event that arrives in order carries its own id,
and one that arrives early (11 before 10) carries the lower mark and does not move the console's
cursor past 10. A reconnecting console replays ``id > cursor``: 10 and 11 both, in order (11 a
second time: the data carries ``event_id``, consoles drop what they have seen). Events are never
held back, so a gap costs an SOS no latency: only the cursor waits.

An id given up that commits after all (a transaction longer than :data:`HOLD_S`) still reaches every
connected console at once (the settled mark already passed it: its message repeats the mark). Each
feed remembers such *late* ids for :data:`LATE_KEEP_S` and adds them to every replay, so a console
that was disconnected when one committed gets it on reconnecting too. What remains unguarded: a late
id that commits while the feed's own LISTEN connection is down, and a console that reconnects to a
process started after the late commit.

The pure part, :class:`Settled`, takes the time as an argument and is unit-tested; the rest is I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

import asyncpg
import structlog

from callcentre.timeline import EVENT_CHANNEL

log = structlog.get_logger()

# How long an id above a gap waits for the ids below it before the gap is given up (seconds). Longer
# than an API request's or an ingest batch's transaction; only the cursor waits, never an event.
HOLD_S: Final = 2.0
# A subscriber's queue (events). Past it the console is dropped and replays on reconnecting.
QUEUE_SIZE: Final = 2000
# How long a late id (committed after its gap was given up) is added to every replay (seconds).
LATE_KEEP_S: Final = 600.0
# Ids remembered after they arrived, to drop a second arrival (a resync overlapping notifications).
RECENT_KEEP: Final = 50_000
# Rows per replay query.
REPLAY_PAGE: Final = 500
# Pause between attempts to reconnect the LISTEN connection (seconds).
RECONNECT_S: Final = 1.0


# --- The settled mark (pure) -----------------------------------------------------------------------


class Arrival(Enum):
    NEW = "new"  # above the settled mark, not seen before
    LATE = "late"  # at or below the mark (given up, or in flight when the feed started), first seen now
    DUPLICATE = "duplicate"  # seen already (a resync after reconnecting overlaps the notifications)


@dataclass
class Settled:
    """The highest id up to which every id has arrived or been given up (``value``).

    ``arrive(id, now)`` records an id; ``expire(now)`` gives up the lowest missing id once an id
    above it has been waiting ``hold_s``, repeatedly. ``now`` is a monotonic time in seconds. The
    last ``recent_keep`` ids that arrived are remembered, to drop a second arrival of one of them.
    """

    value: int
    hold_s: float = HOLD_S
    recent_keep: int = RECENT_KEEP
    _ahead: set[int] = field(default_factory=set)
    # (id, when): each time the highest id seen grew. The lowest missing id ``m`` has been waiting
    # since the first mark above ``m``.
    _marks: deque[tuple[int, float]] = field(default_factory=deque)
    _highest: int = 0
    _recent: OrderedDict[int, None] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self._highest = self.value

    def arrive(self, event_id: int, now: float) -> Arrival:
        if event_id in self._recent:
            return Arrival.DUPLICATE
        self._recent[event_id] = None
        while len(self._recent) > self.recent_keep:
            self._recent.popitem(last=False)
        if event_id <= self.value:
            return Arrival.LATE
        self._ahead.add(event_id)
        if event_id > self._highest:
            self._highest = event_id
            self._marks.append((event_id, now))
        self._advance()
        return Arrival.NEW

    def expire(self, now: float) -> bool:
        """Give up the missing ids that waited long enough; whether the mark moved."""
        moved = False
        while True:
            since = self._waiting_since()
            if since is None or now - since < self.hold_s:
                return moved
            self.value += 1
            self._advance()
            moved = True

    def deadline(self) -> float | None:
        """When the lowest missing id will be given up (monotonic seconds), or ``None`` if no gap."""
        since = self._waiting_since()
        return None if since is None else since + self.hold_s

    def _advance(self) -> None:
        while self.value + 1 in self._ahead:
            self._ahead.remove(self.value + 1)
            self.value += 1

    def _waiting_since(self) -> float | None:
        if self.value >= self._highest:
            self._marks.clear()
            return None
        missing = self.value + 1
        while self._marks and self._marks[0][0] <= missing:
            self._marks.popleft()
        # A gap exists, so an id above ``missing`` arrived and left a mark (the highest one did).
        return self._marks[0][1] if self._marks else None


# --- Events as the consoles get them ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One ``alarm_event`` with what a console shows of its alarm (``data`` is the SSE data, JSON)."""

    id: int
    kind: str
    district_id: int | None
    data: str


_EVENT_COLUMNS: Final = """e.id, e.alarm_id, e.kind, e.at, e.actor_id, e.district_id, e.data,
       a.type, a.severity, a.count, a.acknowledged_at, a.cleared_at, a.assignee_id, a.outcome,
       d.name AS district, el.name AS elder_name"""
_EVENT_FROM: Final = """alarm_event e
JOIN alarm a ON a.id = e.alarm_id
LEFT JOIN district d ON d.id = e.district_id
LEFT JOIN elder el ON el.id = a.elder_id"""
_BY_IDS: Final = f"SELECT {_EVENT_COLUMNS} FROM {_EVENT_FROM} WHERE e.id = ANY($1::bigint[])"  # noqa: S608
_REPLAY: Final = f"""SELECT {_EVENT_COLUMNS} FROM {_EVENT_FROM}
WHERE e.id > $1 AND ($2::int[] IS NULL OR e.district_id = ANY($2::int[]))
ORDER BY e.id LIMIT $3"""  # noqa: S608 - constants
_LATE: Final = f"""SELECT {_EVENT_COLUMNS} FROM {_EVENT_FROM}
WHERE e.id = ANY($1::bigint[]) AND ($2::int[] IS NULL OR e.district_id = ANY($2::int[]))
ORDER BY e.id"""  # noqa: S608 - constants
_LATEST: Final = "SELECT coalesce(max(id), 0) FROM alarm_event"
_IDS_AFTER: Final = "SELECT id FROM alarm_event WHERE id > $1 ORDER BY id"


def _iso(at: dt.datetime | None) -> str | None:
    return None if at is None else at.astimezone(dt.UTC).isoformat()


def event_of(row: asyncpg.Record) -> FeedEvent:
    """The console's view of one event row (columns :data:`_EVENT_COLUMNS`)."""
    raw = row["data"]
    data = json.loads(raw) if isinstance(raw, str) else (raw or {})
    body = {
        "event_id": row["id"],
        "alarm_id": row["alarm_id"],
        "kind": row["kind"],
        "at": _iso(row["at"]),
        "actor_id": row["actor_id"],
        "type": row["type"],
        "severity": row["severity"],
        "count": row["count"],
        "district_id": row["district_id"],
        "district": row["district"],
        "elder_name": row["elder_name"],
        "acknowledged": row["acknowledged_at"] is not None,
        "cleared": row["cleared_at"] is not None,
        "assignee_id": row["assignee_id"],
        "outcome": row["outcome"],
        "data": data,
    }
    return FeedEvent(row["id"], row["kind"], row["district_id"], json.dumps(body, ensure_ascii=False))


def in_scope(district_id: int | None, districts: frozenset[int] | None) -> bool:
    """``districts`` ``None``: city-wide. An alarm without a district (no elder) is city-wide only."""
    return districts is None or (district_id is not None and district_id in districts)


async def latest_event_id(conn: asyncpg.Connection) -> int:
    """The highest committed event id (0 when there is none)."""
    return int(await conn.fetchval(_LATEST))


async def replay_page(
    conn: asyncpg.Connection, *, after: int, districts: frozenset[int] | None, limit: int = REPLAY_PAGE
) -> list[FeedEvent]:
    """Committed events above ``after`` in the scope, in id order, at most ``limit``."""
    scope = None if districts is None else sorted(districts)
    return [event_of(r) for r in await conn.fetch(_REPLAY, after, scope, limit)]


async def events_by_id(
    conn: asyncpg.Connection, ids: Collection[int], *, districts: frozenset[int] | None
) -> list[FeedEvent]:
    scope = None if districts is None else sorted(districts)
    return [event_of(r) for r in await conn.fetch(_LATE, list(ids), scope)]


# --- Subscribers ---------------------------------------------------------------------------------


@dataclass(eq=False)
class Subscription:
    """One console's queue: ``(event, cursor)`` pairs in the feed's order; ``cursor`` is the settled
    mark once the event was handled (the SSE ``id:``)."""

    districts: frozenset[int] | None
    queue: asyncio.Queue[tuple[FeedEvent, int]]
    overflowed: bool = False

    def offer(self, event: FeedEvent, cursor: int) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait((event, cursor))
        except asyncio.QueueFull:
            self.overflowed = True  # its stream ends; the console replays from its cursor


# --- The feed ------------------------------------------------------------------------------------


class AlarmFeed:
    """The process's one listener and its subscribers. ``start()`` in the app's startup, ``stop()``
    at shutdown. All methods run on the app's event loop."""

    def __init__(
        self,
        dsn: str,
        *,
        hold_s: float = HOLD_S,
        queue_size: int = QUEUE_SIZE,
        late_keep_s: float = LATE_KEEP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dsn = dsn
        self._hold_s = hold_s
        self._queue_size = queue_size
        self._late_keep_s = late_keep_s
        self._clock = clock
        self._listener: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None
        self._inbox: asyncio.Queue[int] = asyncio.Queue()
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscribers: set[Subscription] = set()
        self._settled: Settled | None = None
        self._late: deque[tuple[int, float]] = deque(maxlen=5000)
        self._published = 0
        self.running = False

    # -- lifecycle

    async def start(self) -> None:
        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=4)
        await self._listen()
        async with self._pool.acquire() as conn:
            self._settled = Settled(await latest_event_id(conn), hold_s=self._hold_s)
        self._published = self._settled.value
        self._task = asyncio.create_task(self._pump(), name="alarm-feed")
        self.running = True
        log.info("feed.started", cursor=self._settled.value)

    async def stop(self) -> None:
        self.running = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sub in list(self._subscribers):
            sub.overflowed = True
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
        if self._pool is not None:
            await self._pool.close()

    @property
    def cursor(self) -> int:
        """The settled mark as last published: every event up to it is on the queue of every
        subscriber in its scope (or was given up). A console whose queue is empty has all of them."""
        return self._published

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the feed's pool, for replays."""
        assert self._pool is not None, "the feed is not started"
        async with self._pool.acquire() as conn:
            yield conn

    # -- subscribers

    def subscribe(self, districts: frozenset[int] | None) -> Subscription:
        sub = Subscription(districts, asyncio.Queue(maxsize=self._queue_size))
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def late_ids(self) -> list[int]:
        """Ids that committed after their gap was given up, within :data:`LATE_KEEP_S`."""
        horizon = self._clock() - self._late_keep_s
        return [i for i, at in self._late if at >= horizon]

    # -- the listener and the pump

    async def _listen(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn)
        conn.add_termination_listener(lambda _c: self._lost.set())
        await conn.add_listener(EVENT_CHANNEL, self._notified)
        self._listener = conn
        self._lost.clear()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            self._inbox.put_nowait(int(json.loads(payload)["id"]))
        except (ValueError, KeyError, TypeError):
            log.warning("feed.bad_notification", payload=payload[:200])

    async def _pump(self) -> None:
        while True:
            try:
                await self._pump_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one bad batch stop the feed
                log.error("feed.pump_failed", error=type(exc).__name__, exc_info=exc)
                await asyncio.sleep(RECONNECT_S)

    async def _pump_once(self) -> None:
        settled = self._settled
        assert settled is not None
        if self._lost.is_set():
            await self._reconnect()
        deadline = settled.deadline()
        timeout = None if deadline is None else max(0.0, deadline - self._clock())
        ids: list[int] = []
        with contextlib.suppress(TimeoutError):
            ids.append(await asyncio.wait_for(self._next_or_lost(), timeout))
        while not self._inbox.empty():
            ids.append(self._inbox.get_nowait())
        ids = [i for i in ids if i > 0]
        if ids:
            await self._deliver(ids)
        if settled.expire(self._clock()):
            self._published = settled.value

    async def _next_or_lost(self) -> int:
        """The next notified id, or 0 when the listener's connection is lost."""
        get = asyncio.ensure_future(self._inbox.get())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait({get, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (get, lost):
                if not f.done():
                    f.cancel()
        if get in done and not get.cancelled():
            return get.result()
        return 0

    async def _deliver(self, ids: Sequence[int]) -> None:
        """Record ``ids`` (in the order they were notified) and hand their events to the subscribers,
        each with the settled mark as it stood once that event was recorded."""
        settled = self._settled
        assert settled is not None
        now = self._clock()
        wanted: list[tuple[int, int]] = []  # (id, the mark after it)
        for i in ids:
            arrival = settled.arrive(i, now)
            if arrival is Arrival.DUPLICATE:
                continue
            if arrival is Arrival.LATE:
                self._late.append((i, now))
                log.info("feed.late_event", event_id=i)
            wanted.append((i, settled.value))
        if wanted and self._subscribers:
            events = await self._load([i for i, _ in wanted])
            for i, cursor in wanted:
                event = events.get(i)
                if event is None:
                    continue
                for sub in list(self._subscribers):
                    if in_scope(event.district_id, sub.districts):
                        sub.offer(event, cursor)
        self._published = settled.value

    async def _load(self, ids: Sequence[int]) -> dict[int, FeedEvent]:
        """The events of ``ids``, by id (one query for a batch)."""
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            return {r["id"]: event_of(r) for r in await conn.fetch(_BY_IDS, list(ids))}

    async def _reconnect(self) -> None:
        """A new LISTEN connection; the events committed meanwhile are read from the table (their
        notifications went to the old connection)."""
        log.warning("feed.listener_lost")
        while True:
            try:
                await self._listen()
                break
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("feed.reconnect_failed", error=type(exc).__name__)
                await asyncio.sleep(RECONNECT_S)
        settled = self._settled
        assert settled is not None
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            missed = [r["id"] for r in await conn.fetch(_IDS_AFTER, settled.value)]
        if missed:
            await self._deliver(missed)
        log.info("feed.listener_back", resynced=len(missed))
