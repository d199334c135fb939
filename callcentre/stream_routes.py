"""``GET /api/v1/callcentre/stream``: the operators' live feed as server-sent events.

One message per ``alarm_event`` in the caller's districts (DOMAIN §9: city-wide when unscoped):
``event:`` the kind (``raised``, ``repeated``, ``acknowledged``, ``cleared``…), ``data:`` JSON for the
console (``event_id``, ``alarm_id``, ``type``, ``severity``, ``count``, ``district``, ``elder_name``,
the alarm's state, the event's own ``data``), ``id:`` the feed's cursor (see :mod:`callcentre.feed`:
the event's own id when it arrived in order, never past an id that may still commit). A comment every
:data:`HEARTBEAT_S` keeps proxies from closing the connection and carries the cursor forward.

A reconnecting client sends ``Last-Event-ID`` (browsers do by themselves) and is first replayed, in
id order, every event of its scope above it; a first connection may say where to start with
``?after=`` (the queue page passes the cursor it was rendered at, so nothing falls between the page
and the stream); with neither, the stream starts now. A client that does not keep up is dropped and
replays on reconnecting. The signed-in session is checked again every :data:`RECHECK_S`: a revoked
token ends the stream, a change of districts applies to what follows.

Each API process serves its own consoles from its own listener (:class:`callcentre.feed.AlarmFeed`,
started with the app). Where no listener runs (an app built in-process by the tests, which runs no
startup hooks) the stream sends the replay and ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

import asyncpg
from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from callcentre.feed import (
    AlarmFeed,
    FeedEvent,
    Subscription,
    events_by_id,
    in_scope,
    latest_event_id,
    replay_page,
)
from core.errors import Invalid
from core.http import SESSION_COOKIE, CurrentPrincipal, Db
from core.identity.authz import Principal, allow
from core.identity.models import Role
from core.identity.sessions import principal_for_token
from registry.scope import by_district

FEED_STATE_KEY: Final = "alarm_feed"
HEARTBEAT_S: Final = 15.0
RECHECK_S: Final = 60.0
# What a browser waits before reconnecting (milliseconds), sent once per connection.
RETRY_MS: Final = 2000
MAX_EVENT_ID: Final = 2**63 - 1

WATCHERS: Final = (Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN, Role.CIVIL_AFFAIRS)


def feed_of(state: State) -> AlarmFeed | None:
    feed: AlarmFeed | None = state.get(FEED_STATE_KEY)
    return feed if feed is not None and feed.running else None


def districts_of(p: Principal) -> frozenset[int] | None:
    """The districts whose alarms ``p`` watches; ``None`` for the whole city."""
    return frozenset(p.district_ids) if by_district(p) else None


@contextlib.asynccontextmanager
async def _connection(state: State) -> AsyncIterator[asyncpg.Connection]:
    """A database connection for replays: the feed's pool, or the app's own sessions without one."""
    feed = feed_of(state)
    if feed is not None:
        async with feed.connection() as conn:
            yield conn
        return
    async with state.sessionmaker() as session:
        raw = await (await session.connection()).get_raw_connection()
        yield raw.driver_connection


async def console_cursor(state: State) -> int:
    """Where a console rendered now should start its stream (``?after=``): the feed's cursor, or
    the latest event without a listener."""
    feed = feed_of(state)
    if feed is not None:
        return feed.cursor
    async with _connection(state) as conn:
        return await latest_event_id(conn)


def _message(event: FeedEvent, cursor: int) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=event.data, event=event.kind, id=cursor)


def _parse_cursor(last_event_id: str | None, after: int | None) -> int | None:
    if last_event_id is not None and last_event_id.strip():
        try:
            value = int(last_event_id.strip())
        except ValueError:
            raise Invalid("Last-Event-ID must be an event id.", field="Last-Event-ID") from None
        if not 0 <= value <= MAX_EVENT_ID:
            raise Invalid("Last-Event-ID is out of range.", field="Last-Event-ID")
        return value
    return after


class _Stream:
    """One console's stream: the replay, then the live events, heartbeats and session checks."""

    def __init__(self, state: State, principal: Principal, token: str | None, after: int | None) -> None:
        self.state = state
        self.principal = principal
        self.token = token
        self.after = after
        self.districts = districts_of(principal)
        self.cursor = after or 0  # the highest id: sent so far (never sent lower than ``after``)

    def _id(self, value: int) -> int:
        self.cursor = max(self.cursor, value)
        return self.cursor

    async def messages(self) -> AsyncIterator[ServerSentEventMessage]:
        yield ServerSentEventMessage(data=None, comment="connected", retry=RETRY_MS)
        feed = feed_of(self.state)
        if feed is None:
            if self.after is not None:
                async for message in self._replay(cap=None, sent=set()):
                    yield message
            return
        sub = feed.subscribe(self.districts)
        try:
            sent: set[int] = set()
            if self.after is None:
                self.cursor = feed.cursor
            else:
                async for message in self._replay(cap=feed.cursor, sent=sent, late=feed.late_ids()):
                    yield message
                    if sub.overflowed:
                        return
            async for message in self._live(feed, sub, sent):
                yield message
        finally:
            feed.unsubscribe(sub)

    async def _replay(
        self, *, cap: int | None, sent: set[int], late: list[int] | None = None
    ) -> AsyncIterator[ServerSentEventMessage]:
        """Every event of the scope above ``after`` in id order (and the late ids below it); ``id:``
        no further than ``cap``, the feed's cursor when the subscription began."""
        after = self.after or 0
        if late:
            async with _connection(self.state) as conn:
                earlier = await events_by_id(conn, [i for i in late if i <= after], districts=self.districts)
            for event in earlier:
                sent.add(event.id)
                yield _message(event, self._id(after))
        last = after
        while True:
            async with _connection(self.state) as conn:
                page = await replay_page(conn, after=last, districts=self.districts)
            for event in page:
                sent.add(event.id)
                yield _message(event, self._id(event.id if cap is None else min(event.id, cap)))
            if len(page) == 0:
                return
            last = page[-1].id

    async def _live(
        self, feed: AlarmFeed, sub: Subscription, sent: set[int]
    ) -> AsyncIterator[ServerSentEventMessage]:
        loop = asyncio.get_running_loop()
        recheck_at = loop.time() + RECHECK_S
        while True:
            if sub.overflowed:
                return
            try:
                event, cursor = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
            except TimeoutError:
                if sub.queue.empty():  # everything up to the feed's cursor has been sent
                    yield ServerSentEventMessage(data=None, comment="heartbeat", id=self._id(feed.cursor))
                if loop.time() >= recheck_at:
                    recheck_at = loop.time() + RECHECK_S
                    if not await self._still_allowed(sub):
                        return
                continue
            if event.id in sent:  # replayed already; the cursor may still move on
                sent.discard(event.id)
                yield ServerSentEventMessage(data=None, comment="replayed", id=self._id(cursor))
                continue
            if in_scope(event.district_id, sub.districts):
                yield _message(event, self._id(cursor))

    async def _still_allowed(self, sub: Subscription) -> bool:
        """The session is still live and its role may still watch; its districts may have changed."""
        if self.token is None:
            return False
        state = self.state
        async with state.sessionmaker() as session:
            principal = await principal_for_token(
                session=session,
                token=self.token,
                now=state.clock(),
                scope_loaders=state.scope_loaders,
                cache=state.principal_cache,
            )
            await session.commit()
        if principal is None or principal.role not in WATCHERS:
            return False
        sub.districts = self.districts = districts_of(principal)
        return True


def _token(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(SESSION_COOKIE)


class AlarmStreamController(Controller):
    path = "/api/v1/callcentre"
    tags = ["callcentre"]  # noqa: RUF012

    @get(
        "/stream",
        opt=allow(*WATCHERS),
        summary="The live feed of alarm events in one's districts (server-sent events)",
        media_type="text/event-stream",
    )
    async def stream(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db: Db,
        principal: CurrentPrincipal,
        after: Annotated[
            int | None,
            QueryParameter(ge=0, le=MAX_EVENT_ID, description="Start after this event id (first connection)"),
        ] = None,
        last_event_id: Annotated[
            str | None,
            HeaderParameter(name="last-event-id", description="The last id received (reconnecting)"),
        ] = None,
    ) -> ServerSentEvent:
        """``text/event-stream``; see the module's documentation for the messages and the replay.

        Takes ``db`` so that the request's transaction (the guard's token check) is committed when
        this handler returns: a stream that lasts hours must not hold a pooled connection."""
        cursor = _parse_cursor(last_event_id, after)
        stream = _Stream(state, principal, _token(request), cursor)
        await db.commit()
        return ServerSentEvent(stream.messages())


CONTROLLERS = (AlarmStreamController,)
