"""The ingest consumer: MQTT 5 shared subscription → normalise → rules → PostgreSQL, ack after commit.

One process (``eldercare ingest``, ``python -m iot_ingest``) runs one :class:`IngestConsumer`; start
several with distinct client ids to share the subscription. Everything but the priority writer runs
on one thread, in one asyncio loop, MQTT included (:mod:`iot_ingest.client`), so no network thread
competes with the router and the writers for the GIL. Flow per message: a read of the socket appends
it to an inbox and wakes the router, which normalises it (pure), looks the device up in an in-memory
cache (:mod:`iot_ingest.device_cache`), runs the alarm rules, and routes it:

- plain telemetry goes to the batch writer (COPY, flushed at ``batch_max_msgs`` or ``batch_max_ms``);
- events, availability changes and anything that raised an alarm go to the priority writer, which has
  its own connection and never waits behind a telemetry batch. Event and status topics also reach
  the consumer through a second MQTT session (``…-prio``, see :func:`priority_filters`), so that an
  SOS does not queue in the broker behind a telemetry backlog either; the router takes that
  session's messages first, and the copy that arrives through the main session is acknowledged as
  a duplicate;
- rejected input goes to ``dead_letter`` (with the batch writer) and the consumer carries on.

QoS 1 messages are acknowledged (paho ``manual_ack``) only after the transaction holding their rows
commits. The session is persistent (clean start off, session expiry set) so messages published while
the consumer is down are queued by the broker; duplicates from redelivery are dropped by
``ingest_dedup`` inside the same transaction that stores the rows.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from callcentre.contract import AlarmCandidate
from core.clock import local_date, utc_now
from core.settings import Settings
from iot_ingest import storage
from iot_ingest.alarm_policy import PolicyByDay, PolicyWatch, load_thresholds
from iot_ingest.client import Delivery, Sessions
from iot_ingest.device_cache import DeviceCache, DeviceRecord
from iot_ingest.normalise import (
    Ignored,
    Message,
    Rejection,
    check_device,
    dedup_key,
    normalise,
    raw_key,
)
from iot_ingest.rules import VitalsTrack, alarms_for_event, battery_alarm, geofence_alarm, vitals_step
from iot_ingest.wire import INGEST_CLIENT_ID_PREFIX, TOPIC_ROOT

log = structlog.get_logger("iot_ingest")

SUBSCRIPTION = f"$share/ingest/{TOPIC_ROOT}/#"
_DB_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)
# The transaction was rolled back and may simply be run again (the connection is fine).
_TRANSIENT = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
_ROUTER_SLICE_S = 0.001  # longest the router runs before letting the writers in
_REMEMBER_KEYS = 100_000  # keys of events committed from the priority session, kept for the main one


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """Tuning of the consumer. Times in seconds unless the name says ms."""

    # The broker keys persistent sessions on it; the priority session adds "-prio". It must start
    # with INGEST_CLIENT_ID_PREFIX, which no device account can present (deploy/mosquitto/README.md).
    client_id: str = field(default_factory=lambda: f"{INGEST_CLIENT_ID_PREFIX}-{os.getpid()}")
    subscription: str = SUBSCRIPTION
    # A second session, subscribed only to event and status topics, so that an SOS never queues
    # in the broker behind a telemetry backlog. Its filters are derived from ``subscription``.
    priority_session: bool = True
    session_expiry_s: int = 7 * 24 * 3600
    # QoS 1 messages the broker may have in flight to us (MQTT 5 caps it at 65535). Acks wait for
    # the commit, so this must cover several batches or it, not the database, caps throughput.
    receive_maximum: int = 65_535
    keepalive_s: int = 30
    batch_max_msgs: int = 5_000
    batch_max_ms: int = 200
    priority_max_msgs: int = 500
    touch_interval_s: float = 2.0
    # A device's stored last-seen time is moved on only when it has advanced this much (or the device
    # changed availability meanwhile): offline limits are minutes (mains) and hours (battery), and
    # rewriting 10,000 device rows every few seconds cost the database more than the telemetry did.
    touch_min_advance_s: float = 30.0
    cache_refresh_s: float = 60.0
    # The alarm policy is reloaded on a NOTIFY and at local midnight; this is the safety net.
    policy_refresh_s: float = 60.0
    max_age: dt.timedelta = dt.timedelta(days=30)
    retry_backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.client_id.startswith(INGEST_CLIENT_ID_PREFIX):
            raise ValueError(
                f"the ingest's client id {self.client_id!r} must start with {INGEST_CLIENT_ID_PREFIX!r},"
                " so that no device account can take over its session"
            )


@dataclass(slots=True)
class _Item:
    raw: Delivery
    device: DeviceRecord | None = None
    message: Message | None = None
    key: int = 0
    alarms: list[AlarmCandidate] = field(default_factory=list)
    dead: tuple[str, str] | None = None


@dataclass
class IngestStats:
    received: int = 0
    telemetry_msgs: int = 0
    priority_msgs: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    alarms_new: int = 0
    alarms_repeat: int = 0
    db_errors: int = 0


PRIORITY_TOPICS = ("dev/+/event", "dev/+/status")  # under the root; rare, and may raise alarms


def priority_filters(subscription: str) -> list[str]:
    """Filters of the priority session for a main subscription of ``[$share/GROUP/]ROOT/#``.

    ``$share/ingest/eldercare/v1/#`` gives ``$share/ingest-prio/eldercare/v1/dev/+/event`` and
    ``…/dev/+/status``: a group of its own, so that every worker's priority session shares the
    events. Any other subscription gets no priority session ([]).
    Events reach both sessions; whichever copy is committed first is stored, the other is a
    duplicate (``ingest_dedup``) and is only acknowledged.
    """
    prefix = ""
    rest = subscription
    if subscription.startswith("$share/"):
        parts = subscription.split("/", 2)
        if len(parts) < 3:
            return []
        prefix, rest = f"$share/{parts[1]}-prio/", parts[2]
    if rest != f"{TOPIC_ROOT}/#":
        return []
    return [f"{prefix}{TOPIC_ROOT}/{t}" for t in PRIORITY_TOPICS]


class IngestConsumer:
    """One ingest worker. Start several with distinct ``client_id``s to share the subscription."""

    def __init__(self, settings: Settings, config: IngestConfig | None = None) -> None:
        self.settings = settings
        if config is None:
            config = (
                IngestConfig(client_id=settings.ingest_client_id)
                if settings.ingest_client_id
                else IngestConfig()
            )
        self.config = config
        self.stats = IngestStats()
        self.cache = DeviceCache()
        # The alarm policy by local day (:mod:`iot_ingest.alarm_policy`), kept current by the watch.
        self.policy = PolicyByDay()
        self.policy_watch = PolicyWatch(
            self.policy,
            settings.asyncpg_dsn,
            refresh_s=config.policy_refresh_s,
            retry_s=config.retry_backoff_s,
        )
        self._inbox: collections.deque[Delivery] = collections.deque()
        self._wake = asyncio.Event()
        self._pinbox: collections.deque[Delivery] = collections.deque()
        filters = priority_filters(config.subscription) if config.priority_session else []
        self._priority_topic: re.Pattern[str] | None = None  # set when the priority session runs
        if filters:
            self._priority_topic = re.compile(
                "|".join(
                    re.escape(f.split("/", 2)[2] if f.startswith("$share/") else f) for f in filters
                ).replace(r"\+", "[^/]+")
            )
        self.mqtt = Sessions(
            mqtt_url=settings.mqtt_url,
            client_id=config.client_id,
            subscriptions=[[config.subscription], filters] if filters else [[config.subscription]],
            keepalive_s=config.keepalive_s,
            session_expiry_s=config.session_expiry_s,
            receive_maximum=config.receive_maximum,
            on_raw=self._on_raw,
        )
        self.connected = self.mqtt.connected  # the main session is connected
        self._generations = self.mqtt.generations  # the same list: read per message by _on_raw
        # Keys of events committed from the priority session, so that the main session's copies
        # (usually later, behind the telemetry) are acknowledged without another transaction.
        self._stored_by_priority: dict[storage.MsgKey, None] = {}
        self._stopping = asyncio.Event()
        self._writers_stop = asyncio.Event()
        self._accepting = True
        self._vitals: dict[tuple[int, str], VitalsTrack] = {}
        self._batch: list[_Item] = []
        self._batch_started = 0.0
        self._batch_ready = asyncio.Event()
        # The priority lane: a thread of its own running the priority writer on its own loop, so
        # that an alarm's round trips to the database never queue behind the routing of a flood
        # on the main loop (they only wait for the GIL, see :func:`run`).
        self._priority: collections.deque[_Item] = collections.deque()  # appended by the router
        self._lane: threading.Thread | None = None
        self._lane_loop: asyncio.AbstractEventLoop | None = None
        self._priority_ready: asyncio.Event | None = None  # bound to the lane's loop
        self._priority_busy = False  # a priority transaction is in flight
        self._last_seen: dict[int, dt.datetime] = {}
        self._seen_written: dict[int, dt.datetime] = {}  # the last-seen time last stored per device
        self._gateway_seen: dict[str, dt.datetime] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._store: storage.TelemetryStore | None = None

    # --- MQTT (called by :class:`iot_ingest.client.Sessions` on the loop) ------------------------

    def _on_raw(
        self, session: int, topic: str, payload: bytes, mid: int, qos: int, received_at: dt.datetime
    ) -> None:
        if not self._accepting:
            return  # not acknowledged: the broker keeps it for the next session
        raw = Delivery(topic, payload, mid, qos, self._generations[session], received_at, session)
        (self._pinbox if session else self._inbox).append(raw)
        self._wake.set()

    def _ack(self, items: list[_Item]) -> None:
        self.mqtt.ack([it.raw for it in items])

    def _is_priority_topic(self, topic: str) -> bool:
        return self._priority_topic is not None and self._priority_topic.fullmatch(topic) is not None

    # --- Routing -----------------------------------------------------------------

    def _classify(self, raw: Delivery) -> tuple[_Item, Message | None]:
        """Normalise one message; returns its message when it still needs its device looked up.

        Ignored and rejected input is dealt with here (acknowledged, or queued for ``dead_letter``).
        """
        self.stats.received += 1
        item = _Item(raw)
        try:
            out = normalise(raw.topic, raw.payload, now=raw.received_at, max_age=self.config.max_age)
            if isinstance(out, Ignored):
                self._ack([item])
                return item, None
            if isinstance(out, Rejection):
                item.dead = (out.reason, out.detail)
                self._to_batch(item)
                return item, None
            if out.source.scheme == "z2m" and out.source.friendly_name is None:
                # The gateway's own bridge state: only its last-seen time is tracked.
                self._gateway_seen[out.source.uid] = raw.received_at
                self._ack([item])
                return item, None
        except Exception as e:  # never crash on input: park it with the reason
            self._route_failed(item, e)
            return item, None
        return item, out

    def _dispatch(self, item: _Item, out: Message, device: DeviceRecord | None) -> None:
        """Registry checks, alarm rules, then the batch or the priority path."""
        raw = item.raw
        try:
            bad = check_device(out, device.info if device else None)
            if bad is not None or device is None:
                item.dead = (bad.reason, bad.detail) if bad else ("unknown_device", "")
                self._to_batch(item)
                return
            item.device, item.message = device, out
            item.key = dedup_key(raw.topic, raw.payload, out)
            if raw.session == 0 and (device.info.id, item.key) in self._stored_by_priority:
                # The priority session's copy of this event is already committed: just ack this one.
                self.stats.duplicates += 1
                self._ack([item])
                return
            self._last_seen[device.info.id] = raw.received_at
            if out.source.scheme == "z2m":
                self._gateway_seen[out.source.uid] = raw.received_at
            item.alarms = self._rules(device, out)
            if out.events or out.availability or item.alarms:
                self._priority.append(item)
                self._wake_priority()
            else:
                self._to_batch(item)
        except Exception as e:  # never crash on input: park it with the reason
            self._route_failed(item, e)

    def _route_failed(self, item: _Item, e: Exception) -> None:
        log.exception("ingest.route_failed", topic=item.raw.topic[:200])
        item.device = item.message = None
        item.dead = ("internal_error", repr(e)[:500])
        self._to_batch(item)

    def _rules(self, device: DeviceRecord, msg: Message) -> list[AlarmCandidate]:
        """The alarm rules, each reading and event judged by the policy of its own local day (held:
        the router made sure of it with :meth:`PolicyByDay.missing`), with the elder's own thresholds
        in place of the policy's where the elder has some (:meth:`DeviceRecord.thresholds`)."""
        ctx, policy_at, own = device.ctx, self.policy.at, device.thresholds
        alarms: list[AlarmCandidate] = []
        for event in msg.events:
            alarms.extend(alarms_for_event(event, ctx, own(policy_at(event.at))))
        if msg.readings:
            low_battery = False  # one LOW_BATTERY per message
            for reading in msg.readings:
                th = own(policy_at(reading.at))
                if not low_battery and (battery := battery_alarm(reading, ctx, th)) is not None:
                    alarms.append(battery)
                    low_battery = True
                key = (ctx.device_id, reading.metric)
                track, alarm = vitals_step(self._vitals.get(key), reading, ctx, th)
                if track is not None:
                    self._vitals[key] = track
                if alarm is not None:
                    alarms.append(alarm)
            first = msg.readings[0]
            fence = geofence_alarm(ctx, msg.readings, device.safe_zone, policy_at(first.at))
            if fence is not None:
                alarms.append(fence)
        return alarms

    def _to_batch(self, item: _Item) -> None:
        if item.dead is not None:
            # Both sessions may carry a rejected event (or only one of them, e.g. before the priority
            # session has subscribed): a key on the raw bytes lets whichever copy commits first be
            # stored and the other be dropped as a duplicate.
            raw = item.raw
            item.key = raw_key(raw.topic, raw.payload) if self._is_priority_topic(raw.topic) else 0
        if not self._batch:
            self._batch_started = time.monotonic()
        self._batch.append(item)
        if len(self._batch) >= self.config.batch_max_msgs:
            self._batch_ready.set()

    # --- Writers ----------------------------------------------------------------------------------

    async def _with_retry(self, what: str, fn: Callable[[], Any]) -> None:
        """Run a transaction until it succeeds: unacked messages stay with the broker meanwhile."""
        while True:
            try:
                await fn()
                return
            except _DB_ERRORS as e:
                self.stats.db_errors += 1
                log.warning("ingest.db_unavailable", writer=what, error=repr(e)[:200])
                await asyncio.sleep(self.config.retry_backoff_s)
            except _TRANSIENT as e:  # never dead-letter good messages for a lost lock race
                self.stats.db_errors += 1
                log.warning("ingest.db_retry", writer=what, error=repr(e)[:200])
                await asyncio.sleep(0.01)

    async def _connect_db(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self.settings.asyncpg_dsn)
        await storage.prepare_connection(conn)
        return conn

    async def _batch_writer(self) -> None:
        conn: asyncpg.Connection | None = None
        while not self._writers_stop.is_set() or self._batch:
            if not self._batch:
                await self._sleep_or(self._batch_ready, self.config.batch_max_ms / 1000)
                continue
            age_ms = (time.monotonic() - self._batch_started) * 1000
            if len(self._batch) < self.config.batch_max_msgs and age_ms < self.config.batch_max_ms:
                await self._sleep_or(self._batch_ready, (self.config.batch_max_ms - age_ms) / 1000)
                continue
            # Bounded batches: a backlog arrives faster than one transaction should grow.
            limit = self.config.batch_max_msgs
            batch, self._batch = self._batch[:limit], self._batch[limit:]
            if len(self._batch) < limit:
                self._batch_ready.clear()
            if self._batch:
                self._batch_started = time.monotonic()

            async def write(batch: list[_Item] = batch) -> None:
                nonlocal conn
                if conn is None or conn.is_closed():
                    conn = await self._connect_db()
                try:
                    await self._write_batch(conn, batch)
                except _DB_ERRORS:
                    conn.terminate()
                    conn = None
                    raise

            started = time.monotonic()
            try:
                await self._with_retry("batch", write)
                log.debug(
                    "ingest.batch_written", size=len(batch), ms=round((time.monotonic() - started) * 1000, 1)
                )
            except Exception:
                log.exception("ingest.batch_failed", size=len(batch))
                conn = None
                await self._fallback_dead_letter(batch)
            self._ack(batch)
        if conn is not None:
            await conn.close()

    async def _write_batch(self, conn: asyncpg.Connection, batch: list[_Item]) -> None:
        assert self._store is not None
        dead: list[storage.DeadLetterRow] = []
        keyed: list[_Item] = []
        claims: list[tuple[int, int, dt.datetime]] = []
        for it in batch:
            if it.dead is None:
                keyed.append(it)
                if it.device is not None:
                    claims.append((it.device.info.id, it.key, it.raw.received_at))
            elif it.key:
                claims.append((storage.DEAD_LETTER_DEVICE, it.key, it.raw.received_at))
        async with conn.transaction():
            fresh = await storage.claim_keys_copy(conn, claims)
            for it in batch:
                if it.dead is None:
                    continue
                if it.key:
                    k = (storage.DEAD_LETTER_DEVICE, it.key)
                    if k not in fresh:
                        self.stats.duplicates += 1
                        continue
                    fresh.discard(k)
                dead.append((it.raw.received_at, it.raw.topic, it.raw.payload, it.dead[0], it.dead[1]))
            rows: list[storage.TelemetryRow] = []
            for it in keyed:
                assert it.device is not None
                assert it.message is not None
                k = (it.device.info.id, it.key)
                if k not in fresh:
                    self.stats.duplicates += 1
                    continue
                fresh.discard(k)  # a second copy inside the same batch is a duplicate too
                seq = it.message.seq
                rows.extend((k[0], r.at, r.metric, r.value, seq, r.unit) for r in it.message.readings)
            if rows:
                await self._store.ensure_days(conn, {r[1].date() for r in rows})
            await storage.copy_telemetry(conn, rows)
            await storage.copy_dead_letters(conn, dead)
        self.stats.telemetry_msgs += len(keyed)
        self.stats.dead_letters += len(dead)

    async def _fallback_dead_letter(self, batch: list[_Item]) -> None:
        """A batch that fails for a reason other than connectivity: park each message, keep going."""
        conn = await self._connect_db()
        try:
            for it in batch:
                reason, detail = it.dead or ("storage_error", "batch insert failed")
                await storage.copy_dead_letters(
                    conn, [(it.raw.received_at, it.raw.topic, it.raw.payload, reason, detail)]
                )
        finally:
            await conn.close()

    def _wake_priority(self) -> None:
        if self._lane_loop is not None and self._priority_ready is not None:
            self._lane_loop.call_soon_threadsafe(self._priority_ready.set)

    def _lane_main(self, started: threading.Event) -> None:
        async def lane() -> None:
            self._lane_loop = asyncio.get_running_loop()
            self._priority_ready = asyncio.Event()
            started.set()
            await self._priority_writer()

        asyncio.run(lane())

    async def _priority_writer(self) -> None:
        """Runs on the lane's loop; acknowledgements go back to the main loop, which owns MQTT."""
        assert self._priority_ready is not None
        assert self._loop is not None
        conn: asyncpg.Connection | None = None
        while not self._writers_stop.is_set() or self._priority:
            if not self._priority:
                await self._sleep_or(self._priority_ready, 0.5)
                self._priority_ready.clear()
                continue
            items = [
                self._priority.popleft()
                for _ in range(min(len(self._priority), self.config.priority_max_msgs))
            ]

            async def write(items: list[_Item] = items) -> None:
                nonlocal conn
                if conn is None or conn.is_closed():
                    conn = await self._connect_db()
                try:
                    await self._write_priority(conn, items)
                except _DB_ERRORS:
                    conn.terminate()
                    conn = None
                    raise

            self._priority_busy = True
            try:
                await self._with_retry("priority", write)
            except Exception as e:
                log.exception("ingest.priority_failed", size=len(items))
                conn = None
                for it in items:
                    it.dead = ("storage_error", repr(e)[:500])
                await self._fallback_dead_letter(items)
            finally:
                self._priority_busy = False
            self._loop.call_soon_threadsafe(self._ack, items)
        if conn is not None:
            await conn.close()

    async def _write_priority(self, conn: asyncpg.Connection, items: list[_Item]) -> None:  # noqa: C901 - the hot path's retry/ack choices; kept in one place so the commit-then-ack order is visible
        """One statement (:func:`storage.write_priority`): a single round trip, however busy the
        machine, is what keeps an alarm's commit fast."""
        assert self._store is not None
        started = utc_now()
        batch = storage.PriorityBatch()
        firsts: dict[storage.MsgKey, _Item] = {}
        for it in items:
            assert it.device is not None
            assert it.message is not None
            k = (it.device.info.id, it.key)
            if k in firsts:  # a second copy inside the batch: a duplicate
                continue
            firsts[k] = it
            m, d, key = it.message, k[0], k[1]
            batch.keys.append((d, key, it.raw.received_at))
            batch.events.extend((d, key, e.at, e.type, dict(e.data), m.seq) for e in m.events)
            batch.readings.extend((d, key, r.at, r.metric, r.value, m.seq, r.unit) for r in m.readings)
            if m.availability is not None:
                batch.availability.append((d, key, m.availability == "online", it.raw.received_at))
                batch.events.append((d, key, it.raw.received_at, m.availability, {}, m.seq))
            batch.alarms.extend((key, a) for a in it.alarms)
        if batch.readings:
            await self._store.ensure_days(conn, {r[2].date() for r in batch.readings})
        fresh, new_alarms = await storage.write_priority(conn, batch)
        self.stats.duplicates += len(items) - len(fresh)
        for k in fresh:
            if firsts[k].message.availability is not None:  # type: ignore[union-attr]
                self._seen_written.pop(k[0], None)  # the next message stores last-seen (and online)
        self.stats.priority_msgs += len(items)
        remembered = self._stored_by_priority
        for it in items:
            if it.raw.session == 1 and it.device is not None:
                remembered[(it.device.info.id, it.key)] = None
        while len(remembered) > _REMEMBER_KEYS:
            del remembered[next(iter(remembered))]  # oldest first (dicts keep insertion order)
        if items:
            oldest = min(it.raw.received_at for it in items)
            log.debug(
                "ingest.priority_written",
                sessions=sorted({it.raw.session for it in items}),
                size=len(items),
                waited_ms=round((started - oldest).total_seconds() * 1000, 1),
                ms=round((utc_now() - oldest).total_seconds() * 1000, 1),
            )
        for w in new_alarms:
            if w.created:
                self.stats.alarms_new += 1
                log.info("alarm.raised", alarm_id=w.alarm_id)
            else:
                self.stats.alarms_repeat += 1

    async def _toucher(self) -> None:
        """Flush device/gateway last-seen times every few seconds (one ordered UPDATE each)."""
        conn: asyncpg.Connection | None = None
        while not self._stopping.is_set():
            await self._sleep_or(self._stopping, self.config.touch_interval_s)
            seen, self._last_seen = self._last_seen, {}
            gws, self._gateway_seen = self._gateway_seen, {}
            written, advance = self._seen_written, dt.timedelta(seconds=self.config.touch_min_advance_s)
            seen = {d: at for d, at in seen.items() if d not in written or at - written[d] >= advance}
            if not seen and not gws:
                continue
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self.settings.asyncpg_dsn)
                async with conn.transaction():
                    await storage.touch_devices(conn, seen)
                    await storage.touch_gateways(conn, gws)
                written.update(seen)
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as e:
                log.warning("ingest.touch_failed", error=repr(e)[:200])
                conn = None
                for k, v in seen.items():  # try again next round
                    self._last_seen[k] = max(v, self._last_seen.get(k, v))
        if conn is not None:
            await conn.close()

    def _in_memory(self, out: Message) -> DeviceRecord | None:
        """The message's device if the cache has it and the alarm policy of its days is held."""
        return self.cache.peek(out) if self.policy.missing(out) is None else None

    async def _look_up(self, conn: asyncpg.Connection, out: Message) -> DeviceRecord | None:
        """The message's device, and the alarm policy of its days (late or early data may need one
        loaded): what the router cannot answer from memory."""
        device = self.cache.peek(out) or await self.cache.get(conn, out)
        while device is not None and (days := self.policy.missing(out)) is not None:
            await self.policy.ensure(conn, days)
        return device

    async def _router(self) -> None:
        conn: asyncpg.Connection | None = None
        last_refresh = time.monotonic()
        while not self._stopping.is_set() or self._inbox or self._pinbox:
            if not self._wake.is_set():
                await self._wake.wait()  # set by new messages, by stop(), and by the retry paths
            self._wake.clear()
            if not self._inbox and not self._pinbox:
                continue
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self.settings.asyncpg_dsn)
                if time.monotonic() - last_refresh > self.config.cache_refresh_s:
                    await self.cache.load(conn)
                    last_refresh = time.monotonic()
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as e:
                log.warning("ingest.db_unavailable", writer="router", error=repr(e)[:200])
                conn = None
                await asyncio.sleep(self.config.retry_backoff_s)
                self._wake.set()
                continue
            n = 0
            slice_end = time.monotonic() + _ROUTER_SLICE_S
            while self._inbox or self._pinbox:
                # Events from the priority session first, then the bulk of telemetry.
                raw = self._pinbox.popleft() if self._pinbox else self._inbox.popleft()
                item, out = self._classify(raw)
                if out is None:
                    continue
                try:
                    device = self._in_memory(out) or await self._look_up(conn, out)
                except _DB_ERRORS:
                    # Device or policy lookup failed: put it back and retry once the database is back.
                    (self._pinbox if raw.session else self._inbox).appendleft(raw)
                    self.stats.received -= 1
                    conn = None
                    await asyncio.sleep(self.config.retry_backoff_s)
                    self._wake.set()
                    break
                queued = len(self._priority)
                self._dispatch(item, out, device)
                n += 1
                # Let the writers run during a flood: every await of theirs (each database round
                # trip) waits for the router to yield, so a long slice would hold up commits and
                # acks. An event or alarm must not wait at all: after queueing one, and while its
                # transaction is in flight, yield after every message.
                if (
                    self._priority_busy
                    or len(self._priority) > queued
                    or (n & 15 == 0 and time.monotonic() > slice_end)
                ):
                    await asyncio.sleep(0)
                    slice_end = time.monotonic() + _ROUTER_SLICE_S
        if conn is not None:
            await conn.close()

    @staticmethod
    async def _sleep_or(event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=max(seconds, 0.001))

    # --- Lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        conn = await asyncpg.connect(self.settings.asyncpg_dsn)
        try:
            self._store = await storage.make_store(conn)
            await self.cache.load(conn)
            today = local_date(utc_now())
            # A policy that cannot be built stops the start: there is no policy in hand to keep.
            self.policy.replace(today, await load_thresholds(conn, today))
        finally:
            await conn.close()
        self._tasks = [
            asyncio.create_task(self._router(), name="ingest-router"),
            asyncio.create_task(self._batch_writer(), name="ingest-batch"),
            asyncio.create_task(self._toucher(), name="ingest-touch"),
            asyncio.create_task(self.policy_watch.run(self._stopping), name="ingest-policy"),
        ]
        lane_started = threading.Event()
        self._lane = threading.Thread(
            target=self._lane_main, args=(lane_started,), name="ingest-priority", daemon=True
        )
        self._lane.start()
        await asyncio.to_thread(lane_started.wait, 10)
        self.mqtt.start()
        log.info("ingest.started", client_id=self.config.client_id, backend=self._store.backend)

    async def stop(self, *, end_session: bool = False) -> None:
        """Stop taking messages, write and acknowledge what is in hand, then disconnect.

        The broker session is kept (messages keep queueing for the next start) unless ``end_session``.
        """
        self._accepting = False
        self._stopping.set()
        self._wake.set()
        router, batch, toucher, policy = self._tasks
        await asyncio.gather(router, toucher, policy, return_exceptions=True)
        self._writers_stop.set()
        self._batch_ready.set()
        self._wake_priority()
        await asyncio.gather(batch, return_exceptions=True)
        if self._lane is not None:
            await asyncio.to_thread(self._lane.join)
        await asyncio.sleep(0)  # run the lane's last acknowledgements (queued with call_soon_threadsafe)
        await self.mqtt.close(end_session=end_session)
        log.info("ingest.stopped", **self.stats.__dict__)

    async def run_forever(self) -> None:
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await self.stop()


async def run_async(settings: Settings, config: IngestConfig | None = None) -> None:
    """Run one ingest worker until SIGINT/SIGTERM."""
    await IngestConsumer(settings, config).run_forever()


def run(settings: Settings, config: IngestConfig | None = None) -> None:
    """Entry point for ``eldercare ingest``."""
    # The priority lane's thread waits for the GIL whenever its database answers; hand it over
    # within 1 ms rather than CPython's default 5 ms.
    sys.setswitchinterval(0.001)
    asyncio.run(run_async(settings, config))
